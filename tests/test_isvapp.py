"""tap-isvapp against the ISVapp sandbox: streams, auth modes, pacing, exports, windows."""

from __future__ import annotations

import datetime as dt
import json
import time

import pytest
from singer_sdk.testing import SuiteConfig, get_tap_test_class

import isv_sandbox
from isv_sandbox.isvapp import PACKAGE_LOG_COLUMNS
from tap_isvapp.streams import month_before, timeframes_to_export
from tap_isvapp.tap import TapIsvapp
import helpers
from helpers import (
    catalog_selecting,
    config_for,
    last_error_line,
    run_cli,
    sync,
)

TODAY = dt.datetime.now(dt.timezone.utc).date()
YESTERDAY = TODAY - dt.timedelta(days=1)
THIS_MONTH = TODAY.strftime("%Y-%m")
LAST_MONTH = month_before(THIS_MONTH, 1)
#: Sandbox settings that keep tests fast: a generous rate limit, exports done at once.
FAST_SANDBOX = helpers.FAST_SANDBOX["isvapp"]
FAST_TAP = helpers.FAST_TAP["isvapp"]
assert FAST_SANDBOX["latest_completed_month"] == LAST_MONTH

_STANDARD_SANDBOX = isv_sandbox.start(
    "isvapp", **FAST_SANDBOX, accounts=12, request_history_days=4, csv_rows_per_file=5)

_STANDARD_CONFIG = {**_STANDARD_SANDBOX.app.tap_config(), **FAST_TAP,
                    "start_date": f"{LAST_MONTH}-01"}
ALL_STREAMS = ("salesforce_accounts", "salesforce_account_summaries", "exports",
               "taxonomy_item_usage", "package_usage_requests", "package_usage_logs")

# With a catalog that selects every stream, salesforce_account_summaries (not selected
# by default) is tested too.
TestIsvappStandard = get_tap_test_class(
    TapIsvapp,
    config=_STANDARD_CONFIG,
    catalog=catalog_selecting(TapIsvapp, _STANDARD_CONFIG, ALL_STREAMS),
    suite_config=SuiteConfig(max_records_limit=40),
)


def api_calls(server, path):
    return [r for r in server.requests if r.path == path]


# -- Salesforce accounts ----------------------------------------------------------------


def test_salesforce_accounts_keep_health_scores_and_subscriber_orgs(isvapp):
    server = isvapp(accounts=25, health_scores_per_account=3)
    out = sync(TapIsvapp, config_for(server), streams={"salesforce_accounts"})

    accounts = out.records["salesforce_accounts"]
    assert [a["salesforce_id"] for a in accounts] == [a["salesforce_id"] for a in server.app.accounts]
    first, source = accounts[0], server.app.accounts[0]
    assert first["health_scores"] == source["health_scores"]
    assert len(first["health_scores"]) == 3
    assert first["subscriber_orgs"] == source["subscriber_orgs"]
    assert first["isvapp_id"] == source["isvapp_id"]
    (call,) = api_calls(server, "/api/v1/salesforce_accounts")
    assert call.query == {"includeHealthScores": ["1"], "includeSubscriberOrgs": ["1"]}


def test_include_settings_off_leave_the_options_out(isvapp):
    server = isvapp(accounts=5)
    out = sync(TapIsvapp, config_for(server, include_health_scores=False,
                                     include_subscriber_orgs=False),
               streams={"salesforce_accounts"})

    assert len(out.records["salesforce_accounts"]) == 5
    assert all("health_scores" not in a for a in out.records["salesforce_accounts"])
    (call,) = api_calls(server, "/api/v1/salesforce_accounts")
    assert call.query == {}


