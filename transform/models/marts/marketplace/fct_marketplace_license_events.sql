-- Cloud churn, conversion and renewal events, joined to the license they concern (when
-- the license export has it: events of licenses outside the tap's license filters, or
-- of Atlassian-sourced licenses not requested, stay unmatched).
with staged_events as (
    select 'churn' as event_type, * from {{ ref('stg_marketplace__license_churn_events') }}
    union all
    select 'conversion' as event_type, * from {{ ref('stg_marketplace__license_conversion_events') }}
    union all
    select 'renewal' as event_type, * from {{ ref('stg_marketplace__license_renewal_events') }}
),

-- The event's license under its one reference (int_marketplace__license_refs).
events as (
    select staged_events.*, coalesce(refs.license_ref, staged_events.license_ref) as resolved_license_ref
    from staged_events
    left join {{ ref('int_marketplace__license_refs') }} as refs on refs.identifier = staged_events.license_ref
)

select
    events.event_type,
    events.resolved_license_ref as license_ref,
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
    on licenses.license_ref = events.resolved_license_ref
