{#- A row's own license reference, from the vendor's id fields, the oldest kind first:
    the SEN license id (licenseId; cloud license events put the entitlement number
    "E-..." there, which is not a SEN), else "SEN-" + the add-on license id, else the
    cloud entitlement number, else the entitlement UUID. SEN first because Atlassian adds
    identifiers to a license and never takes its SEN away: a Data Center license that
    gained an appEntitlementNumber in 2025 keeps its reference. Derived here from the
    vendor's fields, so the marts do not depend on the format of the tap's license_key.
    int_marketplace__license_refs then joins the rows that share any identifier. -#}
{% macro license_ref(entitlement_number, license_id, addon_license_id, entitlement_id) -%}
coalesce(
        case when ({{ license_id }}) not like 'E-%' then ({{ license_id }}) end,
        'SEN-' || ({{ addon_license_id }}),
        ({{ entitlement_number }}),
        ({{ license_id }}),
        ({{ entitlement_id }}))
{%- endmacro %}

{#- The columns of the three license event streams (churn, conversion, renewal); an
    event without any license id falls back to the tap's key for it. -#}
{% macro license_event_columns() %}
{%- set d = isv_revenue.col('licenseDetails') -%}
{{ return([
    ['license_ref', 'text', 'coalesce(' ~ isv_revenue.license_ref(isv_revenue.json_text(d, 'appEntitlementNumber'), isv_revenue.json_text(d, 'licenseId'), isv_revenue.json_text(d, 'addonLicenseId'), isv_revenue.json_text(d, 'appEntitlementId')) ~ ', license_key)'],
    ['event_date', 'date', isv_revenue.col('eventDate')],
    ['product_id', 'text', isv_revenue.col('productId')],
    ['addon_key', 'text', isv_revenue.col('addonKey')],
    ['addon_name', 'text', isv_revenue.col('addonName')],
    ['hosting', 'text', 'hosting'],
    ['app_edition', 'text', isv_revenue.col('appEdition')],
    ['transaction_id', 'text', isv_revenue.col('transactionId')],
    ['last_updated', 'date', isv_revenue.col('lastUpdated')],
    ['license_id', 'text', isv_revenue.json_text(d, 'licenseId')],
    ['app_entitlement_id', 'text', isv_revenue.json_text(d, 'appEntitlementId')],
    ['app_entitlement_number', 'text', isv_revenue.json_text(d, 'appEntitlementNumber')],
    ['cloud_id', 'text', isv_revenue.json_text(d, 'cloudId')],
    ['maintenance_start_date', 'date', isv_revenue.json_text(d, 'maintenanceStartDate')],
    ['maintenance_end_date', 'date', isv_revenue.json_text(d, 'maintenanceEndDate')],
    ['months_valid', 'integer', isv_revenue.json_text(d, 'monthsValid')],
    ['in_grace_period', 'text', isv_revenue.json_text(d, 'inGracePeriod')],
]) }}
{% endmacro %}
