"""Issue 10, shared base: every answer is checked once, in tap_common, for every tap.

Each case the issue reproduced has a test here by name (the fault matrix,
tests/test_fault_matrix.py, covers the same kinds of fault at every endpoint). A failure
is always one error line naming the stream, exit code 1, a STATE that covers only what
was emitted, and no traceback unless the log level is DEBUG. The cases every tap shares
(an error envelope with HTTP 200, Retry-After, an empty page or one pointing at itself,
SIGTERM) are asserted once for the three taps in tests/test_contract.py; what stays here
is specific to one endpoint.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import time

import orjson
import pytest

from isv_sandbox import faults
from tap_heroku_vendor.tap import TapHerokuVendor
from tap_isvapp.tap import TapIsvapp
from tap_marketplace.tap import TapMarketplace
from helpers import (
    catalog_selecting,
    config_for,
    error_lines,
    log_records,
    run_cli,
    run_in_process,
    tracebacks_shown,
)

TODAY = dt.datetime.now(dt.timezone.utc).date()
YESTERDAY = TODAY - dt.timedelta(days=1)
ISVAPP_ERROR = b'{"error": "Export configuration is invalid", "success": false}'


def atlassian_errors(message: str) -> bytes:
    return json.dumps({"errors": [{"message": message}]}).encode()


def one_error_line(out) -> str:
    """The run failed with exactly one error line and no traceback; that line."""
    assert out.returncode == 1, out.stderr[-3000:]
    errors = error_lines(out.stderr)
    assert len(errors) == 1, errors
    assert not tracebacks_shown(out.stderr)
    return errors[0]


def bookmark(out, stream: str) -> str | None:
    return (out.final_state.get("bookmarks", {}).get(stream) or {}).get("replication_key_value")


def isvapp_catalog(server, *streams: str) -> dict:
    return catalog_selecting(TapIsvapp, config_for(server), streams)


def marketplace_catalog(*streams: str) -> dict:
    return catalog_selecting(TapMarketplace, {"username": "u", "api_token": "t",
                                              "developer_id": "6f0e9a3c-1c2b-4d5e-9f00-5a1b2c3d4e5f"}, streams)


# -- the vendor's error envelope with HTTP 200 -------------------------------------------


def test_license_export_download_answering_200_errors_fails(marketplace):
    server = marketplace(licenses=112)
    # Two passes around the 2018 data-insights split; the second download is the error.
    server.add_fault(r"/licenses/async/export/[^/]+$", status=200, skip=1,
                     body=atlassian_errors("Export file is no longer available"))
    out = run_in_process(TapMarketplace, config_for(server),
                         catalog=marketplace_catalog("licenses"))

    line = one_error_line(out)
    assert re.search(r"licenses: HTTP 200 OK from GET /marketplace/rest/3/reporting/developer-space/"
                     r"[^/]+/licenses/async/export/[^/]+: Export file is no longer available$",
                     line), line
    assert bookmark(out, "licenses") is None


def test_license_export_download_answering_a_transient_error_is_retried(marketplace):
    server = marketplace(licenses=60)
    server.add_fault(r"/licenses/async/export/[^/]+$", status=200,
                     body=atlassian_errors("Temporarily unable to retrieve the export"))
    out = run_in_process(TapMarketplace, config_for(server, start_date="2018-07-01"),
                         catalog=marketplace_catalog("licenses"))

    assert out.returncode == 0, out.stderr[-2000:]
    expected = run_in_process(TapMarketplace, config_for(server, start_date="2018-07-01"),
                              catalog=marketplace_catalog("licenses"))
    assert {r["license_key"] for r in out.records["licenses"]} == {
        r["license_key"] for r in expected.records["licenses"]}


def test_post_exports_200_success_false_is_one_line_not_a_keyerror(isvapp):
    server = isvapp()
    server.add_fault(r"^/api/v1/exports$", method="POST", status=200, body=ISVAPP_ERROR)
    out = run_cli("tap-isvapp", config_for(server),
                  catalog=isvapp_catalog(server, "taxonomy_item_usage"))

    line = one_error_line(out)
    assert line.endswith("taxonomy_item_usage: HTTP 200 OK from POST /api/v1/exports: Export "
                         "configuration is invalid")
    assert "KeyError" not in out.stderr


def test_signed_url_answer_leaving_out_a_request_fails_naming_it(isvapp):
    server = isvapp(request_history_days=3, csv_rows_per_file=2)
    left_out = []

    def drop_one(request, response):
        payload = orjson.loads(response.body)
        left_out.append(payload["data"].pop(0)["request_id"])  # the one asked for first
        return isv_response(response, payload)

    server.add_fault(r"^/api/v1/requests/downloads$", kind="transform", transform=drop_one)
    out = run_cli("tap-isvapp", config_for(server, start_date=str(YESTERDAY - dt.timedelta(days=2))),
                  catalog=isvapp_catalog(server, "package_usage_logs"))

    line = one_error_line(out)
    assert f"package_usage_logs: POST /api/v1/requests/downloads gave no download URL for " \
           f"request {left_out[0]}" in line
    assert "KeyError" not in out.stderr


def isv_response(response, payload):
    from isv_sandbox.core import Response  # noqa: PLC0415

    return Response(response.status, orjson.dumps(payload), dict(response.headers))


def test_heroku_apps_answering_an_object_fails_naming_what_was_expected(heroku):
    server = heroku(apps=3)
    server.add_fault(r"^/vendor/apps$", kind="transform", transform=faults.wrong_shape)
    out = run_cli("tap-heroku-vendor", config_for(server))

    line = one_error_line(out)
    assert line.endswith("apps: HTTP 200 from GET /vendor/apps: expected a JSON array as the "
                         "body, got a JSON object (keys: items)")
    assert "AttributeError" not in out.stderr


# -- shapes and pages -----------------------------------------------------------------------


@pytest.mark.parametrize(("fault", "expected"), [
    (b'{"success": true, "result": []}',
     "expected a JSON array under 'data', got a JSON object (keys: result, success) without 'data'"),
    (b'{"success": true, "data": {"id": "x"}}',
     "expected a JSON array under 'data', got a JSON object (keys: id)"),
    (b'{"success": true, "data": ["x"]}',
     "expected a JSON array under 'data' of objects, but element 0 is a JSON string"),
])
def test_body_of_the_wrong_shape_fails_naming_stream_path_and_expectation(isvapp, fault, expected):
    server = isvapp()
    server.add_fault(r"^/api/v1/exports$", method="GET", status=200, body=fault)
    out = run_in_process(TapIsvapp, config_for(server), catalog=isvapp_catalog(server, "exports"))

    line = one_error_line(out)
    assert line.endswith(f"exports: HTTP 200 from GET /api/v1/exports: {expected}"), line


def test_a_next_page_with_the_records_of_an_earlier_one_fails_before_emitting_them(marketplace):
    server = marketplace(members=25)
    # Page 2 (another URL, another cursor) holds the records of page 1 again.
    first = None

    def to_first_page(request, response):
        nonlocal first
        payload = orjson.loads(response.body)
        if first is None:
            first = payload["members"]
            return None
        payload["members"] = first
        return isv_response(response, payload)

    server.add_fault(r"/members$", kind="transform", transform=to_first_page)
    out = run_in_process(TapMarketplace, config_for(server),
                         catalog=marketplace_catalog("developer_space_members"))

    line = one_error_line(out)
    assert "developer_space_members: HTTP 201 from GET /marketplace/rest/3/developer-space/" in line
    assert "returned page 2 with the same records as an earlier page" in line
    assert len(out.records["developer_space_members"]) == 10


# -- limits -------------------------------------------------------------------------------


def test_unknown_isvapp_export_status_fails_at_once_naming_it(isvapp):
    server = isvapp(export_pending_seconds=600)
    server.add_fault(r"^/api/v1/exports/[^/]+$", kind="transform",
                     transform=lambda request, response: faults.unknown_status(response))
    started = time.monotonic()
    out = run_in_process(TapIsvapp, config_for(server, export_poll_interval_seconds=1),
                         catalog=isvapp_catalog(server, "taxonomy_item_usage"))

    assert time.monotonic() - started < 10, "not treated as pending until the timeout"
    line = one_error_line(out)
    assert re.search(r"taxonomy_item_usage: export [0-9a-f-]+ has status 'CANCELLED', which "
                     r"the tap does not know \(known: PENDING, COMPLETED, ERRORED\)", line), line


def test_unknown_marketplace_export_status_fails_at_once_naming_it(marketplace):
    server = marketplace()
    server.add_fault(r"/async/export/[^/]+/status$", status=200, body=json.dumps(
        {"export": {"id": "x", "status": "CANCELLED"}}).encode())
    out = run_in_process(TapMarketplace, config_for(server),
                         catalog=marketplace_catalog("transactions"))

    line = one_error_line(out)
    assert "transactions: export" in line
    assert "has status 'CANCELLED', which the tap does not know (known: QUEUED, IN_PROGRESS, " \
           "COMPLETED, FAILED)" in line


# -- schema drift ---------------------------------------------------------------------------


def test_an_undeclared_field_is_named_once_per_stream_and_run(heroku):
    server = heroku(apps=9, page_size=4)

    def add_fields(request, response):
        payload = orjson.loads(response.body)
        for app in payload:
            app["billing_tier"] = "gold"
            app["region_v2"] = "eu"
        return isv_response(response, payload)

    server.add_fault(r"^/vendor/apps$", kind="transform", times=3, transform=add_fields)
    out = run_in_process(TapHerokuVendor, config_for(server))

    assert out.returncode == 0
    assert len(out.records["apps"]) == 9
    assert all("billing_tier" not in r for r in out.records["apps"])
    warnings = [line for line in out.stderr.splitlines() if "does not declare" in line]
    assert len(warnings) == 1, warnings
    assert warnings[0].endswith("apps: the API sent fields the schema does not declare, left "
                                "out of the records: billing_tier, region_v2")


# -- secrets, network failures and tracebacks ------------------------------------------------


def test_storage_host_unreachable_is_one_line_without_signatures_even_at_debug(isvapp):
    server = isvapp(request_history_days=3, csv_rows_per_file=2)
    server.app.storage.stop()
    config = config_for(server, start_date=str(YESTERDAY - dt.timedelta(days=2)), max_retries=2)
    out = run_cli("tap-isvapp", config, catalog=isvapp_catalog(server, "package_usage_logs"),
                  env={"TAP_ISVAPP_LOGLEVEL": "DEBUG", "LOGLEVEL": "DEBUG"})

    line = one_error_line(out)
    assert re.search(r"package_usage_logs: GET 127\.0\.0\.2 \(download URL\): cannot connect: "
                     r"Connection refused \(ConnectionError\); check the network \(the API gave "
                     r"this URL\) \(gave up after 3 attempts\)$",
                     line), line
    everything = out.stdout + out.stderr
    assert "signature=" not in everything and "expires=" not in everything
    assert "Traceback of the failure" in out.stderr  # at DEBUG, redacted
    assert "?<redacted>" in out.stderr
    shown = [text for level, text in log_records(out.stderr) if level != "DEBUG"]
    assert not any("Backing off" in text or "Giving up" in text for text in shown), \
        "backoff's own lines (with the URL) stay at DEBUG"
    assert sum("retrying in" in text for text in shown) == 2


def test_export_download_key_never_appears_when_its_download_is_retried(isvapp):
    server = isvapp(export_rows_per_month=6)
    server.add_fault(r"/download/", kind="drop", times=99)
    out = run_in_process(TapIsvapp, config_for(server, max_retries=2),
                         catalog=isvapp_catalog(server, "taxonomy_item_usage"), debug=True)

    line = one_error_line(out)
    assert "taxonomy_item_usage: GET /api/v1/exports/" in line
    assert "/download/<redacted>: the server closed the connection without answering" in line
    keys = [e["_token"] for e in server.app.exports.values()]
    assert keys and not any(key in out.stderr or key in out.stdout for key in keys)


def test_an_unexpected_failure_is_one_line_with_its_traceback_only_at_debug(heroku, monkeypatch):
    from tap_heroku_vendor import streams  # noqa: PLC0415

    def broken(self, row, context=None):
        raise KeyError("resource")

    monkeypatch.setattr(streams.AppsStream, "post_process", broken)
    server = heroku(apps=2)
    for debug in (False, True):
        out = run_in_process(TapHerokuVendor, config_for(server), debug=debug)
        line = one_error_line(out)
        assert line.endswith("apps: KeyError: 'resource'")
        assert ("Traceback (most recent call last)" in out.stderr) is debug


# -- SIGTERM -------------------------------------------------------------------------------------


def test_a_failing_connection_test_is_one_line_too():
    config = {"api_url": "http://127.0.0.1:9", "api_key": "an-api-key-never-shown",
              "max_retries": 1, "retry_backoff_seconds": 0.01}
    out = run_cli("tap-isvapp", config, "--test")

    line = one_error_line(out)
    assert line.endswith("connection test: GET /api/v1/account on 127.0.0.1: cannot connect: "
                         "Connection refused (ConnectionError); check the `api_url` setting "
                         "and the network (gave up after 2 attempts)")
    assert "an-api-key-never-shown" not in out.stderr
