"""tap-marketplace when the Marketplace misbehaves: rate limits, 5xx, broken bodies,
exports that fail or hang, and bad settings. Every fault is served by the sandbox over
real HTTP; retries are fast because their clocks are settings."""

from __future__ import annotations

import json
import re

import pytest

import isv_sandbox
from tap_marketplace.tap import TapMarketplace
from helpers import FAST_EXPORTS, FAST_RETRIES, catalog_selecting, config_for, last_error_line, run_cli, sync

TRANSACTIONS = r"/sales/transactions$"
LICENSE_DOWNLOAD = r"/licenses/async/export/[^/]+$"




def catalog_with(*names):
    return catalog_selecting(TapMarketplace, {"username": "u", "api_token": "t",
                                              "developer_id": "d"}, names)


def atlassian_error(message: str) -> bytes:
    return json.dumps({"errors": [{"message": message}]}).encode()


def times_of(server, path_regex):
    return [r.at for r in server.requests if re.search(path_regex, r.path)]


def no_bookmark(out, stream):
    return all("replication_key_value" not in state.get("bookmarks", {}).get(stream, {})
               for state in out.states)


# -- rate limits ----------------------------------------------------------------------


def test_429_storm_with_retry_after_waits_as_told(marketplace):
    server = marketplace(transactions=60)
    server.add_fault(TRANSACTIONS, status=429, times=4, headers={"Retry-After": "0.2"},
                     body=atlassian_error("Rate limit exceeded"))
    out = sync(TapMarketplace, config_for(server, use_async_exports=False),
               streams={"transactions"})

    assert len(out.records["transactions"]) == 60
    assert server.count(TRANSACTIONS, status=429) == 4
    at = times_of(server, TRANSACTIONS)
    gaps = [b - a for a, b in zip(at, at[1:5])]
    assert all(gap >= 0.2 for gap in gaps), gaps


def test_429_storm_without_retry_after_backs_off_exponentially(marketplace):
    server = marketplace(transactions=60)
    server.add_fault(TRANSACTIONS, status=429, times=4, body=atlassian_error("Too many requests"))
    out = sync(TapMarketplace, config_for(server, use_async_exports=False,
                                          retry_backoff_seconds=0.05, max_retries=5),
               streams={"transactions"})

    assert len(out.records["transactions"]) == 60
    at = times_of(server, TRANSACTIONS)
    gaps = [b - a for a, b in zip(at, at[1:5])]
    # 0.05, 0.1, 0.2, 0.4 s (+ up to 10 % jitter)
    assert gaps[0] >= 0.05 and gaps[3] >= 0.4
    assert gaps[3] > 4 * gaps[0] * 0.9


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


@pytest.mark.parametrize("status", [500, 502, 503])
def test_5xx_longer_than_the_retry_budget_fails_with_the_vendors_message(marketplace, status):
    server = marketplace(transactions=60)
    server.add_fault(TRANSACTIONS, status=status, times=99,
                     body=atlassian_error("Temporarily unable to retrieve transactions"))
    out = run_cli("tap-marketplace", config_for(server, max_retries=2, use_async_exports=False),
                  catalog=catalog_with("transactions"))

    assert out.returncode == 1
    line = last_error_line(out.stderr)
    assert f"transactions: HTTP {status}" in line
    assert "/sales/transactions: Temporarily unable to retrieve transactions" in line
    assert server.count(TRANSACTIONS) == 3
    assert not out.records.get("transactions")
    assert no_bookmark(out, "transactions")


# -- broken connections -----------------------------------------------------------------


def test_connection_reset_mid_page_is_retried(marketplace):
    server = marketplace(transactions=120)
    server.add_fault(TRANSACTIONS, kind="reset", fraction=0.4)
    out = sync(TapMarketplace, config_for(server, use_async_exports=False),
               streams={"transactions"})

    keys = [r["transactionLineItemId"] for r in out.records["transactions"]]
    assert len(keys) == 120 == len(set(keys))


def test_connection_reset_mid_download_downloads_again_without_duplicates(marketplace):
    server = marketplace(licenses=200)
    server.add_fault(LICENSE_DOWNLOAD, kind="reset", fraction=0.6)
    out = sync(TapMarketplace, config_for(server, start_date="2018-07-01"),
               streams={"licenses"})

    keys = [r["license_key"] for r in out.records["licenses"]]
    assert len(keys) == len(set(keys)) > 100
    assert len(times_of(server, LICENSE_DOWNLOAD)) == 2
    assert len(server.app.exports) == 1, "the same export is downloaded again"


def test_slow_response_past_the_timeout_is_retried(marketplace):
    server = marketplace(members=12)
    server.add_fault(r"/members$", kind="delay", seconds=1.0)
    out = sync(TapMarketplace, config_for(server, request_timeout_seconds=0.3),
               streams={"developer_space_members"})

    assert len(out.records["developer_space_members"]) == 12


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


def test_html_error_page_gives_a_clear_message(marketplace):
    server = marketplace()
    html = (b"<!DOCTYPE html><html><head><title>502 Bad Gateway</title></head>"
            b"<body><h1>Bad Gateway</h1><p>The proxy could not reach the API.</p></body></html>")
    server.add_fault(r"^/rest/3/parent-software$", status=502, times=99, body=html,
                     headers={"Content-Type": "text/html"})
    out = run_cli("tap-marketplace", config_for(server, max_retries=1),
                  catalog=catalog_with("parent_software"))

    assert out.returncode == 1
    line = last_error_line(out.stderr)
    assert "parent_software: HTTP 502" in line
    assert "The proxy could not reach the API." in line
    assert "<html" not in line


def test_html_page_with_200_is_not_taken_for_data(marketplace):
    server = marketplace()
    server.add_fault(r"/feedback/details$", status=200, body=b"<html><body>Log in</body></html>",
                     headers={"Content-Type": "text/html; charset=utf-8"})
    out = run_cli("tap-marketplace", config_for(server), catalog=catalog_with("feedback"))

    assert out.returncode == 1
    line = last_error_line(out.stderr)
    assert "feedback: HTTP 200 from /marketplace/rest/3/reporting/" in line
    assert "is not JSON (text/html" in line and "Log in" in line


def test_empty_200_body_gives_a_clear_message(marketplace):
    server = marketplace()
    server.add_fault(r"/developer-space/[^/]+/members$", status=200, body=b"")
    out = run_cli("tap-marketplace", config_for(server),
                  catalog=catalog_with("developer_space_members"))

    assert out.returncode == 1
    line = last_error_line(out.stderr)
    assert "developer_space_members: HTTP 200" in line
    assert "empty body where JSON was expected" in line


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


def test_403_names_the_role_and_credentials_without_the_token(marketplace):
    server = marketplace()
    server.add_fault(r"/licenses$", status=403, times=99, body=atlassian_error(
        "You do not have permission to view reporting for this developer space"))
    config = config_for(server, use_async_exports=False, start_date="2019-01-01")
    out = run_cli("tap-marketplace", config, catalog=catalog_with("licenses"))

    assert out.returncode == 1
    line = last_error_line(out.stderr)
    assert "licenses: HTTP 403" in line
    assert "You do not have permission to view reporting" in line
    assert "`username`" in line and "`api_token`" in line and "`developer_id`" in line
    assert config["api_token"] not in out.stderr
    assert server.count(r"/licenses$") == 1, "a 403 is not retried"
