"""tap-marketplace never ends a green run with rows missing, and never merges two rows
(issue 10, the Marketplace half). Each test reproduces one case of the issue against the
sandbox: a report body of another shape, a plain CSV cut short, late attribution and
feedback rows, identical rows, an entitlement number added to a Data Center license, an
app or a search source added later, and windows that start inside a month."""

from __future__ import annotations

import datetime
import json
import re
from collections import Counter

import orjson
import pytest
import requests

from tap_common import windows
from tap_marketplace import flatten
from tap_marketplace.client import content_key
from tap_marketplace.tap import TapMarketplace
from helpers import catalog_selecting, config_for, last_error_line, run_cli, sync

TODAY = datetime.datetime.now(datetime.timezone.utc).date()


def days_ago(days: int) -> str:
    return (TODAY - datetime.timedelta(days=days)).isoformat()


def day_before(day: str, days: int) -> str:
    return (datetime.date.fromisoformat(day[:10]) - datetime.timedelta(days=days)).isoformat()


def calls(server, path_regex, method="GET"):
    return [r for r in server.requests if r.method == method and re.search(path_regex, r.path)]


def run_one(server, stream, **settings):
    """The installed tap with only ``stream`` selected (exit code, stderr, messages)."""
    config = config_for(server, **settings)
    return run_cli("tap-marketplace", config,
                   catalog=catalog_selecting(TapMarketplace, config, [stream]))


# -- 1. report bodies of their documented shape -------------------------------------------


def test_app_version_listings_read_the_versions_list_the_live_api_sends(marketplace):
    server = marketplace(apps=2, software_per_app=2, version_listings_per_software=13)
    out = sync(TapMarketplace, config_for(server), streams={"app_version_listings"})

    (page, *_) = calls(server, r"/listings/all$")
    body = orjson.loads(_get(server, page))
    assert "versions" in body and "listings" not in body  # reference §11
    rows = out.records["app_version_listings"]
    assert len(rows) == 2 * 2 * 13
    assert len({(r["appSoftwareId"], r["buildNumber"]) for r in rows}) == len(rows)
    # Documented on each version listing without its fields: kept whole, nested objects too.
    approved = [r["approvalDetails"] for r in rows if r.get("approvalDetails")]
    assert approved and all(a["reviewer"] == {"team": "ecosystem"} for a in approved)
    assert "approvalDetails" not in out.stderr  # no drift warning about it


def _get(server, logged) -> bytes:
    config = server.app.tap_config()
    params = [(k, v) for k, values in logged.query.items() for v in values]
    return requests.get(server.origin + "/marketplace" + logged.path, params=params, timeout=10,
                        auth=(config["username"], config["api_token"])).content


def _series(*names, element=None):
    element = element or {"date": days_ago(7), "count": 3}
    return [{"name": name, "elements": [element]} for name in names]


