"""The nightly jobs of meltano.yml, run side by side against one PostgreSQL system database.

Two `meltano run <job>` processes start at the same moment, each against its own
sandbox, with Meltano's state and run history in PostgreSQL (MELTANO_DATABASE_URI);
afterwards each job's state must hold its own tap's bookmarks and both runs must be
recorded as successful.
"""

from __future__ import annotations

import json
import os
import subprocess
import typing as t

import pytest
import yaml

import isv_sandbox
from helpers import BIN, REPO
from test_meltano_e2e import PG, meltano, meltano_env, postgres_connection

SYSTEM_SCHEMA = "meltano_system"
SYSTEM_DB_URI = (f"postgresql+psycopg://{PG['user']}@{PG['host']}:{PG['port']}/{PG['dbname']}"
                 f"?options=-csearch_path%3D{SYSTEM_SCHEMA}")

#: job -> (tap, sandbox vendor, small sandbox, streams whose bookmarks the state must hold)
JOBS: dict[str, tuple[str, str, dict[str, t.Any], set[str]]] = {
    "heroku-to-postgres": ("tap-heroku-vendor", "heroku", {"apps": 40, "page_size": 15},
                           {"apps", "app_info"}),
    "marketplace-to-postgres": ("tap-marketplace", "marketplace", {"licenses": 40},
                                {"licenses", "transactions", "feedback", "search_keywords"}),
}


def test_meltano_yml_has_a_job_and_a_schedule_per_tap() -> None:
    project = yaml.safe_load((REPO / "meltano.yml").read_text())
    extractors = project["plugins"]["extractors"]
    taps = {p["name"] for p in extractors if "inherit_from" not in p}
    # A tap's job may run a variant of it (tap-isvapp-batch: BATCH messages).
    variant = {p["inherit_from"]: p["name"] for p in extractors if "inherit_from" in p}
    jobs = {job["name"]: job["tasks"] for job in project["jobs"]}
    assert sorted(task for tasks in jobs.values() for task in tasks) == sorted(
        f"{variant.get(tap, tap)} target-postgres" for tap in taps)
    scheduled = {s["job"]: s["interval"] for s in project["schedules"]}
    assert set(scheduled) == set(jobs)
    assert len(set(scheduled.values())) == 1, "the jobs start together: they share nothing"


@pytest.mark.e2e
@pytest.mark.postgres
def test_two_jobs_at_once_share_one_postgres_system_database() -> None:
    connection = postgres_connection()
    connection.execute(f'DROP SCHEMA IF EXISTS "{SYSTEM_SCHEMA}" CASCADE')
    connection.execute(f'CREATE SCHEMA "{SYSTEM_SCHEMA}"')
    base = {"MELTANO_DATABASE_URI": SYSTEM_DB_URI, "TARGET_POSTGRES_PASSWORD": "postgres"}
    # A new system database is created once (as `meltano upgrade database` does), not
    # by two first runs racing each other.
    upgrade = meltano("upgrade", "database", env={**os.environ, **base})
    assert upgrade.returncode == 0, upgrade.stderr[-3000:]

    servers = {job: isv_sandbox.start(vendor, **settings)
               for job, (_, vendor, settings, _) in JOBS.items()}
    processes = {}
    try:
        for job, (tap, _, _, _) in JOBS.items():
            # meltano.yml's default: one schema per tap, named after its namespace.
            connection.execute(f'DROP SCHEMA IF EXISTS "{tap.replace("-", "_")}" CASCADE')
            env = meltano_env(tap, servers[job].app.tap_config(), base)
            processes[job] = subprocess.Popen(  # noqa: S603
                [str(BIN / "meltano"), "run", job], cwd=REPO, env=env,
                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        outputs = {job: process.communicate(timeout=600)[0] for job, process in processes.items()}
    finally:
        for process in processes.values():
            if process.poll() is None:
                process.kill()
        for server in servers.values():
            server.stop()
    for job, process in processes.items():
        assert process.returncode == 0, f"{job}:\n{outputs[job][-5000:]}"

    runs = connection.execute(
        f'SELECT job_name, state FROM "{SYSTEM_SCHEMA}".runs ORDER BY started_at').fetchall()
    assert sorted(runs) == sorted((f"dev:{tap}-to-target-postgres", "SUCCESS")
                                  for tap, _, _, _ in JOBS.values())
    for job, (tap, _, _, streams) in JOBS.items():
        got = meltano("state", "get", f"dev:{tap}-to-target-postgres",
                      env={**os.environ, **base})
        assert got.returncode == 0, got.stderr[-3000:]
        bookmarks = json.loads(got.stdout)["singer_state"]["bookmarks"]
        assert streams <= set(bookmarks), f"{job}: bookmarks for {sorted(bookmarks)}"
        schema = tap.replace("-", "_")
        for stream in streams:
            rows = connection.execute(f'SELECT count(*) FROM "{schema}"."{stream}"').fetchone()[0]
            assert rows > 0, f"{job}: nothing loaded into {stream}"
