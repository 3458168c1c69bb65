"""The demo: each tap reads its sandbox API through `meltano run` into DuckDB.

Run it with ``scripts/demo``. No credentials and no server to install: the sandboxes
start on free loopback ports inside this process, and the warehouse is the file
``output/warehouse.duckdb``.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import duckdb
import yaml

import isv_sandbox
from isv_sandbox.meltano import meltano_env

#: The Meltano project the demo runs: the working directory (scripts/demo runs from the repository root).
REPO = Path(os.environ.get("MELTANO_PROJECT_ROOT") or Path.cwd()).resolve()
MELTANO = Path(sys.executable).parent / "meltano"


def configured_taps() -> set[str]:
    project = yaml.safe_load((REPO / "meltano.yml").read_text())
    return {plugin["name"] for plugin in project["plugins"]["extractors"]}


def main() -> int:
    output = REPO / "output"
    output.mkdir(exist_ok=True)
    database = output / "warehouse.duckdb"
    database.unlink(missing_ok=True)
    taps = configured_taps()
    timings: dict[str, float] = {}
    for vendor, (_, _, tap) in isv_sandbox.VENDORS.items():
        if tap not in taps:
            continue
        schema = tap.replace("-", "_")
        log = output / f"demo-{tap}.log"
        print(f"==> {tap}: sandbox API -> meltano run {tap} target-duckdb (log: {log.relative_to(REPO)})",
              flush=True)
        started = time.monotonic()
        with isv_sandbox.start(vendor) as server, log.open("w") as log_file:
            run = subprocess.run(  # noqa: S603
                [str(MELTANO), "run", "--full-refresh", "--state-id-suffix", "demo", tap,
                 "target-duckdb"],
                cwd=REPO, env=meltano_env(REPO, tap, server.app.tap_config(), {
                    "TARGET_DUCKDB_FILEPATH": str(database),
                    "TARGET_DUCKDB_DEFAULT_TARGET_SCHEMA": schema}),
                stdout=log_file, stderr=subprocess.STDOUT, check=False,
            )
        timings[tap] = time.monotonic() - started
        if run.returncode != 0:
            print(log.read_text()[-4000:], file=sys.stderr)
            print(f"FAILED: {tap} (exit {run.returncode}); see {log}", file=sys.stderr)
            return run.returncode

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
