"""The Marketplace's aggregated reports, partner metrics and catalog snapshot, as a sandbox.

An extension of ``isv_sandbox.marketplace`` (see its docstring): ``register(app)`` adds
the routes. Shapes follow the reference notes (§7.5, §9) and the v3 spec examples:
series reports with an all-apps ``total`` and per-app ``addons`` (flat ``series`` for
evaluations, feedback, sales and conversion; ``datasets`` by billing period for churn,
with ``uniqueTotal``, and renewal), per-month benchmark lists, customer-insight
distributions, search keywords, free-starter-tier snapshots, the partner-metrics POST
paged in periods, and the product catalog: ``/latest`` hands out a presigned URL on a
second loopback host (127.0.0.2) that streams the CSV and, like S3, refuses a request
that carries an ``Authorization`` header.

The sales reports and the churn, conversion and renewal reports are aggregates of the
sandbox's own transactions, license events and licenses (``RawFigures``), as Atlassian's
are of its rows; every other figure is a pure function of (seed, report, app, dimension,
date). Either way a period read twice gives the same numbers. Settings live in ``MarketplaceSettings.extra``
(defaults in ``DEFAULTS``); they may be changed on a running sandbox through
``app.reports.settings``.
"""

from __future__ import annotations

import datetime
import hashlib
import hmac
import threading
import time
import typing as t
import uuid
from urllib.parse import urlencode

from isv_sandbox.core import Request, Response, SandboxServer, VendorApp, public

if t.TYPE_CHECKING:
    from isv_sandbox.marketplace import MarketplaceApp

REPORTING = "/rest/3/reporting/developer-space/(?P<developer_id>[^/]+)"

DEFAULTS: dict[str, t.Any] = {
    #: Data exists from this many days before "today" up to today.
    "report_history_days": 120,
    #: "Today" of the sandbox (YYYY-MM-DD); unset: the real UTC date.
    "today": None,
    #: Benchmarks and insights are published this many months late.
    "benchmark_lag_months": 1,
    "search_keywords_per_period": 6,
    "zero_result_keywords_per_period": 4,
    "free_tier_entitlements": 6,
    #: Parent-software versions per parent in partner metrics.
    "partner_metric_versions": 3,
    #: Largest ``limit`` of the partner-metrics POST, in periods (seed: max 14).
    "partner_metrics_max_limit": 14,
    "catalog_rows": 400,
    "catalog_expires_seconds": 300,
    #: Rows per streamed chunk of the catalog CSV.
    "catalog_chunk_rows": 200,
    #: A series report asked from a day inside a period computes that first period over
    #: the days asked only (a partial week or month), as the live API may.
    "partial_first_period": False,
}

EVALUATION_DIMENSIONS = {
    "country": ("Germany", "United States", "Japan", "Brazil", "India"),
    "hosting": ("Cloud", "Data Center", "Server"),
    "partner": ("Direct", "Partner 1", "Partner 2"),
    "region": ("APAC", "EMEA", "Americas", "Unknown"),
}
SALES_DIMENSIONS = {
    **EVALUATION_DIMENSIONS,
    "tier": ("10 Users", "25 Users", "100 Users", "Unlimited Users"),
    "type": ("New", "Renewal", "Upgrade", "Refund", "Downgrade"),
}
FEEDBACK_DIMENSIONS = {
    "type": ("disable", "uninstall", "unsubscribe"),
    "reason": ("bugs", "merging", "not-meeting-needs", "other", "project-based", "sandbox",
               "usefulness"),
}
BILLING_PERIODS = ("Monthly", "Annual")
INSIGHT_GROUPS = {
    "regions": ("regionWiseUserInsightsPerMonth", "region", ("apac", "emea", "americas",
                                                            "unknown")),
    "editions": ("usersEditionDistribution", "edition", ("free", "standard", "premium",
                                                         "enterprise")),
    "active-users": ("activePaidUsersInsights", "activeUsers", ("paid", "non-paid")),
    "tiers": ("usersDistributionPerProduct", "tier", ("Evaluation", "1-10", "11-100",
                                                      "101-1000", "1000+")),
}
PARENT_PRODUCTS = ("Jira", "Confluence")
SEARCH_SOURCES = ("marketplace", "embedded-marketplace")
KEYWORDS = ("jira", "automation", "diagram", "time tracking", "scriptrunner", "portfolio",
            "structure", "gantt", "checklist", "okr", "wiki", "testing")
PARENT_SOFTWARE = {"Jira": ("9.12", "9.4", "8.20", "10.3"),
                   "Confluence": ("8.5", "7.19", "7.13", "9.2")}
PARTNER_ATTRIBUTES = {
    "APP_KEY": "appKey",
    "PARENT_SOFTWARE": "parentSoftware",
    "PARENT_SOFTWARE_VERSION": "parentSoftwareVersion",
    "PARENT_SOFTWARE_MAJOR_VERSION": "parentSoftwareMajorVersions",
    "PARENT_SOFTWARE_MINOR_VERSION": "parentSoftwareMinorVersions",
    "HOSTING": "hosting",
}
PARTNER_METRICS = {"INSTALL_COUNT": "installCounts", "USER_COUNT": "userCounts",
                   "DOWNLOAD_COUNT": "downloadCounts"}
GRANULARITIES = {"DAY": "day", "WEEK": "week", "MONTH": "month"}
CATALOG_COLUMNS = (
    "is_beta", "summary", "tag_line", "is_connect", "product_id", "released_at",
    "vendor_name", "is_supported", "review_score", "average_stars", "download_count",
    "version_number", "version_status", "publicly_visible", "number_of_reviews",
    "category_name_list", "marketplace_app_key", "app_software_hosting",
    "marketplace_app_name", "parent_software_list", "supported_payment_model",
    "is_auto_update_strategy_available",
)


