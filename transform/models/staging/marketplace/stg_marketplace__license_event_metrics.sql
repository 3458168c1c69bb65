{%- set columns = [
    ['report', 'text', 'report'],
    ['dataset', 'text', 'dataset'],
    ['series_name', 'text', 'dimension'],
    ['series_type', 'text', 'series_type'],
    ['app_key', 'text', 'app_key'],
    ['product_id', 'text', 'product_id'],
    ['aggregation', 'text', 'aggregation'],
    ['period_start', 'date', col('date')],
    ['event_count', 'integer', col('count')],
    ['unique_total', 'integer', col('uniqueTotal')],
] -%}
{{ stage('marketplace', 'license_event_metrics', columns, unique_key='report, dataset, series_name, series_type, app_key, aggregation, period_start', order_by='period_start') }}
