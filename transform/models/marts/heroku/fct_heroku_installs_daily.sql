-- Installs per day, source, plan and state: each install counts on a day in the version
-- of it in effect at that day's end (int_heroku__install_versions), from its first day to
-- today (not the as-of var: the APIs give today's state only). A combination with no
-- install on a day has no row.
with recursive bounds as (
    select
        min(valid_from_day) as first_day,
        current_date as last_day
    from {{ ref('int_heroku__install_versions') }}
),

days (install_day, last_day) as (
    select first_day, last_day from bounds where first_day is not null and first_day <= last_day
    union all
    select {{ add_days('install_day', 1) }}, last_day
    from days
    where install_day < last_day
)

select
    days.install_day,
    versions.source,
    versions.plan,
    versions.state,
    count(*) as installs,
    sum(case when days.install_day < versions.first_observed_day then 1 else 0 end) as backfilled_installs,
    count(distinct versions.owner_id) as distinct_owners
from days
inner join {{ ref('int_heroku__install_versions') }} as versions
    on versions.valid_from_day <= days.install_day
    and (versions.valid_to_day is null or days.install_day < versions.valid_to_day)
group by days.install_day, versions.source, versions.plan, versions.state