class ReportSettings:
    """``DEFAULTS`` overlaid with ``MarketplaceSettings.extra``; attributes are live."""

    def __init__(self, extra: t.Mapping[str, t.Any]) -> None:
        self.__dict__.update(DEFAULTS)
        self.__dict__.update({k: v for k, v in extra.items() if k in DEFAULTS})


def register(app: MarketplaceApp) -> None:
    app.reports = MarketplaceReports(app)  # type: ignore[attr-defined]


class MarketplaceReports:
    """The report routes of one Marketplace sandbox, and its presigned storage host."""

    def __init__(self, app: MarketplaceApp) -> None:
        self.app = app
        self.settings = ReportSettings(app.settings.extra)
        self.seed = app.settings.seed
        self.storage: SandboxServer | None = None
        self._raw: RawFigures | None = None
        self._storage_lock = threading.Lock()
        self._signing_key = f"sandbox-signing-{self.seed}".encode()
        #: Bodies of the partner-metrics POSTs, as received (for tests).
        self.partner_metrics_bodies: list[t.Any] = []
        r = self.route
        r("GET", rf"{REPORTING}/evaluations/(?P<metric>[^/]+)", self.evaluations)
        r("GET", rf"{REPORTING}/feedback/metrics/(?P<metric>[^/]+)", self.feedback_metrics)
        r("GET", rf"{REPORTING}/sales/transactions/(?P<metric>{'|'.join(SALES_DIMENSIONS)})",
          self.sales_metrics)
        r("GET", rf"{REPORTING}/sales/metrics/(?P<metric>churn|conversion|renewal)",
          self.license_event_metrics)
        r("GET", rf"{REPORTING}/sales/metrics/churn/benchmark", self.churn_benchmark)
        r("GET", rf"{REPORTING}/benchmark/(?P<kind>evaluations|sales)", self.benchmark)
        r("GET", rf"{REPORTING}/customer-insights/(?P<kind>[^/]+)", self.customer_insights)
        r("GET", rf"{REPORTING}/app-requests-and-approvals", self.app_requests)
        r("GET", rf"{REPORTING}/search-keywords/source/(?P<source>[^/]+)",
          self.search_keywords_by_source)
        r("GET", rf"{REPORTING}/zero-search-results-keywords/source/(?P<source>[^/]+)",
          self.zero_result_keywords)
        r("GET", rf"{REPORTING}/search-keywords", self.search_keywords_by_partner)
        r("GET", rf"{REPORTING}/products/(?P<product_id>[^/]+)/search-keywords",
          self.search_keywords_by_app)
        r("GET", rf"{REPORTING}/sales/freeStarterTier/export", self.free_starter_tier)
        r("GET", r"/rest/3/reporting/product-catalog/latest", self.catalog_latest)
        r("POST", r"/rest/3/partner-metrics/developer-space/(?P<developer_id>[^/]+)",
          self.partner_metrics)

    # -- shared ---------------------------------------------------------------------

    def route(self, method: str, pattern: str, handler: t.Callable[..., Response]) -> None:
        """A route of the app; one under a developer space answers 404 for another space."""

        def checked(request: Request, **groups: str) -> Response:
            developer_id = groups.get("developer_id")
            denied = self.app.own_space(developer_id) if developer_id else None
            return denied or handler(request, **groups)

        self.app.route(method, pattern, checked)

    @property
    def today(self) -> datetime.date:
        if self.settings.today:
            return datetime.date.fromisoformat(self.settings.today)
        return datetime.datetime.now(datetime.timezone.utc).date()

    @property
    def first_day(self) -> datetime.date:
        return self.today - datetime.timedelta(days=self.settings.report_history_days)

    def figure(self, *parts: t.Any, low: int = 0, high: int = 50) -> int:
        """A stable pseudo-random integer for these parts."""
        digest = hashlib.blake2b(repr((self.seed, *parts)).encode(), digest_size=8).digest()
        return low + int.from_bytes(digest, "big") % (high - low + 1)

    def apps_for(self, request: Request) -> list[dict]:
        wanted = set(request.args("productId"))
        return [a for a in self.app.apps if not wanted or a["productId"] in wanted]

    def error(self, status: int, message: str) -> Response:
        return self.app.reporting_error(status, message)

    def date_range(self, request: Request, *, default_days: int = 90
                   ) -> tuple[datetime.date, datetime.date] | Response:
        """``startDate``/``endDate`` (inclusive, strict YYYY-MM-DD), like the live API."""
        values = {}
        for name in ("startDate", "endDate"):
            raw = request.arg(name)
            if raw is None:
                continue
            try:
                if len(raw) != 10:
                    raise ValueError(raw)
                values[name] = datetime.date.fromisoformat(raw)
            except ValueError:
                return self.error(400, f"{name}: Must be a date")
        end = values.get("endDate", self.today)
        start = values.get("startDate", end - datetime.timedelta(days=default_days))
        return start, end

    def aggregation(self, request: Request) -> str | Response:
        value = request.arg("aggregation", "week")
        if value not in ("week", "month"):
            return self.error(400, "aggregation: Must be one of [week, month]")
        return value

    def period_starts(self, start: datetime.date, end: datetime.date, unit: str
                      ) -> list[datetime.date]:
        """Period starts overlapping start..end that have data (weeks start on Sunday)."""
        start, end = max(start, self.first_day), min(end, self.today)
        if start > end:
            return []
        first = align(start, unit)
        result = []
        while first <= end:
            result.append(first)
            first = following(first, unit)
        return result

    def links(self, request: Request, template: str) -> dict:
        path = request.path
        return {"self": {"href": path}, "query": {"href": path + template, "templated": True}}

    # -- series reports (reference §7.5) -----------------------------------------------

    def evaluations(self, request: Request, developer_id: str, metric: str) -> Response:
        if metric not in EVALUATION_DIMENSIONS:
            return self.error(400, f"metric: Must be one of {list(EVALUATION_DIMENSIONS)}")
        return self.series_report(request, developer_id, f"evaluations/{metric}",
                                  EVALUATION_DIMENSIONS[metric])

    def feedback_metrics(self, request: Request, developer_id: str, metric: str) -> Response:
        if metric not in FEEDBACK_DIMENSIONS:
            return self.error(400, f"metric: Must be one of {list(FEEDBACK_DIMENSIONS)}")
        return self.series_report(request, developer_id, f"feedback/{metric}",
                                  FEEDBACK_DIMENSIONS[metric])

    def sales_metrics(self, request: Request, developer_id: str, metric: str) -> Response:
        # productId is honoured here, except on /hosting (reference §7.5).
        raw = self.raw_figures()
        return self.series_report(
            request, developer_id, f"sales/{metric}",
            raw.names.get(f"sales/{metric}") or SALES_DIMENSIONS[metric], sales=True,
            by_product=metric != "hosting", raw=raw,
            qualifier=("evaluationType", "Net new evaluation") if metric == "hosting" else None)

    def license_event_metrics(self, request: Request, developer_id: str, metric: str
                              ) -> Response:
        raw = self.raw_figures()
        if metric == "conversion":
            return self.series_report(request, developer_id, "conversion",
                                      ("Evaluations", "Conversions"), raw=raw,
                                      qualifier=("conversionType", "Upgrade"))
        names = ("Customers", "Cancellations") if metric == "churn" else (
            "Renewal opportunities", "Renewals")
        return self.series_report(request, developer_id, metric, names, raw=raw,
                                  datasets=BILLING_PERIODS, unique_total=metric == "churn")

    def raw_figures(self) -> RawFigures:
        """The sales and license-event figures of the sandbox's own rows (computed once
        per state of the rows)."""
        data = self.app.data
        if self._raw is None or self._raw.version != data.version:
            self._raw = RawFigures(self.app)
        return self._raw

    def series_report(self, request: Request, developer_id: str, report: str,
                      dimensions: t.Sequence[str], *, datasets: t.Sequence[str] = (),
                      unique_total: bool = False, sales: bool = False,
                      by_product: bool = False, raw: RawFigures | None = None,
                      qualifier: tuple[str, str] | None = None) -> Response:
        aggregation = self.aggregation(request)
        if isinstance(aggregation, Response):
            return aggregation
        window = self.date_range(request)
        if isinstance(window, Response):
            return window
        dates = self.period_starts(*window, aggregation)
        apps = self.apps_for(request) if by_product else self.app.apps

        first_asked = window[0]

        def series(app_key: str, dataset: str, name: str) -> dict:
            elements = []
            for day in dates:
                if raw is not None:
                    # What the raw rows of this period hold (from the first day asked when
                    # the first period is partial).
                    first = max(day, first_asked) if self.settings.partial_first_period else day
                    count, net, revenue = raw.period(report, app_key, dataset, name, first,
                                                     following(day, aggregation))
                    element = {"date": day.isoformat(), "count": count}
                    if sales:
                        element.update(netCount=net, revenue=revenue)
                    elements.append(element)
                    continue
                count = self.figure(report, app_key, dataset, name, day, aggregation)
                if self.settings.partial_first_period and day < first_asked:
                    days = (following(day, aggregation) - day).days
                    count = count * (days - (first_asked - day).days) // days
                element: dict[str, t.Any] = {"date": day.isoformat(), "count": count}
                if sales:
                    element["netCount"] = count - self.figure("net", report, app_key, name,
                                                              day, high=min(count, 3))
                    element["revenue"] = round(count * 37.5 + self.figure(
                        "cents", report, app_key, name, day, high=99) / 100, 2)
                elements.append(element)
            result: dict[str, t.Any] = {"name": name}
            if qualifier:
                result[qualifier[0]] = qualifier[1]
            if unique_total:
                result["uniqueTotal"] = sum(e["count"] for e in elements)
            result["elements"] = elements
            return result

        def body(app_key: str | None) -> dict:
            # The total is the sum of the apps' series, element by element.
            def one(dataset: str, name: str) -> dict:
                if app_key is not None:
                    return series(app_key, dataset, name)
                each = [series(a["appKey"], dataset, name) for a in apps]
                total = dict(each[0]) if each else {"name": name, "elements": []}
                total["elements"] = [
                    {k: (round(sum(s["elements"][i][k] for s in each), 2)
                         if k != "date" else v) for k, v in element.items()}
                    for i, element in enumerate(total["elements"])]
                if unique_total:
                    total["uniqueTotal"] = sum(s.get("uniqueTotal", 0) for s in each)
                return total

            if datasets:
                return {"datasets": [{"name": d, "series": [one(d, n) for n in dimensions]}
                                     for d in datasets]}
            return {"series": [one("", n) for n in dimensions]}

        payload = {
            "_links": self.links(request, "{?aggregation,startDate,endDate}"),
            "total": {"name": "All apps", **body(None)},
            "addons": [{"addonKey": a["appKey"], "productId": a["productId"],
                        "name": a["appName"], **body(a["appKey"])} for a in apps],
        }
        return Response.json(payload)

    # -- per-month reports ------------------------------------------------------------

    def months(self, request: Request) -> list[datetime.date] | Response:
        """Months of the range; both ends snap to the 1st, data lags publication."""
        window = self.date_range(request, default_days=365)
        if isinstance(window, Response):
            return window
        start, end = window
        lag = self.settings.benchmark_lag_months
        published = align(self.today, "month")
        for _ in range(lag):
            published = align(published - datetime.timedelta(days=1), "month")
        return [m for m in self.period_starts(align(start, "month"), align(end, "month"),
                                              "month") if m <= published]

    def churn_benchmark(self, request: Request, developer_id: str) -> Response:
        months = self.months(request)
        if isinstance(months, Response):
            return months
        apps = []
        for app in self.apps_for(request):
            rows = []
            for month in months:
                total = self.figure("churn-total", app["appKey"], month, low=200, high=900)
                churned = self.figure("churned", app["appKey"], month, high=40)
                rows.append({"year": f"{month.year}", "month": f"{month.month:02d}",
                             "churnedLicenses": churned, "totalLicenses": total,
                             "churnRate": round(100 * churned / total, 3),
                             "isolatedChurnRate": round(50 * churned / total, 3),
                             "churnRateBenchmark": round(self.figure(
                                 "bench", app["appKey"], month, low=50, high=150) / 100, 2),
                             "isolatedChurnRateBenchmark": 0.97})
            apps.append({"appName": app["appName"], "appKey": app["appKey"],
                         "productId": app["productId"], "churnBenchmarkPerMonth": rows})
        return Response.json({"_links": self.links(request, "{?productId*,startDate,endDate}"),
                              "churnBenchmarkPerApp": apps})

    def benchmark(self, request: Request, developer_id: str, kind: str) -> Response:
        months = self.months(request)
        if isinstance(months, Response):
            return months
        apps = self.apps_for(request)

        def evaluation_row(key: str, month: datetime.date, peer_field: str) -> dict:
            count = self.figure("evals", key, month, low=10, high=400)
            previous = self.figure("evals", key, align(month - datetime.timedelta(days=1),
                                                       "month"), low=10, high=400)
            return {"date": month.isoformat(), "evaluationCount": count,
                    "previousMonthEvaluationCount": previous,
                    "evaluationMoMGrowth": round(100 * (count - previous) / previous, 2),
                    "evaluationPercentile": self.figure("pct", key, month, low=50, high=100),
                    f"evaluationMoMGrowth{peer_field}": -4.73,
                    "evaluationCountYTD": count * month.month,
                    "evaluationCountYTDLastYear": previous * month.month,
                    "evaluationYTDYoYGrowth": 4.15,
                    "evaluationYTDPercentile": 99,
                    f"evaluationYTDYoYGrowth{peer_field}": 15.69}

        def sales_row(key: str, month: datetime.date) -> dict:
            sale = round(self.figure("sale", key, month, low=1000, high=90000) / 10, 2)
            previous = round(self.figure("sale", key, align(
                month - datetime.timedelta(days=1), "month"), low=1000, high=90000) / 10, 2)
            return {"date": month.isoformat(), "sale": sale, "previousMonthSale": previous,
                    "salesMoMGrowth": round(100 * (sale - previous) / previous, 2),
                    "salesPercentile": self.figure("spct", key, month, low=50, high=100),
                    "salesMoMGrowthBenchmarkAllPartners": -17.14,
                    "salesYTD": round(sale * month.month, 2),
                    "salesYTDLastYear": round(previous * month.month, 2),
                    "salesYTDYoYGrowth": -2.98, "salesYTDPercentile": 99,
                    "salesYTDYoYGrowthBenchmarkAllPartners": -30.77}

        links = self.links(request, "{?productId*,startDate,endDate}")
        if kind == "sales":
            return Response.json({
                "_links": links,
                "total": {"name": "All apps", "salesBenchmarkPerMonth": [
                    sales_row("__all__", m) for m in months]},
                "addons": [{"addonKey": a["appKey"], "productId": a["productId"],
                            "name": a["appName"], "salesBenchmarkPerMonth": [
                                sales_row(a["appKey"], m) for m in months]} for a in apps],
            })
        # The spec's own naming: ``totals`` and ``CloudEvaluationBenchmarkPer…``.
        return Response.json({
            "_links": links,
            "totals": {"name": "All apps", "CloudEvaluationBenchmarkPerVendorPerMonth": [
                evaluation_row("__all__", m, "BenchmarkAllPartners") for m in months]},
            "CloudEvaluationBenchmarkPerApp": [
                {"addonKey": a["appKey"], "productId": a["productId"], "name": a["appName"],
                 "CloudEvaluationBenchmarkPerAppPerMonth": [
                     evaluation_row(a["appKey"], m, "BenchmarkAllAppsOnBaseProduct")
                     for m in months]} for a in apps],
        })

    def customer_insights(self, request: Request, developer_id: str, kind: str) -> Response:
        if kind not in INSIGHT_GROUPS:
            return self.error(404, f"No resource at GET {request.path}")
        product = request.arg("product")
        if product is not None and product.lower() not in ("jira", "confluence"):
            return self.error(400, "product: Must be a jira or confluence")
        months = self.months(request)
        if isinstance(months, Response):
            return months
        key, field, values = INSIGHT_GROUPS[kind]
        products = [p for p in PARENT_PRODUCTS if product is None or p.lower() == product.lower()]
        per_month = []
        for month in months:
            entries = []
            for parent in (products if kind == "tiers" else [None]):
                counts = [self.figure("insight", kind, parent, v, month, low=10, high=5000)
                          for v in values]
                for value, count in zip(values, counts):
                    group = {"region": None, "activeUsers": None, "edition": None,
                             "product": parent, "tier": None, field: value}
                    entries.append({"value": {"group": group, "usersDistribution": {
                        "usersCount": count,
                        "usersPercent": 100 * count / sum(counts),
                        "usersMarketplaceBenchmark": self.figure(
                            "mb", kind, value, month, low=20, high=250) / 100}}})
            per_month.append({"date": month.isoformat(), "insightsType": entries})
        template = "{?startDate,endDate,product}" if kind == "tiers" else "{?startDate,endDate}"
        return Response.json({"_links": self.links(request, template), key: per_month})

    def app_requests(self, request: Request, developer_id: str) -> Response:
        months = self.months(request)
        if isinstance(months, Response):
            return months
        apps = self.apps_for(request)

        def row(key: str, month: datetime.date) -> dict:
            asked = self.figure("asked", key, month, low=1, high=60)
            approved = self.figure("approved", key, month, high=asked)
            return {"date": month.isoformat(), "appRequests": asked,
                    "appRequestsApproved": approved,
                    "appRequestsApprovalRate": 100 * approved / asked}

        return Response.json({
            "_links": self.links(request, "{?productId*,startDate,endDate}"),
            "total": {"name": "All apps", "appRequestsAndApprovalsPerMonth": [
                row("__all__", m) for m in reversed(months)]},
            "addons": [{"addonKey": a["appKey"], "productId": a["productId"],
                        "name": a["appName"], "appRequestsAndApprovalsPerAppPerMonth": [
                            row(a["appKey"], m) for m in reversed(months)]} for a in apps],
        })

    # -- search keywords --------------------------------------------------------------

    def keywords_for(self, *parts: t.Any, n: int) -> list[str]:
        start = self.figure("kw", *parts, high=len(KEYWORDS) - 1)
        return [KEYWORDS[(start + i) % len(KEYWORDS)] for i in range(min(n, len(KEYWORDS)))]

    def search_keywords_by_source(self, request: Request, developer_id: str, source: str
                                  ) -> Response:
        if source not in SEARCH_SOURCES:
            return self.error(400, f"sourceKey: Must be one of {list(SEARCH_SOURCES)}")
        window = self.date_range(request, default_days=30)
        if isinstance(window, Response):
            return window
        details = []
        if self.period_starts(*window, "day"):
            words = self.keywords_for(source, window, n=self.settings.search_keywords_per_period)
            details = [{"searchKeyword": w,
                        "percentage": self.figure("share", source, w, window, high=400) / 100}
                       for w in words]
        return Response.json({"_links": self.links(request, "{?startDate,endDate}"),
                              "details": details})

    def zero_result_keywords(self, request: Request, developer_id: str, source: str
                             ) -> Response:
        if source != "marketplace":
            return self.error(400, "sourceKey: Must be one of [marketplace]")
        window = self.date_range(request, default_days=30)
        if isinstance(window, Response):
            return window
        details = []
        if self.period_starts(*window, "day"):
            for i in range(self.settings.zero_result_keywords_per_period):
                word = f"no such {KEYWORDS[self.figure('zero', window, i, high=11)]} {i}"
                details.append({
                    "searchKeyword": word,
                    "productFilter": ("jira", "confluence", None)[i % 3],
                    "hostingFilter": ("cloud", "dataCenter", None, "cloud")[i % 4],
                    "categoryFilter": "Utilities" if i % 2 else None,
                    "otherFilter": None,
                    "count": self.figure("zcount", word, window, low=1, high=30)})
        return Response.json({"_links": self.links(request, "{?startDate,endDate}"),
                              "details": details})

    def search_keywords_by_partner(self, request: Request, developer_id: str) -> Response:
        aggregation = self.aggregation(request)
        if isinstance(aggregation, Response):
            return aggregation
        window = self.date_range(request, default_days=30)
        if isinstance(window, Response):
            return window
        dates = self.period_starts(*window, aggregation)
        addons = []
        for app in self.app.apps:
            elements = [{"date": d.isoformat(),
                         "count": self.figure("appear", app["appKey"], d, aggregation)}
                        for d in dates]
            addons.append({"addonName": app["appName"], "addonKey": app["appKey"],
                           "productId": app["productId"],
                           "leadingSearchKeyword": self.keywords_for(app["appKey"], window,
                                                                     n=1)[0],
                           "searchAppearances": sum(e["count"] for e in elements),
                           "elements": elements})
        top = max(addons, key=lambda a: a["searchAppearances"], default=None)
        return Response.json({
            "_links": self.links(request, "{?aggregation,startDate,endDate}"),
            "total": {"searchAppearances": sum(a["searchAppearances"] for a in addons),
                      "topSearchKeyword": top["leadingSearchKeyword"] if top else None},
            "addons": addons})

    def search_keywords_by_app(self, request: Request, developer_id: str, product_id: str
                               ) -> Response:
        app = next((a for a in self.app.apps if a["productId"] == product_id), None)
        if app is None:
            return self.error(404, f"Product {product_id} not found")
        aggregation = self.aggregation(request)
        if isinstance(aggregation, Response):
            return aggregation
        window = self.date_range(request, default_days=30)
        if isinstance(window, Response):
            return window
        dates = self.period_starts(*window, aggregation)
        details = []
        for word in (self.keywords_for(app["appKey"], window,
                                       n=self.settings.search_keywords_per_period)
                     if dates else []):
            elements = [{"date": d.isoformat(),
                         "count": self.figure("kwc", app["appKey"], word, d, low=1)}
                        for d in dates]
            details.append({"searchKeyword": word,
                            "keywordCount": sum(e["count"] for e in elements),
                            "elements": elements})
        return Response.json({
            "_links": self.links(request, "{?startDate,endDate,aggregation}"),
            "summary": {"addonName": app["appName"], "addonKey": app["appKey"],
                        "productId": app["productId"],
                        "leadingSearchKeyword": details[0]["searchKeyword"] if details else None,
                        "allSearchAppearances": sum(d["keywordCount"] for d in details)},
            "details": details})

    # -- free starter tier (a snapshot per day) ------------------------------------------

    def free_starter_tier(self, request: Request, developer_id: str) -> Response:
        last_valid = self.today - datetime.timedelta(days=1)
        raw = request.arg("date")
        try:
            day = datetime.date.fromisoformat(raw) if raw else last_valid
        except ValueError:
            return self.error(400, "date: Must be a date")
        if request.arg("accept", "json") != "json":
            return self.error(400, "accept: the sandbox serves json only")
        rows = []
        if self.first_day <= day <= last_valid:
            for app in self.apps_for(request):
                n = self.figure("fst", app["appKey"], day,
                                low=max(0, self.settings.free_tier_entitlements - 2),
                                high=self.settings.free_tier_entitlements)
                for i in range(n):
                    number = f"E-{self.figure('entitlement', app['appKey'], i, high=10**9):09d}"
                    rows.append({
                        "day": day.isoformat(), "licenseId": None,
                        "appEntitlementId": str(uuid.UUID(int=self.figure(
                            "entitlement-id", app["appKey"], i, high=2**122))),
                        "entitlementNumber": number,
                        "parentEdition": ("free", "standard")[i % 2],
                        "dateOfEvaluation": (day - datetime.timedelta(days=30 + i)).isoformat(),
                        "parentUnitCount": 1 + i * 3,
                        "technicalEmail": f"admin{i}@customer{i}.test",
                        "vendorId": self.app.settings.vendor_id,
                        "addonName": app["appName"], "addonKey": app["appKey"],
                        "productId": app["productId"]})
        return Response.json(rows)

    # -- partner metrics (POST, paged in periods) -------------------------------------

    def partner_metrics(self, request: Request, developer_id: str) -> Response:
        try:
            body = request.json() or {}
            self.partner_metrics_bodies.append(body)
            metrics = body["metrics"]
            fields = [f["name"] for f in metrics.get("metricFields", [])]
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            return self.error(400, f"JSON parse error: cannot read the request body ({exc!r})")
        granularity = str(body.get("granularity", "WEEK")).upper()
        if granularity not in GRANULARITIES:
            return self.error(400, f"granularity: Must be one of {list(GRANULARITIES)}")
        unknown = [f for f in fields if f not in PARTNER_METRICS]
        if unknown or not fields:
            return self.error(400, f"metricFields: unsupported {unknown or 'none given'}")
        try:
            limit = int(request.arg("limit", "7"))
            offset = int(request.arg("offset", "0"))
        except ValueError:
            return self.error(400, "limit/offset: Must be an integer")
        if not 1 <= limit <= self.settings.partner_metrics_max_limit:
            return self.error(400, f"limit: Must be between 1 and "
                                   f"{self.settings.partner_metrics_max_limit}")
        unit = GRANULARITIES[granularity]
        date_range = body.get("dateRange") or {}
        try:
            end = datetime.date.fromisoformat(date_range.get("endDate")
                                              or (self.today - datetime.timedelta(days=1))
                                              .isoformat())
            start = datetime.date.fromisoformat(date_range.get("startDate")
                                                or (end - datetime.timedelta(days=90))
                                                .isoformat())
        except (TypeError, ValueError):
            return self.error(400, "dateRange: Must be dates")
        if end >= self.today:
            return self.error(400, "dateRange.endDate: End date should be less than current date")
        attributes = [a.get("name") for a in body.get("attributes") or []]
        unsupported = [a for a in attributes if a not in PARTNER_ATTRIBUTES]
        if unsupported:
            return self.error(400, f"attributes: unsupported {unsupported}")
        # ``offset``/``limit`` count periods from the start of ``dateRange``.
        starts = self.period_starts(align(start, unit), end, unit)
        window = starts[offset:offset + limit]
        apps = self.apps_for_filter(body.get("attributesFilter"))
        records = []
        for period in window:
            for app in apps:
                for parent, versions in PARENT_SOFTWARE.items():
                    for version in versions[:self.settings.partner_metric_versions]:
                        patch = self.figure("patch", parent, version, high=9)
                        values = {
                            "appKey": app["appKey"], "parentSoftware": parent,
                            "parentSoftwareVersion": f"{version}.{patch}",
                            "parentSoftwareMajorVersions": version.split(".")[0] + ".x.x",
                            "parentSoftwareMinorVersions": version + ".x",
                            "hosting": "Data Center",
                        }
                        record = {"date": period.isoformat(), "appKey": app["appKey"],
                                  "productId": app["productId"]}
                        for attribute in attributes:
                            field = PARTNER_ATTRIBUTES[attribute]
                            record[field] = values[field]
                        for name in fields:
                            record[PARTNER_METRICS[name]] = self.figure(
                                name, app["appKey"], parent, version, period, low=1, high=900)
                        records.append(record)
        # Without a per-version attribute the figures of one app and period add up.
        merged: dict[tuple, dict] = {}
        for record in records:
            key = tuple((k, v) for k, v in record.items() if k not in PARTNER_METRICS.values())
            if key in merged:
                for name in fields:
                    merged[key][PARTNER_METRICS[name]] += record[PARTNER_METRICS[name]]
            else:
                merged[key] = dict(record)
        return Response.json({"records": list(merged.values())})

    def apps_for_filter(self, attributes_filter: t.Any) -> list[dict]:
        """Apps narrowed by ``PRODUCT_ID``/``APP_KEY`` filters in an ``andGroup``."""
        wanted: dict[str, set[str]] = {}
        expr = (attributes_filter or {}).get("expr") or {}
        for item in expr.get("andGroup") or ([expr] if "filter" in expr else []):
            flt = item.get("filter") or {}
            one = flt.get("oneFilter") or {}
            values = ({(one.get("stringFilter") or {}).get("value")}
                      if "stringFilter" in one else set((one.get("inListFilter") or {})
                                                        .get("values") or []))
            wanted.setdefault(flt.get("fieldName"), set()).update(values)
        return [a for a in self.app.apps
                if a["productId"] in wanted.get("PRODUCT_ID", {a["productId"]})
                and a["appKey"] in wanted.get("APP_KEY", {a["appKey"]})]

    # -- product catalog (presigned CSV on another host) --------------------------------

    def catalog_latest(self, request: Request) -> Response:
        storage = self.storage_server()
        snapshot = self.today.isoformat()
        expires = int(self.settings.catalog_expires_seconds)
        issued = f"{time.time():.3f}"
        path = f"/product-catalog/{snapshot}/catalog.csv"
        signature = self.sign(path, issued, expires)
        query = urlencode({"X-Amz-Date": issued, "X-Amz-Expires": expires,
                           "X-Amz-Signature": signature})
        return Response.json({"date": snapshot, "presignedUrl": f"{storage.url}{path}?{query}",
                              "expiresInSeconds": expires})

    def sign(self, path: str, issued: str, expires: int) -> str:
        return hmac.new(self._signing_key, f"{path}|{issued}|{expires}".encode(),
                        hashlib.sha256).hexdigest()

    def storage_server(self) -> SandboxServer:
        with self._storage_lock:
            if self.storage is None:
                self.storage = SandboxServer(CatalogStorage(self), host="127.0.0.2").start()
                self.app.companions.append(self.storage)
            return self.storage

    def catalog_csv(self, snapshot: str) -> t.Iterator[bytes]:
        rows = int(self.settings.catalog_rows)
        chunk = max(1, int(self.settings.catalog_chunk_rows))
        yield (",".join(CATALOG_COLUMNS) + "\r\n").encode()
        for first in range(0, rows, chunk):
            yield "".join(self.catalog_line(i, snapshot)
                          for i in range(first, min(rows, first + chunk))).encode()

    def catalog_line(self, i: int, snapshot: str) -> str:
        app, version = divmod(i, 5)
        hosting = ("CLOUD", "DATA_CENTER", "SERVER")[app % 3]
        stars = self.figure("stars", app, low=10, high=50) / 10
        values = {
            "is_beta": "true" if version == 4 and app % 7 == 0 else "false",
            "summary": f'App {app} does things, "quickly", for teams',
            "tag_line": f"Tagline {app}",
            "is_connect": "true" if hosting == "CLOUD" and app % 2 else "false",
            "product_id": f"{app:08x}-0000-4000-8000-{self.seed:012x}",
            "released_at": (datetime.date.fromisoformat(snapshot)
                            - datetime.timedelta(days=app % 900 + 10 * (4 - version))
                            ).isoformat() + " 10:15:00",
            "vendor_name": f"Vendor {app % 97}",
            "is_supported": "true" if app % 5 else "false",
            "review_score": f"{stars * 0.9:.2f}" if app % 11 else "",
            "average_stars": f"{stars:.2f}" if app % 11 else "",
            "download_count": str(self.figure("downloads", app, high=200000)),
            "version_number": f"{1 + app % 4}.{version}.0",
            "version_status": ("approved", "uninitiated")[app % 2],
            "publicly_visible": "true",
            "number_of_reviews": str(self.figure("reviews", app, high=300)),
            "category_name_list": '["Project management", "Utilities"]' if app % 3
            else '["Admin tools"]',
            "marketplace_app_key": f"com.vendor{app % 97}.app{app}",
            "app_software_hosting": hosting,
            "marketplace_app_name": f"App {app}, the {('good', 'better', 'best')[app % 3]} one",
            "parent_software_list": '["Jira", "Confluence"]' if app % 2 else '["Jira"]',
            "supported_payment_model": ("free", "paid-via-atlassian")[app % 2],
            "is_auto_update_strategy_available": "true" if hosting == "CLOUD" else "false",
        }
        return ",".join(csv_field(values[c]) for c in CATALOG_COLUMNS) + "\r\n"


