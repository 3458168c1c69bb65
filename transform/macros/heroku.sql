{#- A partner-mode plan name ("service:plan") as the legacy API names the plan (the part
    after the first colon; a name without one is kept). position/substr read the same on
    PostgreSQL, DuckDB and Snowflake; DuckDB parses ->> inside position(… in …) only in
    parentheses. -#}
{% macro plan_after_service(plan_name) -%}
case when position(':' in ({{ plan_name }})) > 0
     then substr({{ plan_name }}, position(':' in ({{ plan_name }})) + 1)
     else {{ plan_name }} end
{%- endmacro %}
