"""Loader settings measured on one saved tap output.

Run with ``scripts/benchmark --loaders`` (or ``.venv/bin/python benchmarks/loaders.py``).
The installed tap-isvapp exports ``--rows`` taxonomy_item_usage rows from the sandbox
once; that output (SCHEMA, RECORDs, STATEs) is then fed to the Meltano-installed
target-postgres and target-duckdb with each setting in turn, into an empty table each
time, and every run must load every row. Wall time and the loader's CPU time (its own
and its threads', from wait4) are printed; the PostgreSQL server's own time is only in
the wall figure. Each configuration runs ``--repeat`` times and the fastest is kept
(this machine is shared: the fastest run is the least disturbed one).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import typing as t
from pathlib import Path

import isv_sandbox

REPO = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
LOADERS = REPO / ".meltano" / "loaders"
PG = {"host": "127.0.0.1", "port": 5432, "user": "postgres",
      "dbname": os.environ.get("TEST_PGDATABASE", "test")}
SCHEMA = "loader_bench"
STREAM = "taxonomy_item_usage"

# meltano.yml's loader config before this measurement (add_record_metadata: true, the
# rest the target's defaults), then one change at a time.
POSTGRES_BEFORE = {"add_record_metadata": True}
POSTGRES_VARIANTS: list[tuple[str, dict[str, t.Any]]] = [
    ("as configured before (validate_records, INSERT, 10,000-row batches)", {}),
    ("validate_records: false", {"validate_records": False}),
    ("validate_records: false, use_copy: true", {"validate_records": False, "use_copy": True}),
    ("  + batch_size_rows: 50000", {"validate_records": False, "use_copy": True,
                                    "batch_size_rows": 50_000}),
    ("  + batch_size_rows: 100000", {"validate_records": False, "use_copy": True,
                                     "batch_size_rows": 100_000}),
    ("  + batch_size_rows: 100000, add_record_metadata: false",
     {"validate_records": False, "use_copy": True, "batch_size_rows": 100_000,
      "add_record_metadata": False, "activate_version": False}),
]
DUCKDB_VARIANTS: list[tuple[str, dict[str, t.Any]]] = [
    ("as configured before (defaults: 100,000-row batches, no validation)", {}),
    ("batch_size_rows: 10000", {"batch_size_rows": 10_000}),
    ("batch_size_rows: 1000000", {"batch_size_rows": 1_000_000}),
    ("validate_records: true", {"validate_records": True}),
    ("add_metadata_columns: true", {"add_metadata_columns": True}),
]


def saved_tap_output(rows: int, path: Path) -> float:
    """The installed tap's output for a ``rows``-row export, written to ``path``."""
    sys.path.insert(0, str(REPO / "benchmarks"))
    from run import catalog_with

    settings = {"export_rows_per_month": rows, "auth_mode": "api_key", "accounts": 5,
                "rate_limit_per_second": 1000, "rate_limit_burst": 1000,
                "export_pending_seconds": 0}
    with isv_sandbox.start("isvapp", **settings) as server, tempfile.TemporaryDirectory() as tmp:
        config = {**server.app.tap_config(), "requests_per_second": 1000}
        Path(tmp, "config.json").write_text(json.dumps(config))
        Path(tmp, "catalog.json").write_text(json.dumps(catalog_with("tap-isvapp", config, STREAM)))
        started = time.perf_counter()
        with path.open("wb") as out:
            subprocess.run([str(BIN / "tap-isvapp"), "--config", f"{tmp}/config.json",  # noqa: S603
                            "--catalog", f"{tmp}/catalog.json"],
                           stdout=out, stderr=subprocess.DEVNULL, check=True)
        return time.perf_counter() - started


