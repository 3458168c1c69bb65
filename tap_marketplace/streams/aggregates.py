"""Aggregated reports: series, per-month benchmarks, customer insights, per-period reports.

Each report stream declares its endpoint(s); ``ReportStream`` asks for the date range
(from a lookback before the bookmark), and ``tap_marketplace.flatten`` turns the
nested answer into tidy rows. Records carry exactly the properties of the stream's
schema (``project``), so they match it whatever the writer's conformance level.
"""

from __future__ import annotations

import datetime
import typing as t
from urllib.parse import parse_qs, urlsplit

from singer_sdk import SchemaDirectory, StreamSchema
from singer_sdk.pagination import BaseAPIPaginator

from tap_common import windows
from tap_common.errors import PayloadError
from tap_marketplace import flatten, schemas
from tap_marketplace.client import REPORTING, MarketplaceStream, api_href, link_href
from tap_marketplace.streams.report_settings import (
    DEFAULT_HISTORY_DAYS,
    DEFAULT_LOOKBACK_DAYS,
    SEARCH_SOURCES,
)

if t.TYPE_CHECKING:
    import requests
    from singer_sdk.helpers.types import Context

SCHEMAS = SchemaDirectory(schemas)


# -- the base ------------------------------------------------------------------------


class ReportStream(MarketplaceStream):
    """A reporting aggregate read over a date range, incrementally on ``date``.

    Subclasses declare ``name``, ``path`` and either one ``report`` or several
    (``report_contexts``: a partition per report, with path parameters); each report
    keeps its own bookmark. ``rows`` flattens one answer.
    """

    schema = StreamSchema(SCHEMAS)
    replication_key = "date"
    records_jsonpath = "$"
    #: A bookmark per report; path parameters in a context stay out of state and rows.
    state_partitioning_keys: t.ClassVar[list[str]] = ["report"]
    #: The report of a stream that reads only one.
    report: t.ClassVar[str] = ""
    #: Send ``aggregation`` (week/month) from the settings.
    uses_aggregation: t.ClassVar[bool] = False
    #: The period a row covers ("day", "week", "month"); None: the ``aggregation``
    #: setting. Date ranges start on the first day of one.
    period: t.ClassVar[str | None] = None
    #: What the body is: a JSON object, or (free starter tier) an array.
    body_type: t.ClassVar[type] = dict
    lookback_days = DEFAULT_LOOKBACK_DAYS
    lookback_setting = "report_lookback_days"
    history_days = DEFAULT_HISTORY_DAYS
    history_setting = "report_history_days"

    def __init__(self, *args: t.Any, **kwargs: t.Any) -> None:
        super().__init__(*args, **kwargs)
        self._context: Context | None = None
        self._properties = tuple(self.schema["properties"])

    # -- what to ask -------------------------------------------------------------

    def report_contexts(self) -> list[dict] | None:
        """One context per report of a stream that reads several; else None."""
        return None

    @property
    def partitions(self) -> list[dict] | None:
        return self.report_contexts()

    def report_of(self, context: t.Mapping[str, t.Any] | None) -> str:
        return str((context or {}).get("report") or self.report)

    @property
    def aggregation(self) -> str:
        return str(self.config.get("aggregation") or "month")

    @property
    def unit(self) -> str:
        """The period a row covers: ``period``, else the ``aggregation`` setting."""
        return self.period or self.aggregation

    def alignment(self) -> str:
        # A month is never asked from its 27th, so its row is always the whole month's.
        return self.unit

    def get_url_params(self, context: Context | None, next_page_token: t.Any) -> dict:
        params = super().get_url_params(context, next_page_token)
        start, end = self.date_range(context)
        params.update(startDate=start.isoformat(), endDate=end.isoformat())
        if self.uses_aggregation:
            params["aggregation"] = self.aggregation
        return params

    def get_new_paginator(self) -> BaseAPIPaginator | None:
        return None

    # -- what comes back ------------------------------------------------------------

    def get_records(self, context: Context | None) -> t.Iterable[dict]:
        self._context = context
        try:
            yield from super().get_records(context)
        finally:
            self._context = None

    def parse_response(self, response: requests.Response) -> t.Iterable[dict]:
        """The rows of one answer, once the whole body is known to be of its documented
        shape: a body that is not fails naming the stream, the request and what was
        expected, before any of its rows is emitted."""
        payload = self.decode_json(response)
        try:
            if not isinstance(payload, self.body_type):
                raise flatten.ShapeError("a JSON " + (
                    "object" if self.body_type is dict else "array"))
            return list(self.rows(payload, dict(self._context or {}), response))
        except flatten.ShapeError as exc:
            request = response.request
            report = self.report_of(self._context)
            msg = (f"{self.name}: the answer to {request.method if request else 'GET'} "
                   f"{self.describe_url(response.url)}{f' ({report} report)' if report else ''}"
                   f" is not of the documented shape: expected {exc}; it has "
                   f"{outline(payload)}")
            raise PayloadError(msg) from None

    def rows(self, payload: dict, context: dict, response: requests.Response
             ) -> t.Iterable[dict]:
        raise NotImplementedError

    def post_process(self, row: dict, context: Context | None = None) -> dict | None:
        if not row.get(self.replication_key):
            # Undated figures cannot be keyed or bookmarked: stop rather than drop them.
            msg = (f"{self.name}: the {self.report_of(context)} report has an entry without "
                   f"a date: {project(row, self._properties[:8])}")
            raise PayloadError(msg)
        return project(row, self._properties)


