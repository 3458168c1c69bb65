{#- One license reference across hosting types, from the raw id fields: the cloud
    entitlement number, else the SEN license id, else "SEN-" + the add-on license id,
    else the entitlement UUID. Derived here from the vendor's fields, so the marts do
    not depend on the format of the tap's own license_key. -#}
{% macro license_ref(entitlement_number, license_id, addon_license_id, entitlement_id) -%}
coalesce(({{ entitlement_number }}), ({{ license_id }}), 'SEN-' || ({{ addon_license_id }}), ({{ entitlement_id }}))
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
