{#- The few places where PostgreSQL (target-postgres) and DuckDB (target-duckdb) differ.
    target-postgres writes camelCase column names, dates as DATE, objects as JSONB and
    arrays as JSONB[]; target-duckdb writes lower-case names (DuckDB identifiers are
    case-insensitive, so "addonKey" finds addonkey), dates as VARCHAR and objects and
    arrays as JSON. Both read an object's field with ->> 'name'. target-snowflake
    (MeltanoLabs) writes upper-case names (addonKey -> ADDONKEY, no underscore added),
    dates as DATE, numbers as DOUBLE and objects and arrays as VARIANT, read with
    ['name']. Staging models name raw columns with col() and read JSON with json_text()
    / json_value() (columns.sql), so one model serves the three loaders. -#}

{#- The JSON type of the warehouse. -#}
{% macro json_type() %}{{ return(adapter.dispatch('json_type', 'isv_revenue')()) }}{% endmacro %}
{% macro default__json_type() %}json{% endmacro %}
{% macro postgres__json_type() %}jsonb{% endmacro %}
{% macro snowflake__json_type() %}variant{% endmacro %}

{#- A column holding a JSON array, as one JSON value (PostgreSQL loads it as JSONB[]). -#}
{% macro json_array(column) %}{{ return(adapter.dispatch('json_array', 'isv_revenue')(column)) }}{% endmacro %}
{% macro default__json_array(column) %}{{ column }}{% endmacro %}
{% macro postgres__json_array(column) %}to_jsonb({{ column }}){% endmacro %}
{% macro snowflake__json_array(column) %}{{ column }}{% endmacro %}

{#- One row per element of a JSON array (a set-returning expression for a select list). -#}
{% macro json_array_elements(expression) %}{{ return(adapter.dispatch('json_array_elements', 'isv_revenue')(expression)) }}{% endmacro %}
{% macro default__json_array_elements(expression) %}unnest(cast({{ expression }} as json[])){% endmacro %}
{% macro postgres__json_array_elements(expression) %}jsonb_array_elements({{ expression }}){% endmacro %}
{#- Snowflake has no set-returning function for a select list (FLATTEN is a table
    function in FROM): models use unnest_json_array below, which has a Snowflake form. -#}
{% macro snowflake__json_array_elements(expression) -%}
{{ exceptions.raise_compiler_error("json_array_elements has no Snowflake form (FLATTEN belongs in FROM): use unnest_json_array(relation, keep_columns, array_column, element_name)") }}
{%- endmacro %}

{#- The rows of a relation, one per element of its JSON array column, with the columns
    of keep_columns and the element as element_name. Rows whose array is null give none. -#}
{% macro unnest_json_array(relation, keep_columns, array_column, element_name) %}{{ return(adapter.dispatch('unnest_json_array', 'isv_revenue')(relation, keep_columns, array_column, element_name)) }}{% endmacro %}
{% macro default__unnest_json_array(relation, keep_columns, array_column, element_name) -%}
select
        {%- for column in keep_columns %}
        {{ column }},
        {%- endfor %}
        {{ isv_revenue.json_array_elements(array_column) }} as {{ element_name }}
    from {{ relation }}
    where {{ array_column }} is not null
{%- endmacro %}
{% macro snowflake__unnest_json_array(relation, keep_columns, array_column, element_name) -%}
select
        {%- for column in keep_columns %}
        array_source.{{ column }},
        {%- endfor %}
        array_elements.value as {{ element_name }}
    from {{ relation }} as array_source,
        lateral flatten(input => array_source.{{ array_column }}) as array_elements
    where array_source.{{ array_column }} is not null
{%- endmacro %}

{#- The text of a field of a JSON object column, down a path of keys:
    json_text(col('contactDetails'), 'technicalContact', 'email'). A JSON null gives NULL
    on every warehouse (Snowflake: VARIANT null cast to string is NULL). -#}
{% macro json_text(expression) %}{{ return(adapter.dispatch('json_text', 'isv_revenue')(expression, varargs)) }}{% endmacro %}
{% macro default__json_text(expression, path) -%}
{{ expression }}{% for key in path %}{{ "->>" if loop.last else "->" }}'{{ key }}'{% endfor %}
{%- endmacro %}
{% macro snowflake__json_text(expression, path) -%}
{{ expression }}{% for key in path %}['{{ key }}']{% endfor %}::string
{%- endmacro %}

{#- A field of a JSON object column as JSON (an object or array kept whole). -#}
{% macro json_value(expression) %}{{ return(adapter.dispatch('json_value', 'isv_revenue')(expression, varargs)) }}{% endmacro %}
{% macro default__json_value(expression, path) -%}
{{ expression }}{% for key in path %}->'{{ key }}'{% endfor %}
{%- endmacro %}
{% macro snowflake__json_value(expression, path) -%}
{{ expression }}{% for key in path %}['{{ key }}']{% endfor %}
{%- endmacro %}

{#- A date from text that may hold "NA" or "Pending" (Marketplace data insights). -#}
{% macro safe_date(expression) %}{{ return(adapter.dispatch('safe_date', 'isv_revenue')(expression)) }}{% endmacro %}
{% macro default__safe_date(expression) %}try_cast({{ expression }} as date){% endmacro %}
{#- Snowflake: TRY_CAST takes only text (a VARIANT field is cast first). -#}
{% macro snowflake__safe_date(expression) %}try_cast(cast({{ expression }} as varchar) as date){% endmacro %}
{% macro postgres__safe_date(expression) -%}
case when cast({{ expression }} as text) ~ '^[0-9]{4}-[0-9]{2}-[0-9]{2}$' then cast(cast({{ expression }} as text) as date) end
{%- endmacro %}

{#- The first day of the month of a date, as a date. -#}
{% macro month_of(expression) %}cast(date_trunc('month', {{ expression }}) as date){% endmacro %}

{#- A date plus whole months or days, as a date. -#}
{% macro add_months(expression, months) %}{{ return(adapter.dispatch('add_months', 'isv_revenue')(expression, months)) }}{% endmacro %}
{% macro default__add_months(expression, months) %}cast({{ expression }} + interval '{{ months }} month' as date){% endmacro %}
{% macro snowflake__add_months(expression, months) %}cast(dateadd(month, {{ months }}, {{ expression }}) as date){% endmacro %}
{% macro add_days(expression, days) %}{{ return(adapter.dispatch('add_days', 'isv_revenue')(expression, days)) }}{% endmacro %}
{% macro default__add_days(expression, days) %}cast({{ expression }} + interval '{{ days }} day' as date){% endmacro %}
{% macro snowflake__add_days(expression, days) %}cast(dateadd(day, {{ days }}, {{ expression }}) as date){% endmacro %}

{#- Whole days from one date to a later one (negative when it is earlier). -#}
{% macro days_between(start_date, end_date) %}{{ return(adapter.dispatch('days_between', 'isv_revenue')(start_date, end_date)) }}{% endmacro %}
{% macro default__days_between(start_date, end_date) %}{{ end_date }} - {{ start_date }}{% endmacro %}
{% macro snowflake__days_between(start_date, end_date) %}datediff(day, {{ start_date }}, {{ end_date }}){% endmacro %}

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
{% macro snowflake__safe_timestamp(expression) %}try_cast(cast({{ expression }} as varchar) as timestamp){% endmacro %}
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