def outline(payload: t.Any) -> str:
    """What a body holds, for an error line: its keys, or the length of its list."""
    if isinstance(payload, dict):
        keys = list(payload)
        return ("keys " + ", ".join(keys[:10]) + (" …" if len(keys) > 10 else "")
                if keys else "no keys")
    if isinstance(payload, list):
        return f"a list of {len(payload)}"
    return f"a {type(payload).__name__}"


def project(row: t.Mapping[str, t.Any], properties: t.Iterable[str]) -> dict:
    """The row with exactly these properties: missing ones null, others dropped."""
    return {name: row.get(name) for name in properties}


def request_params(response: requests.Response) -> dict[str, str]:
    """The query parameters a response answers (which period, which source)."""
    query = parse_qs(urlsplit(response.request.url or "").query)
    return {name: values[0] for name, values in query.items()}


# -- series reports ---------------------------------------------------------------------


class SeriesReportStream(ReportStream):
    """``total`` and per-app ``addons`` of ``series[].elements[]``: one row per element.

    A subclass names its endpoint with a ``{metric}`` path part, the metrics and how
    reports are named (``evaluations_by_`` + metric).
    """

    uses_aggregation = True
    primary_keys = ("report", "dimension", "series_type", "dataset", "app_key",
                    "aggregation", "date")
    metrics: t.ClassVar[tuple[str, ...]]
    report_prefix: t.ClassVar[str] = ""

    def report_contexts(self) -> list[dict]:
        return [{"report": f"{self.report_prefix}{m}", "metric": m} for m in self.metrics]

    def rows(self, payload: dict, context: dict, response: requests.Response
             ) -> t.Iterable[dict]:
        return flatten.series_rows(payload, report=self.report_of(context),
                                   aggregation=self.aggregation)


class EvaluationMetricsStream(SeriesReportStream):
    """Evaluations by country, hosting, partner and region (``/evaluations/{metric}``)."""

    name = "evaluation_metrics"
    path = f"{REPORTING}/evaluations/{{metric}}"
    metrics = ("country", "hosting", "partner", "region")
    report_prefix = "evaluations_by_"


class FeedbackMetricsStream(SeriesReportStream):
    """Uninstall/disable feedback by type and reason (``/feedback/metrics/{metric}``)."""

    name = "feedback_metrics"
    path = f"{REPORTING}/feedback/metrics/{{metric}}"
    metrics = ("type", "reason")
    report_prefix = "feedback_by_"


