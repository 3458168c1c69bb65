"""End-to-end benchmark: what a user waits for is `meltano run tap target`.

Run with ``scripts/benchmark --e2e`` (or ``.venv/bin/python benchmarks/e2e.py``). For
each pipeline the same sandbox data set goes through:

- **tap**: the installed tap alone, stdout to /dev/null;
- **pipeline**: the real ``meltano run --full-refresh <tap> <loader>`` of this
  repository's meltano.yml (discovery, the loader's own settings and all) into an empty
  PostgreSQL schema or a new DuckDB file; every record must arrive;
- **floor**: the same records (captured from another tap run, not timed) loaded with the
  database's own bulk path: PostgreSQL ``COPY`` into one jsonb column, DuckDB
  ``read_json`` into a new table;
- **ratio** = pipeline / (tap + floor), all measured in this run.

Then the demo (``isv_sandbox.demo``: three taps into DuckDB, plugins already installed),
timed whole; then the **nightly jobs** of meltano.yml (``<tap>-to-postgres``, every
stream of each tap, Meltano's system database in PostgreSQL as ``tests/test_jobs.py``
sets it up): each job alone, then all of them at once, against sandboxes of the
demo's sizes (ISVapp keeps its two requests per second, so its job takes ~25 s); the
parallel wall time is compared with the slowest single job (target: close to it, not
the sum). Every row carries the 1-minute load average seen while it ran (sampled every
two seconds): this machine is shared.

Nothing here passes or fails a build: the figures are for people.
Options: ``--isvapp-rows`` (1,000,000) and ``--heroku-apps`` (10,000) size the data
sets; ``--quick`` divides both by 10 (the jobs keep their sizes: they are paced, not
big); ``--only`` picks pipelines (``isvapp``, ``heroku``), ``demo`` or ``jobs``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
import typing as t
from dataclasses import dataclass
from pathlib import Path

import yaml

import isv_sandbox
from isv_sandbox.demo import SANDBOX_SETTINGS as DEMO_SANDBOX_SETTINGS
from isv_sandbox.meltano import meltano_env as sandbox_meltano_env

REPO = Path(os.environ.get("MELTANO_PROJECT_ROOT") or Path(__file__).resolve().parent.parent)
BIN = Path(sys.executable).parent
PG = {"host": "127.0.0.1", "port": 5432, "user": "postgres",
      "dbname": os.environ.get("TEST_PGDATABASE", "test")}
SCHEMA = "e2e_bench"
TARGET_RATIO = 3.0


@dataclass
class Source:
    """One tap over one sandbox data set."""

    label: str
    tap: str
    vendor: str
    sandbox: dict[str, t.Any]
    streams: tuple[str, ...]
    #: Tap settings that differ from the sandbox's tap_config().
    tap_settings: dict[str, t.Any]
    #: The variant of the tap with BATCH messages that meltano.yml's job runs, if any.
    batch_tap: str | None = None


def sources(isvapp_rows: int, heroku_apps: int) -> dict[str, Source]:
    return {
        "isvapp": Source(f"ISVapp taxonomy_item_usage, {isvapp_rows:,} rows", "tap-isvapp",
                         "isvapp", {"export_rows_per_month": isvapp_rows, "auth_mode": "api_key",
                                    "accounts": 5, "export_pending_seconds": 0,
                                    "rate_limit_per_second": 1000, "rate_limit_burst": 1000},
                         ("taxonomy_item_usage",), {}, batch_tap="tap-isvapp-batch"),
        "heroku": Source(f"Heroku {heroku_apps:,} apps (apps + app_info)", "tap-heroku-vendor",
                         "heroku", {"apps": heroku_apps, "page_size": 4000,
                                    "pool_capacity": 10**9},
                         ("apps", "app_info"), {}),
    }


# -- running things ----------------------------------------------------------------------


def timed(command: list[str], *, env: dict[str, str] | None = None, stdout: t.Any = subprocess.DEVNULL,
          log: Path | None = None) -> float:
    started = time.perf_counter()
    with (log.open("wb") if log else open(os.devnull, "wb")) as stderr:
        process = subprocess.run(command, cwd=REPO, env=env, stdout=stdout, stderr=stderr,  # noqa: S603
                                 check=False)
    seconds = time.perf_counter() - started
    if process.returncode != 0:
        tail = log.read_text(errors="replace")[-3000:] if log else ""
        raise RuntimeError(f"{command[0]} {' '.join(command[1:3])} failed:\n{tail}")
    return seconds


def catalog_selecting(source: Source, config_path: Path) -> dict:
    catalog = json.loads(subprocess.run(  # noqa: S603
        [str(BIN / source.tap), "--config", str(config_path), "--discover"],
        capture_output=True, check=True).stdout)
    for entry in catalog["streams"]:
        for item in entry["metadata"]:
            if item["breadcrumb"] == []:
                item["metadata"]["selected"] = entry["tap_stream_id"] in source.streams
    return catalog


def meltano_env(source: Source, config: dict, extra: dict[str, str],
                tap: str | None = None) -> dict[str, str]:
    """The tap's config as Meltano's environment variables."""
    tap = tap or source.tap
    return sandbox_meltano_env(REPO, tap, config, {
        "TARGET_POSTGRES_DATABASE": PG["dbname"], "TARGET_POSTGRES_PASSWORD": "postgres",
        f"{tap.upper().replace('-', '_')}__SELECT":
            json.dumps([f"{s}.*" for s in source.streams]), **extra})


def split_records(path: Path, out_dir: Path) -> dict[str, tuple[Path, int]]:
    """The RECORD messages' records, one NDJSON file per stream (what the floor loads)."""
    import orjson

    files: dict[str, t.BinaryIO] = {}
    counts: dict[str, int] = {}
    with path.open("rb") as messages:
        for line in messages:
            if not line.startswith(b'{"type":"RECORD"'):
                continue
            message = orjson.loads(line)
            stream = message["stream"]
            if stream not in files:
                files[stream] = (out_dir / f"{stream}.ndjson").open("wb")
                counts[stream] = 0
            files[stream].write(orjson.dumps(message["record"], option=orjson.OPT_APPEND_NEWLINE))
            counts[stream] += 1
    for handle in files.values():
        handle.close()
    return {stream: (out_dir / f"{stream}.ndjson", count) for stream, count in counts.items()}


