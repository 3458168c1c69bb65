"""The marts as a dbt package in a user's own dbt project (docs/transform.md, "In your own
dbt project").

tap-marketplace is loaded into DuckDB and PostgreSQL by Meltano (in a fresh clone); then a
dbt project outside the repository, with the docs' ``packages.yml`` (the local-path form,
pointing at this repository's ``transform/``) and ``vars``, runs ``dbt deps`` and
``dbt build`` with the dbt that scripts/bootstrap installed. Both warehouses must build
every model and test and give the same marts.
"""

from __future__ import annotations

import os
import re
import subprocess
import typing as t
from decimal import Decimal
from pathlib import Path

import pytest

import isv_sandbox
from helpers import REPO
from isv_sandbox.marketplace import MarketplaceSettings
from isv_sandbox.meltano import meltano_env as sandbox_meltano_env
from test_dbt_chain import fresh_clone, meltano
from test_meltano_e2e import PG, postgres_connection

DBT = REPO / ".meltano" / "utilities" / "dbt-postgres" / "venv" / "bin" / "dbt"
SANDBOX = {"licenses": 60, "transactions": 80, "events_per_kind": 5, "feedback": 2,
           "attributions": 2, "reviews_per_app": 1, "members": 1}
AS_OF = MarketplaceSettings.last_day

DBT_PROJECT = f"""\
name: my_analytics
version: "1.0.0"
config-version: 2
profile: my_analytics

vars:
  marketplace_schema: tap_marketplace
  isvapp_schema: tap_isvapp
  heroku_schema: tap_heroku_vendor
  as_of_date: "{AS_OF}"
"""


def profiles(duckdb_file: Path) -> str:
    return f"""\
my_analytics:
  target: duckdb
  outputs:
    duckdb:
      type: duckdb
      path: "{duckdb_file}"
      schema: analytics
    postgres:
      type: postgres
      host: "{PG['host']}"
      port: {PG['port']}
      user: "{PG['user']}"
      password: "{PG.get('password', '')}"
      dbname: "{PG['dbname']}"
      schema: analytics
"""


def dbt(project: Path, *args: str) -> subprocess.CompletedProcess:
    # Only what a user's shell has: none of Meltano's DBT_* variables.
    env = {k: v for k, v in os.environ.items() if not k.startswith("DBT_")}
    return subprocess.run([str(DBT), *args], cwd=project, env=env, capture_output=True,  # noqa: S603
                          text=True, timeout=900, check=False)


def load_marketplace(clone: Path, loader: str, extra: dict[str, str]) -> None:
    with isv_sandbox.start("marketplace", **SANDBOX) as server:
        run = meltano(clone, "run", "--full-refresh", "--state-id-suffix", f"dbt-package-{loader}",
                      "tap-marketplace", loader,
                      env=sandbox_meltano_env(REPO, "tap-marketplace", server.app.tap_config(), extra),
                      timeout=600)
    assert run.returncode == 0, (run.stdout + run.stderr)[-6000:]


def marts(fetch: t.Callable[[str], list[tuple]]) -> dict[str, list[tuple]]:
    def rows(sql: str) -> list[tuple]:
        return sorted(tuple(Decimal(str(v)) if isinstance(v, float) else v for v in row) for row in fetch(sql))
    return {"revenue": rows("select * from analytics.fct_marketplace_revenue_monthly"),
            "mrr": rows("select * from analytics.fct_marketplace_mrr"),
            "licenses": rows("select license_ref, license_state, lifetime_vendor_amount, current_mrr "
                             "from analytics.dim_marketplace_licenses")}


@pytest.mark.e2e
@pytest.mark.postgres
def test_user_project_installs_the_package_and_builds_on_both_warehouses(tmp_path: Path) -> None:
    duckdb = pytest.importorskip("duckdb")
    connection = postgres_connection()
    for schema in ("analytics", "analytics_staging", "analytics_snapshots", "tap_marketplace"):
        connection.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
    clone = fresh_clone(tmp_path / "clone")
    load_marketplace(clone, "target-duckdb", {})
    load_marketplace(clone, "target-postgres", {"TARGET_POSTGRES_DATABASE": PG["dbname"],
                                                "TARGET_POSTGRES_PASSWORD": PG.get("password", "")})

    project = tmp_path / "my_analytics"
    project.mkdir()
    (project / "dbt_project.yml").write_text(DBT_PROJECT)
    (project / "packages.yml").write_text(f"packages:\n  - local: {REPO / 'transform'}\n")
    (project / "profiles.yml").write_text(profiles(clone / "output" / "warehouse.duckdb"))

    deps = dbt(project, "deps")
    assert deps.returncode == 0, deps.stdout[-3000:]
    assert (project / "dbt_packages" / "isv_revenue" / "dbt_project.yml").exists()
    results = {}
    for args in (("build",), ("build", "--target", "postgres")):
        built = dbt(project, *args)
        assert built.returncode == 0, built.stdout[-6000:]
        assert re.search(r"Done\. PASS=[1-9][0-9]* WARN=[0-9]+ ERROR=0 ", built.stdout), built.stdout[-6000:]
    with duckdb.connect(str(clone / "output" / "warehouse.duckdb"), read_only=True) as db:
        results["duckdb"] = marts(lambda sql: db.execute(sql).fetchall())
    results["postgres"] = marts(lambda sql: connection.execute(sql).fetchall())
    assert all(results["duckdb"].values()), {k: len(v) for k, v in results["duckdb"].items()}
    assert results["duckdb"] == results["postgres"]