def test_account_summaries_one_call_per_account_with_small_state(isvapp):
    server = isvapp(accounts=150, custom_objects_per_account=2)
    out = sync(TapIsvapp, config_for(server),
               streams={"salesforce_accounts", "salesforce_account_summaries"})

    summaries = out.records["salesforce_account_summaries"]
    assert len(summaries) == 150
    assert {s["salesforce_id"] for s in summaries} == {a["salesforce_id"] for a in server.app.accounts}
    first = next(s for s in summaries if s["salesforce_id"] == server.app.accounts[0]["salesforce_id"])
    assert first == server.app.accounts[0]["summary"]
    assert len(first["custom_object_record_counts"]) == 2
    calls = api_calls(server, "/api/v1/salesforce_account_summary")
    assert len(calls) == 150
    assert calls[0].query == {"salesforce_account_id": [server.app.accounts[0]["salesforce_id"]]}
    final = json.dumps(out.final_state)
    assert len(final) < 1000, final
    assert "partitions" not in final


def test_account_summaries_are_not_selected_by_default(isvapp):
    server = isvapp(accounts=3, request_history_days=1)
    out = sync(TapIsvapp, config_for(server))
    assert "salesforce_account_summaries" not in out.records
    assert len(out.records["salesforce_accounts"]) == 3
    assert not api_calls(server, "/api/v1/salesforce_account_summary")


# -- exports and taxonomy item usage -------------------------------------------------------


def test_exports_list_every_documented_field(isvapp):
    server = isvapp(historical_exports=4)
    out = sync(TapIsvapp, config_for(server), streams={"exports"})

    exports = out.records["exports"]
    assert len(exports) == 4
    statuses = {e["status"] for e in exports}
    assert statuses == {"COMPLETED", "ERRORED"}
    completed = next(e for e in exports if e["status"] == "COMPLETED")
    errored = next(e for e in exports if e["status"] == "ERRORED")
    # The download URL carries its key in the path: not selected unless asked for.
    assert "download_url" not in completed
    assert isinstance(completed["download_size_compressed_bytes"], int)
    assert completed["is_expired"] is True  # completed 40 days ago, expired after an hour
    assert errored["error_message"] == server.app.settings.export_error_message
    assert errored["errored_at"] and "download_url" not in errored
    schema = out.schemas["exports"]["properties"]
    assert set(completed) <= set(schema)
    assert len(schema) == 12 and "download_url" not in schema  # 13 with it selected


@pytest.mark.parametrize(("today", "first", "expected"), [
    ("2024-04-15", None, ["LATEST_12_COMPLETED_MONTHS"]),
    ("2024-04-15", "2024-04", []),
    ("2024-04-15", "2024-03", ["LATEST_COMPLETED_MONTH"]),
    ("2024-04-15", "2024-02", ["2024-02", "LATEST_COMPLETED_MONTH"]),
    ("2024-04-02", "2024-01", ["LATEST_12_COMPLETED_MONTHS"]),
    ("2024-04-15", "2023-04", ["LATEST_12_COMPLETED_MONTHS"]),
    ("2024-04-15", "2023-01", ["2023-01", "2023-02", "2023-03", "LATEST_12_COMPLETED_MONTHS"]),
    ("2024-01-20", "2023-11", ["2023-11", "LATEST_COMPLETED_MONTH"]),
])
def test_timeframes_cover_the_first_month_up_to_the_latest_completed(today, first, expected):
    assert timeframes_to_export(first, dt.date.fromisoformat(today)) == expected