# -- the databases ----------------------------------------------------------------------


def pg():
    import psycopg

    return psycopg.connect(**PG, autocommit=True)


def postgres_floor(records: dict[str, tuple[Path, int]]) -> float:
    """COPY every record, as it is, into a jsonb column (CSV with quote and delimiter
    characters JSON never contains unescaped, so nothing is interpreted)."""
    total = 0.0
    with pg() as db:
        db.execute(f'DROP SCHEMA IF EXISTS "{SCHEMA}_floor" CASCADE')
        db.execute(f'CREATE SCHEMA "{SCHEMA}_floor"')
        for stream, (path, count) in records.items():
            table = f'"{SCHEMA}_floor"."{stream}"'
            started = time.perf_counter()
            with db.transaction():
                db.execute(f"CREATE TABLE {table} (record jsonb)")
                with db.cursor().copy(f"COPY {table} FROM STDIN WITH (FORMAT csv, QUOTE e'\\x01', "
                                      f"DELIMITER e'\\x02')") as copy, path.open("rb") as data:
                    while chunk := data.read(1 << 20):
                        copy.write(chunk)
            total += time.perf_counter() - started
            loaded = db.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
            assert loaded == count, f"floor {stream}: {loaded} of {count}"
        db.execute(f'DROP SCHEMA "{SCHEMA}_floor" CASCADE')
    return total


def duckdb_floor(records: dict[str, tuple[Path, int]], workdir: Path) -> float:
    import duckdb

    database = workdir / "floor.duckdb"
    database.unlink(missing_ok=True)
    started = time.perf_counter()
    with duckdb.connect(str(database)) as db:
        for stream, (path, _) in records.items():
            db.execute(f"CREATE TABLE \"{stream}\" AS SELECT * FROM "
                       f"read_json('{path}', format = 'newline_delimited')")
    seconds = time.perf_counter() - started
    with duckdb.connect(str(database), read_only=True) as db:
        for stream, (_, count) in records.items():
            loaded = db.execute(f'SELECT count(*) FROM "{stream}"').fetchone()[0]
            assert loaded == count, f"floor {stream}: {loaded} of {count}"
    database.unlink()
    return seconds