class RawFigures:
    """The sales and cloud license-event reports as Atlassian derives them from the rows it
    serves (so the reconciliation mart agrees on the sandbox, docs/transform.md):

    - sales by each dimension: the transaction lines by ``saleDate`` (count; ``netCount``
      the lines less the refund lines; ``revenue`` the sum of ``vendorAmount``, refunds
      negative), one series per value of the dimension the lines have;
    - churn ``Cancellations``, renewal ``Renewals`` and conversion ``Conversions``: the
      events of ``/details`` by ``eventDate``, the first two in the dataset of their
      billing period (``monthsValid`` 1: Monthly, else Annual);
    - the bases: ``Customers`` and ``Renewal opportunities`` are the licenses that came to
      the end of a paid period (renewed or churned), ``Evaluations`` the cloud
      evaluations that started (evaluation licenses and the evaluations paying licenses
      converted from, by ``evaluationStartDate``).
    """

    SALES_KEYS: t.ClassVar[dict[str, t.Callable[[dict], t.Any]]] = {
        "country": lambda row: row["customerDetails"].get("country"),
        "hosting": lambda row: row["purchaseDetails"].get("hosting"),
        "partner": lambda row: (row.get("partnerDetails") or {}).get("partnerName") or "Direct",
        "region": lambda row: row["customerDetails"].get("region"),
        "tier": lambda row: row["purchaseDetails"].get("tier"),
        "type": lambda row: row["purchaseDetails"].get("saleType"),
    }

    def __init__(self, app: MarketplaceApp) -> None:
        from isv_sandbox.marketplace import Query  # noqa: PLC0415 - the module imports this one

        self.version = app.data.version
        #: (report, app key, dataset, series) -> day -> [count, net count, revenue in cents]
        self.days: dict[tuple, dict[datetime.date, list[int]]] = {}
        #: Series names per sales report: the values the lines have.
        self.names: dict[str, tuple[str, ...]] = {}
        values: dict[str, set[str]] = {metric: set() for metric in self.SALES_KEYS}
        for row in app.data.transactions(Query()):
            details = row["purchaseDetails"]
            day = datetime.date.fromisoformat(details["saleDate"][:10])
            refund = details.get("saleType") == "Refund"
            cents = round(100 * float(details.get("vendorAmount") or 0))
            for metric, key in self.SALES_KEYS.items():
                name = str(key(row))
                values[metric].add(name)
                self.add((f"sales/{metric}", row["addonKey"], "", name), day,
                         -1 if refund else 1, cents)
        self.names = {f"sales/{metric}": tuple(sorted(names)) for metric, names in values.items()}
        series = {"churn": ("Cancellations", "Customers"), "renewal": ("Renewals",
                                                                       "Renewal opportunities")}
        for kind in ("churn", "renewal", "conversion"):
            for row in app.data.events(kind, Query()):
                details = row.get("licenseDetails") or row
                day = datetime.date.fromisoformat(row["eventDate"][:10])
                if kind == "conversion":
                    self.add(("conversion", row["addonKey"], "", "Conversions"), day)
                    continue
                dataset = "Monthly" if details.get("monthsValid") == 1 else "Annual"
                for report in ("churn", "renewal"):
                    # A renewal or a churn is one opportunity to renew, in both reports.
                    name = series[report][0] if report == kind else series[report][1]
                    self.add((report, row["addonKey"], dataset, name), day)
                    if report == kind:
                        self.add((report, row["addonKey"], dataset, series[report][1]), day)
        for row in app.data.licenses(Query(insights=True)):
            started = row.get("evaluationStartDate")
            if row.get("hosting") == "Cloud" and started and started != "NA":
                self.add(("conversion", row["addonKey"], "", "Evaluations"),
                         datetime.date.fromisoformat(started[:10]))

    def add(self, key: tuple, day: datetime.date, net: int = 1, cents: int = 0) -> None:
        figures = self.days.setdefault(key, {}).setdefault(day, [0, 0, 0])
        figures[0] += 1
        figures[1] += net
        figures[2] += cents

    def period(self, report: str, app_key: str, dataset: str, name: str,
               first: datetime.date, end: datetime.date) -> tuple[int, int, float]:
        """(count, net count, revenue) of the days first..end (exclusive)."""
        by_day = self.days.get((report, app_key, dataset, name), {})
        count = net = cents = 0
        day = first
        while day < end:
            figures = by_day.get(day)
            if figures:
                count, net, cents = count + figures[0], net + figures[1], cents + figures[2]
            day += datetime.timedelta(days=1)
        return count, net, cents / 100


