"""Resumable syncs: an installed tap killed with SIGKILL mid-stream, then run again with
the last STATE it wrote, loses no record (at-least-once; the keys dedupe), and does less
than the whole work again where the tap's design promises it.

Each test runs the console script as users do, reads its stdout line by line and kills
it once it has written a STATE after some records. What it wrote before dying is kept,
as a target would have received it; a line cut by the kill is dropped.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import signal
import subprocess
import tempfile
import threading
import typing as t
from pathlib import Path

import orjson
import pytest

import isv_sandbox
from tap_heroku_vendor.tap import TapHerokuVendor
from tap_isvapp.streams import month_before
from tap_isvapp.tap import TapIsvapp
from tests.helpers import BIN, FAST_RETRIES, SyncOutput, catalog_selecting

TODAY = dt.datetime.now(dt.timezone.utc).date()
YESTERDAY = TODAY - dt.timedelta(days=1)
#: A killed run has reached its kill point well before this; a rerun finishes in it.
RUN_TIMEOUT_SECONDS = 60

KillWhen = t.Callable[[dict, int], bool]


class TapRun(SyncOutput):
    """The Singer messages an installed tap wrote, and whether it was killed."""

    killed: bool = False

    def keys(self, stream: str, *fields: str) -> set[tuple]:  # type: ignore[override]
        return {tuple(r.get(f) for f in fields) for r in self.records.get(stream, [])}


def run_tap(executable: str, config: dict, catalog: dict, *, state: dict | None = None,
            kill_when: KillWhen | None = None) -> TapRun:
    """Run an installed tap; ``kill_when(message, records_so_far)`` true sends SIGKILL.

    After the kill, the rest of what the tap had already written is read too (a target
    would have received it), except a last line the kill cut short.
    """
    with tempfile.TemporaryDirectory() as tmp:
        command = [str(BIN / executable)]
        for option, value in (("--config", config), ("--catalog", catalog), ("--state", state)):
            if value is not None:
                path = Path(tmp, f"{option[2:]}.json")
                path.write_text(json.dumps(value))
                command += [option, str(path)]
        with Path(tmp, "stderr").open("w+") as stderr:
            process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=stderr)  # noqa: S603
            watchdog = threading.Timer(RUN_TIMEOUT_SECONDS, process.kill)
            watchdog.start()
            messages: list[dict] = []
            records = 0
            killed = False
            try:
                assert process.stdout is not None
                for line in process.stdout:
                    if not line.endswith(b"\n"):
                        break  # cut short by the kill
                    if not line.startswith(b'{"type"'):
                        continue
                    message = orjson.loads(line)
                    messages.append(message)
                    records += message["type"] == "RECORD"
                    if kill_when is not None and not killed and kill_when(message, records):
                        os.kill(process.pid, signal.SIGKILL)
                        killed = True
                returncode = process.wait()
            finally:
                watchdog.cancel()
            stderr.seek(0)
            error_output = stderr.read()
    run = TapRun(messages, error_output, returncode)
    run.killed = killed
    assert returncode != -signal.SIGKILL or killed, f"{executable} outlived {RUN_TIMEOUT_SECONDS} s"
    return run


def state_after_records(message: dict, records: int) -> bool:
    """The first kill point: a STATE written after at least one record."""
    return message["type"] == "STATE" and records > 0


def rerun_requests(server: t.Any, since: int) -> list:
    """The sandbox's log of requests from index ``since`` on (the rerun's)."""
    return server.requests[since:]


@pytest.fixture
def sandbox():
    servers = []

    def start(vendor: str, **settings: t.Any) -> t.Any:
        server = isv_sandbox.start(vendor, **settings)
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()


# -- (1) a paged stream --------------------------------------------------------------------


def test_paged_stream_killed_mid_run_loses_no_record(sandbox):
    server = sandbox("heroku", apps=25_000, page_size=500)
    config = {**server.app.tap_config(), **FAST_RETRIES}
    catalog = catalog_selecting(TapHerokuVendor, config, ["apps"])
    everything = {(app["resource"]["uuid"],) for app in server.app.apps}

    killed = run_tap("tap-heroku-vendor", config, catalog, kill_when=state_after_records)
    pages_before_kill = server.count("^/vendor/apps$")

    assert killed.killed
    # The SDK writes STATE every 10,000 records: the kill came then, 30 pages before the end.
    assert 10_000 <= len(killed.records["apps"]) < len(everything)
    assert pages_before_kill < 50
    # apps is full table: its state holds no bookmark, so the rerun lists every page.
    assert killed.final_state == {"bookmarks": {"apps": {}}}

    rerun = run_tap("tap-heroku-vendor", config, catalog, state=killed.final_state)

    assert rerun.returncode == 0, rerun.stderr[-2000:]
    assert killed.keys("apps", "resource_uuid") | rerun.keys("apps", "resource_uuid") == everything
    assert server.count("^/vendor/apps$") - pages_before_kill == 50


# -- (2) a windowed stream -----------------------------------------------------------------

LAST_MONTH = month_before(TODAY.strftime("%Y-%m"), 1)
#: ISVapp sandbox settings: no 429s (the tap's own pacing sets the speed), quick exports.
ISVAPP_SANDBOX = {"rate_limit_per_second": 1000, "rate_limit_burst": 1000,
                  "export_pending_seconds": 0.1, "latest_completed_month": LAST_MONTH}
ISVAPP_TAP = {**FAST_RETRIES, "requests_per_second": 500, "export_poll_interval_seconds": 0.05}
LOOKBACK_DAYS = 3


def isvapp_config(server: t.Any, **overrides: t.Any) -> dict:
    return {**server.app.tap_config(), **ISVAPP_TAP, "lookback_days": LOOKBACK_DAYS, **overrides}


def windows(server: t.Any, since: int = 0) -> list[tuple[str, str]]:
    return [(r.query["from"][0], r.query["to"][0]) for r in server.requests[since:]
            if r.path == "/api/v1/requests"]


def bookmark(state: dict, stream: str) -> str | None:
    """The resumable bookmark of ``stream`` (not a progress marker)."""
    return state.get("bookmarks", {}).get(stream, {}).get("replication_key_value")


def after_first_window(*streams: str) -> KillWhen:
    """A STATE with a resumable bookmark for each of ``streams``: one window is done."""
    def kill_when(message: dict, records: int) -> bool:
        return message["type"] == "STATE" and records > 0 and all(
            bookmark(message["value"], s) for s in streams)
    return kill_when


def test_windowed_stream_resumes_at_the_window_it_was_killed_in(sandbox):
    # 400 days in 31-day windows: 13 requests, paced at 5 per second.
    server = sandbox("isvapp", **ISVAPP_SANDBOX, request_history_days=400, requests_per_day=5)
    start = YESTERDAY - dt.timedelta(days=399)
    config = isvapp_config(server, start_date=start.isoformat(), requests_per_second=5)
    catalog = catalog_selecting(TapIsvapp, config, ["package_usage_requests"])
    everything = {(r["id"],) for r in server.app.requests_data if r["_day"] >= start}
    assert len(everything) == 2000

    killed = run_tap("tap-isvapp", config, catalog,
                     kill_when=after_first_window("package_usage_requests"))
    windows_before_kill = windows(server)
    logged_before_rerun = len(server.requests)

    assert killed.killed
    assert 0 < len(killed.records["package_usage_requests"]) < len(everything)
    assert len(windows_before_kill) < 13
    # The bookmark only claims what was emitted: every request up to it is in the output.
    saved = bookmark(killed.final_state, "package_usage_requests")
    claimed = {(r["id"],) for r in server.app.requests_data
               if start <= r["_day"] and r["sf_end_time"] <= saved}
    assert claimed
    assert claimed <= killed.keys("package_usage_requests", "id")

    rerun = run_tap("tap-isvapp", config, catalog, state=killed.final_state)

    assert rerun.returncode == 0, rerun.stderr[-2000:]
    emitted = killed.keys("package_usage_requests", "id") | rerun.keys("package_usage_requests", "id")
    assert emitted == everything
    # Later windows only: from the bookmark's day less the look-back, not from start_date.
    resumed_from = dt.date.fromisoformat(saved[:10]) - dt.timedelta(days=LOOKBACK_DAYS)
    rerun_windows = windows(server, logged_before_rerun)
    assert start < resumed_from
    assert rerun_windows[0][0] == resumed_from.isoformat()
    assert rerun_windows[-1][1] == YESTERDAY.isoformat()
    assert len(rerun.records["package_usage_requests"]) < len(everything)
    assert bookmark(rerun.final_state, "package_usage_requests") == f"{YESTERDAY}T23:59:59Z"


def test_windowed_stream_with_its_log_files_resumes_both(sandbox):
    # 100 days: four windows of requests, one gzip CSV file per request.
    server = sandbox("isvapp", **ISVAPP_SANDBOX, request_history_days=100, csv_rows_per_file=3)
    start = YESTERDAY - dt.timedelta(days=99)
    config = isvapp_config(server, start_date=start.isoformat(), requests_per_second=100)
    streams = ("package_usage_requests", "package_usage_logs")
    catalog = catalog_selecting(TapIsvapp, config, streams)
    every_row = {(r["id"], n) for r in server.app.requests_data for n in (1, 2, 3)}

    killed = run_tap("tap-isvapp", config, catalog, kill_when=after_first_window(*streams))
    files_before_rerun = server.app.storage.count(r"^/files/")
    logged_before_rerun = len(server.requests)

    assert killed.killed
    assert 0 < len(killed.records["package_usage_logs"]) < len(every_row)
    saved = bookmark(killed.final_state, "package_usage_logs")
    assert saved == bookmark(killed.final_state, "package_usage_requests")

    rerun = run_tap("tap-isvapp", config, catalog, state=killed.final_state)

    assert rerun.returncode == 0, rerun.stderr[-2000:]
    keys = ("isvapp_request_id", "row_number")
    assert killed.keys("package_usage_logs", *keys) | rerun.keys("package_usage_logs", *keys) == every_row
    resumed_from = dt.date.fromisoformat(saved[:10]) - dt.timedelta(days=LOOKBACK_DAYS)
    assert windows(server, logged_before_rerun)[0][0] == resumed_from.isoformat()
    files_in_rerun = server.app.storage.count(r"^/files/") - files_before_rerun
    assert files_in_rerun == (YESTERDAY - resumed_from).days + 1 < 100
