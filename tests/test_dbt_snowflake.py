"""The marts on Snowflake, as a smoke test: dbt-snowflake against a local fakesnow server.

The three taps (the installed wheel's executables) run against their sandboxes; their
Singer messages are written into fakesnow the way MeltanoLabs target-snowflake writes
them (tests/snowflake_client.py: upper-case column names, VARIANT objects and arrays,
DATE, TIMESTAMP_NTZ, DOUBLE), and `dbt build --target snowflake` runs in a copy of
transform/ exactly as docs/transform.md ("Snowflake") shows it. The marts must then hold
the figures tests/test_dbt_chain.py computes in Python from the sandbox's own rows, the
same check PostgreSQL and DuckDB pass. target-snowflake itself cannot run here: it
loads through a stage (PUT and COPY INTO), which fakesnow does not emulate. What this
proves and what it does not: docs/transform.md, "Snowflake".

dbt-snowflake and fakesnow live in .venv-snowflake (git-ignored, made here on the first
run, about a minute), apart from the dbt that Meltano installs for PostgreSQL and DuckDB.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import pickle
import re
import shutil
import socket
import subprocess
import sys
import time
import typing as t
from pathlib import Path

import pytest
import yaml

import isv_sandbox
from helpers import BIN, REPO
from test_dbt_chain import AS_OF, REPORT_DAYS, SANDBOXES, check_marts

#: dbt-core pinned to the release Meltano's dbt utilities use; without the pin pip takes
#: a dbt-core that downloads a parser binary at install time.
PINS = ("dbt-core==1.11.16", "dbt-snowflake==1.12.4", "fakesnow[server]==0.12.1")
VENV = REPO / ".venv-snowflake"
CLIENT = Path(__file__).with_name("snowflake_client.py")
#: docs/transform.md's Snowflake command, as written there (run in transform/).
DOCUMENTED_BUILD = "dbt build --target snowflake"


def snowflake_venv() -> Path:
    stamp = VENV / (".installed-" + hashlib.sha1(" ".join(PINS).encode()).hexdigest()[:12])  # noqa: S324
    if not stamp.exists():
        shutil.rmtree(VENV, ignore_errors=True)
        subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)  # noqa: S603
        subprocess.run([str(VENV / "bin" / "python"), "-m", "pip", "install", "--quiet", *PINS],  # noqa: S603
                       check=True, timeout=900)
        stamp.touch()
    return VENV


@pytest.fixture
def fakesnow_port(tmp_path: Path) -> t.Iterator[int]:
    """A fakesnow server on loopback (in-memory: every connection shares its databases),
    with SUM and AVG left exact (tests/snowflake_client.py, serve)."""
    venv = snowflake_venv()
    with contextlib.closing(socket.socket()) as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    log = (tmp_path / "fakesnow.log").open("w")
    server = subprocess.Popen([str(venv / "bin" / "python"), str(CLIENT), "serve", str(port)],  # noqa: S603
                              stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 60
        while True:
            with contextlib.closing(socket.socket()) as attempt:
                if attempt.connect_ex(("127.0.0.1", port)) == 0:
                    break
            assert server.poll() is None and time.monotonic() < deadline, (tmp_path / "fakesnow.log").read_text()
            time.sleep(0.1)
        yield port
    finally:
        server.terminate()
        server.wait(timeout=30)
        log.close()


def client(port: int, *args: str, stdin: str | None = None) -> bytes:
    run = subprocess.run([str(VENV / "bin" / "python"), str(CLIENT), *args], input=stdin.encode() if stdin else None,  # noqa: S603
                         capture_output=True, env={**os.environ, "FAKESNOW_PORT": str(port)}, timeout=600, check=False)
    assert run.returncode == 0, run.stderr.decode()[-4000:]
    return run.stdout


def source_tables() -> dict[str, set[str]]:
    """The tap tables dbt reads, per source (the staging layer's _sources.yml)."""
    tables: dict[str, set[str]] = {}
    for path in (REPO / "transform" / "models" / "staging").glob("*/_sources.yml"):
        for source in yaml.safe_load(path.read_text())["sources"]:
            tables[source["name"]] = {table["name"] for table in source["tables"]}
    return tables


def load_taps(port: int, tmp_path: Path) -> None:
    """Each tap's records of the streams dbt reads, as target-snowflake would write them,
    into TAP_<NAME>."""
    sources = source_tables()
    for vendor in ("marketplace", "isvapp", "heroku"):
        tap = isv_sandbox.VENDORS[vendor][2]
        with isv_sandbox.start(vendor, **SANDBOXES[vendor]) as server:
            config = tmp_path / f"{tap}.json"
            # The Marketplace reports from where the chain's sandbox starts them, as the
            # chain's tap asks (its check_reconciliation compares every settled month).
            history = {"report_history_days": REPORT_DAYS} if vendor == "marketplace" else {}
            config.write_text(json.dumps({**server.app.tap_config(), **history}))
            discovered = subprocess.run([str(BIN / tap), "--config", str(config), "--discover"],  # noqa: S603
                                        capture_output=True, text=True, timeout=300, check=True)
            catalog = json.loads(discovered.stdout)
            for stream in catalog["streams"]:
                for entry in stream["metadata"]:
                    if entry["breadcrumb"] == []:
                        entry["metadata"]["selected"] = stream["tap_stream_id"] in sources[vendor]
            (tmp_path / f"{tap}-catalog.json").write_text(json.dumps(catalog))
            run = subprocess.run([str(BIN / tap), "--config", str(config),  # noqa: S603
                                  "--catalog", str(tmp_path / f"{tap}-catalog.json")],
                                 capture_output=True, text=True, timeout=600, check=False)
        assert run.returncode == 0, run.stderr[-4000:]
        streams = {json.loads(line)["stream"] for line in run.stdout.splitlines()
                   if line.startswith('{"type":"SCHEMA"') or line.startswith('{"type": "SCHEMA"')}
        # A source table the sandbox's tap does not emit (another mode's stream) stays
        # unloaded: its staging model is then an empty stand-in, as on the other warehouses.
        assert streams and streams <= sources.get(vendor, set()), (vendor, streams)
        client(port, "load", tap.replace("-", "_").upper(), stdin=run.stdout)


@pytest.mark.e2e
def test_marts_on_snowflake_with_fakesnow(fakesnow_port: int, tmp_path: Path) -> None:
    load_taps(fakesnow_port, tmp_path)
    project = tmp_path / "transform"
    shutil.copytree(REPO / "transform", project, ignore=shutil.ignore_patterns("target", "logs", "dbt_packages"))
    env = {**os.environ, "PATH": f"{VENV / 'bin'}{os.pathsep}{os.environ['PATH']}",
           "DBT_SNOWFLAKE_ACCOUNT": "fakesnow", "DBT_SNOWFLAKE_USER": "fake", "DBT_SNOWFLAKE_PASSWORD": "snow",
           "DBT_SNOWFLAKE_DATABASE": "ISV", "DBT_SNOWFLAKE_HOST": "127.0.0.1",
           "DBT_SNOWFLAKE_PORT": str(fakesnow_port), "DBT_SNOWFLAKE_PROTOCOL": "http",
           "DBT_AS_OF_DATE": AS_OF.isoformat()}
    env = {name: value for name, value in env.items() if name not in ("DBT_PROFILES_DIR", "DBT_PROJECT_DIR", "DBT_TARGET")}
    built = subprocess.run(DOCUMENTED_BUILD.split(), cwd=project, env=env, capture_output=True, text=True,  # noqa: S603
                           timeout=900, check=False)
    output = built.stdout + built.stderr
    assert built.returncode == 0, output[-8000:]
    # The sandbox's transactions and events mostly name licenses it does not export:
    # the relationship tests warn, as on PostgreSQL and DuckDB; nothing errs.
    assert re.search(r"Done\. PASS=[1-9][0-9]* WARN=[0-9]+ ERROR=0 ", output), output[-8000:]

    # The sources' freshness queries run too (Marketplace's names LASTUPDATED there): every
    # source with a threshold gets a verdict, whichever it is (the sandbox's dates are fixed,
    # so its Marketplace rows are stale by now and the command exits non-zero for that).
    freshness = subprocess.run(["dbt", "source", "freshness", "--target", "snowflake"], cwd=project, env=env,  # noqa: S607
                               capture_output=True, text=True, timeout=300, check=False)
    verdicts = re.findall(r"\d+ of (\d+) (?:PASS|WARN|ERROR STALE) freshness of (\S+)", freshness.stdout)
    assert verdicts and len(verdicts) == int(verdicts[0][0]) >= 5, freshness.stdout[-6000:]

    def fetch(sql: str) -> list[tuple]:
        return pickle.loads(client(fakesnow_port, "query", sql))  # noqa: S301 - our own child process

    # Upper-case raw columns were resolved: the staged camelCase fields are not empty.
    filled = fetch("select count(*), count(addon_key), count(company), count(sale_date), count(vendor_amount) "
                   "from analytics_staging.stg_marketplace__transactions")[0]
    assert filled[0] == SANDBOXES["marketplace"]["transactions"] and all(filled[1:]), filled
    check_marts(fetch, "analytics")
    snapshot_rows = fetch("select count(*) from analytics_snapshots.snap_marketplace__transactions")[0][0]
    assert snapshot_rows == SANDBOXES["marketplace"]["transactions"]
