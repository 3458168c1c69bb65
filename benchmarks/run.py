"""Benchmark: export throughput against the raw floor, memory, child scaling, throttling.

Run with ``scripts/benchmark`` (or ``.venv/bin/python benchmarks/run.py``). It builds
sandbox data sets, runs the INSTALLED console scripts with stdout to /dev/null, and
prints one table. Nothing here passes or fails a build: the figures are for people.

Options: ``--quick`` uses data sets 10x smaller (a smoke run, minutes instead of ~15).

Each figure that has a stored counterpart in ``benchmarks/baseline.json`` (the previous
release's, measured on this machine) is printed beside it, and one that is more than 10 %
worse is flagged ``REGRESSED``. The figures compared are the ones measured against
something in the same run (tap / floor ratios) or not timed at all (peak RSS), since
seconds on a shared machine vary more than that. ``--save-baseline FILE`` writes this
run's figures in that file's format.
"""

from __future__ import annotations

import argparse
import gzip
import io
import json
import os
import subprocess
import sys
import tempfile
import time
import typing as t
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import orjson
import requests

import isv_sandbox

BIN = Path(sys.executable).parent


@dataclass
class Row:
    measure: str
    value: str
    target: str
    verdict: str
    #: The figure compared with the baseline's (lower is better); None: not compared.
    figure: float | None = None


BASELINE = Path(__file__).with_name("baseline.json")
#: A figure this much worse than the baseline's is flagged.
REGRESSION = 0.10


@dataclass
class ProcessRun:
    seconds: float
    max_rss_mb: float
    returncode: int
    stdout: bytes
    #: CPU seconds of the tap process (user + system): steadier than wall on a busy machine.
    cpu_seconds: float = 0.0


def run_tap(executable: str, config: dict, *args: str, capture: bool = False,
            stderr: t.Any = subprocess.DEVNULL) -> ProcessRun:
    """Run an installed tap with stdout to /dev/null (or a file, to read it after).

    Peak RSS is the kernel's high-water mark of the tap process itself (VmHWM), sampled
    until it exits: rusage would also count this process's pages shared at fork.
    """
    with tempfile.TemporaryDirectory() as tmp:
        config_path = Path(tmp, "config.json")
        config_path.write_text(json.dumps(config))
        stdout_path = Path(tmp, "stdout")
        with (stdout_path.open("wb") if capture else open(os.devnull, "wb")) as out:
            started = time.perf_counter()
            process = subprocess.Popen(  # noqa: S603
                [str(BIN / executable), "--config", str(config_path), *args],
                stdout=out, stderr=stderr,
            )
            peak_kb = 0
            while True:
                peak_kb = max(peak_kb, _peak_rss_kb(process.pid))
                pid, status, usage = os.wait4(process.pid, os.WNOHANG)
                if pid:
                    break
                time.sleep(0.02)
            seconds = time.perf_counter() - started
            process.returncode = os.waitstatus_to_exitcode(status)
        stdout = stdout_path.read_bytes() if capture else b""
    return ProcessRun(seconds, peak_kb / 1024, process.returncode, stdout,
                      usage.ru_utime + usage.ru_stime)


