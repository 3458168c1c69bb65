-- Each transaction line's vendorAmount spread over its maintenance period BY DAY:
-- the period is [maintenance start, maintenance end) (the end is the next period's
-- start: a monthly period 05-01 -> 06-01 has 31 days, all in May). A month gets the
-- share of the days it holds; amounts are rounded cumulatively, in whole cents (the
-- amount up to this month's end rounded, minus the same up to the month before), so the
-- cents of a line always add up to its vendorAmount exactly. The rounding is half away
-- from zero (a refund mirrors its sale) on whole cents computed the same way on every warehouse (floor of an exact ratio of
-- integers), so PostgreSQL and DuckDB give the same cents. Refunds are negative lines,
-- spread the same way over their own maintenance period, so they take back the months
-- the sale had given. A line without a usable period (no end, or end not after start)
-- is recognised whole in the month of its start (else its sale date).
--
-- Closed books (var closed_books, or DBT_CLOSED_BOOKS=true): a share that falls in a
-- month before the line's sale month (a retroactive purchase, or a refund whose period
-- began before it was issued) is booked in the sale month instead, because a closed
-- accounting period takes no new revenue. Default (false): past months are restated.
{%- set closed_books = (var('closed_books', env_var('DBT_CLOSED_BOOKS', 'false')) | string | lower) in ('true', '1', 'yes') %}
with lines as (
    select
        transaction_line_item_id,
        transaction_id,
        coalesce(refs.license_ref, transactions.license_ref) as license_ref,
        product_id,
        addon_key,
        addon_name,
        sale_type,
        sale_date,
        vendor_amount,
        coalesce(maintenance_start_date, sale_date) as period_start,
        maintenance_end_date as period_end
    from {{ ref('stg_marketplace__transactions') }} as transactions
    left join {{ ref('int_marketplace__license_refs') }} as refs on refs.identifier = transactions.license_ref
    where vendor_amount is not null
      and coalesce(maintenance_start_date, sale_date) is not null
),

spread as (
    select
        lines.*,
        cast(round(vendor_amount * 100) as bigint) as vendor_cents,
        {{ days_between('period_start', 'period_end') }} as period_days
    from lines
    where period_end > period_start
),

spread_months as (
    select
        spread.*,
        months.month_start,
        {{ days_between('greatest(spread.period_start, months.month_start)',
                        'least(spread.period_end, months.next_month_start)') }} as days_in_month
    from spread
    inner join {{ ref('int_months') }} as months
        on months.month_start < spread.period_end
        and months.next_month_start > spread.period_start
),

cumulative as (
    select
        spread_months.*,
        sum(days_in_month) over (
            partition by transaction_line_item_id order by month_start
            rows between unbounded preceding and current row
        ) as days_through_month
    from spread_months
),

shares as (
select
    transaction_line_item_id,
    transaction_id,
    license_ref,
    product_id,
    addon_key,
    addon_name,
    sale_type,
    sale_date,
    vendor_amount,
    period_start,
    period_end,
    period_days,
    month_start as revenue_month,
    days_in_month,
    {{ cents_to_money(
        cents_share('vendor_cents', 'days_through_month', 'period_days')
        ~ ' - ' ~ cents_share('vendor_cents', '(days_through_month - days_in_month)', 'period_days')) }}
        as recognized_vendor_amount
from cumulative

union all

select
    transaction_line_item_id,
    transaction_id,
    license_ref,
    product_id,
    addon_key,
    addon_name,
    sale_type,
    sale_date,
    vendor_amount,
    period_start,
    period_end,
    0 as period_days,
    {{ month_of('period_start') }} as revenue_month,
    0 as days_in_month,
    vendor_amount as recognized_vendor_amount
from lines
where period_end is null or period_end <= period_start
)

{% if closed_books -%}
select
    transaction_line_item_id,
    transaction_id,
    license_ref,
    product_id,
    addon_key,
    addon_name,
    sale_type,
    sale_date,
    vendor_amount,
    period_start,
    period_end,
    period_days,
    greatest(revenue_month, coalesce({{ month_of('sale_date') }}, revenue_month)) as revenue_month,
    sum(days_in_month) as days_in_month,
    sum(recognized_vendor_amount) as recognized_vendor_amount
from shares
group by
    transaction_line_item_id, transaction_id, license_ref, product_id, addon_key, addon_name,
    sale_type, sale_date, vendor_amount, period_start, period_end, period_days,
    greatest(revenue_month, coalesce({{ month_of('sale_date') }}, revenue_month))
{%- else -%}
select * from shares
{%- endif %}
