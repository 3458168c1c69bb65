-- Feature adoption per ISVapp account, taxonomy level and month, from the monthly
-- TAXONOMY_ITEM exports. A feature is a taxonomy item; items are compared only with the
-- items of their own level (a "Product Area" and a "Feature" are not two features of one
-- list), and an item is used in a month when its row has operations or users.
-- Each account has a row for every month from its first month in the level to the
-- taxonomy's latest loaded month (an export covers all its selected items for a month):
-- a month without rows is a month without use (0), so adoption that stops shows as 0
-- rather than disappearing.
with recursive usage as (
    select
        usage_month,
        salesforce_account_id,
        salesforce_account_name,
        taxonomy_id,
        taxonomy_label,
        taxonomy_level_id,
        taxonomy_level_label,
        taxonomy_item_id,
        unique_users,
        operations,
        operations_internal,
        operations_external,
        coalesce(operations, 0) > 0 or coalesce(unique_users, 0) > 0 as is_used
    from {{ ref('stg_isvapp__taxonomy_item_usage') }}
),

levels as (
    select
        taxonomy_id,
        taxonomy_level_id,
        max(taxonomy_label) as taxonomy_label,
        max(taxonomy_level_label) as taxonomy_level_label,
        min(usage_month) as first_month
    from usage
    group by taxonomy_id, taxonomy_level_id
),

taxonomies as (
    select taxonomy_id, max(usage_month) as last_month
    from usage
    group by taxonomy_id
),

months (month_start, last_month) as (
    select first_month, last_month
    from (select min(usage_month) as first_month, max(usage_month) as last_month from usage) as bounds
    where first_month is not null
    union all
    select {{ add_months('month_start', 1) }}, last_month
    from months
    where month_start < last_month
),

account_levels as (
    select
        salesforce_account_id,
        taxonomy_id,
        taxonomy_level_id,
        max(salesforce_account_name) as salesforce_account_name,
        min(usage_month) as first_month
    from usage
    group by salesforce_account_id, taxonomy_id, taxonomy_level_id
),

spine as (
    select
        months.month_start as usage_month,
        account_levels.salesforce_account_id,
        account_levels.salesforce_account_name,
        account_levels.taxonomy_id,
        account_levels.taxonomy_level_id,
        levels.first_month as level_first_month
    from account_levels
    inner join levels
        on levels.taxonomy_id = account_levels.taxonomy_id
        and levels.taxonomy_level_id = account_levels.taxonomy_level_id
    inner join taxonomies on taxonomies.taxonomy_id = account_levels.taxonomy_id
    inner join months
        on months.month_start >= account_levels.first_month
        and months.month_start <= taxonomies.last_month
),

-- The month each account first used each item, and the month any account first did.
first_use as (
    select salesforce_account_id, taxonomy_id, taxonomy_level_id, taxonomy_item_id,
           min(usage_month) as first_month
    from usage
    where is_used
    group by salesforce_account_id, taxonomy_id, taxonomy_level_id, taxonomy_item_id
),

first_seen as (
    select taxonomy_id, taxonomy_level_id, taxonomy_item_id, min(usage_month) as first_month
    from usage
    where is_used
    group by taxonomy_id, taxonomy_level_id, taxonomy_item_id
),

seen_to_date as (
    select
        months.month_start as usage_month,
        first_seen.taxonomy_id,
        first_seen.taxonomy_level_id,
        count(*) as features_seen_to_date
    from months
    inner join first_seen on first_seen.first_month <= months.month_start
    group by months.month_start, first_seen.taxonomy_id, first_seen.taxonomy_level_id
),

