{%- set columns = [
    ['report', 'text', 'report'],
    ['dimension', 'text', 'dimension'],
    ['series_type', 'text', 'series_type'],
    ['app_key', 'text', 'app_key'],
    ['product_id', 'text', 'product_id'],
    ['aggregation', 'text', 'aggregation'],
    ['period_start', 'date', col('date')],
    ['sales_count', 'integer', col('count')],
    ['net_count', 'integer', col('netCount')],
    ['revenue', 'money', 'revenue'],
] -%}
{{ stage('marketplace', 'sales_metrics', columns, unique_key='report, dimension, series_type, app_key, aggregation, period_start', order_by='period_start') }}
