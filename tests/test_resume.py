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
from tap_marketplace.tap import TapMarketplace
from helpers import BIN, FAST_RETRIES, SyncOutput, catalog_selecting, sync

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


# -- (3) an export stream ------------------------------------------------------------------

USAGE_KEY = ("reference_date", "salesforce_account_id", "taxonomy_item_id")


def in_flight(state: dict) -> dict | None:
    return state.get("bookmarks", {}).get("taxonomy_item_usage", {}).get("in_flight_export")


def usage_keys(server: t.Any, export_id: str) -> set[tuple]:
    """The keys of every row in the sandbox's file of one export."""
    lines = server.app.export_lines(server.app.exports[export_id])
    return {tuple(row[f] for f in USAGE_KEY) for row in map(orjson.loads, lines)}


def export_calls(server: t.Any, since: int = 0) -> tuple[list[str], set[str], set[str]]:
    """POSTs (starts), polled ids and downloaded ids of exports in the request log."""
    posts, polled, downloaded = [], set(), set()
    for r in server.requests[since:]:
        parts = r.path.split("/")  # /api/v1/exports/<id>[/download/<token>]
        if r.path == "/api/v1/exports" and r.method == "POST":
            posts.append(r.path)
        elif len(parts) == 5 and parts[3] == "exports":
            polled.add(parts[4])
        elif len(parts) == 7 and parts[5] == "download":
            downloaded.add(parts[4])
    return posts, polled, downloaded


def usage_run(sandbox: t.Any, **settings: t.Any) -> tuple[t.Any, dict, dict]:
    server = sandbox("isvapp", **{**ISVAPP_SANDBOX, **settings})
    config = isvapp_config(server)  # from the first of last month: one export
    return server, config, catalog_selecting(TapIsvapp, config, ["taxonomy_item_usage"])


@pytest.mark.parametrize("expired", [False, True], ids=["still-valid", "expired-meanwhile"])
def test_export_killed_mid_download_is_resumed_while_valid(sandbox, expired):
    server, config, catalog = usage_run(sandbox, export_rows_per_month=25_000)

    historical = set(server.app.exports)
    killed = run_tap("tap-isvapp", config, catalog, kill_when=state_after_records)
    (export_id,) = set(server.app.exports) - historical
    saved = in_flight(killed.final_state)
    logged_before_rerun = len(server.requests)

    assert killed.killed
    assert 10_000 <= len(killed.records["taxonomy_item_usage"]) < 25_000
    assert saved["id"] == export_id
    assert saved["expires_at"], "the completed export's expiry is in the state"
    if expired:  # ISVapp expired it meanwhile; the expiry saved in the state lies ahead
        server.app.exports[export_id]["_created"] -= server.app.settings.export_expiry_seconds

    rerun = run_tap("tap-isvapp", config, catalog, state=killed.final_state)

    assert rerun.returncode == 0, rerun.stderr[-2000:]
    posts, polled, downloaded = export_calls(server, logged_before_rerun)
    assert export_id in polled, "the saved export is looked up first"
    if expired:
        assert len(posts) == 1, "an expired export is requested anew"
        (new_id,) = downloaded
        assert new_id != export_id
        everything = usage_keys(server, new_id)
    else:
        assert posts == [], "no new export while the saved one is valid"
        assert downloaded == {export_id}
        everything = usage_keys(server, export_id)
    assert len(everything) == 25_000
    assert killed.keys("taxonomy_item_usage", *USAGE_KEY) | rerun.keys("taxonomy_item_usage", *USAGE_KEY) == everything
    assert in_flight(rerun.final_state) is None
    assert bookmark(rerun.final_state, "taxonomy_item_usage") == LAST_MONTH



def test_export_killed_while_pending_is_polled_again_not_requested_again(sandbox):
    server, config, catalog = usage_run(sandbox, export_pending_seconds=600,
                                        export_rows_per_month=300)
    historical = set(server.app.exports)

    def waiting_for_export(message: dict, records: int) -> bool:
        return message["type"] == "STATE" and in_flight(message["value"]) is not None

    killed = run_tap("tap-isvapp", config, catalog, kill_when=waiting_for_export)
    (export_id,) = set(server.app.exports) - historical
    logged_before_rerun = len(server.requests)

    assert killed.killed
    assert "taxonomy_item_usage" not in killed.records
    assert in_flight(killed.final_state)["id"] == export_id
    assert in_flight(killed.final_state)["expires_at"] is None  # still PENDING
    server.app.exports[export_id]["_created"] -= 600  # ISVapp finished it meanwhile

    rerun = run_tap("tap-isvapp", config, catalog, state=killed.final_state)

    assert rerun.returncode == 0, rerun.stderr[-2000:]
    posts, polled, downloaded = export_calls(server, logged_before_rerun)
    assert posts == []
    assert polled == downloaded == {export_id}
    assert rerun.keys("taxonomy_item_usage", *USAGE_KEY) == usage_keys(server, export_id)
    assert len(rerun.records["taxonomy_item_usage"]) == 300


