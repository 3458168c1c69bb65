{#- A staging model: typed, renamed columns of one tap table, one row per key.

    columns: a list of [name, type, expression over the raw table's columns]; type is a
    warehouse type or one of the logical types of sql_type (json, money).
    unique_key: an expression over the staged columns; rows beyond the first per key,
    in the order of order_by, are dropped (the loaders upsert on the tap's key already,
    this keeps the grain when the tap's key and ours differ).

    A tap that has not run into this warehouse has no tables: its staging models are
    then empty (typed) rather than failing, so `dbt build` after one tap builds every
    model and the other taps' marts are simply empty.

    Raw columns in the expressions are written col('fieldName') and resolved here to
    the column the loader wrote (columns.sql).

    target-postgres marks rows that a full-table sync no longer returned with
    _sdc_deleted_at; those are left out. -#}
{% macro stage(source_name, table_name, columns, unique_key=none, order_by=none) -%}
{%- set relation = source(source_name, table_name) -%}
{%- set loaded = none -%}
{%- if execute -%}
  {%- set loaded = adapter.get_relation(database=relation.database, schema=relation.schema, identifier=relation.identifier) -%}
{%- endif -%}
{%- if execute and loaded is none %}
-- {{ relation }} has not been loaded: an empty stand-in with the staged columns.
select
{%- for column in columns %}
    cast(null as {{ isv_revenue.sql_type(column[1]) }}) as {{ column[0] }}{{ "," if not loop.last }}
{%- endfor %}
where 1 = 0
{%- else %}
{%- set raw_columns = [] -%}
{%- set loaded_columns = [] -%}
{%- if execute -%}
  {%- for column in adapter.get_columns_in_relation(loaded) -%}
    {%- do raw_columns.append(column.name | lower) -%}
    {%- do loaded_columns.append(column.name) -%}
  {%- endfor -%}
{%- endif %}
with raw_rows as (
    select * from {{ relation }}
    {%- if '_sdc_deleted_at' in raw_columns %}
    where _sdc_deleted_at is null
    {%- endif %}
),

typed as (
    select
    {%- for column in columns %}
        cast({{ isv_revenue.resolve_loader_columns(column[2], loaded_columns, relation) }} as {{ isv_revenue.sql_type(column[1]) }}) as {{ column[0] }}{{ "," if not loop.last }}
    {%- endfor %}
    from raw_rows
)
{%- if unique_key %},

ranked as (
    select
        typed.*,
        row_number() over (partition by {{ unique_key }} order by {{ order_by or unique_key }}) as row_rank
    from typed
)

select
{%- for column in columns %}
    {{ column[0] }}{{ "," if not loop.last }}
{%- endfor %}
from ranked
where row_rank = 1
{%- else %}

select * from typed
{%- endif %}
{%- endif %}
{%- endmacro %}