def _peak_rss_kb(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/status", "rb") as status:
            for line in status:
                if line.startswith(b"VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def raw_floor(payload: bytes, stream: str, parse: t.Callable[[t.BinaryIO], t.Iterable[dict]]
              ) -> tuple[float, float]:
    """Wall and CPU seconds of a plain loop: decompress, parse, write RECORD lines with orjson."""
    option = orjson.OPT_APPEND_NEWLINE
    now = datetime.now(timezone.utc)
    with open(os.devnull, "wb") as devnull:
        started, started_cpu = time.perf_counter(), time.process_time()
        for record in parse(io.BytesIO(payload)):
            devnull.write(orjson.dumps(
                {"type": "RECORD", "stream": stream, "record": record, "time_extracted": now},
                option=option))
        return time.perf_counter() - started, time.process_time() - started_cpu


def gzip_ndjson(fileobj: t.BinaryIO) -> t.Iterator[dict]:
    for line in io.BufferedReader(gzip.GzipFile(fileobj=fileobj), 1 << 20):
        yield orjson.loads(line)


def json_array(fileobj: t.BinaryIO) -> t.Iterator[dict]:
    import ijson

    yield from ijson.items(fileobj, "item", use_float=True)


def verdict(ok: bool) -> str:
    return "ok" if ok else "MISSED"


# -- the measurements ------------------------------------------------------------------


def heroku_child_scaling(small: int, large: int) -> list[Row]:
    runs = {}
    for apps in (small, large):
        with isv_sandbox.start("heroku", apps=apps, page_size=4000, pool_capacity=10**9) as server:
            run = run_tap("tap-heroku-vendor", server.app.tap_config(), capture=True)
        assert run.returncode == 0, f"tap-heroku-vendor failed on {apps} apps"
        states = [line for line in run.stdout.splitlines() if line.startswith(b'{"type":"STATE"')]
        runs[apps] = (run.seconds, len(states[-1]))
    ratio = runs[large][0] / runs[small][0]
    scale = large / small
    return [
        Row(f"heroku app_info, {small:,} apps", f"{runs[small][0]:.1f} s", "", ""),
        Row(f"heroku app_info, {large:,} apps", f"{runs[large][0]:.1f} s", "", ""),
        Row(f"  time ratio ({scale:g}x the apps)", f"{ratio:.1f}", f"< {1.2 * scale:g} (linear)",
            verdict(ratio < 1.2 * scale), figure=round(ratio, 2)),
        Row("  final STATE", f"{runs[large][1]:,} bytes", "< 10 KB", verdict(runs[large][1] < 10_240),
            figure=runs[large][1]),
    ]


MEASUREMENTS: list[t.Callable[[bool], list[Row]]] = []


def measurement(func: t.Callable[[bool], list[Row]]) -> t.Callable[[bool], list[Row]]:
    MEASUREMENTS.append(func)
    return func


@measurement
def heroku(quick: bool) -> list[Row]:
    return heroku_child_scaling(100 if quick else 1000, 1000 if quick else 10000)


def records_emitted(stderr: bytes) -> int:
    """Records from the tap's own METRIC lines (stdout went to /dev/null)."""
    total = 0
    for line in stderr.splitlines():
        if b'"metric":"record_count"' in line:
            total += json.loads(line[line.index(b"{"):])["value"]
    return total


def run_export(executable: str, config: dict, catalog: dict) -> tuple[ProcessRun, int]:
    with tempfile.TemporaryDirectory() as tmp:
        catalog_path = Path(tmp, "catalog.json")
        catalog_path.write_text(json.dumps(catalog))
        stderr_path = Path(tmp, "stderr.log")
        with stderr_path.open("wb") as stderr:
            run = run_tap(executable, {**config, "log_metrics": True}, "--catalog",
                          str(catalog_path), stderr=stderr)
        return run, records_emitted(stderr_path.read_bytes())


def catalog_with(executable: str, config: dict, stream: str) -> dict:
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as handle:
        json.dump(config, handle)
    catalog = json.loads(subprocess.run(  # noqa: S603
        [str(BIN / executable), "--config", handle.name, "--discover"],
        capture_output=True, check=True).stdout)
    os.unlink(handle.name)
    for entry in catalog["streams"]:
        for item in entry["metadata"]:
            if item["breadcrumb"] == []:
                item["metadata"]["selected"] = entry["tap_stream_id"] == stream
    return catalog


def downloaded_payloads(server: t.Any, path_regex: str, auth: t.Any) -> list[bytes]:
    """The export files the tap downloaded, fetched again for the floor loop."""
    import re

    paths = [r for r in server.requests if re.search(path_regex, r.path) and r.status == 200]
    return [requests.get(f"{server.url}{r.path}", params=r.query, auth=auth, timeout=600).content
            for r in paths]


ISVAPP_METRICS = ("unique_users", "unique_users_external", "unique_users_internal",
                  "operations", "operations_external", "operations_internal")


def isvapp_rows(fileobj: t.BinaryIO) -> t.Iterator[dict]:
    for row in gzip_ndjson(fileobj):
        for name in ISVAPP_METRICS:
            row[name] = int(row[name])
        yield row


def license_rows(fileobj: t.BinaryIO) -> t.Iterator[dict]:
    for row in json_array(fileobj):
        row["license_key"] = (row.get("appEntitlementNumber") or row.get("licenseId")
                              or f"SEN-{row.get('addonLicenseId')}")
        yield row


def throughput_rows(label: str, run: ProcessRun, records: int, floor: list[tuple[float, float]],
                    floor_records: int) -> list[Row]:
    """Wall and CPU against the floor's. The CPU ratio is the one compared with the
    baseline: the tap's CPU seconds (start-up included) against the loop's, which
    moves less with the machine's load than wall does."""
    floor_seconds = sum(wall for wall, _ in floor)
    floor_cpu = sum(cpu for _, cpu in floor)
    tap_rate = records / run.seconds
    floor_rate = floor_records / floor_seconds
    ratio = floor_rate / tap_rate
    cpu_ratio = (run.cpu_seconds / records) / (floor_cpu / floor_records)
    return [
        Row(f"{label}: tap", f"{tap_rate:,.0f} rec/s ({records:,} in {run.seconds:.1f} s, "
            f"{run.cpu_seconds:.1f} s CPU)", "", ""),
        Row(f"{label}: raw floor", f"{floor_rate:,.0f} rec/s ({floor_cpu:.1f} s CPU)", "", ""),
        Row(f"{label}: tap / floor", f"{ratio:.2f}x slower", "<= 2x", verdict(ratio <= 2)),
        Row(f"{label}: tap / floor, CPU", f"{cpu_ratio:.2f}x", "<= 2x", verdict(cpu_ratio <= 2),
            figure=round(cpu_ratio, 2)),
        Row(f"{label}: tap peak RSS", f"{run.max_rss_mb:.0f} MB", "< 150 MB",
            verdict(run.max_rss_mb < 150), figure=round(run.max_rss_mb)),
    ]


def isvapp_export(rows: int) -> tuple[ProcessRun, int, list[bytes]]:
    settings = {"export_rows_per_month": rows, "auth_mode": "api_key", "accounts": 5,
                "rate_limit_per_second": 1000, "rate_limit_burst": 1000,
                "export_pending_seconds": 0}
    with isv_sandbox.start("isvapp", **settings) as server:
        config = {**server.app.tap_config(), "requests_per_second": 1000}
        run, records = run_export("tap-isvapp", config,
                                  catalog_with("tap-isvapp", config, "taxonomy_item_usage"))
        assert run.returncode == 0, "tap-isvapp failed"
        payloads = downloaded_payloads(
            server, r"^/api/v1/exports/[^/]+/download/",
            lambda r: (r.headers.__setitem__("Authorization", f"Bearer {config['api_key']}"), r)[1])
    return run, records, payloads


@measurement
def isvapp(quick: bool) -> list[Row]:
    rows = 100_000 if quick else 1_000_000
    run, records, payloads = isvapp_export(rows)
    floor = [raw_floor(p, "taxonomy_item_usage", isvapp_rows) for p in payloads]
    floor_records = sum(sum(1 for _ in gzip_ndjson(io.BytesIO(p))) for p in payloads)
    return throughput_rows(f"isvapp taxonomy_item_usage, {rows:,} rows", run, records,
                           floor, floor_records)


@measurement
def marketplace(quick: bool) -> list[Row]:
    licenses = 50_000 if quick else 500_000
    # The emulator writes the export's JSON in Python, in this process, as the tap reads
    # it: on two cores that alone outlasts the tap. A first, untimed run has it written
    # once (reuse_rendered_exports); the timed run downloads the same bytes, as the
    # floor reads them.
    with isv_sandbox.start("marketplace", licenses=licenses,
                           reuse_rendered_exports=True) as server:
        config = server.app.tap_config()
        catalog = catalog_with("tap-marketplace", config, "licenses")
        assert run_export("tap-marketplace", config, catalog)[0].returncode == 0, \
            "tap-marketplace failed (untimed run)"
        del server.requests[:]
        run, records = run_export("tap-marketplace", config, catalog)
        assert run.returncode == 0, "tap-marketplace failed"
        payloads = downloaded_payloads(
            server, r"/licenses/async/export/[^/]+$", (config["username"], config["api_token"]))
    floor = [raw_floor(p, "licenses", license_rows) for p in payloads]
    floor_records = sum(sum(1 for _ in json_array(io.BytesIO(p))) for p in payloads)
    return throughput_rows(f"marketplace licenses, {licenses:,} records", run, records,
                           floor, floor_records)


@measurement
def memory(quick: bool) -> list[Row]:
    small, large = (10_000, 100_000) if quick else (100_000, 1_000_000)
    rss = {rows: isvapp_export(rows)[0].max_rss_mb for rows in (small, large)}
    growth = rss[large] / rss[small] - 1
    return [
        Row(f"isvapp export peak RSS, {small:,} rows", f"{rss[small]:.0f} MB", "< 150 MB",
            verdict(rss[small] < 150)),
        Row(f"isvapp export peak RSS, {large:,} rows", f"{rss[large]:.0f} MB", "< 150 MB",
            verdict(rss[large] < 150)),
        Row("  growth with 10x the rows", f"{growth:+.0%}", "within 15 %", verdict(abs(growth) <= 0.15)),
    ]


@measurement
def throttling(quick: bool) -> list[Row]:
    rate = 2
    settings = {"rate_limit_per_second": rate, "rate_limit_burst": rate, "export_pending_seconds": 1,
                "accounts": 10 if quick else 40}
    with isv_sandbox.start("isvapp", **settings) as server:
        run = run_tap("tap-isvapp", {**server.app.tap_config(), "requests_per_second": rate})
        logged = sorted([*server.requests, *server.app.storage.requests], key=lambda r: r.at)
    assert run.returncode == 0, "tap-isvapp failed"
    count = len(logged)
    span = logged[-1].at - logged[0].at
    budget = 1.05 * (count - 1) / rate
    throttled = sum(1 for r in logged if r.status == 429)
    return [
        Row(f"isvapp full sync at {rate} req/s", f"{count} requests in {span:.1f} s "
            f"(+{run.seconds - span:.1f} s start-up)", f"<= {budget:.1f} s",
            verdict(span <= budget)),
        Row("  429s from the sandbox", str(throttled), "0", verdict(throttled == 0)),
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="10x smaller data sets")
    parser.add_argument("--only", action="append", default=[], help="run only these measurements")
    parser.add_argument("--baseline", type=Path, default=BASELINE,
                        help="the previous release's figures (default: %(default)s)")
    parser.add_argument("--save-baseline", type=Path, metavar="FILE",
                        help="write this run's figures to FILE (as a new baseline)")
    args = parser.parse_args(argv)
    rows: list[Row] = []
    for func in MEASUREMENTS:
        if args.only and func.__name__ not in args.only:
            continue
        print(f"... {func.__name__}", file=sys.stderr, flush=True)
        rows.extend(func(args.quick))
    baseline = load_baseline(args.baseline)
    fields = ("measure", "value", "target", "verdict", "previous")
    cells = [dict(zip(fields, ["measure", "value", "target", "verdict",
                               f"previous release ({baseline.get('release', 'none')})"],
                      strict=True))]
    regressions = []
    for row in rows:
        previous, flag = compare(row, baseline.get("figures", {}))
        if flag:
            regressions.append(row.measure)
        cells.append({"measure": row.measure, "value": row.value, "target": row.target,
                      "verdict": row.verdict, "previous": previous + flag})
    widths = {f: max(len(c[f]) for c in cells) for f in fields}
    for cell in cells:
        print("  ".join(cell[f].ljust(widths[f]) for f in fields).rstrip())
    if regressions:
        print(f"\nREGRESSED by more than {REGRESSION:.0%} against the previous release: "
              + "; ".join(regressions))
    if args.save_baseline:
        figures = {row.measure: row.figure for row in rows if row.figure is not None}
        args.save_baseline.write_text(json.dumps(
            {"release": "(fill in: the commit measured)",
             "measured": datetime.now(timezone.utc).strftime("%Y-%m-%d"),
             "figures": figures}, indent=2) + "\n")
    return 0


def load_baseline(path: Path) -> dict[str, t.Any]:
    """The stored figures of the previous release ({} when there is no file)."""
    return json.loads(path.read_text()) if path.exists() else {}


def compare(row: Row, figures: t.Mapping[str, float]) -> tuple[str, str]:
    """The baseline's figure for ``row`` with the change, and a flag if it regressed."""
    if row.figure is None or row.measure not in figures:
        return "", ""
    previous = figures[row.measure]
    change = row.figure / previous - 1 if previous else 0.0
    flag = f"  REGRESSED (+{change:.0%})" if change > REGRESSION else ""
    return f"{previous:g} ({change:+.0%})", flag


if __name__ == "__main__":
    sys.exit(main())
