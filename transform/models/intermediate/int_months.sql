-- Every month from the first Marketplace maintenance or sale month to the later of the
-- last maintenance end and the as-of month.
with recursive bounds as (
    select
        min(month_start) as first_month,
        max(month_start) as last_month
    from (
        select {{ month_of('coalesce(maintenance_start_date, sale_date)') }} as month_start
        from {{ ref('stg_marketplace__transactions') }}
        union all
        select {{ month_of('maintenance_end_date') }} from {{ ref('stg_marketplace__transactions') }}
        union all
        select {{ month_of('sale_date') }} from {{ ref('stg_marketplace__transactions') }}
        union all
        select {{ month_of(as_of_date()) }}
    ) as candidate_months
    where month_start is not null
),

-- The last month travels with each row: the bounds are read once, not per step.
months (month_start, last_month) as (
    select first_month, last_month from bounds where first_month is not null
    union all
    select {{ add_months('month_start', 1) }}, last_month
    from months
    where month_start < last_month
)

select
    month_start,
    {{ add_months('month_start', 1) }} as next_month_start,
    {{ add_days(add_months('month_start', 1), -1) }} as month_end
from months
