-- Feature (taxonomy item) usage per account and month, with the account's health
-- scores. ISVapp keeps only current health scores, so every month shows today's.
with usage as (
    select * from {{ ref('stg_isvapp__taxonomy_item_usage') }}
),

health as (
    select
        salesforce_account_id,
        max(case when is_primary then score end) as primary_health_score,
        max(case when is_primary then label end) as primary_health_score_label,
        min(score) as lowest_health_score,
        avg(score) as average_health_score
    from {{ ref('stg_isvapp__account_health_scores') }}
    group by salesforce_account_id
)

select
    usage.usage_month,
    usage.salesforce_account_id,
    coalesce(accounts.account_name, usage.salesforce_account_name) as account_name,
    usage.taxonomy_id,
    usage.taxonomy_label,
    usage.taxonomy_level_id,
    usage.taxonomy_level_label,
    usage.taxonomy_item_id,
    usage.taxonomy_item_label,
    usage.taxonomy_item_parent_item_id,
    usage.unique_users,
    usage.unique_users_internal,
    usage.unique_users_external,
    usage.operations,
    usage.operations_internal,
    usage.operations_external,
    case when usage.operations > 0
        then cast(usage.operations_external as numeric(18, 4)) / usage.operations end as external_operations_share,
    health.primary_health_score,
    health.primary_health_score_label,
    health.lowest_health_score,
    cast(health.average_health_score as numeric(9, 2)) as average_health_score
from usage
left join {{ ref('stg_isvapp__salesforce_accounts') }} as accounts
    on accounts.salesforce_account_id = usage.salesforce_account_id
left join health on health.salesforce_account_id = usage.salesforce_account_id
