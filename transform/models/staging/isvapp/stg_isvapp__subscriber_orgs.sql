-- One row per account and subscriber org (the accounts' nested subscriber_orgs array).
with elements as (
    {{ unnest_json_array(ref('stg_isvapp__salesforce_accounts'), ['salesforce_account_id'], 'subscriber_orgs', 'subscriber_org') }}
)

select
    salesforce_account_id,
    cast({{ json_text('subscriber_org', 'salesforce_id') }} as text) as organization_id,
    cast({{ json_text('subscriber_org', 'name') }} as text) as organization_name
from elements
