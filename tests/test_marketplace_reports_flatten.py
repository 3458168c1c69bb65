"""The one flattening of Marketplace report payloads into tidy rows (tap_marketplace.flatten).

Payloads are the shapes of Atlassian's v3 spec examples, irregular ones included.
"""

from __future__ import annotations

import datetime
import itertools

from tap_common import windows
from tap_marketplace import flatten
from tap_marketplace.streams.aggregates import (
    ChurnBenchmarksStream,
    CustomerInsightsStream,
    EvaluationBenchmarksStream,
    SeriesReportStream,
)

SERIES_KEY = SeriesReportStream.primary_keys


def elements_in(node):
    """Every ``elements`` entry anywhere in a payload, counted independently of flatten."""
    if isinstance(node, dict):
        return len(node.get("elements") or []) + sum(
            elements_in(v) for k, v in node.items() if k != "elements")
    if isinstance(node, list):
        return sum(elements_in(v) for v in node)
    return 0


def series(name, counts, start="2025-02-23", **extra):
    day = datetime.date.fromisoformat(start)
    return {"name": name, **extra, "elements": [
        {"date": (day + datetime.timedelta(weeks=i)).isoformat(), "count": c}
        for i, c in enumerate(counts)]}


# Churn as in the spec example: datasets by billing period, uniqueTotal per series, and
# one app whose "Cancellations" series sits directly in ``datasets`` (as printed there).
CHURN = {
    "_links": {"self": {"href": "/rest/3/reporting/developer-space/d/sales/metrics/churn"}},
    "total": {"name": "All apps", "datasets": [
        {"name": "Monthly", "series": [series("Customers", [20, 30, 50], uniqueTotal=100),
                                       series("Cancellations", [2, 5, 3], uniqueTotal=10)]},
        {"name": "Annual", "series": [series("Customers", [22, 36, 53], uniqueTotal=87),
                                      series("Cancellations", [7, 21, 26], uniqueTotal=54)]},
    ]},
    "addons": [{"addonKey": "test-app", "productId": "p-1", "name": "Test App", "datasets": [
        {"name": "Monthly", "series": [series("Customers", [20, 30, 50], uniqueTotal=100),
                                       series("Cancellations", [2, 5, 3], uniqueTotal=10)]},
        {"name": "Annual", "series": [series("Customers", [22, 36, 53], uniqueTotal=87)]},
        series("Cancellations", [7, 21, 26], uniqueTotal=54),
    ]}],
}

# Conversion: flat series, no datasets, a conversionType qualifier.
CONVERSION = {
    "total": {"name": "All apps", "series": [
        series("Evaluations", [4, 4, 4, 4, 6], conversionType="Upgrade"),
        series("Conversions", [2, 2, 2, 2, 4], conversionType="Upgrade")]},
    "addons": [
        {"addonKey": "app-key-1", "productId": "p-1", "name": "App 1", "series": [
            series("Evaluations", [2, 2, 2, 2, 6], conversionType="Upgrade"),
            series("Conversions", [1, 1, 1, 1, 2], conversionType="Upgrade")]},
        {"productId": "p-2"},
    ],
}

# Renewal as printed in the spec: a dataset listed among another dataset's series.
RENEWAL = {
    "total": {"name": "All apps", "datasets": [
        {"name": "Monthly", "series": [
            series("Renewal opportunities", [86, 495, 528]),
            series("Renewals", [84, 470, 505]),
            {"name": "Annual", "series": [series("Renewal opportunities", [22, 36, 53]),
                                          series("Renewals", [15, 15, 27])]},
        ]},
    ]},
    "addons": [],
}

# Sales by hosting: count, netCount, revenue and an evaluationType qualifier.
SALES = {
    "total": {"name": "All apps", "series": [
        {"name": "Cloud", "evaluationType": "Net new evaluation", "elements": [
            {"date": "2025-03-09", "count": 1364, "netCount": 1350, "revenue": 300489.79}]},
        {"name": "Data Center", "evaluationType": "Net new evaluation", "elements": [
            {"date": "2025-03-09", "count": 35, "netCount": 35, "revenue": 224094.09}]}]},
    "addons": [{"addonKey": "test-app", "productId": "p-1", "name": "Test app", "series": [
        {"name": "Cloud", "evaluationType": "Net new evaluation", "elements": [
            {"date": "2025-03-09", "count": 1364, "netCount": 1350, "revenue": 300489.79}]}]}],
}


def keys_of(rows, key=SERIES_KEY):
    return [tuple(row[k] for k in key) for row in rows]


def test_every_element_becomes_exactly_one_row():
    for payload in (CHURN, CONVERSION, RENEWAL, SALES):
        rows = list(flatten.series_rows(payload, report="r", aggregation="week"))
        assert len(rows) == elements_in(payload)
        assert len(set(keys_of(rows))) == len(rows), "a key is doubled"


