"""A warehouse for the dbt scenario tests: tables written the way a loader writes them,
then `dbt build` of transform/ as a user's project runs it (its profiles, the package's
vars), in schemas of the test's own so it meets no other test's tables."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from helpers import REPO
from test_meltano_e2e import PG, postgres_connection

#: The dbt that Meltano installs for dbt-postgres and dbt-duckdb (scripts/bootstrap).
DBT = REPO / ".meltano" / "utilities" / "dbt-postgres" / "venv" / "bin" / "dbt"


class ScenarioWarehouse:
    """DuckDB or PostgreSQL: runs SQL (``?`` placeholders) and dbt against it; the marts go
    to the schema `marts` (staging and snapshots to `<marts>_staging` / `_snapshots`)."""

    def __init__(self, kind: str, tmp_path: Path, marts: str) -> None:
        self.kind, self.work, self.marts = kind, tmp_path, marts
        if kind == "duckdb":
            self.duckdb = pytest.importorskip("duckdb")
            self.path = tmp_path / "warehouse.duckdb"
        else:
            self.connection = postgres_connection()

    def run(self, sql: str, params: list | None = None, *, read: bool = False) -> list[tuple]:
        if self.kind == "duckdb":
            with self.duckdb.connect(str(self.path)) as db:
                result = db.execute(sql, params or [])
                return result.fetchall() if read else []
        cursor = self.connection.execute(sql.replace("?", "%s"), params or None)
        return cursor.fetchall() if read else []

    def json(self) -> str:
        """The type the loader writes an object or array as."""
        return "json" if self.kind == "duckdb" else "jsonb"

    def timestamp(self) -> str:
        """The type the loader writes a date-time as (target-duckdb: text)."""
        return "text" if self.kind == "duckdb" else "timestamp"

    def dbt_build(self, select: list[str], dbt_vars: dict[str, str], *,
                  cautious: bool = False) -> subprocess.CompletedProcess:
        """`dbt build --select …` with the package's vars; it must exit 0. cautious: only
        the tests of the selected models (a test that also reads an unselected model is
        left out)."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("DBT_")}
        env.update(DBT_PROFILES_DIR=str(REPO / "transform"), DBT_TARGET=self.kind)
        if self.kind == "duckdb":
            env.update(DBT_DUCKDB_PATH=str(self.path), DBT_DUCKDB_SCHEMA=self.marts)
        else:
            env.update(DBT_POSTGRES_DBNAME=PG["dbname"], DBT_POSTGRES_SCHEMA=self.marts)
        selection = ["--indirect-selection", "cautious"] if cautious else []
        run = subprocess.run(  # noqa: S603
            [str(DBT), "build", "--select", *select, *selection,
             "--target-path", str(self.work / "target"), "--log-path", str(self.work / "logs"),
             "--vars", json.dumps(dbt_vars)],
            cwd=REPO / "transform", env=env, capture_output=True, text=True, timeout=600, check=False)
        assert run.returncode == 0, run.stdout[-6000:]
        return run
