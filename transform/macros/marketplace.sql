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
{%- set d = '"licenseDetails"' -%}
{{ return([
    ['license_ref', 'text', 'coalesce(' ~ isv_revenue.license_ref(d ~ "->>'appEntitlementNumber'", d ~ "->>'licenseId'", d ~ "->>'addonLicenseId'", d ~ "->>'appEntitlementId'") ~ ', license_key)'],
    ['event_date', 'date', '"eventDate"'],
    ['product_id', 'text', '"productId"'],
    ['addon_key', 'text', '"addonKey"'],
    ['addon_name', 'text', '"addonName"'],
    ['hosting', 'text', 'hosting'],
    ['app_edition', 'text', '"appEdition"'],
    ['transaction_id', 'text', '"transactionId"'],
    ['last_updated', 'date', '"lastUpdated"'],
    ['license_id', 'text', d ~ "->>'licenseId'"],
    ['app_entitlement_id', 'text', d ~ "->>'appEntitlementId'"],
    ['app_entitlement_number', 'text', d ~ "->>'appEntitlementNumber'"],
    ['cloud_id', 'text', d ~ "->>'cloudId'"],
    ['maintenance_start_date', 'date', d ~ "->>'maintenanceStartDate'"],
    ['maintenance_end_date', 'date', d ~ "->>'maintenanceEndDate'"],
    ['months_valid', 'integer', d ~ "->>'monthsValid'"],
    ['in_grace_period', 'text', d ~ "->>'inGracePeriod'"],
]) }}
{% endmacro %}
