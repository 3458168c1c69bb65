-- The metrics a vendor runs the business on, per app and month (scope 'app', the months
-- of fct_marketplace_mrr) and for all apps together (scope 'all', product_id null), from
-- MRR per license (int_marketplace__license_mrr_months).
-- A customer is the company on the license's contact details (contactDetails.company in
-- the license export), else the license itself when the export has no such license.
-- The all-apps rows are computed per customer across the apps, not summed from the app
-- rows: a customer of two apps counts once, and one who leaves one app while paying for
-- another has not churned (nor is it new when it adds an app).
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

scoped_license_months as (
    select 'app' as scope, product_id, month_start, customer, mrr, previous_mrr from license_months
    union all
    select 'all' as scope, cast(null as text) as product_id,
        month_start, customer, mrr, previous_mrr
    from license_months
),

-- A customer's licenses in the scope have a row in every month after one of them paid
-- (int_marketplace__license_mrr_months keeps the month after a license's last), so the
-- sum of their previous_mrr is the customer's MRR in the month before.
customer_months as (
    select scope, product_id, month_start, customer, sum(mrr) as mrr, sum(previous_mrr) as previous_mrr
    from scoped_license_months
    group by scope, product_id, month_start, customer
),

customer_months_with_first as (
    select
        customer_months.*,
        min(case when mrr > 0 then month_start end) over (partition by scope, product_id, customer)
            as first_paid_month
    from customer_months
),

scope_months as (
    select
        scope,
        product_id,
        month_start,
        sum(case when mrr > 0 then 1 else 0 end) as paying_customers,
        sum(case when mrr > 0 and month_start = first_paid_month then 1 else 0 end) as new_customers,
        sum(case when previous_mrr > 0 and mrr = 0 then 1 else 0 end) as churned_customers,
        sum(case when previous_mrr > 0 then 1 else 0 end) as customers_month_before,
        sum(case when previous_mrr > 0 then previous_mrr else 0 end) as mrr_month_before_of_customers,
        sum(case when previous_mrr > 0 then least(mrr, previous_mrr) else 0 end) as retained_gross,
        sum(case when previous_mrr > 0 then mrr else 0 end) as retained_net
    from customer_months_with_first
    group by scope, product_id, month_start
),

paying_licenses as (
    select scope, product_id, month_start, count(*) as paying_licenses
    from scoped_license_months
    where mrr > 0
    group by scope, product_id, month_start
),

-- Every month of fct_marketplace_mrr per app; for all apps, every month any app has
-- (from the first app's first MRR month), its MRR the apps' sum.
spine as (
    select 'app' as scope, product_id, app_name, mrr_month, mrr
    from {{ ref('fct_marketplace_mrr') }}
    union all
    select 'all' as scope, cast(null as text) as product_id,
        cast(null as text) as app_name, mrr_month, sum(mrr) as mrr
    from {{ ref('fct_marketplace_mrr') }}
    group by mrr_month
)

select
    spine.scope,
    spine.product_id,
    spine.app_name,
    spine.mrr_month as metric_month,
    spine.mrr,
    12 * spine.mrr as arr,
    coalesce(paying_licenses.paying_licenses, 0) as paying_licenses,
    coalesce(scope_months.paying_customers, 0) as paying_customers,
    coalesce(scope_months.new_customers, 0) as new_customers,
    coalesce(scope_months.churned_customers, 0) as churned_customers,
    case when scope_months.customers_month_before > 0
         then cast(cast(scope_months.churned_customers as numeric(18, 6)) / scope_months.customers_month_before
                   as numeric(18, 6)) end
        as logo_churn_rate,
    case when scope_months.mrr_month_before_of_customers > 0
         then cast(scope_months.retained_gross / scope_months.mrr_month_before_of_customers as numeric(18, 6)) end
        as gross_revenue_retention,
    case when scope_months.mrr_month_before_of_customers > 0
         then cast(scope_months.retained_net / scope_months.mrr_month_before_of_customers as numeric(18, 6)) end
        as net_revenue_retention,
    case when scope_months.paying_customers > 0
         then cast(spine.mrr / scope_months.paying_customers as numeric(18, 2)) end as average_revenue_per_customer
from spine
-- product_id is null on the all-apps rows: the joins compare it with both sides coalesced.
left join scope_months
    on scope_months.scope = spine.scope
    and coalesce(scope_months.product_id, '') = coalesce(spine.product_id, '')
    and scope_months.month_start = spine.mrr_month
left join paying_licenses
    on paying_licenses.scope = spine.scope
    and coalesce(paying_licenses.product_id, '') = coalesce(spine.product_id, '')
    and paying_licenses.month_start = spine.mrr_month
