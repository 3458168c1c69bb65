"""tap-marketplace's report streams against the Marketplace sandbox (isv_sandbox.marketplace_reports)."""

from __future__ import annotations

import datetime
import json
import logging
import os
import re
import subprocess
import tempfile
import time
from collections import Counter
from pathlib import Path

import orjson
import pytest
import requests
from singer_sdk.testing import SuiteConfig, get_tap_test_class

import isv_sandbox
from tap_common import windows
from tap_marketplace import flatten
from tap_marketplace.streams import STREAMS, aggregates, partner_metrics, product_catalog
from tap_marketplace.tap import TapMarketplace
from helpers import BIN, catalog_selecting, config_for, last_error_line, run_cli, sync

REPORT_STREAM_CLASSES = [
    stream for stream in STREAMS
    if stream.__module__ in (aggregates.__name__, partner_metrics.__name__,
                             product_catalog.__name__)]
REPORT_STREAMS = [stream.name for stream in REPORT_STREAM_CLASSES]
SERIES_STREAMS = [s.name for s in REPORT_STREAM_CLASSES
                  if issubclass(s, aggregates.SeriesReportStream)]
TODAY = datetime.datetime.now(datetime.timezone.utc).date()


def days_ago(days: int) -> str:
    return (TODAY - datetime.timedelta(days=days)).isoformat()


class TapMarketplaceReports(TapMarketplace):
    """The tap with only the report streams, for the SDK's standard tests."""

    def discover_streams(self) -> list:
        return [stream_class(self) for stream_class in REPORT_STREAM_CLASSES]


# The SDK's standard tests over the report streams (the others have their own), with the
# catalog stream selected too.
_STANDARD_SANDBOX = isv_sandbox.start("marketplace", extra={"catalog_rows": 40})
_STANDARD_CONFIG = {**config_for(_STANDARD_SANDBOX), "start_date": days_ago(40),
                    "aggregation": "week"}

TestMarketplaceReportsStandard = get_tap_test_class(
    TapMarketplaceReports,
    config=_STANDARD_CONFIG,
    catalog=catalog_selecting(TapMarketplaceReports, _STANDARD_CONFIG, REPORT_STREAMS),
    suite_config=SuiteConfig(max_records_limit=500),
)


@pytest.fixture
def marketplace(sandboxes):
    """A Marketplace sandbox; keyword arguments are report settings (``extra``)."""
    return lambda **extra: sandboxes("marketplace", extra=extra)


def calls(server, path_regex, method="GET"):
    return [r for r in server.requests if r.method == method and re.search(path_regex, r.path)]


def elements_in(node) -> int:
    if isinstance(node, dict):
        return len(node.get("elements") or []) + sum(
            elements_in(v) for k, v in node.items() if k != "elements")
    if isinstance(node, list):
        return sum(elements_in(v) for v in node)
    return 0


def fetch(server, logged) -> dict:
    """The answer to a request the tap made, asked again (figures are stable)."""
    config = server.app.tap_config()
    params = [(k, v) for k, values in logged.query.items() for v in values]
    response = requests.get(server.origin + "/marketplace" + logged.path, params=params,
                            auth=(config["username"], config["api_token"]), timeout=10)
    response.raise_for_status()
    return response.json()


# -- aggregated series reports -----------------------------------------------------------


SERIES_ENDPOINTS = (
    (r"/evaluations/(\w+)$", "evaluation_metrics", "evaluations_by_"),
    (r"/feedback/metrics/(\w+)$", "feedback_metrics", "feedback_by_"),
    (r"/sales/transactions/(\w+)$", "sales_metrics", "sales_by_"),
    (r"/sales/metrics/(\w+)$", "license_event_metrics", ""),
)


