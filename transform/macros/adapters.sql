{#- The few places where PostgreSQL (target-postgres) and DuckDB (target-duckdb) differ.
    target-postgres writes camelCase column names, dates as DATE, objects as JSONB and
    arrays as JSONB[]; target-duckdb writes lower-case names (DuckDB identifiers are
    case-insensitive, so "addonKey" finds addonkey), dates as VARCHAR and objects and
    arrays as JSON. Both read an object's field with ->> 'name'. -#}

{#- The JSON type of the warehouse. -#}
{% macro json_type() %}{{ return(adapter.dispatch('json_type', 'isv_revenue')()) }}{% endmacro %}
{% macro default__json_type() %}json{% endmacro %}
{% macro postgres__json_type() %}jsonb{% endmacro %}

{#- A column holding a JSON array, as one JSON value (PostgreSQL loads it as JSONB[]). -#}
{% macro json_array(column) %}{{ return(adapter.dispatch('json_array', 'isv_revenue')(column)) }}{% endmacro %}
{% macro default__json_array(column) %}{{ column }}{% endmacro %}
{% macro postgres__json_array(column) %}to_jsonb({{ column }}){% endmacro %}

{#- One row per element of a JSON array (a set-returning expression for a select list). -#}
{% macro json_array_elements(expression) %}{{ return(adapter.dispatch('json_array_elements', 'isv_revenue')(expression)) }}{% endmacro %}
{% macro default__json_array_elements(expression) %}unnest(cast({{ expression }} as json[])){% endmacro %}
{% macro postgres__json_array_elements(expression) %}jsonb_array_elements({{ expression }}){% endmacro %}

{#- A date from text that may hold "NA" or "Pending" (Marketplace data insights). -#}
{% macro safe_date(expression) %}{{ return(adapter.dispatch('safe_date', 'isv_revenue')(expression)) }}{% endmacro %}
{% macro default__safe_date(expression) %}try_cast({{ expression }} as date){% endmacro %}
{% macro postgres__safe_date(expression) -%}
case when cast({{ expression }} as text) ~ '^[0-9]{4}-[0-9]{2}-[0-9]{2}$' then cast(cast({{ expression }} as text) as date) end
{%- endmacro %}

{#- The first day of the month of a date, as a date. -#}
{% macro month_of(expression) %}cast(date_trunc('month', {{ expression }}) as date){% endmacro %}

{#- A date plus whole months or days, as a date. -#}
{% macro add_months(expression, months) %}cast({{ expression }} + interval '{{ months }} month' as date){% endmacro %}
{% macro add_days(expression, days) %}cast({{ expression }} + interval '{{ days }} day' as date){% endmacro %}

{#- The as-of day of the marts (var as_of_date, else today). -#}
{% macro as_of_date() -%}
{%- set value = var('as_of_date', env_var('DBT_AS_OF_DATE', '')) -%}
{%- if value -%}cast('{{ value }}' as date){%- else -%}current_date{%- endif -%}
{%- endmacro %}

{#- Logical types of the staging columns, as the warehouse spells them. -#}
{% macro sql_type(name) -%}
{%- if name == 'json' -%}{{ isv_revenue.json_type() }}
{%- elif name == 'money' -%}numeric(18, 2)
{%- else -%}{{ name }}
{%- endif -%}
{%- endmacro %}

{#- A timestamp from ISO text that may be empty. -#}
{% macro safe_timestamp(expression) %}{{ return(adapter.dispatch('safe_timestamp', 'isv_revenue')(expression)) }}{% endmacro %}
{% macro default__safe_timestamp(expression) %}try_cast({{ expression }} as timestamp){% endmacro %}
{% macro postgres__safe_timestamp(expression) -%}
case when cast({{ expression }} as text) ~ '^[0-9]{4}-[0-9]{2}-[0-9]{2}' then cast(cast({{ expression }} as text) as timestamp) end
{%- endmacro %}

{#- round(cents x part / whole) half away from zero, in whole cents, identical on every
    warehouse: sign x floor((2 x |cents| x part + whole) / (2 x whole)) in double precision
    is exact here (integers far below 2^53, quotients at least 1/(2 x whole) from the next
    integer). Symmetric, so a refund's shares are exactly its sale's, negated (half up
    would leave a cent of MRR after a full refund). part and whole are never negative. -#}
{% macro cents_share(cents, part, whole) -%}
cast(sign({{ cents }}) * floor((2.0 * abs({{ cents }}) * {{ part }} + {{ whole }}) / (2.0 * {{ whole }})) as bigint)
{%- endmacro %}

{#- Whole cents as money, exactly (no division, which DuckDB does in floating point). -#}
{% macro cents_to_money(cents) %}cast(cast({{ cents }} as numeric(18, 0)) * 0.01 as numeric(18, 2)){% endmacro %}