def loaded_postgres(streams: t.Iterable[str]) -> dict[str, int]:
    with pg() as db:
        return {s: db.execute(f'SELECT count(*) FROM "{SCHEMA}"."{s}"').fetchone()[0]
                for s in streams}


def loaded_duckdb(database: Path, streams: t.Iterable[str]) -> dict[str, int]:
    import duckdb

    with duckdb.connect(str(database), read_only=True) as db:
        return {s: db.execute(f'SELECT count(*) FROM "{SCHEMA}"."{s}"').fetchone()[0]
                for s in streams}


# -- the load on this shared machine ------------------------------------------------------


class LoadSampler:
    """The 1-minute load average, sampled every two seconds in a thread; ``span()`` gives
    the lowest and highest seen since a mark."""

    def __init__(self) -> None:
        self.samples: list[float] = []
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)

    def run(self) -> None:
        while True:
            self.samples.append(os.getloadavg()[0])
            if self.stopped.wait(2.0):
                return

    def __enter__(self) -> LoadSampler:
        self.thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stopped.set()
        self.thread.join()

    def mark(self) -> int:
        self.samples.append(os.getloadavg()[0])
        return len(self.samples) - 1

    def span(self, mark: int) -> str:
        self.samples.append(os.getloadavg()[0])
        seen = self.samples[mark:]
        return f"{min(seen):.1f}–{max(seen):.1f}"


LOAD = LoadSampler()


# -- the nightly jobs in parallel --------------------------------------------------------

SYSTEM_SCHEMA = f"{SCHEMA}_meltano_system"
SYSTEM_DB_URI = (f"postgresql+psycopg://{PG['user']}@{PG['host']}:{PG['port']}/{PG['dbname']}"
                 f"?options=-csearch_path%3D{SYSTEM_SCHEMA}")
#: Sandbox sizes for the jobs: the demo's (each job takes seconds, not milliseconds), with
#: more Heroku apps than its default 250 so that job is not start-up alone.
JOB_SANDBOX_SETTINGS = {**DEMO_SANDBOX_SETTINGS, "heroku": {"apps": 2000}}
TAP_VENDORS = {tap: vendor for vendor, (_, _, tap) in isv_sandbox.VENDORS.items()}


def nightly_jobs() -> dict[str, str]:
    """meltano.yml's jobs into PostgreSQL: job name -> its tap."""
    project = yaml.safe_load((REPO / "meltano.yml").read_text())
    jobs = {}
    for job in project.get("jobs", []):
        tap, loader = job["tasks"][0].split()
        if loader == "target-postgres":
            jobs[job["name"]] = tap
    return jobs


def job_schema(tap: str) -> str:
    return f"{SCHEMA}_{tap.replace('-', '_')}"


@dataclass
class JobsRun:
    seconds: dict[str, float]  # job -> wall seconds from the common start to its end
    wall: float
    #: CPU seconds of the `meltano run` processes and everything they ran (taps, loaders),
    #: and of this process, which serves the sandboxes in threads.
    jobs_cpu: float
    sandbox_cpu: float
    load: str = ""


