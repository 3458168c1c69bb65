-- config and log_input_url (customers' connection strings) are deliberately not staged.
{%- set columns = [
    ['resource_uuid', 'text', 'resource_uuid'],
    ['provider_id', 'text', 'provider_id'],
    ['heroku_app_id', 'text', 'id'],
    ['app_name', 'text', 'name'],
    ['plan', 'text', 'plan'],
    ['region', 'text', 'region'],
    ['owner_email', 'text', 'owner_email'],
    ['owner_id', 'text', json_text(col('owner'), 'uuid')],
    ['callback_url', 'text', 'callback_url'],
] -%}
{{ stage('heroku', 'app_info', columns, unique_key='resource_uuid', order_by='resource_uuid') }}
