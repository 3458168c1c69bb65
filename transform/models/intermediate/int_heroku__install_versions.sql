-- Each version of each Heroku install with the days it was in effect,
-- [valid_from_day, valid_to_day). A build stamps a version with its own clock
-- (dbt_valid_from); where the data dates the change better, that date wins:
-- - an install's first version is carried back to its created_at (partner mode), since
--   Heroku's records say it existed from then; those days are "backfilled": the plan and
--   state they show are the first ones a build saw, not observed then;
-- - a later version starts at the row's updated_at when that lies after the build that
--   saw the version before (Heroku changed it then), else at its own build.
-- The legacy API has no dates: its history starts at the first build that saw it.
with snapshot as (
    select
        resource_uuid,
        source,
        plan,
        state,
        region,
        owner_id,
        monthly_price_cents,
        cast(created_at as timestamp) as created_at,
        cast(updated_at as timestamp) as updated_at,
        cast(dbt_valid_from as timestamp) as observed_at,
        cast(dbt_is_deleted as text) in ('True', 'true') as is_removed
    from {{ ref('snap_heroku__installs') }}
),

numbered as (
    select
        snapshot.*,
        row_number() over (partition by resource_uuid order by observed_at) as version_number,
        lag(observed_at) over (partition by resource_uuid order by observed_at) as previous_observed_at,
        min(created_at) over (partition by resource_uuid) as install_created_at,
        min(observed_at) over (partition by resource_uuid) as first_observed_at
    from snapshot
),

started as (
    select
        numbered.*,
        case
            when version_number = 1 and install_created_at < observed_at then install_created_at
            when version_number = 1 then observed_at
            when is_removed then observed_at
            when updated_at > previous_observed_at and updated_at <= observed_at then updated_at
            else observed_at
        end as valid_from
    from numbered
)

select
    resource_uuid,
    version_number,
    source,
    plan,
    case when is_removed then 'removed' else state end as state,
    region,
    owner_id,
    case when is_removed then null else monthly_price_cents end as monthly_price_cents,
    valid_from,
    lead(valid_from) over (partition by resource_uuid order by version_number) as valid_to,
    cast(valid_from as date) as valid_from_day,
    cast(lead(valid_from) over (partition by resource_uuid order by version_number) as date) as valid_to_day,
    cast(first_observed_at as date) as first_observed_day
from started