def test_every_series_element_becomes_exactly_one_row(marketplace):
    server = marketplace()
    out = sync(TapMarketplace, config_for(server, start_date=days_ago(70), aggregation="week"),
               streams=set(SERIES_STREAMS))

    app_keys = {a["appKey"] for a in server.app.apps}
    report_calls = calls(server, r"/(evaluations|feedback/metrics|sales/transactions|"
                                 r"sales/metrics)/[a-z]+$")
    assert len(report_calls) == 4 + 2 + 6 + 3
    for logged in report_calls:
        payload = fetch(server, logged)
        stream, report = next(
            (stream, prefix + m.group(1)) for pattern, stream, prefix in SERIES_ENDPOINTS
            if (m := re.search(pattern, logged.path)))
        rows = [r for r in out.records[stream] if r["report"] == report]
        assert len(rows) == elements_in(payload) > 0, report
        keys = [tuple(r[k] for k in aggregates.SeriesReportStream.primary_keys) for r in rows]
        assert len(set(keys)) == len(keys), f"{report}: a row is doubled"
        assert {r["app_key"] for r in rows} == {flatten.TOTAL_APP_KEY, *app_keys}
        # The total is the sum of the apps, period by period, as the API reports it.
        for (dimension, dataset, date), total in Counter(
                {(r["dimension"], r["dataset"], r["date"]): r["count"]
                 for r in rows if r["app_key"] == flatten.TOTAL_APP_KEY}).items():
            assert total == sum(r["count"] for r in rows if r["app_key"] != "__total__"
                                and (r["dimension"], r["dataset"], r["date"])
                                == (dimension, dataset, date))


def test_irregular_shapes_arrive_as_rows_with_their_own_fields(marketplace):
    server = marketplace()
    out = sync(TapMarketplace, config_for(server, start_date=days_ago(30), aggregation="week"),
               streams={"license_event_metrics", "sales_metrics"})

    events = out.records["license_event_metrics"]
    churn = [r for r in events if r["report"] == "churn"]
    assert {r["dataset"] for r in churn} == {"Monthly", "Annual"}
    assert {r["dimension"] for r in churn} == {"Customers", "Cancellations"}
    assert all(isinstance(r["uniqueTotal"], int) for r in churn)
    conversion = [r for r in events if r["report"] == "conversion"]
    assert {r["dataset"] for r in conversion} == {flatten.ABSENT}  # conversion has no datasets
    assert {r["series_type"] for r in conversion} == {"Upgrade"}
    assert all(r["uniqueTotal"] is None for r in events if r["report"] == "renewal")
    hosting = [r for r in out.records["sales_metrics"] if r["report"] == "sales_by_hosting"]
    assert all(r["revenue"] is not None and r["netCount"] <= r["count"] for r in hosting)


def test_lookback_rereads_before_the_bookmark_and_state_advances(marketplace):
    server = marketplace()
    config = config_for(server, start_date=days_ago(100), aggregation="week",
                        report_lookback_days=14)
    first = sync(TapMarketplace, config, streams={"evaluation_metrics"})
    bookmarks = first.final_state["bookmarks"]["evaluation_metrics"]["partitions"]
    assert {b["context"]["report"] for b in bookmarks} == {
        f"evaluations_by_{m}" for m in ("country", "hosting", "partner", "region")}
    latest = max(r["date"] for r in first.records["evaluation_metrics"])
    assert {b["replication_key_value"] for b in bookmarks} == {latest}
    assert all("progress_markers" not in b for b in bookmarks)
    # The first week asked is the whole week holding start_date (weeks start on Sunday).
    assert {r.query["startDate"][0] for r in calls(server, "/evaluations/")} == {
        windows.period_start(TODAY - datetime.timedelta(days=100), "week").isoformat()}

    server.requests.clear()
    second = sync(TapMarketplace, config, state=first.final_state,
                  streams={"evaluation_metrics"})
    expected_start = (datetime.date.fromisoformat(latest)
                      - datetime.timedelta(days=14)).isoformat()
    assert {r.query["startDate"][0] for r in calls(server, "/evaluations/")} == {expected_start}
    assert {r.query["aggregation"][0] for r in calls(server, "/evaluations/")} == {"week"}
    assert min(r["date"] for r in second.records["evaluation_metrics"]) <= expected_start
    assert second.final_state["bookmarks"]["evaluation_metrics"] == \
        first.final_state["bookmarks"]["evaluation_metrics"]


# -- per-month reports ---------------------------------------------------------------------


