{#- Raw tap columns, named the way the loader at hand wrote them.

    The taps' field names are camelCase (addonKey, purchaseDetails). Each loader writes
    them its own way: target-postgres keeps them ("addonKey", so a quoted name is
    needed), target-duckdb lower-cases them (addonkey), target-snowflake (MeltanoLabs)
    lower-cases them unquoted, which Snowflake stores upper-case (ADDONKEY). A staging
    model names a raw column with col('addonKey'); stage() then looks the name up among
    the columns the loader created (adapter.get_columns_in_relation) and writes the one
    whose name matches exactly, else the one that matches it ignoring case and
    underscores (addonKey = ADDONKEY = addon_key), quoted as the warehouse quotes. A name
    that matches none, or more than one, stops the build with the columns it found.

    col() only marks the name: it is resolved inside stage()'s column expressions. -#}
{% macro col(name) %}{{ return('[[loader_column:' ~ name ~ ']]') }}{% endmacro %}

{#- The comparison key of a column name: lower case, letters and digits only. -#}
{% macro loader_column_key(name) %}{{ return(modules.re.sub('[^a-z0-9]', '', name | lower)) }}{% endmacro %}

{#- The loader's column for a tap field name, quoted; loaded_columns: the names the
    relation has (empty while dbt parses, when the name is written as the loader of
    this warehouse would write it). -#}
{% macro loader_column(name, loaded_columns, relation) -%}
{%- if not loaded_columns -%}
  {{ return(adapter.dispatch('loader_column_guess', 'isv_revenue')(name)) }}
{%- endif -%}
{%- if name in loaded_columns -%}
  {{ return(adapter.quote(name)) }}
{%- endif -%}
{%- set matches = [] -%}
{%- for loaded in loaded_columns -%}
  {%- if isv_revenue.loader_column_key(loaded) == isv_revenue.loader_column_key(name) -%}{%- do matches.append(loaded) -%}{%- endif -%}
{%- endfor -%}
{%- if matches | length != 1 -%}
  {{ exceptions.raise_compiler_error("The field " ~ name ~ " is " ~ ("in no column" if not matches else "in several columns (" ~ matches | join(', ') ~ ")") ~ " of " ~ relation ~ "; its columns: " ~ loaded_columns | join(', ')) }}
{%- endif -%}
{{ return(adapter.quote(matches[0])) }}
{%- endmacro %}

{% macro default__loader_column_guess(name) %}{{ return(adapter.quote(name)) }}{% endmacro %}
{% macro snowflake__loader_column_guess(name) %}{{ return(adapter.quote(name | upper)) }}{% endmacro %}

{#- An expression with every col() mark replaced by the loader's column. -#}
{% macro resolve_loader_columns(expression, loaded_columns, relation) -%}
{%- set resolved = namespace(sql=expression | string) -%}
{%- for name in modules.re.findall('\[\[loader_column:([^\]]+)\]\]', resolved.sql) | unique -%}
  {%- set resolved.sql = resolved.sql.replace('[[loader_column:' ~ name ~ ']]', isv_revenue.loader_column(name, loaded_columns, relation)) -%}
{%- endfor -%}
{{ return(resolved.sql) }}
{%- endmacro %}