def run_loader(executable: Path, config: dict, source: Path) -> tuple[float, float]:
    """(wall seconds, CPU seconds) of one loader run reading ``source`` on stdin."""
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as handle:
        json.dump(config, handle)
    try:
        with source.open("rb") as stdin, tempfile.TemporaryFile() as stderr:
            started = time.perf_counter()
            process = subprocess.Popen([str(executable), "--config", handle.name],  # noqa: S603
                                       stdin=stdin, stdout=subprocess.DEVNULL, stderr=stderr)
            _, status, usage = os.wait4(process.pid, 0)
            wall = time.perf_counter() - started
            if os.waitstatus_to_exitcode(status) != 0:
                stderr.seek(0)
                raise RuntimeError(f"{executable.name} failed: {stderr.read()[-2000:].decode()}")
    finally:
        os.unlink(handle.name)
    return wall, usage.ru_utime + usage.ru_stime


def postgres_rows() -> int:
    import psycopg

    with psycopg.connect(**PG, autocommit=True) as db:
        return db.execute(f'SELECT count(*) FROM "{SCHEMA}"."{STREAM}"').fetchone()[0]


def reset_postgres() -> None:
    import psycopg

    with psycopg.connect(**PG, autocommit=True) as db:
        db.execute(f'DROP SCHEMA IF EXISTS "{SCHEMA}" CASCADE')


def measure_postgres(source: Path, rows: int, repeat: int) -> list[tuple[str, float, float]]:
    executable = LOADERS / "target-postgres" / "venv" / "bin" / "target-postgres"
    base = {"host": PG["host"], "port": PG["port"], "user": PG["user"], "password": "unused",
            "database": PG["dbname"], "default_target_schema": SCHEMA, **POSTGRES_BEFORE}
    results = []
    for label, change in POSTGRES_VARIANTS:
        best = None
        for _ in range(repeat):
            reset_postgres()
            wall, cpu = run_loader(executable, {**base, **change}, source)
            loaded = postgres_rows()
            assert loaded == rows, f"target-postgres {label}: {loaded} rows loaded of {rows}"
            best = (wall, cpu) if best is None or wall < best[0] else best
        print(f"  target-postgres {label}: {best[0]:.1f} s", file=sys.stderr, flush=True)
        results.append((label, *best))
    reset_postgres()
    return results


def measure_duckdb(source: Path, rows: int, repeat: int) -> list[tuple[str, float, float]]:
    import duckdb

    executable = LOADERS / "target-duckdb" / "venv" / "bin" / "target-duckdb"
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        database = Path(tmp, "bench.duckdb")
        base = {"filepath": str(database), "default_target_schema": SCHEMA, "temp_dir": tmp}
        for label, change in DUCKDB_VARIANTS:
            best = None
            for _ in range(repeat):
                database.unlink(missing_ok=True)
                wall, cpu = run_loader(executable, {**base, **change}, source)
                with duckdb.connect(str(database), read_only=True) as db:
                    loaded = db.execute(f'SELECT count(*) FROM "{SCHEMA}"."{STREAM}"').fetchone()[0]
                assert loaded == rows, f"target-duckdb {label}: {loaded} rows loaded of {rows}"
                best = (wall, cpu) if best is None or wall < best[0] else best
            print(f"  target-duckdb {label}: {best[0]:.1f} s", file=sys.stderr, flush=True)
            results.append((label, *best))
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--only", choices=("postgres", "duckdb"))
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        source = Path(tmp, "tap-output.jsonl")
        seconds = saved_tap_output(args.rows, source)
        print(f"saved tap output: {args.rows:,} rows, {source.stat().st_size / 1e6:.0f} MB "
              f"(tap: {seconds:.1f} s)")
        tables = []
        if args.only in (None, "postgres"):
            tables.append(("target-postgres 0.8.1", measure_postgres(source, args.rows, args.repeat)))
        if args.only in (None, "duckdb"):
            tables.append(("target-duckdb 0.8.0", measure_duckdb(source, args.rows, args.repeat)))
    for title, results in tables:
        print(f"\n| {title}, {args.rows:,} rows | wall | loader CPU | rows/s |")
        print("| --- | ---: | ---: | ---: |")
        for label, wall, cpu in results:
            print(f"| {label.strip()} | {wall:.1f} s | {cpu:.1f} s | {args.rows / wall:,.0f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