class SalesMetricsStream(SeriesReportStream):
    """Sales by country, hosting, partner, region, tier and type."""

    name = "sales_metrics"
    path = f"{REPORTING}/sales/transactions/{{metric}}"
    metrics = ("country", "hosting", "partner", "region", "tier", "type")
    report_prefix = "sales_by_"


class LicenseEventMetricsStream(SeriesReportStream):
    """Cloud churn (with ``uniqueTotal``), conversion and renewal aggregates."""

    name = "license_event_metrics"
    path = f"{REPORTING}/sales/metrics/{{metric}}"
    metrics = ("churn", "conversion", "renewal")


# -- per-month reports ------------------------------------------------------------------


class PeriodReportStream(ReportStream):
    """A list of monthly figures for the total and each app: one row per app and month.

    ``shape`` says where the report keeps them (reference §11).
    """

    primary_keys = ("report", "app_key", "date")
    filters_by_product = True
    period = "month"
    shape: t.ClassVar[flatten.PeriodShape]

    def rows(self, payload: dict, context: dict, response: requests.Response
             ) -> t.Iterable[dict]:
        return flatten.period_rows(payload, report=self.report_of(context), shape=self.shape)


class ChurnBenchmarksStream(PeriodReportStream):
    """Monthly churn per app against the Marketplace (published a few months late)."""

    name = "churn_benchmarks"
    path = f"{REPORTING}/sales/metrics/churn/benchmark"
    report = "churn_benchmark"
    shape = flatten.PeriodShape(totals=(), apps=("churnBenchmarkPerApp",),
                                months=("churnBenchmarkPerMonth",),
                                measures=("churnedLicenses", "totalLicenses", "churnRate"))


class EvaluationBenchmarksStream(PeriodReportStream):
    """Monthly evaluations and growth against all partners, all apps and per app."""

    name = "evaluation_benchmarks"
    path = f"{REPORTING}/benchmark/evaluations"
    report = "evaluation_benchmark"
    # The live API and the spec name the lists differently; the spec's total is optional.
    shape = flatten.PeriodShape(
        totals=("totals",), total_optional=True,
        apps=("addons", "CloudEvaluationBenchmarkPerApp"),
        months=("evaluationBenchmarkPerVendorPerMonth", "evaluationBenchmarkPerAppPerMonth",
                "CloudEvaluationBenchmarkPerVendorPerMonth",
                "CloudEvaluationBenchmarkPerAppPerMonth"),
        measures=("evaluationCount", "evaluationCountYTD"))


class SalesBenchmarksStream(PeriodReportStream):
    """Monthly sales (partner share) and growth against all partners."""

    name = "sales_benchmarks"
    path = f"{REPORTING}/benchmark/sales"
    report = "sales_benchmark"
    shape = flatten.PeriodShape(months=("salesBenchmarkPerMonth",),
                                measures=("sale", "salesYTD"))


class AppRequestsAndApprovalsStream(PeriodReportStream):
    """Monthly install requests by end users and their approvals by admins."""

    name = "app_requests_and_approvals"
    path = f"{REPORTING}/app-requests-and-approvals"
    report = "app_requests_and_approvals"
    shape = flatten.PeriodShape(
        months=("appRequestsAndApprovalsPerMonth", "appRequestsAndApprovalsPerAppPerMonth"),
        measures=("appRequests", "appRequestsApproved"))


class CustomerInsightsStream(ReportStream):
    """Monthly distribution of customers' users by region, edition, paid status, tier."""

    name = "customer_insights"
    path = f"{REPORTING}/customer-insights/{{kind}}"
    primary_keys = ("report", "parent_product", "dimension", "date")
    period = "month"
    #: endpoint -> (the group field that is the dimension, the spec's name of the list
    #: of months); the live API names every list ``LIVE_MONTHS`` (reference §11).
    kinds: t.ClassVar[dict[str, tuple[str, str]]] = {
        "regions": ("region", "regionWiseUserInsightsPerMonth"),
        "editions": ("edition", "usersEditionDistribution"),
        "active-users": ("activeUsers", "activePaidUsersInsights"),
        "tiers": ("tier", "usersDistributionPerProduct")}
    LIVE_MONTHS = "usersDistributionPerMonth"

    def report_contexts(self) -> list[dict]:
        return [{"report": f"customer_insights_{kind.replace('-', '_')}", "kind": kind}
                for kind in self.kinds]

    def rows(self, payload: dict, context: dict, response: requests.Response
             ) -> t.Iterable[dict]:
        dimension, months = self.kinds[context["kind"]]
        return flatten.insight_rows(payload, report=self.report_of(context),
                                    dimension=dimension, months=(self.LIVE_MONTHS, months))


