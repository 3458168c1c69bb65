"""Benchmark: tap-heroku-vendor's partner mode over simulated nights, at 100,000 installs.

Run with ``scripts/benchmark --partner-scale`` (options after it). The sandbox holds
``--installs`` add-on resources behind Heroku's request pool (4,500 tokens, refilled at
75 a minute) whose clock runs ``--clock-speed`` times faster than real time; the
installed ``tap-heroku-vendor`` is paced at the same accelerated refill. Each night is
one run with ``request_budget`` = what the pool gives in ``--night-hours`` (and the state
of the night before); between nights ``--changes`` installs change plan (seen in
addons.heroku.com's list) and as many apps get a new domain (not seen there).

It prints per night: Platform API requests, installs read, whether the changed
installs were read that very night, the stalest install, and the run time at the real
rate; and the nights until every install had been read once.

``--per-token`` instead compares one install at a time with ``concurrent_installs``
where each token has its own pool (``rate_limit_scope: per_install``), with a
simulated round trip (``--latency``).
"""

from __future__ import annotations

import argparse
import json
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import orjson

import isv_sandbox
from tap_heroku_vendor.partner_schedule import ScheduleState, bucket_of

BIN = Path(sys.executable).parent
POOL = 4500
REFILL_PER_SECOND = 75 / 60
API_PATHS = r"^/(addons|apps)/"


def night_budget(hours: float, reserve: int) -> int:
    """The requests Heroku's pool gives in ``hours``: the full pool, then its refill."""
    return int(POOL - reserve + REFILL_PER_SECOND * 3600 * hours)


def real_rate_seconds(requests: int, reserve: int) -> float:
    """How long ``requests`` take at Heroku's real rate, starting from a full pool."""
    return max(0.0, requests - (POOL - reserve)) / REFILL_PER_SECOND


def run_night(config: dict, state: dict | None) -> tuple[dict, dict[str, set[str]], float, str]:
    """One run of the installed tap: its final state, the ids it emitted per stream,
    its wall time, and its stderr."""
    with tempfile.TemporaryDirectory() as tmp:
        Path(tmp, "config.json").write_text(json.dumps(config))
        command = [str(BIN / "tap-heroku-vendor"), "--config", str(Path(tmp, "config.json"))]
        if state is not None:
            Path(tmp, "state.json").write_text(json.dumps(state))
            command += ["--state", str(Path(tmp, "state.json"))]
        started = time.perf_counter()
        process = subprocess.Popen(command, stdout=subprocess.PIPE,  # noqa: S603
                                   stderr=open(Path(tmp, "stderr"), "wb"))  # noqa: SIM115
        final_state: dict = {}
        ids: dict[str, set[str]] = {}
        assert process.stdout is not None
        for line in process.stdout:
            if b"RECORD" in line[:40]:
                message = orjson.loads(line)
                ids.setdefault(message["stream"], set()).add(
                    message["record"].get("id") or message["record"].get("name"))
            elif b"STATE" in line[:40]:
                final_state = orjson.loads(line)["value"]
        process.wait()
        seconds = time.perf_counter() - started
        stderr = Path(tmp, "stderr").read_text(errors="replace")
    if process.returncode != 0:
        sys.exit(f"tap-heroku-vendor failed: {stderr.strip().splitlines()[-1:]}")
    return final_state, ids, seconds, stderr


def staleness(state: dict, installs: list[str]) -> tuple[int | None, int]:
    """Nights since the stalest install was read (None if one never was), and how many
    were never read, from the tap's own state."""
    schedule = ScheduleState.load(state.get("bookmarks", {}).get("addons", {}).get("schedule"))
    never = 0
    oldest = 0
    for resource in installs:
        last = schedule.last_read[bucket_of(resource)]
        if last == 0:
            never += 1
        else:
            oldest = max(oldest, schedule.night - last)
    return (None if never else oldest), never