#: (stream, the request answered wrongly, the body, what the error line says was expected)
WRONG_SHAPES = {
    "series report without series": (
        "evaluation_metrics", r"/evaluations/region$",
        {"total": {"name": "All apps"}, "addons": []},
        "`total.series` or `total.datasets` (a list)"),
    "series elements with a renamed measure": (
        "sales_metrics", r"/sales/transactions/country$",
        {"total": {"name": "All apps", "series": _series("Germany", element={
            "date": days_ago(7), "value": 3})}, "addons": []},
        "`count` in every entry of `elements`"),
    "series without elements": (
        "license_event_metrics", r"/sales/metrics/churn$",
        {"total": {"name": "All apps", "datasets": [{"name": "Monthly", "series": [
            {"name": "Customers", "uniqueTotal": 3}]}]}, "addons": []},
        "`elements` (a list) in every series"),
    "series report as a list": (
        "feedback_metrics", r"/feedback/metrics/type$", [],
        "a JSON object"),
    "per-app list renamed": (
        "churn_benchmarks", r"/churn/benchmark$",
        {"churnBenchmarkPerApps": []},
        "`churnBenchmarkPerApp` (a list)"),
    "months without a date": (
        "sales_benchmarks", r"/benchmark/sales$",
        {"total": {"name": "All apps", "salesBenchmarkPerMonth": [{"sale": 3.5}]},
         "addons": []},
        "a `date` (or `year` and `month`) in every month of total"),
    "months with renamed measures": (
        "evaluation_benchmarks", r"/benchmark/evaluations$",
        {"totals": {"name": "All apps", "evaluationBenchmarkPerVendorPerMonth": [
            {"date": days_ago(60), "evaluations": 3}]}, "addons": []},
        "`evaluationCount` or `evaluationCountYTD` in every entry of `total months`"),
    "no per-app list": (
        "app_requests_and_approvals", r"/app-requests-and-approvals$",
        {"total": {"name": "All apps", "appRequestsAndApprovalsPerMonth": []}},
        "`addons` (a list)"),
    "insights month list renamed": (
        "customer_insights", r"/customer-insights/regions$",
        {"regionInsights": []},
        "`usersDistributionPerMonth` or `regionWiseUserInsightsPerMonth` (a list)"),
    "keyword details renamed": (
        "search_keywords", r"/search-keywords/source/marketplace$",
        {"keywords": [{"searchKeyword": "jira", "percentage": 2.5}]},
        "`details` (a list)"),
    "zero-result keywords without counts": (
        "zero_result_search_keywords", r"/zero-search-results-keywords/",
        {"details": [{"searchKeyword": "nothing", "hits": 4}]},
        "`count` in every entry of `details`"),
    "entitlements as an object": (
        "free_starter_tier_entitlements", r"/freeStarterTier/export$",
        {"entitlements": []},
        "a JSON array"),
    "entitlements without an id": (
        "free_starter_tier_entitlements", r"/freeStarterTier/export$",
        [{"addonKey": "a", "productId": "p"}, {"addonKey": "b", "productId": "p"}],
        "`appEntitlementId` or `entitlementNumber` or `licenseId` in every entitlement"),
    "partner metrics under another key": (
        "partner_metrics", r"/partner-metrics/",
        {"data": [{"date": days_ago(8), "installCounts": 3}]},
        "`records` (a list)"),
}


@pytest.mark.parametrize("case", list(WRONG_SHAPES))
def test_a_report_body_of_another_shape_fails_naming_stream_path_and_expectation(
        marketplace, case):
    stream, path, body, expected = WRONG_SHAPES[case]
    server = marketplace()
    server.add_fault(path, status=200, times=999, body=orjson.dumps(body),
                     headers={"Content-Type": "application/json"})
    out = run_one(server, stream, start_date=days_ago(40))

    assert out.returncode == 1, out.stderr[-2000:]
    line = last_error_line(out.stderr)
    answered = calls(server, path, "POST" if stream == "partner_metrics" else "GET")[0].path
    assert f"| {stream}: the answer to " in line
    assert f" /marketplace{answered} " in line
    assert f"is not of the documented shape: expected {expected}; it has " in line
    assert "Traceback" not in out.stderr
    # Nothing of the broken report is emitted or bookmarked.
    broken = re.search(r"\((\w+) report\)", line)
    rows = out.records.get(stream, [])
    bookmarks = out.final_state.get("bookmarks", {}).get(stream, {})
    if broken:
        assert not [r for r in rows if r.get("report") == broken.group(1)]
        assert broken.group(1) not in json.dumps(bookmarks)
    else:
        assert not rows and "replication_key_value" not in json.dumps(bookmarks)


# -- 2. a plain CSV cut short ------------------------------------------------------------