def test_totals_and_per_app_rows_are_both_present_and_keys_never_null():
    rows = list(flatten.series_rows(CHURN, report="churn", aggregation="week"))

    totals = [r for r in rows if r["app_key"] == flatten.TOTAL_APP_KEY]
    apps = [r for r in rows if r["app_key"] == "test-app"]
    assert len(totals) == 12 and len(apps) == 12
    assert {(r["addon_key"], r["product_id"], r["app_name"]) for r in totals} == {
        (None, None, None)}
    assert {(r["addon_key"], r["product_id"], r["app_name"]) for r in apps} == {
        ("test-app", "p-1", "Test App")}
    for row in rows:
        assert all(row[k] is not None for k in SERIES_KEY), row


def test_churn_rows_carry_dataset_dimension_and_unique_total():
    rows = list(flatten.series_rows(CHURN, report="churn", aggregation="week"))
    first = rows[0]
    assert first == {
        "report": "churn", "dimension": "Customers", "series_type": flatten.ABSENT, "dataset": "Monthly",
        "app_key": "__total__", "addon_key": None, "product_id": None, "app_name": None,
        "aggregation": "week", "uniqueTotal": 100, "date": "2025-02-23", "count": 20,
        "netCount": None, "revenue": None}
    by_series = {(r["app_key"], r["dataset"], r["dimension"]): r["uniqueTotal"] for r in rows}
    assert by_series[("__total__", "Annual", "Cancellations")] == 54
    # The app's Cancellations listed among its datasets: kept, without a dataset.
    assert by_series[("test-app", flatten.ABSENT, "Cancellations")] == 54
    assert sum(r["count"] for r in rows if r["app_key"] == "test-app") == sum(
        [20, 30, 50, 2, 5, 3, 22, 36, 53, 7, 21, 26])


def test_conversion_without_datasets_keeps_its_conversion_type():
    rows = list(flatten.series_rows(CONVERSION, report="conversion", aggregation="week"))
    assert {r["dataset"] for r in rows} == {flatten.ABSENT}
    assert {r["series_type"] for r in rows} == {"Upgrade"}
    assert {r["app_key"] for r in rows} == {"__total__", "app-key-1"}  # p-2 has no series
    assert [r["count"] for r in rows if r["app_key"] == "app-key-1"
            and r["dimension"] == "Conversions"] == [1, 1, 1, 1, 2]


def test_a_dataset_nested_among_series_names_its_own_dataset():
    rows = list(flatten.series_rows(RENEWAL, report="renewal", aggregation="month"))
    assert sorted({(r["dataset"], r["dimension"]) for r in rows}) == [
        ("Annual", "Renewal opportunities"), ("Annual", "Renewals"),
        ("Monthly", "Renewal opportunities"), ("Monthly", "Renewals")]


def test_sales_rows_keep_net_count_revenue_and_evaluation_type():
    rows = list(flatten.series_rows(SALES, report="sales_by_hosting", aggregation="week"))
    cloud = [r for r in rows if r["dimension"] == "Cloud"]
    assert [(r["app_key"], r["count"], r["netCount"], r["revenue"], r["series_type"])
            for r in cloud] == [
        ("__total__", 1364, 1350, 300489.79, "Net new evaluation"),
        ("test-app", 1364, 1350, 300489.79, "Net new evaluation")]


def test_benchmark_months_for_total_and_apps_under_either_documented_list_name():
    evaluation = {
        "totals": {"name": "All apps", "CloudEvaluationBenchmarkPerVendorPerMonth": [
            {"date": "2025-02-01", "evaluationCount": 1418},
            {"date": "2025-01-01", "evaluationCount": 1422}]},
        "CloudEvaluationBenchmarkPerApp": [
            {"addonKey": "app-key-2", "productId": "p-2", "name": "App 2",
             "CloudEvaluationBenchmarkPerAppPerMonth": [
                 {"date": "2025-02-01", "evaluationCount": 1150}]}],
    }
    shape = EvaluationBenchmarksStream.shape
    rows = list(flatten.period_rows(evaluation, report="evaluation_benchmark", shape=shape))
    assert [(r["app_key"], r["date"], r["evaluationCount"]) for r in rows] == [
        ("__total__", "2025-02-01", 1418), ("__total__", "2025-01-01", 1422),
        ("app-key-2", "2025-02-01", 1150)]

    # The live API (as observed) names them differently: same rows.
    observed = {
        "totals": {"name": "All apps", "evaluationBenchmarkPerVendorPerMonth": [
            {"date": "2025-02-01", "evaluationCount": 1418}]},
        "addons": [{"addonKey": "app-key-2", "productId": "p-2", "name": "App 2",
                    "evaluationBenchmarkPerAppPerMonth": [
                        {"date": "2025-02-01", "evaluationCount": 1150}]}],
    }
    assert [(r["app_key"], r["evaluationCount"]) for r in flatten.period_rows(
        observed, report="evaluation_benchmark", shape=shape)] == [
        ("__total__", 1418), ("app-key-2", 1150)]

    churn = {"churnBenchmarkPerApp": [
        {"appName": "Test app", "appKey": "com.example", "productId": "p-9",
         "churnBenchmarkPerMonth": [{"year": "2025", "month": "01", "churnRate": 5.125}]}]}
    (row,) = flatten.period_rows(churn, report="churn_benchmark",
                                 shape=ChurnBenchmarksStream.shape)
    assert (row["app_key"], row["app_name"], row["date"], row["churnRate"]) == (
        "com.example", "Test app", "2025-01-01", 5.125)


