{%- set columns = [
    ['resource_uuid', 'text', 'resource_uuid'],
    ['provider_id', 'text', 'provider_id'],
    ['heroku_id', 'text', 'heroku_id'],
    ['resource_name', 'text', json_text(col('resource'), 'name')],
    ['plan', 'text', 'plan'],
] -%}
{{ stage('heroku', 'apps', columns, unique_key='resource_uuid', order_by='resource_uuid') }}
