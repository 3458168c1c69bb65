"""Talks to the fakesnow server of tests/test_dbt_snowflake.py; runs in .venv-snowflake
(snowflake-connector-python is not in the test venv, so that dbt's pins stay apart).

    python snowflake_client.py serve PORT         (a fakesnow server until killed)
    python snowflake_client.py load SCHEMA < singer-messages.jsonl
    python snowflake_client.py query SQL          (the rows, pickled, on stdout)

``load`` writes a tap's Singer messages the way MeltanoLabs target-snowflake 0.20 does
(docs/transform.md, "Snowflake"): a table per stream named as the stream, a column per
property named as the property lower-cased and unquoted, so Snowflake keeps it upper-case
(addonKey -> ADDONKEY); objects, arrays and properties of several types as VARIANT,
integers as NUMBER, numbers as DOUBLE, date strings as DATE, date-times as TIMESTAMP_NTZ,
other strings as VARCHAR; the _sdc_* metadata columns (add_record_metadata); one row per
key, the last record winning (its MERGE).
"""

from __future__ import annotations

import json
import os
import pickle
import sys

import snowflake.connector

DATABASE = "ISV"


def connect(database: str | None = DATABASE):
    return snowflake.connector.connect(
        user="fake", password="snow", account="fakesnow",  # noqa: S106 - fakesnow takes any
        host="127.0.0.1", port=int(os.environ["FAKESNOW_PORT"]), protocol="http",
        session_parameters={"CLIENT_OUT_OF_BAND_TELEMETRY_ENABLED": False}, network_timeout=30,
        database=database)


def column_type(definition: dict) -> str:
    if "anyOf" in definition:
        return "VARIANT"
    types = definition.get("type", "string")
    types = [types] if isinstance(types, str) else [kind for kind in types if kind != "null"]
    if len(types) != 1:
        return "VARIANT"
    kind = types[0]
    if kind in ("object", "array"):
        return "VARIANT"
    if kind == "integer":
        return "NUMBER(38, 0)"
    if kind == "number":
        return "DOUBLE"
    if kind == "boolean":
        return "BOOLEAN"
    return {"date": "DATE", "date-time": "TIMESTAMP_NTZ", "time": "TIME"}.get(definition.get("format"), "VARCHAR")


METADATA = {"_sdc_extracted_at": "TIMESTAMP_NTZ", "_sdc_received_at": "TIMESTAMP_NTZ",
            "_sdc_batched_at": "TIMESTAMP_NTZ", "_sdc_deleted_at": "TIMESTAMP_NTZ",
            "_sdc_sequence": "NUMBER(38, 0)", "_sdc_table_version": "NUMBER(38, 0)",
            "_sdc_sync_started_at": "NUMBER(38, 0)"}


def literal(value: str | None) -> str:
    if value is None:
        return "null"
    return "'" + value.replace("\\", "\\\\").replace("'", "''") + "'"


def load(schema: str) -> None:
    tables: dict[str, dict] = {}
    for line in sys.stdin:
        if not line.startswith("{"):
            continue
        message = json.loads(line)
        if message["type"] == "SCHEMA":
            columns = {name.lower(): column_type(definition)
                       for name, definition in message["schema"]["properties"].items()}
            tables.setdefault(message["stream"], {"rows": {}})
            tables[message["stream"]].update(columns={**columns, **METADATA},
                                             keys=[key.lower() for key in message.get("key_properties") or []])
        elif message["type"] == "RECORD":
            table = tables[message["stream"]]
            record = {name.lower(): value for name, value in message["record"].items()}
            record["_sdc_extracted_at"] = message.get("time_extracted")
            key = tuple(json.dumps(record.get(k)) for k in table["keys"]) or len(table["rows"])
            table["rows"][key] = record
    connect(None).cursor().execute(f"create database if not exists {DATABASE}")
    cursor = connect().cursor()
    cursor.execute(f"create schema if not exists {DATABASE}.{schema}")
    for stream, table in tables.items():
        columns = table["columns"]
        name = f"{DATABASE}.{schema}.{stream.lower().replace('-', '_')}"
        cursor.execute(f"create or replace table {name} ("
                       + ", ".join(f'"{column.upper()}" {kind}' for column, kind in columns.items()) + ")")
        rows = list(table["rows"].values())
        # As COPY INTO from a stage's JSON file does: $1:field::TYPE, VARIANT kept whole
        # (a JSON null stays a VARIANT null, as there). One JSON array a statement.
        selects = ", ".join(f"value['{column}']" if kind == "VARIANT" else f"cast(value['{column}']::string as {kind})"
                            for column, kind in columns.items())
        for start in range(0, len(rows), 2000):
            array = json.dumps(rows[start:start + 2000], default=str)
            cursor.execute(f"insert into {name} select {selects} "
                           f"from table(flatten(input => parse_json({literal(array)})))")
        print(f"{name}: {len(rows)} rows", file=sys.stderr)


def serve(port: int) -> None:
    """fakesnow's server on loopback, less one of its rewrites: it turns the argument of
    every SUM and AVG into a DOUBLE (to imitate Snowflake summing numbers held as text),
    which real Snowflake does not do to a NUMBER column: there a sum of NUMBER(18, 2) is
    exact, and so are the marts' sums of money. Left in, fakesnow's floating-point sums
    would fail the marts' own to-the-cent tests for a reason Snowflake does not have."""
    import threading

    import fakesnow
    import fakesnow.transforms

    fakesnow.transforms.numeric_agg_implicit_cast = lambda expression: expression
    with fakesnow.server(port=port, host="127.0.0.1"):
        print("serving", flush=True)
        threading.Event().wait()


def main() -> None:
    if sys.argv[1] == "serve":
        serve(int(sys.argv[2]))
    elif sys.argv[1] == "load":
        load(sys.argv[2])
    elif sys.argv[1] == "query":
        cursor = connect().cursor()
        cursor.execute(sys.argv[2])
        sys.stdout.buffer.write(pickle.dumps([tuple(row) for row in cursor.fetchall()]))
    elif sys.argv[1] == "execute":
        connect().cursor().execute(sys.argv[2])


if __name__ == "__main__":
    main()