def run_jobs(jobs: dict[str, str], workdir: Path) -> JobsRun:
    """``meltano run --full-refresh <job>`` for every job at the same moment, each against
    its own new sandbox and into its own empty schema."""
    with pg() as db:
        for tap in jobs.values():
            db.execute(f'DROP SCHEMA IF EXISTS "{job_schema(tap)}" CASCADE')
    servers = {job: isv_sandbox.start(TAP_VENDORS[tap], **JOB_SANDBOX_SETTINGS.get(TAP_VENDORS[tap], {}))
               for job, tap in jobs.items()}
    processes: dict[str, tuple[subprocess.Popen, t.BinaryIO]] = {}
    seconds: dict[str, float] = {}
    try:
        mark = LOAD.mark()
        cpu_before = os.times()
        started = time.perf_counter()
        for job, tap in jobs.items():
            env = sandbox_meltano_env(REPO, tap, servers[job].app.tap_config(), {
                "MELTANO_DATABASE_URI": SYSTEM_DB_URI, "TARGET_POSTGRES_PASSWORD": "postgres",
                "TARGET_POSTGRES_DATABASE": PG["dbname"],
                "TARGET_POSTGRES_DEFAULT_TARGET_SCHEMA": job_schema(tap)})
            log = (workdir / f"job-{job}.log").open("wb")
            processes[job] = (subprocess.Popen(  # noqa: S603
                [str(BIN / "meltano"), "run", "--full-refresh", job], cwd=REPO, env=env,
                stdout=log, stderr=subprocess.STDOUT), log)
        while len(seconds) < len(processes):
            for job, (process, _) in processes.items():
                if job not in seconds and process.poll() is not None:
                    seconds[job] = time.perf_counter() - started
            time.sleep(0.05)
        wall = time.perf_counter() - started
        cpu_after = os.times()
        load = LOAD.span(mark)
    finally:
        for process, log in processes.values():
            if process.poll() is None:
                process.kill()
                process.wait()
            log.close()
        for server in servers.values():
            server.stop()
    for job, (process, _) in processes.items():
        if process.returncode != 0:
            tail = (workdir / f"job-{job}.log").read_text(errors="replace")[-3000:]
            raise RuntimeError(f"meltano run {job} failed:\n{tail}")
    with pg() as db:
        for tap in jobs.values():
            tables = db.execute("SELECT table_name FROM information_schema.tables "
                                "WHERE table_schema = %s", [job_schema(tap)]).fetchall()
            assert tables, f"{tap}: nothing loaded"
            db.execute(f'DROP SCHEMA "{job_schema(tap)}" CASCADE')
    return JobsRun(seconds, wall,
                   jobs_cpu=(cpu_after.children_user + cpu_after.children_system
                             - cpu_before.children_user - cpu_before.children_system),
                   sandbox_cpu=cpu_after.user + cpu_after.system - cpu_before.user - cpu_before.system,
                   load=load)


@dataclass
class JobsResult:
    alone: dict[str, JobsRun]
    parallel: JobsRun

    @property
    def slowest(self) -> float:
        return max(run.wall for run in self.alone.values())

    @property
    def total(self) -> float:
        return sum(run.wall for run in self.alone.values())


def measure_jobs(workdir: Path) -> JobsResult:
    jobs = nightly_jobs()
    with pg() as db:
        db.execute(f'DROP SCHEMA IF EXISTS "{SYSTEM_SCHEMA}" CASCADE')
        db.execute(f'CREATE SCHEMA "{SYSTEM_SCHEMA}"')
    upgrade = subprocess.run([str(BIN / "meltano"), "upgrade", "database"], cwd=REPO,  # noqa: S603
                             env={**os.environ, "MELTANO_DATABASE_URI": SYSTEM_DB_URI,
                                  "MELTANO_CLI_DISABLE_VERSION_CHECK": "true",
                                  "MELTANO_SEND_ANONYMOUS_USAGE_STATS": "false"},
                             capture_output=True, text=True, check=False)
    if upgrade.returncode != 0:
        raise RuntimeError(f"meltano upgrade database failed:\n{upgrade.stderr[-3000:]}")
    alone = {}
    for job, tap in jobs.items():
        print(f"... nightly job {job} alone", file=sys.stderr, flush=True)
        alone[job] = run_jobs({job: tap}, workdir)
    print(f"... nightly jobs {', '.join(jobs)} at once", file=sys.stderr, flush=True)
    result = JobsResult(alone, run_jobs(jobs, workdir))
    with pg() as db:
        db.execute(f'DROP SCHEMA "{SYSTEM_SCHEMA}" CASCADE')
    return result


