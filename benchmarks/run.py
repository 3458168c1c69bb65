"""Benchmark: export throughput against the raw floor, memory, child scaling, throttling.

Run with ``scripts/benchmark`` (or ``.venv/bin/python benchmarks/run.py``). It builds
sandbox data sets, runs the INSTALLED console scripts with stdout to /dev/null, and
prints one table. Nothing here passes or fails a build: the figures are for people.

Options: ``--quick`` uses data sets 10x smaller (a smoke run, minutes instead of ~15).
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


@dataclass
class ProcessRun:
    seconds: float
    max_rss_mb: float
    returncode: int
    stdout: bytes


def run_tap(executable: str, config: dict, *args: str, capture: bool = False) -> ProcessRun:
    """Run an installed tap; stdout to /dev/null unless captured. Peak RSS via wait4."""
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as handle:
        json.dump(config, handle)
    out = subprocess.PIPE if capture else subprocess.DEVNULL
    started = time.perf_counter()
    process = subprocess.Popen(  # noqa: S603
        [str(BIN / executable), "--config", handle.name, *args],
        stdout=out, stderr=subprocess.DEVNULL,
    )
    stdout = process.stdout.read() if capture and process.stdout else b""
    _, status, usage = os.wait4(process.pid, 0)
    seconds = time.perf_counter() - started
    process.returncode = os.waitstatus_to_exitcode(status)
    os.unlink(handle.name)
    return ProcessRun(seconds, usage.ru_maxrss / 1024, process.returncode, stdout)


def raw_floor(payload: bytes, stream: str, parse: t.Callable[[t.BinaryIO], t.Iterable[dict]]) -> float:
    """Seconds for a plain loop: decompress, parse, write RECORD lines with orjson."""
    option = orjson.OPT_APPEND_NEWLINE
    now = datetime.now(timezone.utc)
    with open(os.devnull, "wb") as devnull:
        started = time.perf_counter()
        for record in parse(io.BytesIO(payload)):
            devnull.write(orjson.dumps(
                {"type": "RECORD", "stream": stream, "record": record, "time_extracted": now},
                option=option))
        return time.perf_counter() - started


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
            verdict(ratio < 1.2 * scale)),
        Row("  final STATE", f"{runs[large][1]:,} bytes", "< 10 KB", verdict(runs[large][1] < 10_240)),
    ]


MEASUREMENTS: list[t.Callable[[bool], list[Row]]] = []


def measurement(func: t.Callable[[bool], list[Row]]) -> t.Callable[[bool], list[Row]]:
    MEASUREMENTS.append(func)
    return func


@measurement
def heroku(quick: bool) -> list[Row]:
    return heroku_child_scaling(100 if quick else 1000, 1000 if quick else 10000)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="10x smaller data sets")
    parser.add_argument("--only", action="append", default=[], help="run only these measurements")
    args = parser.parse_args(argv)
    rows: list[Row] = []
    for func in MEASUREMENTS:
        if args.only and func.__name__ not in args.only:
            continue
        print(f"... {func.__name__}", file=sys.stderr, flush=True)
        rows.extend(func(args.quick))
    widths = [max(len(getattr(r, f)) for r in [Row("measure", "value", "target", "verdict"), *rows])
              for f in ("measure", "value", "target", "verdict")]
    for row in [Row("measure", "value", "target", "verdict"), *rows]:
        print("  ".join(getattr(row, f).ljust(w) for f, w in
                        zip(("measure", "value", "target", "verdict"), widths, strict=True)).rstrip())
    return 0


if __name__ == "__main__":
    sys.exit(main())
