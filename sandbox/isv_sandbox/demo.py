"""The demo: each tap reads its sandbox API through `meltano run` into DuckDB.

Run it with ``scripts/demo``. No credentials and no server to install: the sandboxes
start on free loopback ports inside this process, and the warehouse is the file
``output/warehouse.duckdb``.

The three taps run at once, as the nightly jobs do. DuckDB takes one writer at a time,
so each run loads its own file (``output/demo-<tap>.duckdb``) and the tables are then
copied into the warehouse; each run also has its own Meltano system database (an
SQLite file beside it), since three processes writing one SQLite file may find it
locked. The runs are full refreshes: no state is kept from one demo to the next.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import duckdb
import yaml

import isv_sandbox

#: The Meltano project the demo runs: the working directory (scripts/demo runs from the repository root).
REPO = Path(os.environ.get("MELTANO_PROJECT_ROOT") or Path.cwd()).resolve()
MELTANO = Path(sys.executable).parent / "meltano"


def configured_taps() -> set[str]:
    project = yaml.safe_load((REPO / "meltano.yml").read_text())
    return {plugin["name"] for plugin in project["plugins"]["extractors"]}


def meltano_env(tap: str, tap_config: dict, schema: str, database: Path) -> dict[str, str]:
    env = {**os.environ, "MELTANO_CLI_DISABLE_VERSION_CHECK": "true",
           "MELTANO_SEND_ANONYMOUS_USAGE_STATS": "false",
           "MELTANO_DATABASE_URI": f"sqlite:///{database.with_suffix('.meltano.db')}",
           "TARGET_DUCKDB_FILEPATH": str(database),
           "TARGET_DUCKDB_DEFAULT_TARGET_SCHEMA": schema}
    prefix = tap.upper().replace("-", "_")
    for key, value in tap_config.items():
        env[f"{prefix}_{key.upper()}"] = value if isinstance(value, str) else json.dumps(value)
    return env


def main() -> int:
    output = REPO / "output"
    output.mkdir(exist_ok=True)
    database = output / "warehouse.duckdb"
    database.unlink(missing_ok=True)
    taps = configured_taps()
    runs = {}  # tap -> (sandbox, meltano process, its log, its DuckDB file, start time)
    for vendor, (_, _, tap) in isv_sandbox.VENDORS.items():
        if tap not in taps:
            continue
        schema = tap.replace("-", "_")
        log = output / f"demo-{tap}.log"
        own = output / f"demo-{tap}.duckdb"
        for stale in (own, own.with_suffix(".meltano.db")):
            stale.unlink(missing_ok=True)
        print(f"==> {tap}: sandbox API -> meltano run {tap} target-duckdb (log: {log.relative_to(REPO)})",
              flush=True)
        server = isv_sandbox.start(vendor)
        with log.open("w") as log_file:
            process = subprocess.Popen(  # noqa: S603
                [str(MELTANO), "run", "--full-refresh", "--state-id-suffix", "demo", tap,
                 "target-duckdb"],
                cwd=REPO, env=meltano_env(tap, server.app.tap_config(), schema, own),
                stdout=log_file, stderr=subprocess.STDOUT,
            )
        runs[tap] = (server, process, log, own, time.monotonic())
    timings: dict[str, float] = {}
    while len(timings) < len(runs):
        for tap, (_, process, _, _, started) in runs.items():
            if tap not in timings and process.poll() is not None:
                timings[tap] = time.monotonic() - started
        time.sleep(0.05)
    failed = []
    for tap, (server, process, log, _, _) in runs.items():
        server.stop()
        if process.returncode != 0:
            print(log.read_text()[-4000:], file=sys.stderr)
            print(f"FAILED: {tap} (exit {process.returncode}); see {log}", file=sys.stderr)
            failed.append(process.returncode)
    if failed:
        return failed[0]

    with duckdb.connect(str(database)) as warehouse:
        for tap, (_, _, _, own, _) in runs.items():
            schema = tap.replace("-", "_")
            warehouse.execute(f"ATTACH '{own}' AS loaded (READ_ONLY)")
            warehouse.execute(f'CREATE SCHEMA "{schema}"')
            for (table,) in warehouse.execute(
                    "SELECT table_name FROM information_schema.tables "
                    "WHERE table_catalog = 'loaded' AND table_schema = ? ORDER BY table_name",
                    [schema]).fetchall():
                warehouse.execute(f'CREATE TABLE "{schema}"."{table}" AS '
                                  f'SELECT * FROM loaded."{schema}"."{table}"')
            warehouse.execute("DETACH loaded")
    for _, _, _, own, _ in runs.values():
        own.unlink()
        own.with_suffix(".meltano.db").unlink(missing_ok=True)

    print(f"\nLoaded into {database.relative_to(REPO)}:")
    with duckdb.connect(str(database), read_only=True) as db:
        tables = db.execute(
            "SELECT table_schema, table_name FROM information_schema.tables "
            "ORDER BY table_schema, table_name").fetchall()
        width = max((len(f"{s}.{t}") for s, t in tables), default=10)
        for schema, table in tables:
            rows = db.execute(f'SELECT count(*) FROM "{schema}"."{table}"').fetchone()[0]
            print(f"  {f'{schema}.{table}':<{width}}  {rows:>9,} rows")
    for tap, seconds in timings.items():
        print(f"  {tap}: {seconds:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
