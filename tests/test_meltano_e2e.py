"""End to end: the real `meltano run` with real targets from PyPI into real databases.

Each tap runs against its sandbox twice: once directly (what the tap emits) and once
through Meltano into the target; the loaded tables must hold exactly the emitted
rows, one per primary key.
"""

from __future__ import annotations

import json
import os
import subprocess
import typing as t
from pathlib import Path

import pytest

import isv_sandbox
from isv_sandbox.meltano import meltano_env as sandbox_meltano_env
from helpers import BIN, FAST_RETRIES, REPO, run_cli

#: The machine's PostgreSQL; TEST_PGDATABASE picks another database (parallel checkouts).
PG = {"host": "127.0.0.1", "port": 5432, "user": "postgres",
      "dbname": os.environ.get("TEST_PGDATABASE", "test")}

#: tap -> (sandbox vendor, sandbox settings for a small but multi-page data set)
E2E_TAPS: dict[str, tuple[str, dict[str, t.Any]]] = {
    "tap-heroku-vendor": ("heroku", {"apps": 60, "page_size": 25, "deprovisioned_every": 20}),
    "tap-marketplace": ("marketplace", {"licenses": 260, "transactions": 120, "feedback": 60,
                                        "events_per_kind": 55, "reviews_per_app": 60,
                                        "members": 23}),
}


def meltano(*args: str, env: dict[str, str], timeout: float = 900) -> subprocess.CompletedProcess:
    return subprocess.run(  # noqa: S603
        [str(BIN / "meltano"), *args], cwd=REPO, env=env, capture_output=True, text=True,
        timeout=timeout, check=False,
    )


def meltano_env(tap: str, tap_config: dict[str, t.Any], extra: dict[str, str]) -> dict[str, str]:
    """The tap's settings as Meltano's environment variables."""
    return sandbox_meltano_env(REPO, tap, tap_config, {"TARGET_POSTGRES_DATABASE": PG["dbname"], **extra})


def emitted_keys(tap: str, config: dict) -> dict[str, set[tuple]]:
    """Distinct primary keys per stream, from a direct run of the installed tap."""
    discovered = json.loads(run_cli(tap, config, "--discover").stdout)
    key_fields = {s["tap_stream_id"]: s["key_properties"] for s in discovered["streams"]}
    out = run_cli(tap, config)
    assert out.returncode == 0, out.stderr[-3000:]
    return {
        stream: {tuple(json.dumps(r.get(k)) for k in key_fields[stream]) for r in rows}
        for stream, rows in out.records.items()
    }


def postgres_connection():
    psycopg = pytest.importorskip("psycopg")
    try:
        return psycopg.connect(**PG, connect_timeout=3, autocommit=True)
    except psycopg.OperationalError as exc:
        reason = f"no PostgreSQL at {PG['host']}:{PG['port']} (user {PG['user']}, db {PG['dbname']}): {exc}"
        if os.environ.get("REQUIRE_POSTGRES"):
            pytest.fail(f"REQUIRE_POSTGRES is set but {reason}")
        pytest.skip(reason)


@pytest.mark.e2e
@pytest.mark.postgres
@pytest.mark.parametrize("tap", sorted(E2E_TAPS))
def test_meltano_run_into_postgres(tap: str) -> None:
    connection = postgres_connection()
    vendor, settings = E2E_TAPS[tap]
    schema = f"e2e_{tap.replace('-', '_')}"
    with isv_sandbox.start(vendor, **settings) as server:
        config = server.app.tap_config()
        expected = emitted_keys(tap, {**config, **FAST_RETRIES})
        connection.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        run = meltano("run", "--full-refresh", "--state-id-suffix", "e2e", tap, "target-postgres",
                      env=meltano_env(tap, config, {
                          "TARGET_POSTGRES_DEFAULT_TARGET_SCHEMA": schema,
                          # trust auth: the target insists on a password, any will do
                          "TARGET_POSTGRES_PASSWORD": "postgres"}))
    assert run.returncode == 0, run.stderr[-5000:]

    assert expected, "the tap emitted nothing"
    for stream, keys in expected.items():
        count = connection.execute(f'SELECT count(*) FROM "{schema}"."{stream}"').fetchone()[0]
        assert count == len(keys), f"{stream}: {count} rows loaded, {len(keys)} distinct keys emitted"
    if tap == "tap-heroku-vendor":
        apps = server.app.apps
        loaded = {row[0] for row in connection.execute(f'SELECT resource_uuid FROM "{schema}".apps')}
        assert loaded == {a["resource"]["uuid"] for a in apps}
        live = sum(1 for a in apps if not a["_deprovisioned"])
        info = connection.execute(f'SELECT count(*) FROM "{schema}".app_info').fetchone()[0]
        assert info == live
        # meltano.yml leaves customers' connection strings out (selected-by-default: false).
        columns = {row[0] for row in connection.execute(
            "SELECT column_name FROM information_schema.columns WHERE table_schema = %s "
            "AND table_name = 'app_info'", (schema,))}
        assert "region" in columns
        assert not columns & {"config", "log_input_url"}


@pytest.mark.e2e
@pytest.mark.parametrize("tap", sorted(E2E_TAPS))
def test_meltano_run_into_duckdb_keeps_every_row(tap: str, tmp_path: Path) -> None:
    """target-duckdb's COPY sniffs a header: with duckdb 1.1 to 1.3+ it eats the first
    row of some batches. The pinned duckdb must deliver every emitted key."""
    duckdb = pytest.importorskip("duckdb")
    database = tmp_path / "warehouse.duckdb"
    vendor, settings = E2E_TAPS[tap]
    schema = tap.replace("-", "_")
    with isv_sandbox.start(vendor, **settings) as server:
        config = server.app.tap_config()
        expected = emitted_keys(tap, {**config, **FAST_RETRIES})
        run = meltano("run", "--full-refresh", "--state-id-suffix", "e2e", tap, "target-duckdb",
                      env=meltano_env(tap, config, {
                          "TARGET_DUCKDB_FILEPATH": str(database),
                          "TARGET_DUCKDB_DEFAULT_TARGET_SCHEMA": schema}))
    assert run.returncode == 0, run.stderr[-5000:]
    with duckdb.connect(str(database), read_only=True) as db:
        for stream, keys in expected.items():
            count = db.execute(f'SELECT count(*) FROM "{schema}"."{stream}"').fetchone()[0]
            assert count == len(keys), f"{stream}: {count} rows in DuckDB, {len(keys)} keys emitted"
