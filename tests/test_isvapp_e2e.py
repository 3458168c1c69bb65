"""tap-isvapp through the real `meltano run` into PostgreSQL, every stream.

Same method as tests/test_meltano_e2e.py: the installed tap runs once directly and once
through Meltano (OAuth2 against the sandbox, at ISVapp's 2 requests/second); the loaded
tables must hold exactly the emitted rows, one per primary key.
"""

from __future__ import annotations

import json

import pytest

import isv_sandbox
from tap_isvapp.streams import month_before
from helpers import FAST_RETRIES, run_cli
from test_isvapp import ALL_STREAMS, LAST_MONTH, THIS_MONTH
from test_meltano_e2e import meltano, meltano_env, postgres_connection

#: Small, but every stream has rows: 2 windows of /requests, 5 CSV files, one export.
SANDBOX = {"accounts": 10, "request_history_days": 5, "csv_rows_per_file": 4,
           "csv_extra_columns": ["brand_new_metric"], "export_rows_per_month": 25,
           "latest_completed_month": LAST_MONTH}


def emitted_keys(config: dict) -> dict[str, set[tuple]]:
    """Distinct primary keys per stream from a direct run with every stream selected."""
    catalog = json.loads(run_cli("tap-isvapp", config, "--discover").stdout)
    key_fields = {s["tap_stream_id"]: s["key_properties"] for s in catalog["streams"]}
    for entry in catalog["streams"]:
        for item in entry["metadata"]:
            if item["breadcrumb"] == []:
                item["metadata"]["selected"] = True
    out = run_cli("tap-isvapp", config, catalog=catalog)
    assert out.returncode == 0, out.stderr[-3000:]
    return {stream: {tuple(json.dumps(r.get(k)) for k in key_fields[stream]) for r in rows}
            for stream, rows in out.records.items()}


@pytest.mark.e2e
@pytest.mark.postgres
def test_meltano_run_tap_isvapp_into_postgres() -> None:
    connection = postgres_connection()
    schema = "e2e_tap_isvapp"
    # Each run gets a fresh sandbox with the same (deterministic) data: a run's own
    # taxonomy export would otherwise show up in the next run's `exports`.
    with isv_sandbox.start("isvapp", **SANDBOX) as server:
        expected = emitted_keys({**server.app.tap_config(), **FAST_RETRIES})
    with isv_sandbox.start("isvapp", **SANDBOX) as server:
        config = server.app.tap_config()
        connection.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        run = meltano("run", "--full-refresh", "--state-id-suffix", "e2e", "tap-isvapp",
                      "target-postgres", env=meltano_env("tap-isvapp", config, {
                          "TARGET_POSTGRES_DEFAULT_TARGET_SCHEMA": schema,
                          "TARGET_POSTGRES_PASSWORD": "postgres",
                          # meltano.yml leaves the per-account summaries out; add them.
                          "TAP_ISVAPP__SELECT": json.dumps([f"{s}.*" for s in ALL_STREAMS])}))
        throttled = server.count("", status=429)
    assert run.returncode == 0, run.stderr[-5000:]
    assert throttled == 0

    assert set(expected) == set(ALL_STREAMS)
    for stream, keys in expected.items():
        count = connection.execute(f'SELECT count(*) FROM "{schema}"."{stream}"').fetchone()[0]
        assert count == len(keys), f"{stream}: {count} rows loaded, {len(keys)} distinct keys emitted"
    assert len(expected["package_usage_logs"]) == 5 * 4
    assert len(expected["taxonomy_item_usage"]) == 25
    assert len(expected["salesforce_account_summaries"]) == 10

    def column_type(table: str, column: str) -> str:
        return connection.execute(
            "SELECT data_type FROM information_schema.columns "
            "WHERE table_schema = %s AND table_name = %s AND column_name = %s",
            (schema, table, column)).fetchone()[0]

    assert column_type("taxonomy_item_usage", "unique_users") == "bigint"
    assert column_type("package_usage_logs", "extra_columns") == "jsonb"
    assert column_type("salesforce_accounts", "health_scores") in {"ARRAY", "jsonb"}
    extra = connection.execute(
        f'SELECT extra_columns FROM "{schema}".package_usage_logs LIMIT 1').fetchone()[0]
    assert set(extra) == {"brand_new_metric"}
    months = {row[0] for row in connection.execute(
        f'SELECT DISTINCT reference_date FROM "{schema}".taxonomy_item_usage')}
    assert months == {LAST_MONTH} and LAST_MONTH == month_before(THIS_MONTH, 1)
