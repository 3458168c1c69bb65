-- One reference per license for its whole life: every identifier any license,
-- transaction or license event row carries, mapped to the license's reference.
--
-- Atlassian adds identifiers to a license over time (entitlement numbers for Data
-- Center licenses in 2025; cloud rows carry an entitlement number and UUID, older ones
-- an add-on license id too; cloud license events put the entitlement number in
-- licenseId), so rows of one license name it differently. Two identifiers belong to one
-- license when a row carries both; a cloud migration trial's license is linked to the
-- Server/Data Center license its cmtDetails.relatedOnPremLicense names. The license's
-- reference is then the first of its identifiers by kind, the oldest kind first: a SEN,
-- else an entitlement number, else an entitlement UUID (the lowest of a kind when a
-- license has several), so a license keeps the reference it had before Atlassian added
-- an identifier. The groups are found by passing the lowest reference along the rows'
-- identifier pairs, {{ var('license_ref_rounds', 6) }} times (enough for chains of that
-- many rows; real licenses need two).
{%- set row_models = ['stg_marketplace__licenses', 'stg_marketplace__transactions',
                      'stg_marketplace__license_churn_events', 'stg_marketplace__license_conversion_events',
                      'stg_marketplace__license_renewal_events'] %}
with row_identifiers as (
{%- for model in row_models %}
    select
        license_ref as row_ref,
        license_id,
        {{ 'cast(null as text)' if 'events' in model else 'addon_license_id' }} as addon_license_id,
        app_entitlement_number,
        app_entitlement_id,
        {{ 'cmt_related_on_prem_license' if model == 'stg_marketplace__licenses' else 'cast(null as text)' }} as related_on_prem_license
    from {{ ref(model) }}
    where license_ref is not null
    {%- if not loop.last %}
    union all
    {%- endif %}
{%- endfor %}
),

pairs as (
    select row_ref, license_id as identifier from row_identifiers
    union all
    select row_ref, 'SEN-' || addon_license_id from row_identifiers
    union all
    select row_ref, app_entitlement_number from row_identifiers
    union all
    select row_ref, app_entitlement_id from row_identifiers
    union all
    select row_ref,
        case when related_on_prem_license like 'SEN-%' or related_on_prem_license like 'E-%'
             then related_on_prem_license else 'SEN-' || related_on_prem_license end
    from row_identifiers
),

-- Both directions, and every identifier with itself.
edges as (
    select row_ref as identifier, identifier as neighbour from pairs where identifier is not null
    union
    select identifier, row_ref from pairs where identifier is not null
    union
    select row_ref, row_ref from pairs
),

-- A reference ranked by its kind ("1SEN-…" < "2E-…" < "3<uuid>"), so min() picks by kind.
labels_0 as (
    select distinct
        identifier,
        case when identifier like 'SEN-%' then '1' when identifier like 'E-%' then '2' else '3' end
            || identifier as label
    from edges
)
{%- for round in range(1, var('license_ref_rounds', 6) + 1) %},

labels_{{ round }} as (
    select edges.identifier, min(labels.label) as label
    from edges
    join labels_{{ round - 1 }} as labels on labels.identifier = edges.neighbour
    group by edges.identifier
)
{%- endfor %}

select
    identifier,
    substr(label, 2) as license_ref
from labels_{{ var('license_ref_rounds', 6) }}
