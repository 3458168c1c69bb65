"""Aggregated Marketplace reports as tidy rows: one row per thing measured and period.

The reporting aggregates nest their numbers: an all-apps ``total`` and one entry per
app (``addons``), each holding ``series[].elements[]`` (sometimes grouped in
``datasets[]`` by billing period) or a list of per-month figures. Every function here
turns one such payload into flat rows, and nothing else in the tap flattens.

Columns the tap adds to identify a row are snake_case (``report``, ``dimension``,
``app_key`` …); the measures keep the vendor's own names (``count``, ``netCount``,
``revenue``, ``uniqueTotal`` …). Identifying columns that are part of a primary key
are never null, because warehouse upserts (Postgres primary keys) cannot match on
null: an absent dataset is ``""`` and the all-apps total has ``app_key`` ``__total__``.
"""

from __future__ import annotations

import datetime
import typing as t

#: ``app_key`` of the all-apps total (and of figures not about one app).
TOTAL_APP_KEY = "__total__"
#: Value of a key column the payload does not have (no dataset, no series type …).
#: Not "": CSV-based loaders (target-duckdb) read an empty string as NULL, and a key
#: column may not be NULL.
ABSENT = "__none__"

#: Series-level attributes that qualify a series beyond its name.
_SERIES_QUALIFIERS = ("conversionType", "evaluationType")
_NESTING_KEYS = frozenset({"series", "datasets", "elements", "_links", "links"})


def app_identity(node: t.Mapping[str, t.Any] | None) -> dict[str, t.Any]:
    """``app_key``/``addon_key``/``product_id``/``app_name`` of one app's entry.

    ``None`` stands for the all-apps total. Apps are named ``addonKey``/``appKey``,
    ``name``/``appName``/``addonName`` depending on the report.
    """
    if node is None:
        return {"app_key": TOTAL_APP_KEY, "addon_key": None, "product_id": None,
                "app_name": None}
    addon_key = node.get("addonKey") or node.get("appKey")
    product_id = node.get("productId")
    return {
        "app_key": addon_key or product_id or TOTAL_APP_KEY,
        "addon_key": addon_key,
        "product_id": product_id,
        "app_name": node.get("name") or node.get("appName") or node.get("addonName"),
    }


def report_parts(payload: t.Mapping[str, t.Any]) -> t.Iterator[tuple[dict, dict]]:
    """The all-apps total (``total``/``totals``) and then each app's part.

    Per-app entries live in ``addons`` or, in the benchmark reports, in a list named
    ``…PerApp`` (``churnBenchmarkPerApp``, ``CloudEvaluationBenchmarkPerApp``).
    """
    for key in ("total", "totals"):
        node = payload.get(key)
        if isinstance(node, dict):
            yield app_identity(None), node
    for key, value in payload.items():
        if key == "addons" or key.endswith("PerApp"):
            for node in _dicts(value):
                yield app_identity(node), node


# -- series reports (evaluations, sales, feedback, churn/conversion/renewal) ---------

def series_rows(payload: t.Mapping[str, t.Any], *, report: str,
                aggregation: str | None) -> t.Iterator[dict]:
    """One row per element of every series, for the total and for each app.

    Handles flat ``series`` (evaluations, sales, conversion), ``datasets[].series``
    (churn, renewal) and the irregular nestings seen in Atlassian's own examples (a
    series listed among datasets, a dataset listed among series): whatever holds
    ``elements`` is a series, whatever holds ``series``/``datasets`` names a dataset.
    """
    for app, node in report_parts(payload):
        for dataset, series in _series_in(node, None, root=True):
            base = {
                "report": report,
                "dimension": _text(series.get("name")),
                "series_type": _text(next(
                    (series[q] for q in _SERIES_QUALIFIERS if series.get(q)), None)),
                "dataset": _text(dataset),
                **app,
                "aggregation": aggregation,
                "uniqueTotal": series.get("uniqueTotal"),
            }
            for element in _dicts(series.get("elements")):
                yield {**base, "date": element.get("date"),
                       "count": element.get("count"),
                       "netCount": element.get("netCount"),
                       "revenue": element.get("revenue")}


def _series_in(node: dict, dataset: str | None, *, root: bool
               ) -> t.Iterator[tuple[str | None, dict]]:
    if not root and isinstance(node.get("elements"), list):
        yield dataset, node
    holds = dataset if root else node.get("name")
    for key in ("datasets", "series"):
        for child in _dicts(node.get(key)):
            yield from _series_in(child, holds, root=False)


# -- per-period reports (benchmarks, app requests and approvals) ---------------------

def period_rows(payload: t.Mapping[str, t.Any], *, report: str) -> t.Iterator[dict]:
    """One row per app (and total) and month, with that month's figures as they are.

    The list of months has a different name per report and level
    (``salesBenchmarkPerMonth``, ``…PerVendorPerMonth``/``…PerAppPerMonth``); it is
    the entry holding a list of objects. Months given as ``year``/``month`` get a
    ``date`` of the first of the month.
    """
    for app, node in report_parts(payload):
        for key, value in node.items():
            if key in _NESTING_KEYS or not isinstance(value, list):
                continue
            for item in _dicts(value):
                yield {**item, "report": report, **app, "date": period_date(item)}