def test_taxonomy_export_rows_with_integer_metrics(isvapp):
    server = isvapp(export_rows_per_month=60, export_pending_seconds=0.3)
    taxonomy_id = server.app.taxonomy[1]["id"]
    accounts = ["0014x00000AAAAAAAA", "0014x00000BBBBBBBB"]
    out = sync(TapIsvapp, config_for(server, start_date=f"{LAST_MONTH}-01",
                                     export_taxonomy_ids=[taxonomy_id],
                                     export_salesforce_account_ids=accounts),
               streams={"taxonomy_item_usage"})

    rows = out.records["taxonomy_item_usage"]
    items = [i for i in server.app.taxonomy_items if i["taxonomy_id"] == taxonomy_id]
    assert len(rows) == len(accounts) * len(items)
    assert {r["reference_date"] for r in rows} == {LAST_MONTH}
    assert {r["salesforce_account_id"] for r in rows} == set(accounts)
    keys = {(r["reference_date"], r["salesforce_account_id"], r["taxonomy_item_id"]) for r in rows}
    assert len(keys) == len(rows)
    for row in rows:
        for metric in ("unique_users", "unique_users_external", "unique_users_internal",
                       "operations", "operations_external", "operations_internal"):
            assert isinstance(row[metric], int), (metric, row[metric])
        assert row["unique_users"] == row["unique_users_external"] + row["unique_users_internal"]
    assert server.app.export_requests == [{
        "type": "TAXONOMY_ITEM", "aggregation": "MONTHLY", "timeframe": "LATEST_COMPLETED_MONTH",
        "taxonomy_ids": [taxonomy_id], "salesforce_account_ids": accounts}]
    export_id = next(iter(e for e in server.app.exports.values()
                          if e["_created"] > time.time() - 60))["id"]
    polls = api_calls(server, f"/api/v1/exports/{export_id}")
    assert len(polls) >= 2, "pending at first, then polled until COMPLETED"
    downloads = [r for r in server.requests if "/download/" in r.path]
    assert len(downloads) == 1 and downloads[0].authorization.startswith("Bearer ")
    assert out.final_state["bookmarks"]["taxonomy_item_usage"] == {
        "replication_key": "reference_date", "replication_key_value": LAST_MONTH}


def test_taxonomy_first_run_without_start_date_exports_the_latest_12_months(isvapp):
    server = isvapp(export_rows_per_month=10)
    config = config_for(server)
    del config["start_date"]
    out = sync(TapIsvapp, config, streams={"taxonomy_item_usage"})

    months = sorted({r["reference_date"] for r in out.records["taxonomy_item_usage"]})
    assert months == [month_before(LAST_MONTH, n) for n in range(11, -1, -1)]
    assert [b["timeframe"] for b in server.app.export_requests] == ["LATEST_12_COMPLETED_MONTHS"]
    assert len(out.records["taxonomy_item_usage"]) == 12 * 10


def test_taxonomy_rerun_reexports_from_the_bookmarked_month_only(isvapp):
    server = isvapp(export_rows_per_month=8)
    config = config_for(server, start_date=f"{month_before(THIS_MONTH, 5)}-01")
    first = sync(TapIsvapp, config, streams={"taxonomy_item_usage"})
    assert sorted({r["reference_date"] for r in first.records["taxonomy_item_usage"]}) == [
        month_before(THIS_MONTH, n) for n in range(5, 0, -1)]
    assert first.final_state["bookmarks"]["taxonomy_item_usage"]["replication_key_value"] == LAST_MONTH

    second = sync(TapIsvapp, config, streams={"taxonomy_item_usage"}, state=first.final_state)
    assert {r["reference_date"] for r in second.records["taxonomy_item_usage"]} == {LAST_MONTH}
    assert len(second.records["taxonomy_item_usage"]) == 8
    assert [b["timeframe"] for b in server.app.export_requests] == [
        "LATEST_12_COMPLETED_MONTHS", "LATEST_COMPLETED_MONTH"]

    two_back = month_before(THIS_MONTH, 2)
    state = {"bookmarks": {"taxonomy_item_usage": {
        "replication_key": "reference_date", "replication_key_value": two_back}}}
    third = sync(TapIsvapp, config, streams={"taxonomy_item_usage"}, state=state)
    assert sorted({r["reference_date"] for r in third.records["taxonomy_item_usage"]}) == [
        two_back, LAST_MONTH]
    assert [b["timeframe"] for b in server.app.export_requests[2:]] == [
        two_back, "LATEST_COMPLETED_MONTH"]


def test_taxonomy_stream_without_taxonomy_ids_is_a_clear_config_error(isvapp):
    server = isvapp()
    config = config_for(server)
    del config["export_taxonomy_ids"]
    out = run_cli("tap-isvapp", config)

    assert out.returncode == 1
    assert "taxonomy_item_usage" in out.stderr
    assert "export_taxonomy_ids" in out.stderr and "deselect" in out.stderr
    assert server.count("") == 0, "fails before any request"


# -- raw package usage log requests and files -----------------------------------------------


