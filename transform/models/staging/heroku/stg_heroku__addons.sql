-- Partner mode: one row per add-on resource (GET /addons/{uuid}). Its id is the legacy
-- API's resource.uuid, the identity both modes share. plan.name is "service:plan";
-- plan keeps the part after the colon, as the legacy API names a plan.
{%- set columns = [
    ['resource_uuid', 'text', 'id'],
    ['addon_name', 'text', 'name'],
    ['provider_id', 'text', 'provider_id'],
    ['addon_service_name', 'text', "addon_service->>'name'"],
    ['heroku_app_id', 'text', "app->>'id'"],
    ['app_name', 'text', "app->>'name'"],
    ['billing_entity_id', 'text', "billing_entity->>'id'"],
    ['billing_entity_name', 'text', "billing_entity->>'name'"],
    ['billing_entity_type', 'text', "billing_entity->>'type'"],
    ['plan_id', 'text', "plan->>'id'"],
    ['plan_name', 'text', "plan->>'name'"],
    ['plan', 'text', "case when strpos(plan->>'name', ':') > 0 then substr(plan->>'name', strpos(plan->>'name', ':') + 1) else plan->>'name' end"],
    ['state', 'text', 'state'],
    ['billed_price_cents', 'bigint', "billed_price->>'cents'"],
    ['billed_price_unit', 'text', "billed_price->>'unit'"],
    ['billed_price_contract', 'boolean', "billed_price->>'contract'"],
    ['created_at', 'timestamp', safe_timestamp('created_at')],
    ['updated_at', 'timestamp', safe_timestamp('updated_at')],
] -%}
{{ stage('heroku', 'addons', columns, unique_key='resource_uuid', order_by='updated_at desc nulls last') }}
