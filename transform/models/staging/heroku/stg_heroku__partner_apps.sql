-- Partner mode: the app each add-on resource is provisioned to (GET /apps/{id}).
{%- set columns = [
    ['heroku_app_id', 'text', 'id'],
    ['app_name', 'text', 'name'],
    ['region', 'text', "region->>'name'"],
    ['owner_id', 'text', "owner->>'id'"],
    ['owner_email', 'text', "owner->>'email'"],
    ['team_name', 'text', "team->>'name'"],
    ['organization_name', 'text', "organization->>'name'"],
    ['stack', 'text', "stack->>'name'"],
    ['created_at', 'timestamp', safe_timestamp('created_at')],
    ['updated_at', 'timestamp', safe_timestamp('updated_at')],
    ['archived_at', 'timestamp', safe_timestamp('archived_at')],
] -%}
{{ stage('heroku', 'partner_apps', columns, unique_key='heroku_app_id', order_by='updated_at desc nulls last') }}