def test_requests_are_read_in_windows_of_at_most_31_days_up_to_yesterday(isvapp):
    server = isvapp(request_history_days=80, requests_per_day=2, csv_rows_per_file=1)
    start = YESTERDAY - dt.timedelta(days=74)
    out = sync(TapIsvapp, config_for(server, start_date=start.isoformat()),
               streams={"package_usage_requests"})

    windows = [(dt.date.fromisoformat(r.query["from"][0]), dt.date.fromisoformat(r.query["to"][0]))
               for r in api_calls(server, "/api/v1/requests")]
    assert [w[0] for w in windows] == [start, start + dt.timedelta(days=31),
                                       start + dt.timedelta(days=62)]
    assert windows[-1][1] == YESTERDAY
    for (first, last), following in zip(windows, [*windows[1:], None]):
        assert (last - first).days + 1 <= 31
        if following:
            assert following[0] == last + dt.timedelta(days=1)
    assert server.count("/api/v1/requests", status=400) == 0
    requests = out.records["package_usage_requests"]
    assert len(requests) == 75 * 2
    assert len({r["id"] for r in requests}) == 150
    assert out.final_state["bookmarks"]["package_usage_requests"]["replication_key_value"] == (
        f"{YESTERDAY}T23:59:59Z")


def test_requests_rerun_reads_the_lookback_days_and_picks_up_late_files(isvapp):
    server = isvapp(request_history_days=20, csv_rows_per_file=2)
    config = config_for(server, start_date=(YESTERDAY - dt.timedelta(days=9)).isoformat(),
                        lookback_days=3)
    first = sync(TapIsvapp, config, streams={"package_usage_requests", "package_usage_logs"})
    assert len(first.records["package_usage_requests"]) == 10
    assert len(first.records["package_usage_logs"]) == 20

    late = server.app.add_request(YESTERDAY - dt.timedelta(days=2))
    second = sync(TapIsvapp, config, streams={"package_usage_requests", "package_usage_logs"},
                  state=first.final_state)

    window = api_calls(server, "/api/v1/requests")[-1]
    assert window.query == {"from": [str(YESTERDAY - dt.timedelta(days=3))], "to": [str(YESTERDAY)]}
    ids = {r["id"] for r in second.records["package_usage_requests"]}
    assert late["id"] in ids
    assert len(ids) == 5, "the 4 look-back days once, plus the late file"
    logs = second.records["package_usage_logs"]
    assert {r["isvapp_request_id"] for r in logs} == ids
    assert len(logs) == 10


def test_logs_rows_keyed_by_request_and_row_number_with_unknown_columns_kept(isvapp):
    server = isvapp(request_history_days=3, csv_rows_per_file=7,
                    csv_extra_columns=["quiddity", "brand_new_metric"])
    out = sync(TapIsvapp, config_for(server, start_date=str(YESTERDAY - dt.timedelta(days=2))),
               streams={"package_usage_logs"})

    logs = out.records["package_usage_logs"]
    assert len(logs) == 3 * 7
    keys = [(r["isvapp_request_id"], r["row_number"]) for r in logs]
    assert len(set(keys)) == len(keys)
    first_file = [r for r in logs if r["isvapp_request_id"] == logs[0]["isvapp_request_id"]]
    assert [r["row_number"] for r in first_file] == list(range(1, 8))
    row = first_file[0]
    assert row["request_id"].startswith("TID:"), "Salesforce's own request_id kept as it is"
    assert row["quiddity"] == "quiddity-0", "a newer Salesforce column the schema knows"
    assert row["extra_columns"] == {"brand_new_metric": "brand_new_metric-0"}
    assert row["organization_name"] == "Acme, Inc.", "quoted commas survive"
    assert "cloned_from_organization_id" not in row, "empty cells are left out (null)"
    assert set(PACKAGE_LOG_COLUMNS) <= set(out.schemas["package_usage_logs"]["properties"])
    # Only the logs stream was selected: the requests were listed but not emitted.
    assert "package_usage_requests" not in out.records
    assert out.final_state["bookmarks"]["package_usage_logs"]["replication_key_value"] == (
        f"{YESTERDAY}T23:59:59Z")
    storage = server.app.storage
    assert storage.count("/files/") == 3
    assert all(r.authorization is None for r in storage.requests)
    assert storage.count("/files/", status=200) == 3


