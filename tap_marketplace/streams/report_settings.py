"""Settings of the Marketplace aggregated reports and partner metrics: every check of
them (bounds, the keyword sources, the shape of the partner-metrics query) is part of
their JSON Schema."""

from __future__ import annotations

import typing as t

from singer_sdk import typing as th

from tap_common import settings

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

#: The partner-metrics query as far as the tap relies on it; any other key goes to
#: Atlassian as it is.
PARTNER_METRICS_QUERY = th.ObjectType(
    th.Property(
        "granularity",
        th.StringType,
        allowed_values=[*GRANULARITY_UNITS, *(name.lower() for name in GRANULARITY_UNITS)],
    ),
    th.Property(
        "metrics",
        th.ObjectType(additional_properties=True),
        required=True,
        description="an object with a non-empty `metricFields` or `metricSets` list, e.g. "
        '{"metricFields": [{"name": "INSTALL_COUNT"}]}.',
        anyOf=[{"required": [key], "properties": {key: {"type": "array", "minItems": 1}}}
               for key in ("metricFields", "metricSets")],
    ),
    th.Property(
        "dateRange",
        th.AnyType,
        description="the tap sets it from the bookmark, `start_date` and `report_lookback_days`.",
        **{"not": {}},
    ),
    additional_properties=True,
)

SETTINGS = (
    settings.lookback_days(
        "report_lookback_days", DEFAULT_LOOKBACK_DAYS,
        "aggregated reports, partner metrics and daily snapshots",
        "Atlassian restates recent periods. The default (35) re-reads at least the previous "
        "month. The window starts on the first day of its week or month."),
    th.Property(
        "report_history_days",
        th.IntegerType(minimum=1),
        default=DEFAULT_HISTORY_DAYS,
        description="Where reports start when there is neither a bookmark nor `start_date`: "
        "this many days back.",
    ),
    th.Property(
        "search_keyword_sources",
        th.ArrayType(th.StringType(allowed_values=list(SEARCH_SOURCES))),
        default=list(SEARCH_SOURCES),
        description="Search sources of the per-source keyword report: `marketplace` and/or "
        "`embedded-marketplace`.",
    ),
    th.Property(
        "partner_metrics_query",
        PARTNER_METRICS_QUERY,
        default=DEFAULT_PARTNER_METRICS_QUERY,
        description="Body of the partner-metrics query (`granularity`, `attributes`, "
        "`metrics`, `attributesFilter`, `sortByList`) without `dateRange`, which the tap "
        "sets. Default: weekly INSTALL_COUNT by app, parent software and its version.",
    ),
    th.Property(
        "partner_metrics_page_periods",
        th.IntegerType(minimum=1, maximum=PARTNER_METRICS_MAX_PAGE_PERIODS),
        default=PARTNER_METRICS_MAX_PAGE_PERIODS,
        description="Periods per partner-metrics request (`limit`, 1-14).",
    ),
)
