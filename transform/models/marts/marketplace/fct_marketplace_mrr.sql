-- MRR per app and month with its movements (new, expansion, contraction, churn,
-- reactivation), from the per-license months of int_marketplace__license_mrr_months.
-- Every month from an app's first MRR month to the as-of month has a row.
with license_months as (
    select * from {{ ref('int_marketplace__license_mrr_months') }}
),

app_spans as (
    select product_id, min(month_start) as first_month
    from license_months
    group by product_id
),

app_grid as (
    select app_spans.product_id, months.month_start
    from app_spans
    inner join {{ ref('int_months') }} as months
        on months.month_start >= app_spans.first_month
        and months.month_start <= {{ month_of(as_of_date()) }}
),

movements as (
    select
        product_id,
        month_start,
        sum(mrr) as mrr,
        sum(case when movement_type = 'new' then mrr_change else 0 end) as new_mrr,
        sum(case when movement_type = 'expansion' then mrr_change else 0 end) as expansion_mrr,
        sum(case when movement_type = 'contraction' then mrr_change else 0 end) as contraction_mrr,
        sum(case when movement_type = 'churn' then mrr_change else 0 end) as churned_mrr,
        sum(case when movement_type = 'reactivation' then mrr_change else 0 end) as reactivation_mrr,
        sum(case when mrr <> 0 then 1 else 0 end) as paying_licenses,
        sum(case when movement_type = 'new' then 1 else 0 end) as new_licenses,
        sum(case when movement_type = 'churn' then 1 else 0 end) as churned_licenses,
        sum(case when movement_type = 'reactivation' then 1 else 0 end) as reactivated_licenses
    from license_months
    group by product_id, month_start
),

app_names as (
    select product_id, max(addon_key) as addon_key, max(addon_name) as addon_name
    from {{ ref('stg_marketplace__transactions') }}
    group by product_id
),

filled as (
    select
        app_grid.product_id,
        app_grid.month_start,
        coalesce(movements.mrr, 0) as mrr,
        coalesce(movements.new_mrr, 0) as new_mrr,
        coalesce(movements.expansion_mrr, 0) as expansion_mrr,
        coalesce(movements.contraction_mrr, 0) as contraction_mrr,
        coalesce(movements.churned_mrr, 0) as churned_mrr,
        coalesce(movements.reactivation_mrr, 0) as reactivation_mrr,
        coalesce(movements.paying_licenses, 0) as paying_licenses,
        coalesce(movements.new_licenses, 0) as new_licenses,
        coalesce(movements.churned_licenses, 0) as churned_licenses,
        coalesce(movements.reactivated_licenses, 0) as reactivated_licenses
    from app_grid
    left join movements
        on movements.product_id = app_grid.product_id and movements.month_start = app_grid.month_start
)

select
    filled.product_id,
    coalesce(apps.app_key, app_names.addon_key) as addon_key,
    coalesce(apps.app_name, app_names.addon_name) as app_name,
    filled.month_start as mrr_month,
    filled.mrr,
    coalesce(lag(filled.mrr) over (partition by filled.product_id order by filled.month_start), 0) as previous_mrr,
    filled.mrr - coalesce(lag(filled.mrr) over (partition by filled.product_id order by filled.month_start), 0) as mrr_change,
    filled.new_mrr,
    filled.expansion_mrr,
    filled.contraction_mrr,
    filled.churned_mrr,
    filled.reactivation_mrr,
    filled.paying_licenses,
    filled.new_licenses,
    filled.churned_licenses,
    filled.reactivated_licenses
from filled
left join {{ ref('stg_marketplace__apps') }} as apps on apps.product_id = filled.product_id
left join app_names on app_names.product_id = filled.product_id