def nights(args: argparse.Namespace) -> None:
    reserve = 100
    budget = night_budget(args.night_hours, reserve)
    started = time.perf_counter()
    server = isv_sandbox.start(
        "heroku_partner", installs=args.installs, max_domains=3, max_collaborators=3,
        max_attachments=2, pool_capacity=POOL, pool_refill_per_second=REFILL_PER_SECOND,
        clock_speed=args.clock_speed, listing_page_size=1000)
    print(f"sandbox: {args.installs:,} installs in {time.perf_counter() - started:.0f} s; "
          f"pool {POOL} + {REFILL_PER_SECOND * 60:.0f}/min, clock x{args.clock_speed:g}; "
          f"request_budget {budget:,} ({args.night_hours:g} h of the pool), "
          f"full_refresh_nights {args.full_refresh_nights}", flush=True)
    app = server.app
    rng = random.Random(7)
    with tempfile.TemporaryDirectory() as tmp:
        installs_file = Path(tmp, "installs.jsonl")
        installs_file.write_bytes(b"".join(orjson.dumps(i) + b"\n" for i in app.install_list))
        config = {**app.tap_config(), "installs_file": str(installs_file),
                  "request_budget": budget, "full_refresh_nights": args.full_refresh_nights,
                  "rate_limit_reserve": reserve,
                  "rate_limit_refill_per_second": REFILL_PER_SECOND * args.clock_speed}
        del config["installs"]  # the file holds them, as a partner's export would
        every = [i["resource_uuid"] for i in app.install_list]
        seen: set[str] = set()
        state = None
        all_seen_night = None
        print("| night | Platform API requests | installs read | changed (read before) read that night | "
              "stalest install | never read | run time at the real rate | wall time |")
        print("|---|---|---|---|---|---|---|---|")
        changed: list[str] = []
        for night in range(1, args.nights + 1):
            before = server.count(API_PATHS)
            state, ids, seconds, stderr = run_night(config, state)
            sent = server.count(API_PATHS) - before
            read = ids.get("addons", set())
            seen_before = set(seen)
            seen |= read
            if all_seen_night is None and len(seen) == len(every):
                all_seen_night = night
            oldest, never = staleness(state, every)
            # Changed installs the warehouse already had (read on an earlier night): those
            # must be read the very night after their change. The others are new to it
            # and come with the first pass.
            loaded_before = set(changed) & seen_before
            changed_read = (f"{len(loaded_before & read)} of {len(loaded_before)}"
                            if changed else "-")
            real = real_rate_seconds(sent, reserve)
            print(f"| {night} | {sent:,} | {len(read):,} | {changed_read} | "
                  f"{'never' if oldest is None else f'{oldest} night(s)'} | {never:,} | "
                  f"{real / 3600:.1f} h | {seconds:.0f} s |", flush=True)
            assert sent <= budget, f"night {night}: {sent} requests for a budget of {budget}"
            # Changes before the next night.
            changed = rng.sample(every, args.changes)
            for resource in changed:
                app.change_plan(resource)
            for resource in rng.sample(every, args.changes):
                app.add_domain(app.addons[resource]["app"]["id"])
            if all_seen_night is not None and night >= all_seen_night + 1 and night >= 3:
                break
        size = len(json.dumps(state))
        print(f"\nevery install read once by night {all_seen_night or 'not yet'}; "
              f"state {size:,} characters; "
              f"wall time in all {time.perf_counter() - started:.0f} s")
        warning = [line for line in stderr.splitlines() if "needs a request_budget" in line]
        if warning:
            print("the tap's advice:", warning[-1].split("partner schedule: ", 1)[-1])
    server.stop()


def per_token(args: argparse.Namespace) -> None:
    server = isv_sandbox.start(
        "heroku_partner", installs=args.installs, max_domains=3, max_collaborators=3,
        pool_per_token=True, latency_seconds=args.latency)
    app = server.app
    print(f"per-token pools, {args.installs:,} installs, {args.latency * 1000:.0f} ms a request")
    print("| concurrent_installs | Platform API requests | wall time | installs/s | "
          "100,000 installs at that pace |")
    print("|---|---|---|---|---|")
    for workers in (1, 4, 8, 16):
        config = {**app.tap_config(), "rate_limit_scope": "per_install",
                  "concurrent_installs": workers}
        before = server.count(API_PATHS)
        _, ids, seconds, _ = run_night(config, None)
        sent = server.count(API_PATHS) - before
        assert len(ids.get("addons", ())) == args.installs
        rate = args.installs / seconds
        print(f"| {workers} | {sent:,} | {seconds:.1f} s | {rate:.0f} | "
              f"{100_000 / rate / 3600:.1f} h |", flush=True)
    server.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--installs", type=int, default=100_000)
    parser.add_argument("--nights", type=int, default=16, help="at most this many")
    parser.add_argument("--night-hours", type=float, default=8.0)
    parser.add_argument("--full-refresh-nights", type=int, default=7)
    parser.add_argument("--changes", type=int, default=100, help="plan changes a night")
    parser.add_argument("--clock-speed", type=float, default=400.0)
    parser.add_argument("--per-token", action="store_true")
    parser.add_argument("--latency", type=float, default=0.05)
    args = parser.parse_args()
    if args.per_token:
        if args.installs == 100_000:
            args.installs = 1000
        per_token(args)
    else:
        nights(args)


if __name__ == "__main__":
    main()
