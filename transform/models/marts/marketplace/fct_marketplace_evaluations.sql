-- One row per evaluation (free trial) that started by the as-of day, and whether and
-- when it converted to a paid license (docs/transform.md, "Evaluations and their
-- conversion to paid").
--
-- An evaluation is known from two kinds of license rows:
--   * a license whose row is of type EVALUATION: its maintenance period is the trial;
--   * a paid license whose data insights name the evaluation it came from
--     (evaluationLicense, with evaluationStartDate / evaluationEndDate / evaluationSaleDate).
--     A cloud evaluation converts in place (the same entitlement, now COMMERCIAL), so its
--     EVALUATION row is gone from the export and this is all that is left of it.
-- Both name the evaluation by its license reference (int_marketplace__license_refs), so
-- an evaluation seen both ways is one row.
--
-- It converted when a paid sale followed it: the sale date Atlassian maps to it
-- (evaluationSaleDate of the license naming it, when on or after the start), else the
-- first paid transaction line (vendorAmount > 0) of the converted license (the license
-- naming it, else the evaluation's own license) on or after the evaluation's start;
-- by the as-of day. Days to convert: that sale date minus the evaluation's start.
with refs as (
    select identifier, license_ref from {{ ref('int_marketplace__license_refs') }}
),

licenses as (
    select
        stg.*,
        coalesce(refs.license_ref, stg.license_ref) as resolved_license_ref,
        nullif(trim(stg.evaluation_license), '') as named_evaluation
    from {{ ref('stg_marketplace__licenses') }} as stg
    left join refs on refs.identifier = stg.license_ref
),

evaluation_rows as (
    select
        resolved_license_ref as evaluation_ref,
        min(product_id) as product_id,
        min(maintenance_start_date) as evaluation_start_date,
        max(maintenance_end_date) as evaluation_end_date
    from licenses
    where upper(license_type) = 'EVALUATION' and resolved_license_ref is not null
    group by resolved_license_ref
),

-- evaluationLicense as Atlassian writes it: a SEN, an entitlement number, or a bare
-- add-on license number (read as SEN-<number>, as cmtDetails' related license is).
naming_rows as (
    select
        coalesce(named_refs.license_ref, sen_refs.license_ref, licenses.named_evaluation) as evaluation_ref,
        licenses.resolved_license_ref as converted_license_ref,
        licenses.product_id,
        licenses.evaluation_start_date,
        licenses.evaluation_end_date,
        licenses.evaluation_sale_date
    from licenses
    left join refs as named_refs on named_refs.identifier = licenses.named_evaluation
    left join refs as sen_refs on sen_refs.identifier = 'SEN-' || licenses.named_evaluation
    where upper(coalesce(licenses.license_type, '')) <> 'EVALUATION'
        and licenses.named_evaluation is not null
        and upper(licenses.named_evaluation) not in ('NA', 'PENDING')
),

-- One paid license per evaluation: the earliest to name it (by its mapped sale date).
first_naming as (
    select * from (
        select
            naming_rows.*,
            row_number() over (
                partition by evaluation_ref
                order by evaluation_sale_date nulls last, converted_license_ref
            ) as naming_rank
        from naming_rows
    ) as ranked
    where naming_rank = 1
),

evaluations as (
    select
        coalesce(evaluation_rows.evaluation_ref, first_naming.evaluation_ref) as evaluation_ref,
        coalesce(evaluation_rows.product_id, first_naming.product_id) as product_id,
        coalesce(evaluation_rows.evaluation_start_date, first_naming.evaluation_start_date) as evaluation_start_date,
        coalesce(evaluation_rows.evaluation_end_date, first_naming.evaluation_end_date) as evaluation_end_date,
        evaluation_rows.evaluation_ref is not null as has_evaluation_license_row,
        first_naming.converted_license_ref as naming_license_ref,
        first_naming.evaluation_sale_date as mapped_sale_date
    from evaluation_rows
    full outer join first_naming on first_naming.evaluation_ref = evaluation_rows.evaluation_ref
),

paid_lines as (
    select coalesce(refs.license_ref, transactions.license_ref) as license_ref, transactions.sale_date
    from {{ ref('stg_marketplace__transactions') }} as transactions
    left join refs on refs.identifier = transactions.license_ref
    where transactions.vendor_amount > 0
),

first_paid as (
    select evaluations.evaluation_ref, min(paid_lines.sale_date) as first_paid_sale_date
    from evaluations
    inner join paid_lines
        on paid_lines.license_ref = coalesce(evaluations.naming_license_ref, evaluations.evaluation_ref)
        and paid_lines.sale_date >= evaluations.evaluation_start_date
    group by evaluations.evaluation_ref
),

with_first_paid as (
    select
        evaluations.*,
        coalesce(evaluations.naming_license_ref, evaluations.evaluation_ref) as paid_license_ref,
        first_paid.first_paid_sale_date
    from evaluations
    left join first_paid on first_paid.evaluation_ref = evaluations.evaluation_ref
    where evaluations.evaluation_start_date is not null
        and evaluations.evaluation_start_date <= {{ as_of_date() }}
),

with_conversion as (
    select
        with_first_paid.*,
        case
            when mapped_sale_date >= evaluation_start_date and mapped_sale_date <= {{ as_of_date() }}
                then mapped_sale_date
            when first_paid_sale_date <= {{ as_of_date() }} then first_paid_sale_date
        end as conversion_date
    from with_first_paid
)

select
    evaluation_ref,
    product_id,
    evaluation_start_date,
    {{ month_of('evaluation_start_date') }} as evaluation_month,
    evaluation_end_date,
    has_evaluation_license_row,
    conversion_date is not null as is_converted,
    case when conversion_date is not null then paid_license_ref end as converted_license_ref,
    conversion_date,
    {{ days_between('evaluation_start_date', 'conversion_date') }} as days_to_convert,
    conversion_date is null and coalesce(evaluation_end_date >= {{ as_of_date() }}, false) as is_open,
    {{ as_of_date() }} as as_of_date
from with_conversion
