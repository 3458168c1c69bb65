"""Settings of the Marketplace aggregated reports and partner metrics, and their checks.

Kept together (settings and ``config_errors``) so they can move into the tap's JSON
Schema as one piece.
"""

from __future__ import annotations

import typing as t

from singer_sdk import typing as th

DEFAULT_LOOKBACK_DAYS = 35
DEFAULT_HISTORY_DAYS = 365
SEARCH_SOURCES = ("marketplace", "embedded-marketplace")
#: The partner-metrics page limit is counted in periods; 14 is the API's maximum.
PARTNER_METRICS_MAX_PAGE_PERIODS = 14
GRANULARITY_UNITS = {"DAY": "day", "WEEK": "week", "MONTH": "month", "YEAR": "year"}
DEFAULT_PARTNER_METRICS_QUERY: dict[str, t.Any] = {
    "granularity": "WEEK",
    "attributes": [{"name": "APP_KEY"}, {"name": "PARENT_SOFTWARE"},
                   {"name": "PARENT_SOFTWARE_VERSION"}],
    "metrics": {"metricFields": [{"name": "INSTALL_COUNT"}]},
}

SETTINGS = (
    th.Property(
        "report_lookback_days",
        th.IntegerType,
        default=DEFAULT_LOOKBACK_DAYS,
        description="Aggregated reports, partner metrics and daily snapshots are read again "
        "from this many days before their bookmark, because Atlassian restates recent "
        "periods. The default (35) re-reads at least the previous month. The window starts "
        "on the first day of its week or month.",
    ),
    th.Property(
        "report_history_days",
        th.IntegerType,
        default=DEFAULT_HISTORY_DAYS,
        description="Where reports start when there is neither a bookmark nor `start_date`: "
        "this many days back.",
    ),
    th.Property(
        "search_keyword_sources",
        th.ArrayType(th.StringType),
        default=list(SEARCH_SOURCES),
        description="Search sources of the per-source keyword report: `marketplace` and/or "
        "`embedded-marketplace`.",
    ),
    th.Property(
        "partner_metrics_query",
        th.ObjectType(additional_properties=True),
        default=DEFAULT_PARTNER_METRICS_QUERY,
        description="Body of the partner-metrics query (`granularity`, `attributes`, "
        "`metrics`, `attributesFilter`, `sortByList`) without `dateRange`, which the tap "
        "sets. Default: weekly INSTALL_COUNT by app, parent software and its version.",
    ),
    th.Property(
        "partner_metrics_page_periods",
        th.IntegerType,
        default=PARTNER_METRICS_MAX_PAGE_PERIODS,
        description="Periods per partner-metrics request (`limit`, 1-14).",
    ),
)


def config_errors(config: t.Mapping[str, t.Any]) -> list[str]:
    """Checks of the report settings; each message names its setting."""
    errors = []
    for name in ("report_lookback_days", "report_history_days"):
        value = config.get(name)
        if value is not None and value < (0 if name == "report_lookback_days" else 1):
            errors.append(f"`{name}` must be {'0 or more' if 'lookback' in name else 'at least 1'}"
                          f", not {value}.")
    sources = config.get("search_keyword_sources")
    if sources is not None:
        unknown = sorted(set(sources) - set(SEARCH_SOURCES))
        if unknown:
            errors.append(f"`search_keyword_sources` may only hold {list(SEARCH_SOURCES)}; "
                          f"unknown: {unknown}.")
    page = config.get("partner_metrics_page_periods")
    if page is not None and not 1 <= page <= PARTNER_METRICS_MAX_PAGE_PERIODS:
        errors.append(f"`partner_metrics_page_periods` must be between 1 and "
                      f"{PARTNER_METRICS_MAX_PAGE_PERIODS}, not {page}.")
    query = config.get("partner_metrics_query")
    if query is not None:
        errors.extend(_partner_query_errors(query))
    return errors


def _partner_query_errors(query: t.Any) -> list[str]:
    name = "`partner_metrics_query`"
    if not isinstance(query, dict):
        return [f"{name} must be an object (the query body), not {type(query).__name__}."]
    errors = []
    metrics = query.get("metrics")
    if not isinstance(metrics, dict) or not (metrics.get("metricFields")
                                             or metrics.get("metricSets")):
        errors.append(f"{name} needs `metrics` as an object with a `metricFields` or "
                      "`metricSets` list, e.g. {\"metricFields\": [{\"name\": "
                      "\"INSTALL_COUNT\"}]}.")
    granularity = str(query.get("granularity", "WEEK")).upper()
    if granularity not in GRANULARITY_UNITS:
        errors.append(f"{name}: `granularity` must be one of {list(GRANULARITY_UNITS)}, not "
                      f"{query.get('granularity')!r}.")
    if "dateRange" in query:
        errors.append(f"{name} must not contain `dateRange`: the tap sets it from the bookmark, "
                      "`start_date` and `report_lookback_days`.")
    return errors