def test_benchmarks_insights_and_app_requests_have_a_row_per_app_and_month(marketplace):
    server = marketplace(benchmark_lag_months=1)
    names = {"churn_benchmarks", "evaluation_benchmarks", "sales_benchmarks",
             "app_requests_and_approvals", "customer_insights"}
    out = sync(TapMarketplace, config_for(server, start_date=days_ago(100)), streams=names)

    app_keys = {a["appKey"] for a in server.app.apps}
    published = [m for m in windows.periods(TODAY - datetime.timedelta(days=100), TODAY,
                                            "month")][:-1]  # a month of publication lag
    months = {first.isoformat() for first, _ in published}
    for name in ("evaluation_benchmarks", "sales_benchmarks", "app_requests_and_approvals"):
        rows = out.records[name]
        assert Counter(r["app_key"] for r in rows) == {
            key: len(months) for key in (flatten.TOTAL_APP_KEY, *app_keys)}, name
        assert {r["date"] for r in rows} == months, name
    churn = out.records["churn_benchmarks"]
    assert {r["app_key"] for r in churn} == app_keys  # per app only: no total in the report
    assert all(r["date"] == f"{r['year']}-{r['month']}-01" for r in churn)
    evaluation_apps = [r for r in out.records["evaluation_benchmarks"]
                       if r["app_key"] != flatten.TOTAL_APP_KEY]
    assert all(r["evaluationMoMGrowthBenchmarkAllAppsOnBaseProduct"] is not None
               for r in evaluation_apps)

    insights = Counter((r["report"], r["parent_product"]) for r in out.records[
        "customer_insights"])
    assert insights == {("customer_insights_regions", flatten.ABSENT): 4 * len(months),
                        ("customer_insights_editions", flatten.ABSENT): 4 * len(months),
                        ("customer_insights_active_users", flatten.ABSENT): 2 * len(months),
                        ("customer_insights_tiers", "Jira"): 5 * len(months),
                        ("customer_insights_tiers", "Confluence"): 5 * len(months)}


def test_product_ids_setting_narrows_the_reports_that_accept_it(marketplace):
    server = marketplace()
    chosen = server.app.apps[1]
    out = sync(TapMarketplace, config_for(server, start_date=days_ago(70),
                                          product_ids=[chosen["productId"]]),
               streams={"sales_benchmarks", "search_keywords"})

    assert {r["app_key"] for r in out.records["sales_benchmarks"]} == {
        flatten.TOTAL_APP_KEY, chosen["appKey"]}
    assert all(r.query["productId"] == [chosen["productId"]]
               for r in calls(server, "/benchmark/sales"))
    by_app = calls(server, r"/products/[^/]+/search-keywords")
    assert {r.path.split("/")[-2] for r in by_app} == {chosen["productId"]}
    assert calls(server, "/product-listing/") == []  # configured apps need no lookup


def test_product_ids_setting_narrows_partner_metrics_through_an_attribute_filter(marketplace):
    server = marketplace()
    chosen = server.app.apps[2]
    out = sync(TapMarketplace, config_for(server, start_date=days_ago(20),
                                          product_ids=[chosen["productId"]]),
               streams={"partner_metrics"})

    (body,) = server.app.reports.partner_metrics_bodies
    assert body["attributesFilter"]["expr"]["andGroup"][0]["filter"] == {
        "fieldName": "PRODUCT_ID", "oneFilter": {"inListFilter": {"values": [
            chosen["productId"]]}}}
    assert {r["productId"] for r in out.records["partner_metrics"]} == {chosen["productId"]}


def test_developer_space_apps_are_listed_once_per_run_for_search_keywords(marketplace):
    server = marketplace()
    out = sync(TapMarketplace, config_for(server, start_date=days_ago(10)),
               streams={"search_keywords"})

    assert len(calls(server, "/product-listing/developer-space/")) == 1
    assert {r["product_id"] for r in out.records["search_keywords"]
            if r["report"] == "search_keywords_by_app"} == {a["productId"] for a in server.app.apps}


# -- reports asked one period at a time --------------------------------------------------


def test_search_keywords_one_request_per_period_source_and_product(marketplace):
    server = marketplace(search_keywords_per_period=3)
    out = sync(TapMarketplace, config_for(server, start_date=days_ago(20), aggregation="week"),
               streams={"search_keywords", "zero_result_search_keywords"})

    weeks = windows.periods(TODAY - datetime.timedelta(days=20), TODAY, "week")
    apps = server.app.apps
    assert len(calls(server, "/search-keywords/source/marketplace$")) == len(weeks)
    assert len(calls(server, "/search-keywords/source/embedded-marketplace$")) == len(weeks)
    assert len(calls(server, r"/developer-space/[^/]+/search-keywords$")) == len(weeks)
    assert len(calls(server, r"/products/[^/]+/search-keywords$")) == len(weeks) * len(apps)
    assert len(calls(server, "/zero-search-results-keywords/source/marketplace$")) == len(weeks)
    asked = {(r.query["startDate"][0], r.query["endDate"][0])
             for r in calls(server, "/search-keywords/source/marketplace$")}
    assert asked == {(a.isoformat(), b.isoformat()) for a, b in weeks}

    rows = out.records["search_keywords"]
    keys = [tuple(r[k] for k in aggregates.SearchKeywordsStream.primary_keys) for r in rows]
    assert len(keys) == len(set(keys))
    assert Counter(r["report"] for r in rows) == {
        "search_keywords_by_source": 2 * 3 * len(weeks),
        "search_keywords_by_partner": (1 + len(apps)) * len(weeks),
        "search_keywords_by_app": len(apps) * 3 * len(weeks)}
    for row in rows:
        assert (row["date"], row["period_end"]) in {(a.isoformat(), b.isoformat())
                                                    for a, b in weeks}
    zero = out.records["zero_result_search_keywords"]
    assert len(zero) == 4 * len(weeks)
    assert all(r[k] is not None for r in zero for k in
               aggregates.ZeroResultSearchKeywordsStream.primary_keys)


