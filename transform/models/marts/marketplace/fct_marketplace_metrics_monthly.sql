-- The metrics a vendor runs the business on, per app and month (the months of
-- fct_marketplace_mrr), from MRR per license (int_marketplace__license_mrr_months).
-- A customer is the company on the license's contact details (contactDetails.company in
-- the license export), else the license itself when the export has no such license.
with license_months as (
    select
        mrr_months.product_id,
        mrr_months.month_start,
        coalesce(licenses.company, mrr_months.license_ref) as customer,
        mrr_months.mrr,
        mrr_months.previous_mrr
    from {{ ref('int_marketplace__license_mrr_months') }} as mrr_months
    left join {{ ref('dim_marketplace_licenses') }} as licenses
        on licenses.license_ref = mrr_months.license_ref
),

customer_months as (
    select product_id, month_start, customer, sum(mrr) as mrr, sum(previous_mrr) as previous_mrr
    from license_months
    group by product_id, month_start, customer
),

first_paid as (
    select product_id, customer, min(month_start) as first_month
    from customer_months
    where mrr > 0
    group by product_id, customer
),

app_months as (
    select
        customer_months.product_id,
        customer_months.month_start,
        sum(customer_months.mrr) as mrr,
        sum(case when customer_months.mrr > 0 then 1 else 0 end) as paying_customers,
        sum(case when customer_months.mrr > 0 and customer_months.month_start = first_paid.first_month
                 then 1 else 0 end) as new_customers,
        sum(case when customer_months.previous_mrr > 0 and customer_months.mrr = 0 then 1 else 0 end)
            as churned_customers,
        sum(case when customer_months.previous_mrr > 0 then 1 else 0 end) as customers_month_before,
        sum(case when customer_months.previous_mrr > 0 then customer_months.previous_mrr else 0 end)
            as mrr_month_before_of_customers,
        sum(case when customer_months.previous_mrr > 0
                 then least(customer_months.mrr, customer_months.previous_mrr) else 0 end) as retained_gross,
        sum(case when customer_months.previous_mrr > 0 then customer_months.mrr else 0 end) as retained_net
    from customer_months
    left join first_paid
        on first_paid.product_id = customer_months.product_id and first_paid.customer = customer_months.customer
    group by customer_months.product_id, customer_months.month_start
),

paying_licenses as (
    select product_id, month_start, count(*) as paying_licenses
    from license_months
    where mrr > 0
    group by product_id, month_start
)

select
    apps.product_id,
    apps.app_name,
    apps.mrr_month as metric_month,
    apps.mrr,
    12 * apps.mrr as arr,
    coalesce(paying_licenses.paying_licenses, 0) as paying_licenses,
    coalesce(app_months.paying_customers, 0) as paying_customers,
    coalesce(app_months.new_customers, 0) as new_customers,
    coalesce(app_months.churned_customers, 0) as churned_customers,
    case when app_months.customers_month_before > 0
         then cast(cast(app_months.churned_customers as numeric(18, 6)) / app_months.customers_month_before
                   as numeric(18, 6)) end
        as logo_churn_rate,
    case when app_months.mrr_month_before_of_customers > 0
         then cast(app_months.retained_gross / app_months.mrr_month_before_of_customers as numeric(18, 6)) end
        as gross_revenue_retention,
    case when app_months.mrr_month_before_of_customers > 0
         then cast(app_months.retained_net / app_months.mrr_month_before_of_customers as numeric(18, 6)) end
        as net_revenue_retention,
    case when app_months.paying_customers > 0
         then cast(apps.mrr / app_months.paying_customers as numeric(18, 2)) end as average_revenue_per_customer
from {{ ref('fct_marketplace_mrr') }} as apps
left join app_months
    on app_months.product_id = apps.product_id and app_months.month_start = apps.mrr_month
left join paying_licenses
    on paying_licenses.product_id = apps.product_id and paying_licenses.month_start = apps.mrr_month