class CatalogStorage(VendorApp):
    """The presigned-URL host: no credentials, a signature and an expiry instead."""

    def __init__(self, reports: MarketplaceReports) -> None:
        super().__init__()
        self.reports = reports
        self.route("GET", r"/product-catalog/(?P<snapshot>[^/]+)/catalog\.csv", self.download)

    @public
    def download(self, request: Request, snapshot: str) -> Response:
        if "Authorization" in request.headers:
            return s3_error(400, "InvalidArgument", "Only one auth mechanism allowed; only the "
                            "X-Amz-Algorithm query parameter, Signature query string parameter "
                            "or the Authorization header should be specified")
        issued, expires = request.arg("X-Amz-Date", ""), request.arg("X-Amz-Expires", "0")
        expected = self.reports.sign(request.path, issued or "", int(expires or 0))
        if not hmac.compare_digest(expected, request.arg("X-Amz-Signature", "") or ""):
            return s3_error(403, "SignatureDoesNotMatch", "The request signature we calculated "
                            "does not match the signature you provided.")
        if time.time() > float(issued) + int(expires):
            return s3_error(403, "AccessDenied", "Request has expired")
        return Response(200, self.reports.catalog_csv(snapshot),
                        {"Content-Type": "binary/octet-stream"})


def s3_error(status: int, code: str, message: str) -> Response:
    body = (f'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>{code}</Code>'
            f"<Message>{message}</Message></Error>").encode()
    return Response(status, body, {"Content-Type": "application/xml"})


def csv_field(value: str) -> str:
    if any(c in value for c in ',"\r\n'):
        return '"' + value.replace('"', '""') + '"'
    return value


def align(day: datetime.date, unit: str) -> datetime.date:
    if unit == "week":
        return day - datetime.timedelta(days=(day.weekday() + 1) % 7)
    if unit == "month":
        return day.replace(day=1)
    return day


def following(first: datetime.date, unit: str) -> datetime.date:
    if unit == "day":
        return first + datetime.timedelta(days=1)
    if unit == "week":
        return first + datetime.timedelta(days=7)
    return (first.replace(day=28) + datetime.timedelta(days=4)).replace(day=1)

