"""Loader settings measured on one saved tap output.

Run with ``scripts/benchmark --loaders`` (or ``.venv/bin/python benchmarks/loaders.py``).
The installed tap-isvapp exports ``--rows`` taxonomy_item_usage rows from the sandbox
once; that output (SCHEMA, RECORDs, STATEs) is then fed to the Meltano-installed
target-postgres and target-duckdb with each setting in turn, into an empty table each
time, and every run must load every row. Wall time and the loader's CPU time (its own
and its threads', from wait4) are printed; the PostgreSQL server's own time is only in
the wall figure. Each configuration runs ``--repeat`` times and the fastest is kept
(this machine is shared: the fastest run is the least disturbed one).

Other variants of the same loaders (Meltano Hub lists several per warehouse) are
measured beside them when their executable is given, each installed in a throw-away
venv (``python -m venv /tmp/pw && /tmp/pw/bin/pip install pipelinewise-target-postgres``):
``--pipelinewise-target-postgres /tmp/pw/bin/target-postgres`` (transferwise variant)
and ``--other-target-duckdb PATH`` (e.g. MeltanoLabs/target-duckdb, not on PyPI), with
the settings that match ours (100,000-row batches, metadata columns on for PostgreSQL).
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


def measure_postgres(source: Path, rows: int, repeat: int,
                     pipelinewise: Path | None = None) -> list[tuple[str, float, float, float]]:
    executable = LOADERS / "target-postgres" / "venv" / "bin" / "target-postgres"
    base = {"host": PG["host"], "port": PG["port"], "user": PG["user"], "password": "unused",
            "database": PG["dbname"], "default_target_schema": SCHEMA, **POSTGRES_BEFORE}
    runs = [(f"target-postgres {label}", executable, {**base, **change})
            for label, change in POSTGRES_VARIANTS]
    if pipelinewise:
        # Its own setting names; it never validates, and loads with COPY, then UPDATE and
        # INSERT from a temp table.
        other = {"host": PG["host"], "port": PG["port"], "user": PG["user"], "password": "unused",
                 "dbname": PG["dbname"], "default_target_schema": SCHEMA, "batch_size_rows": 100_000}
        runs += [("pipelinewise-target-postgres, add_metadata_columns: true, batch_size_rows: 100000",
                  pipelinewise, {**other, "add_metadata_columns": True}),
                 ("pipelinewise-target-postgres, add_metadata_columns: false, batch_size_rows: 100000",
                  pipelinewise, other)]
    results = []
    for label, executable, config in runs:
        best = None
        for _ in range(repeat):
            reset_postgres()
            wall, cpu = run_loader(executable, config, source)
            load = os.getloadavg()[0]
            loaded = postgres_rows()
            assert loaded == rows, f"{label}: {loaded} rows loaded of {rows}"
            best = (wall, cpu, load) if best is None or wall < best[0] else best
        print(f"  {label}: {best[0]:.1f} s", file=sys.stderr, flush=True)
        results.append((label, *best))
    reset_postgres()
    return results


def duckdb_rows(executable: Path, database: Path) -> int:
    """Rows loaded, counted with the loader's own duckdb (another variant may bring a
    duckdb whose files this one cannot read)."""
    count = (f"import duckdb; print(duckdb.connect({str(database)!r}, read_only=True)"
             f".execute('SELECT count(*) FROM \"{SCHEMA}\".\"{STREAM}\"').fetchone()[0])")
    return int(subprocess.run([str(executable.parent / "python"), "-c", count],  # noqa: S603
                              capture_output=True, text=True, check=True).stdout)


def measure_duckdb(source: Path, rows: int, repeat: int,
                   other: Path | None = None) -> list[tuple[str, float, float, float]]:
    executable = LOADERS / "target-duckdb" / "venv" / "bin" / "target-duckdb"
    runs = [(f"target-duckdb {label}", executable, change) for label, change in DUCKDB_VARIANTS]
    if other:
        runs.append((f"{other} (same settings: 100,000-row batches)", other, {}))
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        database = Path(tmp, "bench.duckdb")
        base = {"filepath": str(database), "default_target_schema": SCHEMA, "temp_dir": tmp}
        for label, executable, change in runs:
            best = None
            for _ in range(repeat):
                database.unlink(missing_ok=True)
                wall, cpu = run_loader(executable, {**base, **change}, source)
                load = os.getloadavg()[0]
                loaded = duckdb_rows(executable, database)
                assert loaded == rows, f"{label}: {loaded} rows loaded of {rows}"
                best = (wall, cpu, load) if best is None or wall < best[0] else best
            print(f"  {label}: {best[0]:.1f} s", file=sys.stderr, flush=True)
            results.append((label, *best))
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--only", choices=("postgres", "duckdb"))
    parser.add_argument("--pipelinewise-target-postgres", type=Path, metavar="EXECUTABLE")
    parser.add_argument("--other-target-duckdb", type=Path, metavar="EXECUTABLE")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        source = Path(tmp, "tap-output.jsonl")
        seconds = saved_tap_output(args.rows, source)
        print(f"saved tap output: {args.rows:,} rows, {source.stat().st_size / 1e6:.0f} MB "
              f"(tap: {seconds:.1f} s)")
        tables = []
        if args.only in (None, "postgres"):
            tables.append(("into PostgreSQL: target-postgres 0.8.1 (MeltanoLabs)", measure_postgres(
                source, args.rows, args.repeat, args.pipelinewise_target_postgres)))
        if args.only in (None, "duckdb"):
            tables.append(("into DuckDB: target-duckdb 0.8.0 (jwills)", measure_duckdb(
                source, args.rows, args.repeat, args.other_target_duckdb)))
    for title, results in tables:
        print(f"\n| {title}, {args.rows:,} rows | wall | loader CPU | rows/s | load avg (1 min) |")
        print("| --- | ---: | ---: | ---: | ---: |")
        for label, wall, cpu, load in results:
            print(f"| {' '.join(label.split())} | {wall:.1f} s | {cpu:.1f} s | {args.rows / wall:,.0f} "
                  f"| {load:.1f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
