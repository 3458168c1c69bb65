-- Installed add-ons per plan and region. The region comes from each add-on's detail
-- call; an add-on removed between the listing and that call has none ("unknown").
select
    coalesce(info.plan, apps.plan) as plan,
    coalesce(info.region, 'unknown') as region,
    count(*) as installs,
    count(distinct info.owner_id) as distinct_owners
from {{ ref('stg_heroku__apps') }} as apps
left join {{ ref('stg_heroku__app_info') }} as info on info.resource_uuid = apps.resource_uuid
group by coalesce(info.plan, apps.plan), coalesce(info.region, 'unknown')
