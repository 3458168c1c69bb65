-- Partner mode: the app each add-on resource is provisioned to (GET /apps/{id}).
{%- set columns = [
    ['heroku_app_id', 'text', 'id'],
    ['app_name', 'text', 'name'],
    ['region', 'text', json_text(col('region'), 'name')],
    ['owner_id', 'text', json_text(col('owner'), 'id')],
    ['owner_email', 'text', json_text(col('owner'), 'email')],
    ['team_name', 'text', json_text(col('team'), 'name')],
    ['organization_name', 'text', json_text(col('organization'), 'name')],
    ['stack', 'text', json_text(col('stack'), 'name')],
    ['created_at', 'timestamp', safe_timestamp('created_at')],
    ['updated_at', 'timestamp', safe_timestamp('updated_at')],
    ['archived_at', 'timestamp', safe_timestamp('archived_at')],
] -%}
{{ stage('heroku', 'partner_apps', columns, unique_key='heroku_app_id', order_by='updated_at desc nulls last') }}
