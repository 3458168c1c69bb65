"""tap-marketplace when the Marketplace misbehaves: rate limits, 5xx, broken bodies,
exports that fail or hang, and bad settings. Every fault is served by the sandbox over
real HTTP; retries are fast because their clocks are settings."""

from __future__ import annotations

import json
import re

import pytest

from tap_marketplace.tap import TapMarketplace
from helpers import catalog_selecting, config_for, last_error_line, run_cli, sync

TRANSACTIONS = r"/sales/transactions$"
LICENSE_DOWNLOAD = r"/licenses/async/export/[^/]+$"


def catalog_with(*names):
    return catalog_selecting(TapMarketplace, {"username": "u", "api_token": "t",
                                              "developer_id": "6f0e9a3c-1c2b-4d5e-9f00-5a1b2c3d4e5f"}, names)


def atlassian_error(message: str) -> bytes:
    return json.dumps({"errors": [{"message": message}]}).encode()


def times_of(server, path_regex):
    return [r.at for r in server.requests if re.search(path_regex, r.path)]


def no_bookmark(out, stream):
    return all("replication_key_value" not in state.get("bookmarks", {}).get(stream, {})
               for state in out.states)


# -- rate limits ----------------------------------------------------------------------


# -- 5xx ------------------------------------------------------------------------------


@pytest.mark.parametrize("status", [500, 502, 503])
def test_5xx_burst_shorter_than_the_retry_budget_recovers(marketplace, status):
    server = marketplace(transactions=60, export_queued_seconds=0.02)
    status_path = r"/sales/transactions/async/export/[^/]+/status$"
    server.add_fault(status_path, status=status, times=3,
                     body=atlassian_error("Temporarily unable to retrieve transactions"))
    out = sync(TapMarketplace, config_for(server, max_retries=4), streams={"transactions"})

    assert len(out.records["transactions"]) == 60
    assert server.count(status_path, status=status) == 3


# -- broken connections -----------------------------------------------------------------


def test_connection_reset_mid_download_downloads_again_without_duplicates(marketplace):
    server = marketplace(licenses=200)
    server.add_fault(LICENSE_DOWNLOAD, kind="reset", fraction=0.6)
    out = sync(TapMarketplace, config_for(server, start_date="2018-07-01"),
               streams={"licenses"})

    keys = [r["license_key"] for r in out.records["licenses"]]
    assert len(keys) == len(set(keys)) > 100
    assert len(times_of(server, LICENSE_DOWNLOAD)) == 2
    assert len(server.app.exports) == 1, "the same export is downloaded again"


def test_json_array_cut_short_fails_naming_the_export_and_element(marketplace):
    server = marketplace(licenses=200)
    server.add_fault(LICENSE_DOWNLOAD, kind="truncate", fraction=0.5)
    out = run_cli("tap-marketplace", config_for(server, start_date="2018-07-01"),
                  catalog=catalog_with("licenses"))

    export_id = next(iter(server.app.exports))
    assert out.returncode == 1
    line = last_error_line(out.stderr)
    assert f"licenses: export {export_id}" in line
    assert re.search(r"cut short or malformed after element \d+", line), line
    assert no_bookmark(out, "licenses"), "state does not move past a broken export"


# -- exports ------------------------------------------------------------------------------


def test_export_failed_or_errored_fails_with_the_vendors_message(marketplace):
    server = marketplace(attributions=20)
    server.add_fault(r"/async/export/[^/]+/status$", status=200, times=99, body=json.dumps(
        {"export": {"id": "x", "status": "ERRORED",
                    "message": "Attribution data is being rebuilt, retry in an hour"}}).encode())
    out = run_cli("tap-marketplace", config_for(server), catalog=catalog_with(
        "marketing_attribution"))

    assert out.returncode == 1
    line = last_error_line(out.stderr)
    assert "marketing_attribution: export" in line and "ERRORED" in line
    assert "Attribution data is being rebuilt, retry in an hour" in line


def test_export_stuck_in_progress_fails_after_the_timeout_naming_its_id(marketplace):
    server = marketplace(stuck_exports=("transactions",), export_queued_seconds=0.05)
    out = run_cli("tap-marketplace", config_for(server, export_timeout_seconds=0.4),
                  catalog=catalog_with("transactions"))

    export_id = next(iter(server.app.exports))
    assert out.returncode == 1
    line = last_error_line(out.stderr)
    assert f"transactions: export {export_id} did not complete within 0.4 s" in line
    assert "still IN_PROGRESS" in line
    assert len(times_of(server, r"/status$")) >= 5


def test_download_404_being_processed_after_completed_is_retried(marketplace):
    server = marketplace(licenses=80)
    server.add_fault(LICENSE_DOWNLOAD, status=404, times=2,
                     body=atlassian_error("Export is being processed"))
    out = sync(TapMarketplace, config_for(server, start_date="2018-07-01"),
               streams={"licenses"})

    assert server.count(LICENSE_DOWNLOAD, status=404) == 2
    assert server.count(LICENSE_DOWNLOAD, status=200) == 1
    assert len(out.records["licenses"]) == len(
        {r["license_key"] for r in out.records["licenses"]}) > 30


def test_unknown_export_on_status_is_not_retried_forever(marketplace):
    server = marketplace()
    server.add_fault(r"/licenses/async/export/[^/]+/status$", status=404, times=99,
                     body=atlassian_error("Export not found"))
    out = run_cli("tap-marketplace", config_for(server, start_date="2018-07-01"),
                  catalog=catalog_with("licenses"))

    assert out.returncode == 1
    assert "HTTP 404" in last_error_line(out.stderr)
    assert "Export not found" in last_error_line(out.stderr)
    assert server.count(r"/status$") == 1


# -- bodies that are not JSON -------------------------------------------------------------


# -- bad settings: fail before any request, naming the setting ----------------------------


@pytest.mark.parametrize(("change", "expected"), [
    ({"username": None}, "'username' is a required property"),
    ({"api_token": None}, "'api_token' is a required property"),
    ({"api_token": "  "}, "`api_token` is empty"),
    ({"developer_id": None}, "Set `developer_id` (the developer space UUID) or `vendor_id`"),
    ({"developer_id": None, "vendor_id": "acme"}, "`vendor_id` must match ^[0-9]+$, not 'acme'"),
    ({"export_timeout_seconds": "soon"}, "config['export_timeout_seconds']"),
    ({"product_ids": "a,b"}, "'a,b' is not of type 'array', 'null' in config['product_ids']"),
    ({"use_async_exports": "yes"}, "config['use_async_exports']"),
    ({"export_poll_interval_seconds": 0}, "`export_poll_interval_seconds` must be greater than 0"),
    ({"start_date": "2999-01-01"}, "`start_date` 2999-01-01 is in the future"),
    ({"start_date": "last week"}, "`start_date` must be a date (YYYY-MM-DD), not 'last week'"),
    ({"aggregation": "day"}, "`aggregation` must be one of ['week', 'month'], not 'day'"),
])
def test_bad_config_fails_before_any_request_naming_the_setting(marketplace, change, expected):
    server = marketplace()
    config = config_for(server)
    for key, value in change.items():
        if value is None:
            config.pop(key, None)
        else:
            config[key] = value
    out = run_cli("tap-marketplace", config)

    assert out.returncode == 1
    assert expected in out.stderr
    assert not server.requests, "no request with a bad config"
    assert not out.records


