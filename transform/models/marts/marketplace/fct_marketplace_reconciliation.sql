-- Atlassian's own monthly aggregates next to the same figures computed from the raw rows,
-- per app, month and measure (docs/transform.md, "Reconciliation with Atlassian's reports").
-- Only pairs whose definitions match are lined up; the model's YAML says which and why.
{%- set event_series = {
    'churned_licenses': ['churn', 'license_churn_events'],
    'converted_licenses': ['conversion', 'license_conversion_events'],
    'renewed_licenses': ['renewal', 'license_renewal_events'],
} %}
{%- set series_names = var('reconciliation_event_series', {'churn': 'Cancellations', 'conversion': 'Conversions', 'renewal': 'Renewals'}) %}

with apps as (
    select product_id, app_key from {{ ref('stg_marketplace__apps') }}
),

-- Sales by type: every sale line falls under exactly one type (New, Renewal, Upgrade,
-- Refund, Downgrade), so the types add up to all sales of the app in the period.
vendor_sales as (
    select
        coalesce(metrics.product_id, apps.product_id) as product_id,
        metrics.period_start as period_month,
        sum(metrics.sales_count) as sales_count,
        sum(metrics.revenue) as sales_revenue
    from {{ ref('stg_marketplace__sales_metrics') }} as metrics
    left join apps on apps.app_key = metrics.app_key
    where metrics.report = 'sales_by_type'
        and metrics.aggregation = 'month'
        and metrics.app_key <> '__total__'
    group by 1, 2
),

computed_sales as (
    select
        product_id,
        {{ month_of('sale_date') }} as period_month,
        count(*) as sales_count,
        sum(vendor_amount) as sales_revenue
    from {{ ref('stg_marketplace__transactions') }}
    group by 1, 2
),

-- License events: the series of each report that counts the events its /details lists
-- (summed over the Monthly and Annual datasets of churn and renewal).
vendor_events as (
    select
        coalesce(metrics.product_id, apps.product_id) as product_id,
        metrics.period_start as period_month,
        {%- for measure, (report, _) in event_series.items() %}
        sum(case when metrics.report = '{{ report }}' and metrics.series_name = '{{ series_names[report] }}' then metrics.event_count end) as {{ measure }}{{ "," if not loop.last }}
        {%- endfor %}
    from {{ ref('stg_marketplace__license_event_metrics') }} as metrics
    left join apps on apps.app_key = metrics.app_key
    where metrics.aggregation = 'month'
        and metrics.app_key <> '__total__'
    group by 1, 2
),

computed_events as (
    {%- for measure, (_, stream) in event_series.items() %}
    select product_id, {{ month_of('event_date') }} as period_month, '{{ measure }}' as measure,
        count(*) as figure
    from {{ ref('stg_marketplace__' ~ stream) }}
    group by 1, 2
    {{ "union all" if not loop.last }}
    {%- endfor %}
),

vendor_figures as (
    select product_id, period_month, 'sales_count' as measure, cast(sales_count as numeric(18, 2)) as figure from vendor_sales
    union all
    select product_id, period_month, 'sales_revenue', cast(sales_revenue as numeric(18, 2)) from vendor_sales
    {%- for measure in event_series %}
    union all
    select product_id, period_month, '{{ measure }}', cast({{ measure }} as numeric(18, 2)) from vendor_events
    where {{ measure }} is not null
    {%- endfor %}
),

computed_figures as (
    select product_id, period_month, 'sales_count' as measure, cast(sales_count as numeric(18, 2)) as figure from computed_sales
    union all
    select product_id, period_month, 'sales_revenue', cast(sales_revenue as numeric(18, 2)) from computed_sales
    union all
    select product_id, period_month, measure, cast(figure as numeric(18, 2)) from computed_events
),

lined_up as (
    select
        coalesce(vendor.product_id, computed.product_id) as product_id,
        coalesce(vendor.period_month, computed.period_month) as period_month,
        coalesce(vendor.measure, computed.measure) as measure,
        vendor.figure as vendor_figure,
        -- Nothing in the raw rows for a period Atlassian reports on counts as zero.
        coalesce(computed.figure, 0) as computed_figure
    from vendor_figures as vendor
    full outer join computed_figures as computed
        on computed.product_id = vendor.product_id
        and computed.period_month = vendor.period_month
        and computed.measure = vendor.measure
)

select
    lined_up.product_id,
    apps.app_key as addon_key,
    lined_up.period_month,
    lined_up.measure,
    lined_up.vendor_figure,
    lined_up.computed_figure,
    lined_up.computed_figure - lined_up.vendor_figure as difference,
    case when lined_up.vendor_figure <> 0
        then round(cast((lined_up.computed_figure - lined_up.vendor_figure) / abs(lined_up.vendor_figure) as numeric(18, 6)), 4)
    end as relative_difference,
    -- Settled: the month ended at least reconciliation_settle_days before the as-of day,
    -- so Atlassian's figures and the raw rows have both caught up with it.
    {{ add_months('lined_up.period_month', 1) }} <= {{ add_days(as_of_date(), -1 * (var('reconciliation_settle_days', 7) | int)) }} as is_settled
from lined_up
left join apps on apps.product_id = lined_up.product_id