adopted_to_date as (
    select
        spine.usage_month,
        spine.salesforce_account_id,
        spine.taxonomy_id,
        spine.taxonomy_level_id,
        count(*) as features_used_to_date,
        count(case when first_use.first_month = spine.usage_month then 1 end) as new_features_adopted
    from spine
    inner join first_use
        on first_use.salesforce_account_id = spine.salesforce_account_id
        and first_use.taxonomy_id = spine.taxonomy_id
        and first_use.taxonomy_level_id = spine.taxonomy_level_id
        and first_use.first_month <= spine.usage_month
    group by spine.usage_month, spine.salesforce_account_id, spine.taxonomy_id, spine.taxonomy_level_id
),

monthly as (
    select
        usage_month,
        salesforce_account_id,
        taxonomy_id,
        taxonomy_level_id,
        count(case when is_used then 1 end) as features_used,
        max(unique_users) as most_used_feature_users,
        sum(operations) as operations,
        sum(operations_internal) as operations_internal,
        sum(operations_external) as operations_external
    from usage
    group by usage_month, salesforce_account_id, taxonomy_id, taxonomy_level_id
),

adoption as (
    select
        spine.usage_month,
        spine.salesforce_account_id,
        spine.salesforce_account_name,
        spine.taxonomy_id,
        spine.taxonomy_level_id,
        spine.level_first_month,
        coalesce(monthly.features_used, 0) as features_used,
        coalesce(seen_to_date.features_seen_to_date, 0) as features_seen_to_date,
        coalesce(adopted_to_date.features_used_to_date, 0) as features_used_to_date,
        coalesce(adopted_to_date.new_features_adopted, 0) as new_features_adopted,
        coalesce(monthly.most_used_feature_users, 0) as most_used_feature_users,
        coalesce(monthly.operations, 0) as operations,
        coalesce(monthly.operations_internal, 0) as operations_internal,
        coalesce(monthly.operations_external, 0) as operations_external
    from spine
    left join monthly
        on monthly.usage_month = spine.usage_month
        and monthly.salesforce_account_id = spine.salesforce_account_id
        and monthly.taxonomy_id = spine.taxonomy_id
        and monthly.taxonomy_level_id = spine.taxonomy_level_id
    left join seen_to_date
        on seen_to_date.usage_month = spine.usage_month
        and seen_to_date.taxonomy_id = spine.taxonomy_id
        and seen_to_date.taxonomy_level_id = spine.taxonomy_level_id
    left join adopted_to_date
        on adopted_to_date.usage_month = spine.usage_month
        and adopted_to_date.salesforce_account_id = spine.salesforce_account_id
        and adopted_to_date.taxonomy_id = spine.taxonomy_id
        and adopted_to_date.taxonomy_level_id = spine.taxonomy_level_id
)

select
    adoption.usage_month,
    adoption.salesforce_account_id,
    coalesce(accounts.account_name, adoption.salesforce_account_name) as account_name,
    adoption.taxonomy_id,
    levels.taxonomy_label,
    adoption.taxonomy_level_id,
    levels.taxonomy_level_label,
    adoption.features_used,
    adoption.features_seen_to_date,
    -- In ten-thousandths by integer arithmetic, so both warehouses round alike.
    case when adoption.features_seen_to_date > 0 then
        cast(cast({{ cents_share('10000', 'adoption.features_used', 'adoption.features_seen_to_date') }}
                  as numeric(18, 0)) * 0.0001 as numeric(18, 4))
    end as feature_adoption_share,
    adoption.features_used_to_date,
    -- The level's first loaded month cannot tell new features from ones used before.
    case when adoption.usage_month > adoption.level_first_month
        then adoption.new_features_adopted end as new_features_adopted,
    adoption.most_used_feature_users,
    adoption.operations,
    adoption.operations_internal,
    adoption.operations_external
from adoption
inner join levels
    on levels.taxonomy_id = adoption.taxonomy_id
    and levels.taxonomy_level_id = adoption.taxonomy_level_id
left join {{ ref('stg_isvapp__salesforce_accounts') }} as accounts
    on accounts.salesforce_account_id = adoption.salesforce_account_id