def period_date(item: t.Mapping[str, t.Any]) -> str | None:
    if item.get("date"):
        return str(item["date"])
    year, month = item.get("year"), item.get("month")
    if year and month:
        return f"{int(year):04d}-{int(month):02d}-01"
    return None


# -- customer insights ---------------------------------------------------------------

def insight_rows(payload: t.Mapping[str, t.Any], *, report: str,
                 dimension: str) -> t.Iterator[dict]:
    """One row per month and group (region, edition, tier per parent product …).

    The month list's name differs per report (``regionWiseUserInsightsPerMonth``,
    ``usersEditionDistribution`` …); it is the entry holding ``insightsType`` lists.
    """
    for key, value in payload.items():
        if key in _NESTING_KEYS:
            continue
        months = [value] if isinstance(value, dict) else value
        for month in _dicts(months):
            if "insightsType" not in month:
                continue
            for entry in _dicts(month.get("insightsType")):
                figures = entry.get("value") if isinstance(entry.get("value"), dict) else entry
                group = figures.get("group") or {}
                distribution = figures.get("usersDistribution") or {}
                yield {
                    "report": report,
                    "date": month.get("date"),
                    "dimension": _text(group.get(dimension)),
                    "parent_product": _text(group.get("product")
                                            if dimension != "product" else None),
                    "group": group or None,
                    "usersCount": distribution.get("usersCount"),
                    "usersPercent": distribution.get("usersPercent"),
                    "usersMarketplaceBenchmark": distribution.get("usersMarketplaceBenchmark"),
                }


# -- search keywords (one request per period, so every figure has a date) ------------

def search_keyword_rows(payload: t.Mapping[str, t.Any], *, report: str, source: str,
                        period_start: str, period_end: str) -> t.Iterator[dict]:
    """Rows of the three search-keyword reports for one period.

    ``…/search-keywords/source/{source}``: ``details[{searchKeyword, percentage}]``
    (Marketplace-wide). ``…/search-keywords``: ``total{searchAppearances,
    topSearchKeyword}`` and ``addons[{…, searchAppearances, leadingSearchKeyword,
    elements}]``. ``…/products/{id}/search-keywords``: ``summary{app,
    leadingSearchKeyword, allSearchAppearances}`` and ``details[{searchKeyword,
    keywordCount, elements}]``. Element counts within the period are summed.
    """
    base = {"report": report, "source": source, "date": period_start,
            "period_end": period_end}
    summary = payload.get("summary") if isinstance(payload.get("summary"), dict) else None
    total = payload.get("total") if isinstance(payload.get("total"), dict) else None
    if total is not None:
        yield {**base, **app_identity(None), "keyword": ABSENT,
               "searchAppearances": total.get("searchAppearances"),
               "topSearchKeyword": total.get("topSearchKeyword")}
    for addon in _dicts(payload.get("addons")):
        yield {**base, **app_identity(addon), "keyword": ABSENT,
               "count": _sum_counts(addon.get("elements")),
               "searchAppearances": addon.get("searchAppearances"),
               "leadingSearchKeyword": addon.get("leadingSearchKeyword")}
    app = app_identity(summary)
    for detail in _dicts(payload.get("details")):
        row = {**base, **app, "keyword": _text(detail.get("searchKeyword")),
               "percentage": detail.get("percentage"),
               "keywordCount": detail.get("keywordCount"),
               "count": _sum_counts(detail.get("elements"))}
        if summary is not None:
            row["leadingSearchKeyword"] = summary.get("leadingSearchKeyword")
            row["allSearchAppearances"] = summary.get("allSearchAppearances")
        yield row


def _sum_counts(elements: t.Any) -> int | float | None:
    counts = [e.get("count") for e in _dicts(elements) if e.get("count") is not None]
    return sum(counts) if counts else None


# -- periods -------------------------------------------------------------------------

def periods(start: datetime.date, end: datetime.date, unit: str
            ) -> list[tuple[datetime.date, datetime.date]]:
    """Consecutive ``(first day, last day)`` periods covering ``start``..``end``.

    Weeks start on Sunday, months and years on the 1st, as Atlassian aligns its aggregates;
    the first period starts on or before ``start``.
    """
    if unit == "day":
        first = start
    elif unit == "week":
        first = start - datetime.timedelta(days=(start.weekday() + 1) % 7)
    elif unit == "month":
        first = start.replace(day=1)
    elif unit == "year":
        first = start.replace(month=1, day=1)
    else:
        msg = f"unknown period unit {unit!r}"
        raise ValueError(msg)
    result = []
    while first <= end:
        following = next_period(first, unit)
        result.append((first, following - datetime.timedelta(days=1)))
        first = following
    return result


def next_period(first: datetime.date, unit: str) -> datetime.date:
    if unit == "day":
        return first + datetime.timedelta(days=1)
    if unit == "week":
        return first + datetime.timedelta(days=7)
    if unit == "year":
        return first.replace(year=first.year + 1, month=1, day=1)
    return (first.replace(day=28) + datetime.timedelta(days=4)).replace(day=1)


def _dicts(value: t.Any) -> t.Iterator[dict]:
    if isinstance(value, list):
        for item in value:
            if isinstance(item, dict):
                yield item


def _text(value: t.Any) -> str:
    return ABSENT if value is None else str(value)