def test_free_starter_tier_reads_each_day_up_to_yesterday_then_from_the_bookmark(marketplace):
    server = marketplace(free_tier_entitlements=3)
    config = config_for(server, start_date=days_ago(10), report_lookback_days=2)
    first = sync(TapMarketplace, config, streams={"free_starter_tier_entitlements"})

    days = [r.query["date"][0] for r in calls(server, "/freeStarterTier/export")]
    assert days == [days_ago(n) for n in range(10, 0, -1)]
    assert all(r.query["accept"] == ["json"] for r in calls(server, "/freeStarterTier/"))
    rows = first.records["free_starter_tier_entitlements"]
    assert {r["date"] for r in rows} == set(days)
    assert len({(r["date"], r["entitlement_key"]) for r in rows}) == len(rows)
    assert first.final_state["bookmarks"]["free_starter_tier_entitlements"][
        "replication_key_value"] == days_ago(1)

    server.requests.clear()
    sync(TapMarketplace, config, state=first.final_state,
         streams={"free_starter_tier_entitlements"})
    assert [r.query["date"][0] for r in calls(server, "/freeStarterTier/export")] == [
        days_ago(3), days_ago(2), days_ago(1)]


# -- partner metrics ---------------------------------------------------------------------------


def test_partner_metrics_pages_by_period_across_a_range_longer_than_14_weeks(marketplace):
    server = marketplace(partner_metric_versions=2, report_history_days=200)
    out = sync(TapMarketplace, config_for(server, start_date=days_ago(150)),
               streams={"partner_metrics"})

    posts = calls(server, "/partner-metrics/", method="POST")
    weeks = windows.periods(TODAY - datetime.timedelta(days=150),
                            TODAY - datetime.timedelta(days=1), "week")
    assert len(weeks) > 14
    assert [(r.query["offset"][0], r.query["limit"][0]) for r in posts] == [
        (str(offset), "14") for offset in range(0, len(weeks), 14)]
    rows = out.records["partner_metrics"]
    assert {r["date"] for r in rows} == {first.isoformat() for first, _ in weeks}
    per_week = len(server.app.apps) * 2 * 2  # apps x parent software x versions
    assert Counter(r["date"] for r in rows) == {first.isoformat(): per_week
                                                for first, _ in weeks}
    assert len({(r["date"], r["dimensions"]) for r in rows}) == len(rows)
    assert all(r["installCounts"] and r["parentSoftwareVersion"] and r["appKey"] for r in rows)


def test_partner_metrics_body_comes_from_settings_with_the_range_set_by_the_tap(marketplace):
    server = marketplace()
    query = {"granularity": "MONTH", "attributes": [{"name": "PARENT_SOFTWARE"}],
             "metrics": {"metricFields": [{"name": "INSTALL_COUNT"}]}}
    out = sync(TapMarketplace, config_for(server, start_date=days_ago(70),
                                          partner_metrics_query=query,
                                          partner_metrics_page_periods=1),
               streams={"partner_metrics"})

    months = windows.periods(TODAY - datetime.timedelta(days=70),
                             TODAY - datetime.timedelta(days=1), "month")
    captured = server.app.reports.partner_metrics_bodies
    assert len(captured) == len(months)
    assert captured[0] == {**query, "dateRange": {"startDate": months[0][0].isoformat(),
                                                  "endDate": days_ago(1)}}
    rows = out.records["partner_metrics"]
    assert Counter(r["date"] for r in rows) == {m.isoformat(): len(server.app.apps) * 2
                                                for m, _ in months}


