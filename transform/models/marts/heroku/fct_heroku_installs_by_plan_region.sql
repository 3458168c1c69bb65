-- Installed add-ons per plan and region now, from either mode (int_heroku__installs: one
-- row per resource uuid, an install both modes hold counted once). The region is the
-- legacy detail call's (amazon-web-services::us-east-1) or the Platform API app's (us);
-- an add-on removed between the legacy listing and its detail call has none ("unknown").
-- Partner mode's provisioning and deprovisioned add-ons are not installed.
select
    plan,
    coalesce(region, 'unknown') as region,
    count(*) as installs,
    count(distinct owner_id) as distinct_owners
from {{ ref('int_heroku__installs') }}
where state = 'provisioned'
group by plan, coalesce(region, 'unknown')