def print_jobs(result: JobsResult) -> None:
    cores = os.cpu_count() or 1
    print("\n| nightly jobs (`meltano run --full-refresh <job>`, system database in PostgreSQL) "
          "| wall | CPU: jobs + sandboxes | load avg (1 min) |")
    print("| --- | ---: | ---: | --- |")
    for job, run in result.alone.items():
        print(f"| {job} alone | {run.wall:.1f} s | {run.jobs_cpu:.1f} s + {run.sandbox_cpu:.1f} s "
              f"| {run.load} |")
    cpu = sum(run.jobs_cpu + run.sandbox_cpu for run in result.alone.values())
    print(f"| sum of the jobs alone | {result.total:.1f} s | {cpu:.1f} s "
          f"(÷ {cores} cores = {cpu / cores:.1f} s) | |")
    print(f"| slowest job alone | {result.slowest:.1f} s | | |")
    parallel = result.parallel
    each = ", ".join(f"{job.split('-to-')[0]} {seconds:.1f} s" for job, seconds in parallel.seconds.items())
    print(f"| the {len(parallel.seconds)} jobs at once (each ends after: {each}) | {parallel.wall:.1f} s "
          f"| {parallel.jobs_cpu:.1f} s + {parallel.sandbox_cpu:.1f} s | {parallel.load} |")
    print(f"| ratio at once / slowest alone (target: close to 1; the sum would be "
          f"{result.total / result.slowest:.2f}) | {parallel.wall / result.slowest:.2f} | | |")


# -- the measurements ---------------------------------------------------------------------


@dataclass
class Row:
    pipeline: str
    tap: float
    run: float
    floor: float
    floor_how: str
    load: str = ""

    @property
    def ratio(self) -> float:
        return self.run / (self.tap + self.floor)


def measure(source: Source, workdir: Path) -> list[Row]:
    rows = []
    with isv_sandbox.start(source.vendor, **source.sandbox) as server:
        # What Meltano passes on is what the tap alone gets too.
        config = {**server.app.tap_config(), **source.tap_settings}
        config_path = workdir / "config.json"
        config_path.write_text(json.dumps(config))
        catalog_path = workdir / "catalog.json"
        catalog_path.write_text(json.dumps(catalog_selecting(source, config_path)))
        tap_command = [str(BIN / source.tap), "--config", str(config_path),
                       "--catalog", str(catalog_path)]

        print(f"... {source.label}: tap alone", file=sys.stderr, flush=True)
        mark = LOAD.mark()
        tap_seconds = timed(tap_command, log=workdir / "tap.log")
        captured = workdir / "tap-output.jsonl"
        with captured.open("wb") as out:
            timed(tap_command, stdout=out, log=workdir / "tap.log")
        records = split_records(captured, workdir)
        captured.unlink()
        expected = {stream: count for stream, (_, count) in records.items()}
        assert set(expected) == set(source.streams), f"{source.tap} emitted {sorted(expected)}"

        print(f"... {source.label}: meltano run into target-postgres", file=sys.stderr, flush=True)
        with pg() as db:
            db.execute(f'DROP SCHEMA IF EXISTS "{SCHEMA}" CASCADE')
        run_pg = timed(
            [str(BIN / "meltano"), "run", "--full-refresh", "--state-id-suffix", "bench",
             source.tap, "target-postgres"],
            env=meltano_env(source, config, {"TARGET_POSTGRES_DEFAULT_TARGET_SCHEMA": SCHEMA}),
            log=workdir / "meltano-postgres.log")
        assert loaded_postgres(source.streams) == expected, "target-postgres lost records"
        with pg() as db:
            db.execute(f'DROP SCHEMA "{SCHEMA}" CASCADE')
        floor_pg = postgres_floor(records)
        rows.append(Row(f"{source.label} → target-postgres", tap_seconds, run_pg, floor_pg,
                        "COPY into jsonb", LOAD.span(mark)))
        if source.batch_tap:
            print(f"... {source.label}: meltano run {source.batch_tap} (BATCH) into "
                  "target-postgres", file=sys.stderr, flush=True)
            mark = LOAD.mark()
            with pg() as db:
                db.execute(f'DROP SCHEMA IF EXISTS "{SCHEMA}" CASCADE')
            run_batch = timed(
                [str(BIN / "meltano"), "run", "--full-refresh", "--state-id-suffix", "bench",
                 source.batch_tap, "target-postgres"],
                env=meltano_env(source, config, {"TARGET_POSTGRES_DEFAULT_TARGET_SCHEMA": SCHEMA},
                                tap=source.batch_tap),
                log=workdir / "meltano-postgres-batch.log")
            assert loaded_postgres(source.streams) == expected, "target-postgres lost records (BATCH)"
            with pg() as db:
                db.execute(f'DROP SCHEMA "{SCHEMA}" CASCADE')
            rows.append(Row(f"{source.label} → target-postgres, BATCH messages "
                            f"(`{source.batch_tap}`, the shipped job)", tap_seconds, run_batch,
                            floor_pg, "COPY into jsonb", LOAD.span(mark)))

        print(f"... {source.label}: meltano run into target-duckdb", file=sys.stderr, flush=True)
        mark = LOAD.mark()
        database = workdir / "warehouse.duckdb"
        run_duck = timed(
            [str(BIN / "meltano"), "run", "--full-refresh", "--state-id-suffix", "bench",
             source.tap, "target-duckdb"],
            env=meltano_env(source, config, {"TARGET_DUCKDB_FILEPATH": str(database),
                                             "TARGET_DUCKDB_DEFAULT_TARGET_SCHEMA": SCHEMA}),
            log=workdir / "meltano-duckdb.log")
        assert loaded_duckdb(database, source.streams) == expected, "target-duckdb lost records"
        database.unlink()
        floor_duck = duckdb_floor(records, workdir)
        rows.append(Row(f"{source.label} → target-duckdb", tap_seconds, run_duck, floor_duck,
                        "read_json", LOAD.span(mark)))
    for path, _ in records.values():
        path.unlink()
    return rows