def test_a_partner_metrics_query_without_metrics_is_a_config_error():
    out = run_cli("tap-marketplace", {
        "username": "u", "api_token": "t", "developer_id": "6f0e9a3c-1c2b-4d5e-9f00-5a1b2c3d4e5f",
        "partner_metrics_query": {"granularity": "WEEK", "dateRange": {}},
        "partner_metrics_page_periods": 30, "search_keyword_sources": ["web"]})
    assert out.returncode == 1
    for setting in ("partner_metrics_query", "metricFields", "dateRange",
                    "partner_metrics_page_periods", "search_keyword_sources"):
        assert setting in out.stderr, setting


# -- the product catalog ---------------------------------------------------------------------


def test_catalog_streams_typed_rows_from_the_presigned_host_without_credentials(marketplace):
    server = marketplace(catalog_rows=250, catalog_chunk_rows=37)
    out = sync(TapMarketplace, config_for(server), streams={"product_catalog"})

    rows = out.records["product_catalog"]
    assert len(rows) == 250
    assert len({(r["product_id"], r["app_software_hosting"], r["version_number"])
                for r in rows}) == 250
    first = rows[0]
    assert first["snapshot_date"] == TODAY.isoformat()
    assert first["summary"] == 'App 0 does things, "quickly", for teams'
    assert isinstance(first["is_beta"], bool) and first["publicly_visible"] is True
    assert isinstance(first["download_count"], int)
    assert first["category_name_list"] == ["Admin tools"]
    assert rows[5]["parent_software_list"] == ["Jira", "Confluence"]  # app 1
    assert rows[55]["average_stars"] is None  # an empty CSV cell is null
    storage = server.app.reports.storage
    assert storage.host == "127.0.0.2"
    downloads = calls(storage, "/product-catalog/")
    assert [(r.status, r.authorization) for r in downloads] == [(200, None)]
    assert calls(server, "/product-catalog/latest")[0].authorization  # the API call is signed in


def test_storage_host_refuses_credentials_like_s3(marketplace):
    server = marketplace()
    config = server.app.tap_config()
    auth = (config["username"], config["api_token"])
    latest = requests.get(config["api_url"] + "/rest/3/reporting/product-catalog/latest",
                          auth=auth, timeout=10).json()
    refused = requests.get(latest["presignedUrl"], auth=auth, timeout=10)
    assert refused.status_code == 400
    assert "Only one auth mechanism allowed" in refused.text
    assert requests.get(latest["presignedUrl"], timeout=10).status_code == 200


def test_catalog_not_selected_by_default():
    catalog = json.loads(run_cli("tap-marketplace", {"username": "u", "api_token": "t",
                                                     "developer_id": "6f0e9a3c-1c2b-4d5e-9f00-5a1b2c3d4e5f"}, "--discover").stdout)
    selected = {entry["tap_stream_id"]: next(m["metadata"].get("selected-by-default")
                                             for m in entry["metadata"] if m["breadcrumb"] == [])
                for entry in catalog["streams"]}
    assert selected["product_catalog"] is False
    assert all(selected[name] for name in REPORT_STREAMS if name != "product_catalog")


def test_catalog_download_dropped_midway_is_fetched_again_without_losing_rows(marketplace,
                                                                             caplog):
    # Large enough that rows are emitted before the break (the body is read in 1 MiB blocks).
    server = marketplace(catalog_rows=12_000)
    server.app.reports.storage_server().add_fault("/product-catalog/", kind="reset",
                                                  fraction=0.6)
    with caplog.at_level(logging.WARNING):
        out = sync(TapMarketplace, config_for(server), streams={"product_catalog"})

    rows = out.records["product_catalog"]
    assert len(rows) == 12_000
    assert len({(r["product_id"], r["app_software_hosting"], r["version_number"])
                for r in rows}) == 12_000
    (warning,) = [r.getMessage() for r in caplog.records if "downloading again" in r.getMessage()]
    skipped = int(re.search(r"skipping the (\d+) rows", warning).group(1))
    assert 0 < skipped < 12_000
    assert len(calls(server, "/product-catalog/latest")) == 2  # a fresh URL for the retry


def test_expired_presigned_url_fails_with_a_clear_line_and_no_signature(marketplace):
    server = marketplace(catalog_expires_seconds=-1)
    config = config_for(server)
    catalog = catalog_selecting(TapMarketplace, config, ["product_catalog"])
    out = run_cli("tap-marketplace", config, catalog=catalog)

    assert out.returncode == 1
    line = last_error_line(out.stderr)
    assert "product_catalog: HTTP 403" in line and "Request has expired" in line
    assert "127.0.0.2 (download URL)" in line
    assert "X-Amz-Signature" not in out.stderr
    assert config["api_token"] not in out.stderr + out.stdout