def test_plain_catalog_csv_cut_short_with_a_matching_length_fails(marketplace):
    server = marketplace(extra={"catalog_rows": 400})
    # The body is cut after 55 % and Content-Length says exactly that much.
    server.app.reports.storage_server().add_fault("/product-catalog/", kind="truncate",
                                                  fraction=0.55)
    out = run_one(server, "product_catalog")

    assert out.returncode == 1, out.stderr[-2000:]
    line = last_error_line(out.stderr)
    assert "product_catalog: export snapshot" in line
    assert "from GET 127.0.0.2 (download URL)" in line
    assert re.search(r"CSV line \d+ has \d+ fields where the header has 22: the file is cut "
                     r"short", line), line
    rows = out.records.get("product_catalog", [])
    assert len(rows) < 400
    assert not any(flatten.ABSENT in (r["product_id"], r["version_number"],
                                      r["app_software_hosting"]) for r in rows)
    assert "X-Amz-Signature" not in out.stderr


def test_plain_csv_cut_inside_its_last_field_fails_on_the_missing_line_end(marketplace):
    server = marketplace(extra={"catalog_rows": 40})
    reports = server.app.reports
    whole = b"".join(reports.catalog_csv(reports.today.isoformat()))
    # Cut two bytes into the last field of the last row: every row has all its fields.
    cut = whole.rstrip(b"\r\n")[:-2]
    server.app.reports.storage_server().add_fault(
        "/product-catalog/", status=200, body=cut, headers={"Content-Type": "binary/octet-stream"})
    out = run_one(server, "product_catalog")

    assert out.returncode == 1
    assert "the file ends inside line 41 (no line end after it): it is cut short" in \
        last_error_line(out.stderr)
    assert len(out.records.get("product_catalog", [])) == 39, "the cut row is not emitted"


def test_catalog_csv_without_its_key_columns_fails_naming_them(marketplace):
    server = marketplace()
    server.app.reports.storage_server().add_fault(
        "/product-catalog/", status=200, body=b"productId,versionNumber\r\nx,1\r\n")
    out = run_one(server, "product_catalog")

    assert out.returncode == 1
    assert ("the CSV header lacks the column(s) ['product_id', 'app_software_hosting', "
            "'version_number']") in last_error_line(out.stderr)


# -- 3. late attribution and feedback rows -----------------------------------------------


LATE_STREAMS = {
    # stream: (sandbox kind, date field, row builder, id field)
    "marketing_attribution": ("marketing_attribution", "eventTimestamp", "attribution_row",
                              "attribution_id"),
    "feedback": ("feedback", "date", "feedback_row", "feedback_id"),
}


