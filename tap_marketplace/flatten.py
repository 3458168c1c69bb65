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

Each function also checks the payload is of its documented shape (reference §7.5,
§11): a list key, a ``series`` or a date that is not where the documentation puts it
raises ``ShapeError`` naming what was expected, instead of giving no rows or rows whose
figures are all null.
"""

from __future__ import annotations

import typing as t
from dataclasses import dataclass

#: ``app_key`` of the all-apps total (and of figures not about one app).
TOTAL_APP_KEY = "__total__"
#: Value of a key column the payload does not have (no dataset, no series type …).
#: Not "": CSV-based loaders (target-duckdb) read an empty string as NULL, and a key
#: column may not be NULL.
ABSENT = "__none__"

#: Series-level attributes that qualify a series beyond its name.
_SERIES_QUALIFIERS = ("conversionType", "evaluationType")
_NESTING_KEYS = frozenset({"series", "datasets", "elements", "_links", "links"})


class ShapeError(ValueError):
    """A report body that is not of its documented shape; the message is what was expected."""


def _object(value: t.Any, expected: str) -> dict:
    if not isinstance(value, dict):
        raise ShapeError(expected)
    return value


def one_of(node: t.Mapping[str, t.Any], keys: t.Sequence[str], kind: type, where: str = ""
           ) -> t.Any:
    """``node[key]`` for the first of ``keys`` that holds a ``kind`` (list or dict)."""
    for key in keys:
        if isinstance(node.get(key), kind):
            return node[key]
    names = " or ".join(f"`{where}{key}`" for key in keys)
    raise ShapeError(f"{names} ({'an object' if kind is dict else 'a list'})")


def has_any(item: t.Any, names: t.Sequence[str], where: str) -> None:
    """Every entry of ``where`` must hold one of ``names`` (a renamed field would
    otherwise give rows whose figures are all null)."""
    if not isinstance(item, dict) or not any(name in item for name in names):
        listed = " or ".join(f"`{name}`" for name in names)
        raise ShapeError(f"{listed} in every entry of `{where}`")


@dataclass(frozen=True)
class PeriodShape:
    """Where a per-month report keeps its figures (reference §11).

    ``totals``: keys that may hold the all-apps part (empty: the report has none);
    ``apps``: keys that may hold the per-app list; ``months``: names the list of months
    may have, in the total and in each app; ``measures``: at least one is in every month.
    """

    months: tuple[str, ...]
    measures: tuple[str, ...]
    totals: tuple[str, ...] = ("total",)
    apps: tuple[str, ...] = ("addons",)
    total_optional: bool = False


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

    Expected: ``total`` holding ``series`` or ``datasets``, an ``addons`` list (an entry
    without either is an app without figures, as in the spec's conversion example),
    ``elements`` in every series and a ``date`` and ``count`` in every element.
    """
    one_of(one_of(payload, ("total",), dict), ("series", "datasets"), list, "total.")
    one_of(payload, ("addons",), list)
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
                has_any(element, ("date",), "elements")
                has_any(element, ("count",), "elements")
                yield {**base, "date": element.get("date"),
                       "count": element.get("count"),
                       "netCount": element.get("netCount"),
                       "revenue": element.get("revenue")}


def _series_in(node: dict, dataset: str | None, *, root: bool
               ) -> t.Iterator[tuple[str | None, dict]]:
    nested = [child for key in ("datasets", "series") for child in _dicts(node.get(key))]
    if not root and isinstance(node.get("elements"), list):
        yield dataset, node
    elif not root and not nested:
        raise ShapeError("`elements` (a list) in every series")
    holds = dataset if root else node.get("name")
    for child in nested:
        yield from _series_in(child, holds, root=False)


# -- per-period reports (benchmarks, app requests and approvals) ---------------------

def period_rows(payload: t.Mapping[str, t.Any], *, report: str, shape: PeriodShape
                ) -> t.Iterator[dict]:
    """One row per app (and total) and month, with that month's figures as they are.

    The list of months has a different name per report and level
    (``salesBenchmarkPerMonth``, ``…PerVendorPerMonth``/``…PerAppPerMonth``): ``shape``
    names them. Months given as ``year``/``month`` get a ``date`` of the first of the
    month.
    """
    parts: list[tuple[dict, list, str]] = []
    if shape.totals and (not shape.total_optional
                         or any(key in payload for key in shape.totals)):
        total = one_of(payload, shape.totals, dict)
        parts.append((app_identity(None), one_of(total, shape.months, list, "total."),
                      "total"))
    for node in _dicts(one_of(payload, shape.apps, list)):
        parts.append((app_identity(node), one_of(node, shape.months, list, "addons[]."),
                      "addons[]"))
    for app, months, where in parts:
        for item in _dicts(months):
            date = period_date(item)
            if date is None:
                raise ShapeError(f"a `date` (or `year` and `month`) in every month of {where}")
            has_any(item, shape.measures, f"{where} months")
            yield {**item, "report": report, **app, "date": date}


def period_date(item: t.Mapping[str, t.Any]) -> str | None:
    if item.get("date"):
        return str(item["date"])
    year, month = item.get("year"), item.get("month")
    if year and month:
        return f"{int(year):04d}-{int(month):02d}-01"
    return None


# -- customer insights ---------------------------------------------------------------

def insight_rows(payload: t.Mapping[str, t.Any], *, report: str, dimension: str,
                 months: t.Sequence[str]) -> t.Iterator[dict]:
    """One row per month and group (region, edition, tier per parent product …).

    The month list is named ``usersDistributionPerMonth`` live and differently per
    report in the spec (``regionWiseUserInsightsPerMonth`` …): ``months`` names them.
    Each month needs a ``date`` and ``insightsType``; each entry a ``group`` and a
    ``usersDistribution``.
    """
    found = one_of(payload, months, (list, dict))
    for month in _dicts([found] if isinstance(found, dict) else found):
        if not month.get("date") or not isinstance(month.get("insightsType"), list):
            raise ShapeError("a `date` and an `insightsType` list in every month")
        for entry in _dicts(month.get("insightsType")):
            figures = entry.get("value") if isinstance(entry.get("value"), dict) else entry
            group = figures.get("group")
            distribution = figures.get("usersDistribution")
            if not isinstance(group, dict) or not isinstance(distribution, dict):
                raise ShapeError("`group` and `usersDistribution` (objects) in every "
                                 "`insightsType` entry")
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
    if report == "search_keywords_by_partner":
        one_of(payload, ("total",), dict)
        for addon in _dicts(one_of(payload, ("addons",), list)):
            has_any(addon, ("searchAppearances", "elements"), "addons")
    else:
        if report == "search_keywords_by_app":
            one_of(payload, ("summary",), dict)
        measures = (("percentage",) if report == "search_keywords_by_source"
                    else ("keywordCount", "elements"))
        for detail in _dicts(one_of(payload, ("details",), list)):
            has_any(detail, ("searchKeyword",), "details")
            has_any(detail, measures, "details")
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


def _dicts(value: t.Any) -> t.Iterator[dict]:
    if isinstance(value, list):
        for item in value:
            if isinstance(item, dict):
                yield item


def _text(value: t.Any) -> str:
    return ABSENT if value is None else str(value)