def peak_rss_mb(config: dict, catalog: dict) -> float:
    """Peak RSS of the installed tap, its output thrown away (os.wait4)."""
    with tempfile.TemporaryDirectory() as tmp:
        Path(tmp, "config.json").write_text(json.dumps(config))
        Path(tmp, "catalog.json").write_text(json.dumps(catalog))
        process = subprocess.Popen(  # noqa: S603
            [str(BIN / "tap-marketplace"), "--config", f"{tmp}/config.json",
             "--catalog", f"{tmp}/catalog.json"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        _, status, usage = os.wait4(process.pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    return usage.ru_maxrss / 1024


def test_catalog_is_streamed_in_constant_memory(marketplace):
    small, large = 3_000, 30_000
    server = marketplace(catalog_rows=small)
    config = config_for(server)
    catalog = catalog_selecting(TapMarketplace, config, ["product_catalog"])

    small_rss = peak_rss_mb(config, catalog)
    server.app.reports.settings.catalog_rows = large
    started = time.perf_counter()
    large_rss = peak_rss_mb(config, catalog)
    seconds = time.perf_counter() - started

    csv_mb = large * len(server.app.reports.catalog_line(0, TODAY.isoformat())) / 2**20
    print(f"catalog: {small} rows {small_rss:.1f} MB peak RSS, {large} rows ({csv_mb:.1f} MB "
          f"CSV) {large_rss:.1f} MB, {large / seconds:.0f} rows/s")
    assert large_rss - small_rss < max(8.0, csv_mb / 2), (small_rss, large_rss)


# -- failures and the installed tap -----------------------------------------------------------


def test_a_report_failing_after_retries_exits_nonzero_with_the_vendor_message(marketplace):
    server = marketplace()
    server.add_fault(r"/evaluations/region$", status=502, times=99,
                     body=orjson.dumps({"errors": [{"message": "Temporarily unable to "
                                                               "retrieve evaluations"}]}))
    config = config_for(server, max_retries=1, start_date=days_ago(20))
    out = run_cli("tap-marketplace", config,
                  catalog=catalog_selecting(TapMarketplace, config, ["evaluation_metrics"]))

    assert out.returncode == 1
    line = last_error_line(out.stderr)
    assert "evaluation_metrics: HTTP 502" in line
    assert "Temporarily unable to retrieve evaluations" in line
    region_rows = [r for r in out.records.get("evaluation_metrics", [])
                   if r["report"] == "evaluations_by_region"]
    assert region_rows == []
    assert "evaluations_by_region" not in json.dumps(out.final_state)


def test_an_undated_entry_stops_the_run_instead_of_being_dropped(marketplace):
    server = marketplace()
    body = {"total": {"name": "All apps", "series": [
        {"name": "APAC", "elements": [{"date": days_ago(7), "count": 3}, {"count": 4}]}]},
        "addons": []}
    server.add_fault(r"/evaluations/region$", status=200, body=orjson.dumps(body),
                     headers={"Content-Type": "application/json"})
    config = config_for(server, start_date=days_ago(20))
    out = run_cli("tap-marketplace", config,
                  catalog=catalog_selecting(TapMarketplace, config, ["evaluation_metrics"]))

    assert out.returncode == 1
    line = last_error_line(out.stderr)
    assert "evaluation_metrics: the answer to GET /marketplace/rest/3/reporting/" in line
    assert ("/evaluations/region (evaluations_by_region report) is not of the documented shape: "
            "expected `date` in every entry of `elements`") in line
    assert "evaluations_by_region" not in json.dumps(out.final_state)


def test_every_report_stream_syncs_through_the_installed_tap(marketplace):
    server = marketplace(catalog_rows=120)
    config = config_for(server, start_date=days_ago(60))
    out = run_cli("tap-marketplace", config,
                  catalog=catalog_selecting(TapMarketplace, config, REPORT_STREAMS))

    assert out.returncode == 0, out.stderr[-3000:]
    counts = {name: len(out.records.get(name, [])) for name in REPORT_STREAMS}
    print("rows per report stream:", counts)
    assert all(counts.values()), counts
    for name in REPORT_STREAMS:
        properties = set(out.schemas[name]["properties"])
        assert all(set(r) == properties for r in out.records[name]), name
