-- Each ISVapp account's health scores as they stood at the end of each day, read from the
-- snapshot (ISVapp sends only the current scores, so their history is what dbt builds
-- saw): one row per account and day, from the first day a build saw a score of the
-- account to today. A day between two builds shows what the earlier build saw.
with recursive versions as (
    select
        salesforce_account_id,
        label,
        score,
        is_primary,
        cast(dbt_valid_from as date) as valid_from_date,
        cast(dbt_valid_to as date) as valid_to_date
    from {{ ref('snap_isvapp__account_health_scores') }}
),

accounts as (
    select salesforce_account_id, min(valid_from_date) as first_day
    from versions
    group by salesforce_account_id
),

days (health_date) as (
    select first_day from (select min(first_day) as first_day from accounts) as bounds
    where first_day is not null
    union all
    select {{ add_days('health_date', 1) }}
    from days
    where health_date < current_date
),

-- A version holds at a day's end when it began on or before that day and was not
-- replaced (or closed) by then; a version replaced on the day it began never does.
day_scores as (
    select
        accounts.salesforce_account_id,
        days.health_date,
        versions.label,
        versions.score,
        case when versions.is_primary then
            row_number() over (partition by accounts.salesforce_account_id, days.health_date, versions.is_primary
                               order by versions.label)
        end as primary_rank
    from accounts
    inner join days on days.health_date >= accounts.first_day
    left join versions
        on versions.salesforce_account_id = accounts.salesforce_account_id
        and versions.valid_from_date <= days.health_date
        and (versions.valid_to_date is null or versions.valid_to_date > days.health_date)
),

account_days as (
    select
        salesforce_account_id,
        health_date,
        max(case when primary_rank = 1 then score end) as primary_health_score,
        max(case when primary_rank = 1 then label end) as primary_health_score_label,
        min(score) as lowest_health_score,
        count(score) as scored,
        sum(cast(round(score * 100) as bigint)) as score_cents,
        count(label) as health_scores
    from day_scores
    group by salesforce_account_id, health_date
)

select
    account_days.health_date,
    account_days.salesforce_account_id,
    accounts.account_name,
    account_days.primary_health_score,
    account_days.primary_health_score_label,
    account_days.primary_health_score - lag(account_days.primary_health_score) over (
        partition by account_days.salesforce_account_id order by account_days.health_date)
        as primary_health_score_change,
    account_days.lowest_health_score,
    case when account_days.scored > 0
        then {{ cents_to_money(cents_share('account_days.score_cents', '1', 'account_days.scored')) }}
    end as average_health_score,
    account_days.health_scores
from account_days
left join {{ ref('stg_isvapp__salesforce_accounts') }} as accounts
    on accounts.salesforce_account_id = account_days.salesforce_account_id
