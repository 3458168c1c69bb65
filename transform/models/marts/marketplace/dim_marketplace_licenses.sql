-- Every license's current state as of the as-of day.
-- license_state: Atlassian's status decides whether a license is live (it sets
-- "inactive" when a license lapses); among active ones, EVALUATION licenses are trials
-- (not customers), COMMERCIAL and ACADEMIC ones are paid, the rest (COMMUNITY,
-- OPEN_SOURCE, DEMONSTRATION, free types) are free.
-- One row per license (int_marketplace__license_refs): when several license rows are
-- one license (a cloud migration trial linked to its Server/Data Center license), the
-- one with the latest maintenance start describes it.
with resolved_licenses as (
    select
        stg.*,
        coalesce(refs.license_ref, stg.license_ref) as resolved_license_ref,
        row_number() over (
            partition by coalesce(refs.license_ref, stg.license_ref)
            order by stg.maintenance_start_date desc, stg.last_updated desc, stg.license_ref
        ) as recency
    from {{ ref('stg_marketplace__licenses') }} as stg
    left join {{ ref('int_marketplace__license_refs') }} as refs on refs.identifier = stg.license_ref
),

licenses as (
    select * from resolved_licenses where recency = 1
),

sales as (
    select
        coalesce(refs.license_ref, transactions.license_ref) as license_ref,
        sum(vendor_amount) as lifetime_vendor_amount,
        count(*) as transaction_line_items,
        min(sale_date) as first_sale_date,
        max(sale_date) as last_sale_date
    from {{ ref('stg_marketplace__transactions') }} as transactions
    left join {{ ref('int_marketplace__license_refs') }} as refs on refs.identifier = transactions.license_ref
    group by coalesce(refs.license_ref, transactions.license_ref)
),

current_mrr as (
    select license_ref, product_id, mrr
    from {{ ref('int_marketplace__license_mrr_months') }}
    where month_start = {{ month_of(as_of_date()) }}
)

select
    licenses.resolved_license_ref as license_ref,
    licenses.product_id,
    licenses.addon_key,
    licenses.addon_name,
    licenses.hosting,
    licenses.app_edition,
    licenses.license_type,
    licenses.status,
    licenses.tier,
    case
        when licenses.status = 'active' and upper(licenses.license_type) = 'EVALUATION' then 'evaluation'
        when licenses.status = 'active' and upper(licenses.license_type) in ('COMMERCIAL', 'ACADEMIC') then 'active_paid'
        when licenses.status = 'active' then 'active_free'
        when licenses.status = 'cancelled' then 'cancelled'
        else 'expired'
    end as license_state,
    licenses.status = 'active' and upper(licenses.license_type) in ('COMMERCIAL', 'ACADEMIC') as is_paying_customer,
    licenses.maintenance_start_date,
    licenses.maintenance_end_date,
    {{ days_between(as_of_date(), 'licenses.maintenance_end_date') }} as days_to_expiry,
    licenses.status = 'active'
        and {{ days_between(as_of_date(), 'licenses.maintenance_end_date') }} between 0 and 30 as expires_within_30_days,
    {{ as_of_date() }} as as_of_date,
    licenses.last_updated,
    licenses.company,
    licenses.country,
    licenses.region,
    licenses.technical_contact_email,
    licenses.billing_contact_email,
    licenses.partner_name,
    licenses.partner_type,
    licenses.license_source_type,
    licenses.parent_product_name,
    licenses.parent_product_edition,
    licenses.evaluation_license,
    coalesce(sales.lifetime_vendor_amount, 0) as lifetime_vendor_amount,
    coalesce(sales.transaction_line_items, 0) as transaction_line_items,
    sales.first_sale_date,
    sales.last_sale_date,
    coalesce(current_mrr.mrr, 0) as current_mrr
from licenses
left join sales on sales.license_ref = licenses.resolved_license_ref
left join current_mrr
    on current_mrr.license_ref = licenses.resolved_license_ref and current_mrr.product_id = licenses.product_id
