-- One row per account and health score (the accounts' nested health_scores array).
with elements as (
    {{ unnest_json_array(ref('stg_isvapp__salesforce_accounts'), ['salesforce_account_id'], 'health_scores', 'health_score') }}
)

select
    salesforce_account_id,
    cast({{ json_text('health_score', 'label') }} as text) as label,
    cast({{ json_text('health_score', 'score') }} as numeric(9, 2)) as score,
    cast({{ json_text('health_score', 'is_primary') }} as boolean) as is_primary
from elements
