"""Partner metrics: the configured query over the range from the bookmark, paged in periods."""

from __future__ import annotations

import typing as t

from singer_sdk.pagination import BaseAPIPaginator

from tap_common import windows
from tap_marketplace import flatten
from tap_marketplace.streams.aggregates import ReportStream
from tap_marketplace.streams.report_settings import (
    DEFAULT_PARTNER_METRICS_QUERY,
    GRANULARITY_UNITS,
    PARTNER_METRICS_MAX_PAGE_PERIODS,
)

if t.TYPE_CHECKING:
    import requests
    from singer_sdk.helpers.types import Context

class PeriodOffsetPaginator(BaseAPIPaginator[int]):
    """``offset`` in periods, ``limit`` periods per page, until the range is covered."""

    def __init__(self, periods: int, limit: int) -> None:
        super().__init__(0)
        self.periods = periods
        self.limit = limit

    def get_next(self, response: requests.Response) -> int | None:
        following = (self.current_value or 0) + self.limit
        return following if following < self.periods else None

    def continue_if_empty(self, response: requests.Response) -> bool:
        return True


class PartnerMetricsStream(ReportStream):
    """``POST /rest/3/partner-metrics/developer-space/{developerId}``: the configured
    query (default: weekly installs by app, parent software and version) over the range
    from the bookmark, paged ``limit`` periods at a time."""

    name = "partner_metrics"
    path = "/rest/3/partner-metrics/developer-space/{developerId}"
    http_method = "POST"
    primary_keys = ("date", "dimensions")
    # Install and download figures exist up to yesterday (the API refuses today).
    last_day_offset = 1

    @property
    def query(self) -> dict[str, t.Any]:
        """The configured query; ``product_ids`` narrow it unless it has its own filter."""
        query = dict(self.config.get("partner_metrics_query") or DEFAULT_PARTNER_METRICS_QUERY)
        product_ids = self.config.get("product_ids")
        if product_ids and "attributesFilter" not in query:
            query["attributesFilter"] = {"expr": {"andGroup": [{"filter": {
                "fieldName": "PRODUCT_ID",
                "oneFilter": {"inListFilter": {"values": list(product_ids)}}}}]}}
        return query

    @property
    def unit(self) -> str:
        return GRANULARITY_UNITS[str(self.query.get("granularity", "WEEK")).upper()]

    def get_new_paginator(self) -> PeriodOffsetPaginator:
        start, end = self.date_range(self._context)
        return PeriodOffsetPaginator(
            len(windows.periods(start, end, self.unit)),
            int(self.config.get("partner_metrics_page_periods",
                                PARTNER_METRICS_MAX_PAGE_PERIODS)))

    def get_url_params(self, context: Context | None, next_page_token: t.Any) -> dict:
        return {"offset": next_page_token or 0,
                "limit": int(self.config.get("partner_metrics_page_periods",
                                             PARTNER_METRICS_MAX_PAGE_PERIODS))}

    def prepare_request_payload(self, context: Context | None, next_page_token: t.Any
                                ) -> dict:
        start, end = self.date_range(context)
        return {**self.query, "dateRange": {"startDate": start.isoformat(),
                                            "endDate": end.isoformat()}}

    def rows(self, payload: dict, context: dict, response: requests.Response
             ) -> t.Iterable[dict]:
        for record in flatten.one_of(payload, ("records",), list):
            flatten.has_any(record, ("date",), "records")
            yield {**record, "dimensions": dimensions_of(record)}


def dimensions_of(record: t.Mapping[str, t.Any]) -> str:
    """``name=value`` of every attribute (text) of a metrics record, sorted: its identity."""
    return "|".join(f"{name}={value}" for name, value in sorted(record.items())
                    if name != "date" and isinstance(value, str))