@pytest.mark.parametrize("stream", list(LATE_STREAMS))
def test_rows_arriving_dated_behind_the_bookmark_are_read_by_the_next_run(marketplace, stream):
    kind, date_field, builder, id_field = LATE_STREAMS[stream]
    server = marketplace(attributions=35, feedback=35)
    config = config_for(server)
    first = sync(TapMarketplace, config, streams={stream})
    bookmark = first.final_state["bookmarks"][stream]["replication_key_value"]

    # 35 touch points of evaluations that started since: dated from the bookmark's day
    # back to 30 days before it (reference §6.5), one on the bookmark's day itself.
    late = [getattr(server.app.data, builder)(1000 + i, day_before(bookmark, i * 30 // 34))
            for i in range(35)]
    server.app.data.add(kind, late)
    server.requests.clear()
    second = sync(TapMarketplace, config, state=first.final_state, streams={stream})

    emitted = {content_key(r) for r in (
        {k: v for k, v in row.items() if k != id_field} for row in second.records[stream])}
    assert all(content_key(row) in emitted for row in late), (
        f"{sum(content_key(row) in emitted for row in late)} of {len(late)} late rows")
    asked = (calls(server, r"/async/export$", "POST") or calls(server, r"/feedback/details$"))
    assert asked[0].query["startDate"] == [day_before(bookmark, 35)]
    assert second.final_state["bookmarks"][stream]["replication_key_value"] == max(
        bookmark, *(row[date_field] for row in late))


def test_lookback_settings_are_checked(marketplace):
    out = run_cli("tap-marketplace", {"username": "u", "api_token": "t", "developer_id": "6f0e9a3c-1c2b-4d5e-9f00-5a1b2c3d4e5f",
                                      "feedback_lookback_days": -1})
    assert out.returncode == 1
    assert "`feedback_lookback_days` must be 0 or more, not -1" in out.stderr


# -- 4. keys that never merge two rows ---------------------------------------------------


@pytest.mark.parametrize("stream", list(LATE_STREAMS))
def test_identical_rows_keep_distinct_keys_that_are_stable_across_runs(marketplace, stream):
    kind, date_field, builder, id_field = LATE_STREAMS[stream]
    server = marketplace(attributions=20, feedback=20)
    row = getattr(server.app.data, builder)(700, "2025-06-20")
    server.app.data.add(kind, [row, row, row])  # three identical rows, e.g. three uninstalls
    config = config_for(server)
    first = sync(TapMarketplace, config, streams={stream})
    second = sync(TapMarketplace, config, state=first.final_state, streams={stream})

    bare = content_key(row)

    def keys(out):
        return sorted(r[id_field] for r in out.records[stream] if r[id_field].startswith(bare))

    assert keys(first) == [bare, f"{bare}-2", f"{bare}-3"]
    assert keys(second) == keys(first), "a re-read numbers them the same"
    ids = [r[id_field] for r in first.records[stream]]
    assert len(ids) == len(set(ids)) == 20 + 3
    # Rows that occur once keep the bare content hash they were keyed on before.
    assert all(r[id_field] == content_key({k: v for k, v in r.items() if k != id_field})
               for r in first.records[stream] if not r[id_field].startswith(bare))


def test_data_center_license_keeps_its_key_when_it_gets_an_entitlement_number(marketplace):
    server = marketplace(licenses=60)
    config = config_for(server, start_date="2018-07-01")
    first = sync(TapMarketplace, config, streams={"licenses"})
    data_center = [r for r in first.records["licenses"] if r["hosting"] == "Data Center"]
    assert data_center and all(r["license_key"].startswith("SEN-") for r in data_center)

    # Atlassian adds entitlement numbers to existing Data Center licenses (2025).
    numbers = [int(r["addonLicenseId"]) - 2000000 for r in data_center]
    for number in numbers:
        server.app.data.update("licenses", [number], appEntitlementNumber=f"E-7{number:07d}",
                               appEntitlementId=f"7e000000-0000-4000-8000-{number:012d}",
                               lastUpdated="2025-07-02")
    second = sync(TapMarketplace, config, state=first.final_state, streams={"licenses"})

    again = {r["addonLicenseId"]: r for r in second.records["licenses"]
             if r["hosting"] == "Data Center"}
    assert len(again) == len(data_center)
    for before in data_center:
        after = again[before["addonLicenseId"]]
        assert after["appEntitlementNumber"].startswith("E-7")
        assert after["license_key"] == before["license_key"], "one row per license"
    # Cloud licenses stay keyed on their entitlement number.
    assert all(r["license_key"] == r["appEntitlementNumber"] for r in second.records["licenses"]
               + first.records["licenses"] if r["hosting"] == "Cloud")


# -- 5. a bookmark per app and per search source ------------------------------------------


def _months_asked(server, path_regex) -> int:
    return len({r.query["startDate"][0] for r in calls(server, path_regex)})


def test_an_app_added_later_gets_its_whole_search_keyword_history(marketplace):
    server = marketplace(extra={"report_history_days": 400})
    config = config_for(server, aggregation="month", report_history_days=365)
    first = sync(TapMarketplace, config, streams={"search_keywords"})
    history = len(windows.periods(TODAY - datetime.timedelta(days=365), TODAY, "month"))
    old = server.app.apps[0]["productId"]
    assert _months_asked(server, rf"/products/{old}/search-keywords$") == history

    added = server.app.add_app()  # joins the developer space after the first run
    server.requests.clear()
    second = sync(TapMarketplace, config, state=first.final_state, streams={"search_keywords"})

    recent = _months_asked(server, rf"/products/{old}/search-keywords$")
    assert recent < 4, "an app already read is read from its own bookmark"
    assert _months_asked(server, rf"/products/{added['productId']}/search-keywords$") == history
    months = {r["date"] for r in second.records["search_keywords"]
              if r["product_id"] == added["productId"]}
    assert len(months) == history
    partitions = second.final_state["bookmarks"]["search_keywords"]["partitions"]
    assert {"report": "search_keywords_by_app", "productId": added["productId"]} in [
        p["context"] for p in partitions]


def test_a_search_source_added_later_gets_its_whole_history(marketplace):
    server = marketplace(extra={"report_history_days": 400})
    config = config_for(server, aggregation="month", report_history_days=365)
    first = sync(TapMarketplace, {**config, "search_keyword_sources": ["marketplace"]},
                 streams={"search_keywords"})
    server.requests.clear()
    sync(TapMarketplace, config, state=first.final_state, streams={"search_keywords"})

    history = len(windows.periods(TODAY - datetime.timedelta(days=365), TODAY, "month"))
    assert _months_asked(server, r"/source/marketplace$") < 4
    assert _months_asked(server, r"/source/embedded-marketplace$") == history


# -- 6. windows that start on a period boundary --------------------------------------------


@pytest.mark.parametrize(("aggregation", "lookback"), [("month", 35), ("week", 10)])
def test_series_windows_start_on_the_first_day_of_a_period(marketplace, aggregation, lookback):
    # The sandbox computes a period asked from inside it over the days asked only.
    server = marketplace(extra={"partial_first_period": True})
    config = config_for(server, aggregation=aggregation, start_date=days_ago(100),
                        report_lookback_days=lookback)
    first = sync(TapMarketplace, config, streams={"evaluation_metrics"})
    assert {r.query["startDate"][0] for r in calls(server, r"/evaluations/")} == {
        windows.period_start(TODAY - datetime.timedelta(days=100), aggregation).isoformat()}
    server.requests.clear()
    second = sync(TapMarketplace, config, state=first.final_state,
                  streams={"evaluation_metrics"})

    starts = {r.query["startDate"][0] for r in calls(server, r"/evaluations/")}
    bookmark = first.final_state["bookmarks"]["evaluation_metrics"]["partitions"][0][
        "replication_key_value"]
    expected = windows.period_start(datetime.date.fromisoformat(day_before(bookmark, lookback)),
                                    aggregation).isoformat()
    assert starts == {expected}
    key = ("report", "dimension", "dataset", "app_key", "date")
    before = {tuple(r[k] for k in key): r["count"] for r in first.records["evaluation_metrics"]}
    reread = [r for r in second.records["evaluation_metrics"] if r["date"] == expected]
    assert reread, "the first period of the window is read again"
    assert all(r["count"] == before[tuple(r[k] for k in key)] for r in reread), \
        "a complete period is never overwritten by a partial one"


def test_every_period_report_asks_from_a_period_start(marketplace):
    server = marketplace(extra={"report_history_days": 200})
    config = config_for(server, aggregation="month", start_date=days_ago(150))
    streams = {"sales_metrics", "churn_benchmarks", "customer_insights", "search_keywords",
               "partner_metrics"}
    first = sync(TapMarketplace, config, streams=streams)
    server.requests.clear()
    sync(TapMarketplace, config, state=first.final_state, streams=streams)

    starts = Counter(r.query["startDate"][0][8:] for r in server.requests
                     if "startDate" in r.query)
    assert set(starts) == {"01"}, starts
    body = server.app.reports.partner_metrics_bodies[-1]
    week_start = windows.period_start(
        datetime.date.fromisoformat(body["dateRange"]["startDate"]), "week")
    assert body["dateRange"]["startDate"] == week_start.isoformat()  # weekly by default
