-- Package usage per day, subscriber org and Salesforce event type, from the raw log rows.
-- The day is the event's own timestamp (UTC), else the end of the file's window.
select
    cast(coalesce(event_at, request_sf_end_time) as date) as usage_date,
    organization_id,
    max(organization_name) as organization_name,
    event_type,
    count(*) as events,
    count(distinct user_id_token) as distinct_users,
    count(distinct isvapp_request_id) as log_files
from {{ ref('stg_isvapp__package_usage_logs') }}
where organization_id is not null
group by cast(coalesce(event_at, request_sf_end_time) as date), organization_id, event_type
