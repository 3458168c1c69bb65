-- Evaluation-to-paid conversion by month of evaluation start (a cohort per month), per
-- app (scope 'app') and for all apps together (scope 'all', product_id null), from
-- fct_marketplace_evaluations: how many evaluations started, how many of them had
-- converted to paid by the as-of day, and how many days that took. Only months in which
-- an evaluation started have a row.
with evaluations as (
    select * from {{ ref('fct_marketplace_evaluations') }}
),

scoped as (
    select 'app' as scope, product_id, evaluation_month, is_converted, is_open, days_to_convert
    from evaluations
    union all
    select 'all' as scope, cast(null as text) as product_id, evaluation_month, is_converted, is_open,
        days_to_convert
    from evaluations
),

cohorts as (
    select
        scope,
        product_id,
        evaluation_month,
        count(*) as evaluations_started,
        sum(case when is_converted then 1 else 0 end) as evaluations_converted,
        sum(case when is_open then 1 else 0 end) as evaluations_open,
        sum(case when is_converted then days_to_convert end) as total_days_to_convert,
        percentile_cont(0.5) within group (order by days_to_convert) as median_days
    from scoped
    group by scope, product_id, evaluation_month
),

app_names as (
    select product_id, max(addon_name) as addon_name
    from {{ ref('stg_marketplace__licenses') }}
    group by product_id
)

select
    cohorts.scope,
    cohorts.product_id,
    case when cohorts.scope = 'app' then coalesce(apps.app_name, app_names.addon_name) end as app_name,
    cohorts.evaluation_month,
    cohorts.evaluations_started,
    cohorts.evaluations_converted,
    cohorts.evaluations_open,
    cast(cast(cohorts.evaluations_converted as numeric(18, 6)) / cohorts.evaluations_started as numeric(18, 6))
        as conversion_rate,
    -- The median of whole days is a whole or a half day: exact in any numeric type.
    cast(cohorts.median_days as numeric(18, 1)) as median_days_to_convert,
    case when cohorts.evaluations_converted > 0
         then {{ cents_to_money(cents_share('100 * cohorts.total_days_to_convert', '1', 'cohorts.evaluations_converted')) }}
    end as average_days_to_convert
from cohorts
left join {{ ref('stg_marketplace__apps') }} as apps on apps.product_id = cohorts.product_id
left join app_names on app_names.product_id = cohorts.product_id