def test_customer_insight_rows_per_group_with_parent_product_for_tiers():
    tiers = {"usersDistributionPerProduct": [{"date": "2025-01-01", "insightsType": [
        {"value": {"group": {"product": product, "tier": tier, "region": None},
                   "usersDistribution": {"usersCount": 10, "usersPercent": 1.5,
                                         "usersMarketplaceBenchmark": 0.9}}}
        for product, tier in itertools.product(("Jira", "Confluence"), ("1-10", "11-100"))]}]}
    live = CustomerInsightsStream.LIVE_MONTHS
    rows = list(flatten.insight_rows(tiers, report="customer_insights_tiers",
                                     dimension="tier",
                                     months=(live, "usersDistributionPerProduct")))
    assert sorted((r["parent_product"], r["dimension"]) for r in rows) == [
        ("Confluence", "1-10"), ("Confluence", "11-100"), ("Jira", "1-10"), ("Jira", "11-100")]
    assert rows[0]["usersCount"] == 10 and rows[0]["date"] == "2025-01-01"

    regions = {"usersDistributionPerMonth": [{"date": "2025-02-01", "insightsType": [
        {"value": {"group": {"region": "apac", "product": None},
                   "usersDistribution": {"usersCount": 1975}}}]}]}
    (row,) = flatten.insight_rows(regions, report="customer_insights_regions",
                                  dimension="region",
                                  months=(live, "regionWiseUserInsightsPerMonth"))
    assert (row["dimension"], row["parent_product"], row["usersCount"]) == ("apac", flatten.ABSENT, 1975)


def test_search_keyword_shapes():
    period = {"period_start": "2025-03-02", "period_end": "2025-03-08"}
    by_source = {"details": [{"searchKeyword": "structure", "percentage": 2.69}]}
    (row,) = flatten.search_keyword_rows(by_source, report="search_keywords_by_source",
                                         source="marketplace", **period)
    assert (row["keyword"], row["percentage"], row["app_key"], row["date"]) == (
        "structure", 2.69, "__total__", "2025-03-02")

    by_partner = {"total": {"searchAppearances": 402, "topSearchKeyword": "pm"},
                  "addons": [{"addonName": "A", "addonKey": "a", "productId": "p",
                              "leadingSearchKeyword": "pm", "searchAppearances": 401,
                              "elements": [{"date": "2025-03-02", "count": 200},
                                           {"date": "2025-03-09", "count": 201}]}]}
    total, app = flatten.search_keyword_rows(by_partner, report="search_keywords_by_partner",
                                             source="", **period)
    assert (total["app_key"], total["searchAppearances"], total["topSearchKeyword"]) == (
        "__total__", 402, "pm")
    assert (app["app_key"], app["keyword"], app["count"], app["searchAppearances"]) == (
        "a", flatten.ABSENT, 401, 401)

    by_app = {"summary": {"addonName": "T", "addonKey": "t", "productId": "p",
                          "leadingSearchKeyword": "test", "allSearchAppearances": 54},
              "details": [{"searchKeyword": "test", "keywordCount": 50,
                           "elements": [{"date": "2025-03-02", "count": 50}]},
                          {"searchKeyword": "app", "keywordCount": 4, "elements": []}]}
    rows = list(flatten.search_keyword_rows(by_app, report="search_keywords_by_app",
                                            source="", **period))
    assert [(r["app_key"], r["keyword"], r["keywordCount"], r["count"],
             r["allSearchAppearances"]) for r in rows] == [
        ("t", "test", 50, 50, 54), ("t", "app", 4, None, 54)]


def test_periods_align_weeks_to_sunday_and_months_to_the_first():
    weeks = windows.periods(datetime.date(2025, 3, 5), datetime.date(2025, 3, 20), "week")
    assert [(a.isoformat(), b.isoformat()) for a, b in weeks] == [
        ("2025-03-02", "2025-03-08"), ("2025-03-09", "2025-03-15"), ("2025-03-16", "2025-03-22")]
    months = windows.periods(datetime.date(2024, 12, 31), datetime.date(2025, 2, 1), "month")
    assert [(a.isoformat(), b.isoformat()) for a, b in months] == [
        ("2024-12-01", "2024-12-31"), ("2025-01-01", "2025-01-31"), ("2025-02-01", "2025-02-28")]
    days = windows.periods(datetime.date(2025, 2, 27), datetime.date(2025, 3, 1), "day")
    assert len(days) == 3 and all(a == b for a, b in days)
