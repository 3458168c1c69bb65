-- Cloud churn, conversion and renewal events, joined to the license they concern (when
-- the license export has it: events of licenses outside the tap's license filters, or
-- of Atlassian-sourced licenses not requested, stay unmatched).
with events as (
    select 'churn' as event_type, * from {{ ref('stg_marketplace__license_churn_events') }}
    union all
    select 'conversion' as event_type, * from {{ ref('stg_marketplace__license_conversion_events') }}
    union all
    select 'renewal' as event_type, * from {{ ref('stg_marketplace__license_renewal_events') }}
)

select
    events.event_type,
    events.license_ref,
    events.event_date,
    events.product_id,
    events.addon_key,
    events.addon_name,
    events.hosting,
    events.app_edition,
    events.transaction_id,
    events.maintenance_start_date,
    events.maintenance_end_date,
    events.months_valid,
    events.last_updated,
    licenses.license_ref is not null as license_found,
    licenses.license_type,
    licenses.license_state,
    licenses.tier,
    licenses.company,
    licenses.country,
    licenses.region,
    licenses.partner_name,
    licenses.current_mrr
from events
left join {{ ref('dim_marketplace_licenses') }} as licenses
    on licenses.license_ref = events.license_ref
