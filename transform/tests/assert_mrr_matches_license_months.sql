-- The app MRR of a month is the sum of its licenses' MRR in that month.
with licenses as (
    select product_id, month_start, sum(mrr) as mrr
    from {{ ref('int_marketplace__license_mrr_months') }}
    group by product_id, month_start
)

select apps.product_id, apps.mrr_month, apps.mrr, licenses.mrr as license_mrr
from {{ ref('fct_marketplace_mrr') }} as apps
left join licenses
    on licenses.product_id = apps.product_id and licenses.month_start = apps.mrr_month
where apps.mrr <> coalesce(licenses.mrr, 0)