def demo_seconds(workdir: Path) -> tuple[float, str]:
    print("... demo", file=sys.stderr, flush=True)
    mark = LOAD.mark()
    return timed([str(BIN / "python"), "-m", "isv_sandbox.demo"], log=workdir / "demo.log",
                 env={**os.environ, "MELTANO_PROJECT_ROOT": str(REPO)}), LOAD.span(mark)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--isvapp-rows", type=int, default=1_000_000)
    parser.add_argument("--heroku-apps", type=int, default=10_000)
    parser.add_argument("--quick", action="store_true", help="data sets 10x smaller")
    parser.add_argument("--only", action="append", choices=("isvapp", "heroku", "demo", "jobs"), default=[])
    args = parser.parse_args(argv)
    scale = 10 if args.quick else 1
    wanted = set(args.only or ("isvapp", "heroku", "demo", "jobs"))
    rows: list[Row] = []
    demo = jobs = None
    with tempfile.TemporaryDirectory() as tmp, LOAD:
        workdir = Path(tmp)
        for name, source in sources(args.isvapp_rows // scale, args.heroku_apps // scale).items():
            if name in wanted:
                rows.extend(measure(source, workdir))
        if "demo" in wanted:
            demo = demo_seconds(workdir)
        if "jobs" in wanted:
            jobs = measure_jobs(workdir)

    if rows or demo:
        print(f"| pipeline | tap alone | `meltano run` | floor | ratio run / (tap + floor) | "
              f"target ≤ {TARGET_RATIO:g} | load avg (1 min) |")
        print("| --- | ---: | ---: | ---: | ---: | --- | --- |")
    for row in rows:
        print(f"| {row.pipeline} | {row.tap:.1f} s | {row.run:.1f} s | {row.floor:.1f} s "
              f"({row.floor_how}) | {row.ratio:.1f} | "
              f"{'ok' if row.ratio <= TARGET_RATIO else 'MISSED'} | {row.load} |")
    if demo is not None:
        print(f"| demo (`scripts/demo`: three taps into DuckDB, plugins installed) | | "
              f"{demo[0]:.1f} s | | | | {demo[1]} |")
    if jobs is not None:
        print_jobs(jobs)
    return 0


if __name__ == "__main__":
    sys.exit(main())
