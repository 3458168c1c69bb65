{%- set columns = [
    ['product_id', 'text', col('productId')],
    ['app_key', 'text', col('appKey')],
    ['app_name', 'text', col('appName')],
    ['developer_id', 'text', col('developerId')],
    ['state', 'text', 'state'],
    ['approval_status', 'text', col('approvalStatus')],
    ['slug', 'text', 'slug'],
    ['revision', 'bigint', 'revision'],
    ['community_enabled', 'boolean', col('communityEnabled')],
    ['summary', 'text', 'summary'],
    ['tag_line', 'text', col('tagLine')],
] -%}
{{ stage('marketplace', 'app_listings', columns, unique_key='product_id', order_by='revision desc') }}
