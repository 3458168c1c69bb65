-- Every add-on install as the loaded tables describe it now, one row per resource uuid
-- whichever mode (or both) loaded it: the legacy App Info API's listing (resource.uuid)
-- and partner mode's add-on (id) name the same resource with the same uuid. An install
-- both modes hold is counted once and described by its partner-mode row, which has the
-- state, dates and billed price the legacy API lacks. snap_heroku__installs keeps its
-- history.
with legacy as (
    select
        apps.resource_uuid,
        coalesce(info.plan, apps.plan) as plan,
        info.region,
        info.owner_id
    from {{ ref('stg_heroku__apps') }} as apps
    left join {{ ref('stg_heroku__app_info') }} as info on info.resource_uuid = apps.resource_uuid
),

partner as (
    select
        addons.resource_uuid,
        addons.plan,
        addons.state,
        partner_apps.region,
        partner_apps.owner_id,
        addons.billed_price_cents,
        addons.billed_price_unit,
        addons.billed_price_contract,
        addons.created_at,
        addons.updated_at
    from {{ ref('stg_heroku__addons') }} as addons
    left join {{ ref('stg_heroku__partner_apps') }} as partner_apps
        on partner_apps.heroku_app_id = addons.heroku_app_id
),

installs as (
    select resource_uuid from legacy
    union
    select resource_uuid from partner
)

select
    installs.resource_uuid,
    case
        when partner.resource_uuid is not null and legacy.resource_uuid is not null then 'both'
        when partner.resource_uuid is not null then 'partner'
        else 'legacy'
    end as source,
    coalesce(partner.plan, legacy.plan, 'unknown') as plan,
    -- The legacy API lists installed add-ons only (404 while provisioning), and has no state.
    case
        when partner.resource_uuid is not null then coalesce(partner.state, 'unknown')
        else 'provisioned'
    end as state,
    coalesce(partner.region, legacy.region) as region,
    coalesce(partner.owner_id, legacy.owner_id) as owner_id,
    partner.billed_price_cents,
    partner.billed_price_unit,
    partner.billed_price_contract,
    -- The plan's price per month in cents: Heroku prices per "month"; an hourly price
    -- counts 720 hours (30 days). No price, a contract price or another unit: null.
    case
        when partner.billed_price_contract then null
        when partner.billed_price_unit = 'month' then partner.billed_price_cents
        when partner.billed_price_unit = 'hour' then partner.billed_price_cents * 720
    end as monthly_price_cents,
    partner.created_at,
    partner.updated_at
from installs
left join partner on partner.resource_uuid = installs.resource_uuid
left join legacy on legacy.resource_uuid = installs.resource_uuid
