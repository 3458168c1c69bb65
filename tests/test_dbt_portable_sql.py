"""The dbt SQL stays warehouse-neutral (docs/transform.md, "Snowflake").

Staging models name raw tap columns with col('fieldName') and read JSON with json_text /
json_value, because each loader writes names and JSON differently; intermediate models
and marts use the date macros instead of interval arithmetic and date subtraction's
PostgreSQL/DuckDB meaning. A model written the old way ("addonKey", ->> 'x') would
build on PostgreSQL and DuckDB and fail only on Snowflake, so this test reads the SQL.
"""

from __future__ import annotations

import re
from pathlib import Path

from helpers import REPO

TRANSFORM = REPO / "transform"
#: Where the warehouse-specific spellings live.
ADAPTER_MACROS = {TRANSFORM / "macros" / "adapters.sql"}

JINJA_COMMENT = re.compile(r"\{#.*?#\}", re.S)
SQL_COMMENT = re.compile(r"--[^\n]*")
RULES = {
    # A double-quoted identifier anywhere ('"addonKey"', '"date"'): the loader's spelling
    # of a name, which only col() knows.
    "quoted identifier (write col('name'))": re.compile(r'"[A-Za-z_][A-Za-z0-9_]*"(?=\s*(?:->|[\'),\]]))'),
    "camelCase quoted identifier (write col('name'))": re.compile(r'\\?"[a-z][a-z0-9_]*[A-Z][A-Za-z0-9_]*\\?"'),
    "JSON operator -> or ->> (write json_text / json_value)": re.compile(r"->>?\s*\\?'"),
    "interval arithmetic (write add_months / add_days)": re.compile(r"\binterval\s+'", re.I),
    "PostgreSQL cast :: (write cast(... as ...))": re.compile(r"::"),
}


def problems(sql: str) -> list[str]:
    """The portability rules a piece of dbt SQL breaks, each with the text that breaks it."""
    text = SQL_COMMENT.sub("", JINJA_COMMENT.sub("", sql))
    return [f"{rule}: {match.group(0)!r}" for rule, pattern in RULES.items() for match in pattern.finditer(text)]


def checked_files() -> list[Path]:
    files = [*TRANSFORM.glob("models/**/*.sql"), *TRANSFORM.glob("snapshots/**/*.sql"),
             *TRANSFORM.glob("tests/**/*.sql"), *TRANSFORM.glob("macros/*.sql")]
    return sorted(path for path in files if path not in ADAPTER_MACROS)


def test_the_rules_catch_the_old_style() -> None:
    """Each rule fires on the way staging models were written before (and clean SQL passes)."""
    old = {
        "['addon_key', 'text', '\"addonKey\"'],": "camelCase",
        "['period_start', 'date', '\"date\"'],": "quoted identifier",
        "['company', 'text', '\"contactDetails\"->>\\'company\\''],": "JSON operator",
        "['resource_name', 'text', \"resource->>'name'\"],": "JSON operator",
        "select cast(x + interval '1 month' as date)": "interval",
        "select x::date": "cast ::",
    }
    for sql, rule in old.items():
        assert any(rule in problem for problem in problems(sql)), (sql, problems(sql))
    assert problems("['addon_key', 'text', col('addonKey')],\n"
                    "['company', 'text', json_text(col('contactDetails'), 'company')],\n"
                    "{{ days_between('a', 'b') }} -- a comment -> 'x'\n{# \"addonKey\" #}") == []


def test_dbt_sql_is_warehouse_neutral() -> None:
    files = checked_files()
    assert len(files) > 20
    found = {str(path.relative_to(REPO)): problems(path.read_text()) for path in files}
    assert {path: issues for path, issues in found.items() if issues} == {}
