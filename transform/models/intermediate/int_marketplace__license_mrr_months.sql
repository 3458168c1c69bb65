-- MRR per license (and app) and month, with its movement.
--
-- MRR is the run rate at each month's END: a transaction line counts in every month
-- whose last day lies in its maintenance period [start, end), for vendorAmount divided
-- by the number of such month ends (an annual line from 03-21 counts 1/12 in March to
-- the next February; a monthly one its whole amount in one month). A line whose period
-- holds no month end (a few days of proration) adds revenue but no MRR. Refunds are
-- negative lines and lower the MRR of the months they cover, down to zero at most.
-- Months after the as-of month are not shown.
with lines as (
    select
        transaction_line_item_id,
        coalesce(refs.license_ref, transactions.license_ref, transaction_line_item_id) as license_ref,
        product_id,
        vendor_amount,
        coalesce(maintenance_start_date, sale_date) as period_start,
        maintenance_end_date as period_end
    from {{ ref('stg_marketplace__transactions') }} as transactions
    left join {{ ref('int_marketplace__license_refs') }} as refs on refs.identifier = transactions.license_ref
    where vendor_amount is not null
),

line_months as (
    select lines.*, months.month_start
    from lines
    inner join {{ ref('int_months') }} as months
        on months.month_end >= lines.period_start
        and months.month_end < lines.period_end
),

line_rates as (
    select
        line_months.*,
        {{ cents_to_money(cents_share('cast(round(vendor_amount * 100) as bigint)', '1',
                                      'count(*) over (partition by transaction_line_item_id)')) }}
            as monthly_rate
    from line_months
),

-- A license's MRR is never below zero: a refund larger than what a month holds (one
-- whose sale lies before the data, or spread over another period) brings it to zero.
license_months as (
    select license_ref, product_id, month_start, sum(monthly_rate) as mrr
    from line_rates
    where month_start <= {{ month_of(as_of_date()) }}
    group by license_ref, product_id, month_start
    having sum(monthly_rate) > 0
),

license_spans as (
    select license_ref, product_id, min(month_start) as first_month, max(month_start) as last_month
    from license_months
    group by license_ref, product_id
),

-- Every month from a license's first MRR month to the month after its last (its churn
-- month), capped at the as-of month.
grid as (
    select license_spans.license_ref, license_spans.product_id, months.month_start
    from license_spans
    inner join {{ ref('int_months') }} as months
        on months.month_start >= license_spans.first_month
        and months.month_start <= {{ add_months('license_spans.last_month', 1) }}
        and months.month_start <= {{ month_of(as_of_date()) }}
),

filled as (
    select
        grid.license_ref,
        grid.product_id,
        grid.month_start,
        coalesce(license_months.mrr, 0) as mrr
    from grid
    left join license_months
        on license_months.license_ref = grid.license_ref
        and license_months.product_id = grid.product_id
        and license_months.month_start = grid.month_start
),

with_previous as (
    select
        filled.*,
        coalesce(lag(mrr) over (partition by license_ref, product_id order by month_start), 0) as previous_mrr,
        coalesce(sum(case when mrr <> 0 then 1 else 0 end) over (
            partition by license_ref, product_id order by month_start
            rows between unbounded preceding and 1 preceding), 0) as earlier_mrr_months
    from filled
)

select
    license_ref,
    product_id,
    month_start,
    mrr,
    previous_mrr,
    mrr - previous_mrr as mrr_change,
    case
        when previous_mrr = 0 and mrr <> 0 and earlier_mrr_months > 0 then 'reactivation'
        when previous_mrr = 0 and mrr <> 0 then 'new'
        when previous_mrr <> 0 and mrr = 0 then 'churn'
        when mrr > previous_mrr then 'expansion'
        when mrr < previous_mrr then 'contraction'
        else 'unchanged'
    end as movement_type
from with_previous
