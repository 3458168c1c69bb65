-- Partner mode: one row per add-on resource (GET /addons/{uuid}). Its id is the legacy
-- API's resource.uuid, the identity both modes share. plan.name is "service:plan";
-- plan keeps the part after the colon, as the legacy API names a plan.
{%- set columns = [
    ['resource_uuid', 'text', 'id'],
    ['addon_name', 'text', 'name'],
    ['provider_id', 'text', 'provider_id'],
    ['addon_service_name', 'text', json_text(col('addon_service'), 'name')],
    ['heroku_app_id', 'text', json_text(col('app'), 'id')],
    ['app_name', 'text', json_text(col('app'), 'name')],
    ['billing_entity_id', 'text', json_text(col('billing_entity'), 'id')],
    ['billing_entity_name', 'text', json_text(col('billing_entity'), 'name')],
    ['billing_entity_type', 'text', json_text(col('billing_entity'), 'type')],
    ['plan_id', 'text', json_text(col('plan'), 'id')],
    ['plan_name', 'text', json_text(col('plan'), 'name')],
    ['plan', 'text', plan_after_service(json_text(col('plan'), 'name'))],
    ['state', 'text', 'state'],
    ['billed_price_cents', 'bigint', json_text(col('billed_price'), 'cents')],
    ['billed_price_unit', 'text', json_text(col('billed_price'), 'unit')],
    ['billed_price_contract', 'boolean', json_text(col('billed_price'), 'contract')],
    ['created_at', 'timestamp', safe_timestamp('created_at')],
    ['updated_at', 'timestamp', safe_timestamp('updated_at')],
] -%}
{{ stage('heroku', 'addons', columns, unique_key='resource_uuid', order_by='updated_at desc nulls last') }}
