-- One row per account and health score (the accounts' nested health_scores array).
with elements as (
    select
        salesforce_account_id,
        {{ json_array_elements('health_scores') }} as health_score
    from {{ ref('stg_isvapp__salesforce_accounts') }}
    where health_scores is not null
)

select
    salesforce_account_id,
    cast(health_score->>'label' as text) as label,
    cast(health_score->>'score' as numeric(9, 2)) as score,
    cast(health_score->>'is_primary' as boolean) as is_primary
from elements