def test_second_export_killed_mid_download_is_resumed_after_the_first_is_read_again(sandbox):
    # From the month before last: that month by name, then LATEST_COMPLETED_MONTH.
    server = sandbox("isvapp", **ISVAPP_SANDBOX, export_rows_per_month=12_000)
    config = isvapp_config(server, start_date=f"{month_before(LAST_MONTH, 1)}-01")
    catalog = catalog_selecting(TapIsvapp, config, ["taxonomy_item_usage"])
    historical = set(server.app.exports)

    # The STATE at 20,000 records: 8,000 rows into the second export.
    killed = run_tap("tap-isvapp", config, catalog,
                     kill_when=lambda message, records: message["type"] == "STATE"
                     and records > 12_000)
    first_id, second_id = sorted(set(server.app.exports) - historical,
                                 key=lambda i: server.app.exports[i]["_created"])
    logged_before_rerun = len(server.requests)

    assert killed.killed
    assert 20_000 <= len(killed.records["taxonomy_item_usage"]) < 24_000
    assert in_flight(killed.final_state)["id"] == second_id

    rerun = run_tap("tap-isvapp", config, catalog, state=killed.final_state)

    assert rerun.returncode == 0, rerun.stderr[-2000:]
    posts, _, downloaded = export_calls(server, logged_before_rerun)
    assert len(posts) == 1, "only the first export is requested again"
    assert [body["timeframe"] for body in server.app.export_requests] == [
        month_before(LAST_MONTH, 1), "LATEST_COMPLETED_MONTH", month_before(LAST_MONTH, 1)]
    (again_id,) = set(server.app.exports) - historical - {first_id, second_id}
    assert downloaded == {again_id, second_id}
    everything = usage_keys(server, first_id) | usage_keys(server, second_id)
    assert len(everything) == 24_000
    assert killed.keys("taxonomy_item_usage", *USAGE_KEY) | rerun.keys("taxonomy_item_usage", *USAGE_KEY) == everything


def marketplace_export_calls(server: t.Any, since: int = 0) -> tuple[int, set[str], set[str]]:
    """Starts, polled ids and downloaded ids of Marketplace exports in the request log."""
    starts, polled, downloaded = 0, set(), set()
    for r in server.requests[since:]:
        parts = r.path.rstrip("/").split("/")  # …/async/export[/<id>[/status]]
        if r.method == "POST" and parts[-1] == "export":
            starts += 1
        elif parts[-1] == "status":
            polled.add(parts[-2])
        elif len(parts) > 2 and parts[-2] == "export":
            downloaded.add(parts[-1])
    return starts, polled, downloaded


@pytest.mark.parametrize("gone", [False, True], ids=["still-there", "gone-meanwhile"])
def test_marketplace_license_export_killed_mid_download_is_resumed(sandbox, gone):
    server = sandbox("marketplace", licenses=30_000)
    # From July 2018: one export, with data insights.
    config = {**server.app.tap_config(), **FAST_RETRIES, "start_date": "2018-07-01",
              "export_poll_interval_seconds": 0.02}
    catalog = catalog_selecting(TapMarketplace, config, ["licenses"])
    reference = sync(TapMarketplace, config, streams={"licenses"})  # uninterrupted
    everything = set(reference.keys("licenses", "license_key"))
    exports_before = set(server.app.exports)

    killed = run_tap("tap-marketplace", config, catalog, kill_when=state_after_records)
    (export_id,) = set(server.app.exports) - exports_before
    saved = killed.final_state["bookmarks"]["licenses"]["in_flight_export"]
    logged_before_rerun = len(server.requests)

    assert killed.killed
    assert 10_000 <= len(killed.records["licenses"]) < len(everything)
    assert bookmark(killed.final_state, "licenses") is None
    assert saved["id"] == export_id
    assert saved["download_url"], "the download link the start gave is in the state"
    if gone:  # Atlassian documents no export lifetime: it may have deleted it meanwhile
        del server.app.exports[export_id]

    rerun = run_tap("tap-marketplace", config, catalog, state=killed.final_state)

    assert rerun.returncode == 0, rerun.stderr[-2000:]
    starts, polled, downloaded = marketplace_export_calls(server, logged_before_rerun)
    assert export_id in polled, "the saved export is looked up first"
    if gone:
        assert starts == 1, "an export that is gone is started anew"
        (new_id,) = set(server.app.exports) - exports_before - {export_id}
        assert downloaded == {new_id}
    else:
        assert starts == 0, "no new export while the saved one is there"
        assert downloaded == {export_id}
    assert killed.keys("licenses", "license_key") | rerun.keys("licenses", "license_key") == everything
    assert "in_flight_export" not in rerun.final_state["bookmarks"]["licenses"]
