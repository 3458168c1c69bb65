-- Marketplace revenue per app and month: vendorAmount recognised by day over each
-- line's maintenance period (int_marketplace__transaction_revenue_months), beside what
-- was billed in the month (sale date).
with recognized as (
    select
        product_id,
        revenue_month,
        sum(recognized_vendor_amount) as recognized_vendor_amount,
        sum(case when vendor_amount >= 0 then recognized_vendor_amount else 0 end) as recognized_sales,
        sum(case when vendor_amount < 0 then recognized_vendor_amount else 0 end) as recognized_refunds,
        count(distinct transaction_line_item_id) as recognized_line_items
    from {{ ref('int_marketplace__transaction_revenue_months') }}
    group by product_id, revenue_month
),

billed as (
    select
        product_id,
        {{ month_of('sale_date') }} as revenue_month,
        sum(vendor_amount) as billed_vendor_amount,
        sum(case when vendor_amount < 0 then vendor_amount else 0 end) as billed_refunds,
        count(*) as billed_line_items,
        sum(case when vendor_amount < 0 then 1 else 0 end) as refund_line_items
    from {{ ref('stg_marketplace__transactions') }}
    where sale_date is not null and vendor_amount is not null
    group by product_id, {{ month_of('sale_date') }}
),

app_months as (
    select product_id, revenue_month from recognized
    union
    select product_id, revenue_month from billed
),

app_names as (
    select product_id, max(addon_key) as addon_key, max(addon_name) as addon_name
    from {{ ref('stg_marketplace__transactions') }}
    group by product_id
)

select
    app_months.product_id,
    coalesce(apps.app_key, app_names.addon_key) as addon_key,
    coalesce(apps.app_name, app_names.addon_name) as app_name,
    app_months.revenue_month,
    coalesce(recognized.recognized_vendor_amount, 0) as recognized_vendor_amount,
    coalesce(recognized.recognized_sales, 0) as recognized_sales,
    coalesce(recognized.recognized_refunds, 0) as recognized_refunds,
    coalesce(recognized.recognized_line_items, 0) as recognized_line_items,
    coalesce(billed.billed_vendor_amount, 0) as billed_vendor_amount,
    coalesce(billed.billed_refunds, 0) as billed_refunds,
    coalesce(billed.billed_line_items, 0) as billed_line_items,
    coalesce(billed.refund_line_items, 0) as refund_line_items
from app_months
left join recognized
    on recognized.product_id = app_months.product_id and recognized.revenue_month = app_months.revenue_month
left join billed
    on billed.product_id = app_months.product_id and billed.revenue_month = app_months.revenue_month
left join {{ ref('stg_marketplace__apps') }} as apps on apps.product_id = app_months.product_id
left join app_names on app_names.product_id = app_months.product_id