def test_byte_order_mark_does_not_hide_the_first_column(isvapp):
    server = isvapp(request_history_days=1, csv_rows_per_file=2, csv_byte_order_mark=True)
    out = sync(TapIsvapp, config_for(server, start_date=str(YESTERDAY)),
               streams={"package_usage_logs"})

    rows = out.records["package_usage_logs"]
    assert len(rows) == 2
    assert all(r["timestamp_derived"] and r["extra_columns"] is None for r in rows)


def test_signed_urls_are_fetched_in_batches_of_at_most_1000(isvapp):
    server = isvapp(request_history_days=30, requests_per_day=35, csv_rows_per_file=1)
    out = sync(TapIsvapp, config_for(server, start_date=str(YESTERDAY - dt.timedelta(days=29))),
               streams={"package_usage_logs"})

    assert len(out.records["package_usage_logs"]) == 1050
    batches = [r for r in server.requests if r.path == "/api/v1/requests/downloads"]
    assert len(batches) == 2
    assert server.app.storage.count("/files/", status=200) == 1050


# -- auth, pacing and errors -------------------------------------------------------------------


def test_oauth_asks_for_one_token_per_scope(isvapp):
    server = isvapp(accounts=4, request_history_days=2, csv_rows_per_file=1)
    out = sync(TapIsvapp, config_for(server, start_date=str(YESTERDAY)))

    assert len(out.records["salesforce_accounts"]) == 4
    scopes = sorted(scope for scope, _ in server.app.tokens_issued)
    assert scopes == ["exports", "requests", "salesforce_accounts"]
    token_calls = api_calls(server, "/api/oauth2/token")
    assert all(r.authorization.startswith("Basic ") for r in token_calls)
    api = [r for r in server.requests if r.path.startswith("/api/v1/")]
    assert api and all(r.authorization.startswith("Bearer ") for r in api)
    assert server.count("", status=401) == server.count("", status=403) == 0


def test_api_key_mode_needs_no_token(isvapp):
    server = isvapp(auth_mode="api_key", accounts=3, request_history_days=1)
    out = sync(TapIsvapp, config_for(server))

    assert len(out.records["salesforce_accounts"]) == 3
    assert not api_calls(server, "/api/oauth2/token")
    api_key = server.app.settings.api_key
    assert {r.authorization for r in server.requests} == {f"Bearer {api_key}"}


def test_tokens_are_renewed_before_they_expire(isvapp):
    server = isvapp(token_lifetime_seconds=1.0, accounts=30, request_history_days=1)
    out = sync(TapIsvapp, config_for(server, requests_per_second=12),
               streams={"salesforce_accounts", "salesforce_account_summaries"})

    assert len(out.records["salesforce_account_summaries"]) == 30
    renewals = [scope for scope, _ in server.app.tokens_issued]
    assert renewals.count("salesforce_accounts") >= 3, "30 calls at 12/s outlive 1 s tokens"
    assert server.count("", status=401) == 0, "renewed before expiry, never after a 401"


def test_full_sync_at_the_vendor_limit_gets_no_429(isvapp):
    server = isvapp(rate_limit_per_second=2, rate_limit_burst=2, accounts=3,
                    request_history_days=2, csv_rows_per_file=2, export_rows_per_month=5,
                    export_pending_seconds=0.2)
    config = config_for(server, requests_per_second=2, export_poll_interval_seconds=0.3)
    out = sync(TapIsvapp, config, streams={
        "salesforce_accounts", "salesforce_account_summaries", "exports", "taxonomy_item_usage",
        "package_usage_requests", "package_usage_logs"})

    assert len(out.records["salesforce_account_summaries"]) == 3
    assert len(out.records["package_usage_logs"]) == 4
    assert server.count("", status=429) == 0
    sent = sorted([r.at for r in server.requests] + [r.at for r in server.app.storage.requests])
    assert len(sent) >= 14
    # Never three requests (token calls and downloads included) within one second; arrival
    # times at the sandbox jitter by tens of milliseconds on a loaded machine (the sandbox's
    # own bucket, which answered no 429 above, is the exact check).
    assert min(b - a for a, b in zip(sent, sent[2:])) >= 0.9