# -- reports asked one period at a time -------------------------------------------------


class PeriodPaginator(BaseAPIPaginator[int]):
    """Index of the next period; an empty period does not end the walk."""

    def __init__(self, periods: int) -> None:
        super().__init__(0)
        self.periods = periods

    def get_next(self, response: requests.Response) -> int | None:
        following = (self.current_value or 0) + 1
        return following if following < self.periods else None

    def continue_if_empty(self, response: requests.Response) -> bool:
        return True


class PeriodicReportStream(ReportStream):
    """A report whose answer has no dates of its own: asked once per period.

    The period is the ``aggregation`` (week or month; ``period`` overrides); rows are
    dated with the period's first day.
    """

    def periods(self, context: Context | None) -> list[tuple[datetime.date, datetime.date]]:
        start, end = self.date_range(context)
        return windows.periods(start, end, self.unit)

    def get_records(self, context: Context | None) -> t.Iterable[dict]:
        self._periods = self.periods(context)
        if not self._periods:
            return
        yield from super().get_records(context)

    def get_new_paginator(self) -> PeriodPaginator:
        return PeriodPaginator(len(self._periods))

    def get_url_params(self, context: Context | None, next_page_token: t.Any) -> dict:
        params = super().get_url_params(context, next_page_token)
        first, last = self._periods[next_page_token or 0]
        params.update(startDate=first.isoformat(), endDate=last.isoformat())
        return params

    def period_of(self, response: requests.Response) -> tuple[str, str]:
        params = request_params(response)
        return params["startDate"], params["endDate"]


class SearchKeywordsStream(PeriodicReportStream):
    """Search keywords per period: per source (Marketplace-wide), per app across the
    developer space, and per keyword for each app."""

    name = "search_keywords"
    path = f"{REPORTING}/search-keywords"
    primary_keys = ("report", "source", "app_key", "keyword", "date")
    uses_aggregation = True
    #: A bookmark per source and per app: one added later gets its whole history.
    state_partitioning_keys: t.ClassVar[list[str]] = ["report", "source", "productId"]
    report_paths: t.ClassVar[dict[str, str]] = {
        "search_keywords_by_source": f"{REPORTING}/search-keywords/source/{{source}}",
        "search_keywords_by_partner": f"{REPORTING}/search-keywords",
        "search_keywords_by_app": f"{REPORTING}/products/{{productId}}/search-keywords",
    }

    def __init__(self, *args: t.Any, **kwargs: t.Any) -> None:
        super().__init__(*args, **kwargs)
        self._listed_products: list[str] | None = None

    def report_contexts(self) -> list[dict]:
        sources = self.config.get("search_keyword_sources", list(SEARCH_SOURCES))
        return [
            *({"report": "search_keywords_by_source", "source": s} for s in sources),
            {"report": "search_keywords_by_partner"},
            *({"report": "search_keywords_by_app", "productId": p}
              for p in self.product_ids()),
        ]

    def product_ids(self) -> list[str]:
        """The configured ``product_ids``, else every listed app of the developer space
        (looked up once per run)."""
        configured = self.config.get("product_ids")
        if configured:
            return list(configured)
        if self._listed_products is None:
            self._listed_products = self.listed_products()
        return self._listed_products

    def listed_products(self) -> list[str]:
        found: list[str] = []
        url: str | None = self.url_for("/rest/3/product-listing/developer-space/{developerId}")
        params: dict[str, t.Any] | None = {"limit": 50}
        while url:
            body = self.decode_json(self.send("GET", url, params=params))
            if not isinstance(body, dict) or not isinstance(body.get("items"), list):
                msg = (f"{self.name}: the app listing of the developer space is not of the "
                       f"documented shape: expected `items` (a list); it has {outline(body)}")
                raise PayloadError(msg)
            found.extend(str(item["productId"]) for item in body["items"]
                         if isinstance(item, dict) and item.get("productId"))
            href = link_href(body.get("links"), "next")
            url, params = (self.url_base + api_href(href), None) if href else (None, None)
        return found

    def get_url(self, context: Context | None) -> str:
        return self.url_for(self.report_paths[(context or {})["report"]], context)

    def rows(self, payload: dict, context: dict, response: requests.Response
             ) -> t.Iterable[dict]:
        first, last = self.period_of(response)
        return flatten.search_keyword_rows(payload, report=self.report_of(context),
                                           source=context.get("source", flatten.ABSENT),
                                           period_start=first, period_end=last)


