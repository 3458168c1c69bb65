-- One row per account and subscriber org (the accounts' nested subscriber_orgs array).
with elements as (
    select
        salesforce_account_id,
        {{ json_array_elements('subscriber_orgs') }} as subscriber_org
    from {{ ref('stg_isvapp__salesforce_accounts') }}
    where subscriber_orgs is not null
)

select
    salesforce_account_id,
    cast(subscriber_org->>'salesforce_id' as text) as organization_id,
    cast(subscriber_org->>'name' as text) as organization_name
from elements