def test_missing_scope_names_the_scope(isvapp):
    server = isvapp()
    out = run_cli("tap-isvapp", config_for(server, oauth_scopes={"salesforce_accounts": "identity"}))

    assert out.returncode == 1
    line = last_error_line(out.stderr)
    assert "HTTP 403" in line and "scope `identity`" in line
    assert "lacks the scope required for this endpoint: salesforce_accounts" in line


def test_connection_test_reads_the_account_endpoint(isvapp):
    server = isvapp()
    out = run_cli("tap-isvapp", config_for(server), "--test")

    assert out.returncode == 0, out.stderr[-2000:]
    assert "Connected to the ISVapp account of Sandbox ISV GmbH" in out.stderr
    assert [r.path for r in server.requests] == ["/api/oauth2/token", "/api/v1/account"]
    assert [scope for scope, _ in server.app.tokens_issued] == ["identity"]


def test_about_and_discover_from_the_console_script():
    about = run_cli("tap-isvapp", {}, "--about", "--format=json")
    info = json.loads(about.stdout)
    assert info["name"] == "tap-isvapp"
    settings = info["settings"]["properties"]
    assert settings["api_key"]["secret"] is True and settings["client_secret"]["secret"] is True
    assert settings["requests_per_second"]["default"] == 2

    discover = run_cli("tap-isvapp", {"api_key": "x"}, "--discover")
    catalog = json.loads(discover.stdout)
    entries = {s["tap_stream_id"]: s for s in catalog["streams"]}
    assert set(entries) == {"salesforce_accounts", "salesforce_account_summaries", "exports",
                            "taxonomy_item_usage", "package_usage_requests", "package_usage_logs"}
    assert entries["taxonomy_item_usage"]["key_properties"] == [
        "reference_date", "salesforce_account_id", "taxonomy_item_id"]
    assert entries["package_usage_logs"]["key_properties"] == ["isvapp_request_id", "row_number"]


def test_every_stream_through_the_console_script(isvapp):
    server = isvapp(accounts=6, request_history_days=3, csv_rows_per_file=3,
                    export_rows_per_month=9)
    catalog = json.loads(run_cli("tap-isvapp", config_for(server), "--discover").stdout)
    for entry in catalog["streams"]:
        for item in entry["metadata"]:
            if item["breadcrumb"] == []:
                item["metadata"]["selected"] = True
    out = run_cli("tap-isvapp", config_for(server, start_date=f"{LAST_MONTH}-01"),
                  catalog=catalog)

    assert out.returncode == 0, out.stderr[-3000:]
    counts = {stream: len(rows) for stream, rows in out.records.items()}
    assert counts["salesforce_accounts"] == 6
    assert counts["salesforce_account_summaries"] == 6
    assert counts["exports"] == 3
    assert counts["taxonomy_item_usage"] == 9
    assert counts["package_usage_requests"] == counts["package_usage_logs"] / 3 >= 3


def test_export_download_url_is_not_selected_by_default_but_can_be_opted_in(isvapp):
    server = isvapp(historical_exports=2)
    config = config_for(server)
    discovered = json.loads(helpers.run_cli("tap-isvapp", config, "--discover").stdout)
    exports = next(s for s in discovered["streams"] if s["tap_stream_id"] == "exports")
    by_field = {tuple(m["breadcrumb"]): m["metadata"] for m in exports["metadata"]}
    assert by_field[("properties", "download_url")]["selected-by-default"] is False

    catalog = helpers.catalog_selecting(TapIsvapp, config, ["exports"],
                                        fields={"exports": ["download_url"]})
    out = sync(TapIsvapp, config, catalog=catalog)
    completed = next(e for e in out.records["exports"] if e["status"] == "COMPLETED")
    assert completed["download_url"].startswith(server.url)