class ZeroResultSearchKeywordsStream(PeriodicReportStream):
    """Searches that found no app, per period, source and filter combination."""

    name = "zero_result_search_keywords"
    path = f"{REPORTING}/zero-search-results-keywords/source/{{source}}"
    primary_keys = ("source", "date", "searchKeyword", "productFilter", "hostingFilter",
                    "categoryFilter", "otherFilter")
    key_filters: t.ClassVar[tuple[str, ...]] = ("productFilter", "hostingFilter",
                                                 "categoryFilter", "otherFilter")
    #: Zero-result keywords exist for the public Marketplace search only.
    source = "marketplace"

    def get_url(self, context: Context | None) -> str:
        return self.url_for(self.path, {"source": self.source})

    def rows(self, payload: dict, context: dict, response: requests.Response
             ) -> t.Iterable[dict]:
        first, last = self.period_of(response)
        for detail in flatten.one_of(payload, ("details",), list):
            flatten.has_any(detail, ("searchKeyword",), "details")
            flatten.has_any(detail, ("count",), "details")
            row = {**detail, "source": self.source, "date": first, "period_end": last}
            for name in ("searchKeyword", *self.key_filters):
                row[name] = flatten.ABSENT if row.get(name) is None else str(row[name])
            yield row


class FreeStarterTierEntitlementsStream(PeriodicReportStream):
    """Entitlements on the free starter tier: the snapshot of each day since the bookmark.

    The last day asked is yesterday: today's snapshot is not complete yet.
    """

    name = "free_starter_tier_entitlements"
    path = f"{REPORTING}/sales/freeStarterTier/export"
    primary_keys = ("date", "entitlement_key")
    period = "day"
    body_type = list
    filters_by_product = True
    #: Ids of an entitlement, the first one present is its key (reference §11).
    ids: t.ClassVar[tuple[str, ...]] = ("appEntitlementId", "entitlementNumber", "licenseId")

    def periods(self, context: Context | None) -> list[tuple[datetime.date, datetime.date]]:
        yesterday = windows.utc_today() - datetime.timedelta(days=1)
        return [p for p in super().periods(context) if p[0] <= yesterday]

    def get_url_params(self, context: Context | None, next_page_token: t.Any) -> dict:
        params = super().get_url_params(context, next_page_token)
        day = params.pop("startDate")
        params.pop("endDate", None)
        params.update(date=day, accept="json")
        return params

    def rows(self, payload: list, context: dict, response: requests.Response
             ) -> t.Iterable[dict]:
        day = request_params(response)["date"]
        for row in payload:
            key = next((row[name] for name in self.ids
                        if isinstance(row, dict) and row.get(name)), None)
            if key is None:
                # Without an id every such row would share one key and all but one be lost.
                raise flatten.ShapeError(" or ".join(f"`{n}`" for n in self.ids)
                                         + " in every entitlement")
            yield {**row, "date": day, "entitlement_key": str(key)}
