-- Add-on MRR per plan and month: the monthly price Heroku bills (the add-on's billed_price)
-- of every install provisioned at the month's end (today for this month), as its version
-- in effect then says (int_heroku__install_versions). Not invoiced revenue: Heroku bills
-- the customer and pays the partner; this is the run rate the prices add up to.
with recursive bounds as (
    select
        {{ month_of('min(valid_from_day)') }} as first_month,
        {{ month_of('current_date') }} as last_month
    from {{ ref('int_heroku__install_versions') }}
),

months (month_start, last_month) as (
    select first_month, last_month from bounds where first_month is not null and first_month <= last_month
    union all
    select {{ add_months('month_start', 1) }}, last_month
    from months
    where month_start < last_month
),

counted_days as (
    select
        month_start,
        case
            when {{ add_days(add_months('month_start', 1), -1) }} < current_date
                then {{ add_days(add_months('month_start', 1), -1) }}
            else current_date
        end as counted_day
    from months
),

provisioned as (
    select
        counted_days.month_start,
        counted_days.counted_day,
        versions.plan,
        versions.monthly_price_cents
    from counted_days
    inner join {{ ref('int_heroku__install_versions') }} as versions
        on versions.valid_from_day <= counted_days.counted_day
        and (versions.valid_to_day is null or counted_days.counted_day < versions.valid_to_day)
    where versions.state = 'provisioned'
)

select
    month_start,
    counted_day,
    plan,
    count(*) as provisioned_installs,
    count(monthly_price_cents) as priced_installs,
    count(*) - count(monthly_price_cents) as unpriced_installs,
    {{ cents_to_money('coalesce(sum(monthly_price_cents), 0)') }} as mrr,
    {{ cents_to_money('coalesce(sum(monthly_price_cents), 0) * 12') }} as arr
from provisioned
group by month_start, counted_day, plan
