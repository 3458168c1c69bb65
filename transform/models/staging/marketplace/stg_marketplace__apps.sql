{%- set columns = [
    ['product_id', 'text', '"productId"'],
    ['app_key', 'text', '"appKey"'],
    ['app_name', 'text', '"appName"'],
    ['developer_id', 'text', '"developerId"'],
    ['state', 'text', 'state'],
    ['approval_status', 'text', '"approvalStatus"'],
    ['slug', 'text', 'slug'],
    ['revision', 'bigint', 'revision'],
    ['community_enabled', 'boolean', '"communityEnabled"'],
    ['summary', 'text', 'summary'],
    ['tag_line', 'text', '"tagLine"'],
] -%}
{{ stage('marketplace', 'app_listings', columns, unique_key='product_id', order_by='revision desc') }}
