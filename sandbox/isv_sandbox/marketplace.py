"""Atlassian Marketplace API v3 (seed 002 + reference notes), as a sandbox.

Served under the URL prefix ``/marketplace``, like ``https://api.atlassian.com/marketplace``;
links in bodies are ``/rest/3/...`` hrefs without scheme and host, as the live API gives.

The aggregated reports, partner metrics and catalog snapshot live in
``isv_sandbox.marketplace_reports``: its ``register(app)`` adds their routes at the end
of ``MarketplaceApp.__init__`` and may read ``app.settings`` (report settings go in
``MarketplaceSettings.extra``), ``app.apps``, ``app.developer_id`` and the helpers
``app.reporting_error`` / ``app.catalog_error``.
"""

from __future__ import annotations

import base64
import datetime
import itertools
import random
import threading
import time
import typing as t
import uuid
from dataclasses import dataclass, field
from urllib.parse import urlencode

import orjson

from isv_sandbox import marketplace_reports
from isv_sandbox.core import Request, Response, VendorApp

REPORTING = "/rest/3/reporting/developer-space/(?P<developer_id>[^/]+)"
URL_PREFIX = "/marketplace"

HOSTINGS = ("Cloud", "Server", "Data Center")
LICENSE_TYPES = ("COMMERCIAL", "EVALUATION", "ACADEMIC", "COMMUNITY", "OPEN_SOURCE")
SALE_TYPES = ("New", "Renewal", "Upgrade", "Refund", "Downgrade")
REGIONS = (("Germany", "EMEA"), ("USA", "Americas"), ("Japan", "APAC"), ("Brazil", "Americas"))
#: Licenses that start before this day have no data insights (reference §5).
INSIGHTS_SINCE = "2018-07-01"


@dataclass
class MarketplaceSettings:
    username: str = "vendor@example.test"
    api_token: str = "sandbox-api-token-4f9c2e"  # noqa: S105
    vendor_id: str = "1212"
    developer_id: str = "6f0e9a3c-1c2b-4d5e-9f00-5a1b2c3d4e5f"
    seed: int = 2
    # -- the catalog --------------------------------------------------------------
    apps: int = 3
    #: App software per app (cloud, datacenter, server in that order).
    software_per_app: int = 2
    versions_per_software: int = 7
    version_listings_per_software: int = 4
    parent_software: int = 4
    versions_per_parent: int = 6
    reviews_per_app: int = 7
    members: int = 13
    #: Default page sizes when the client sends no ``limit`` (observed/declared).
    listing_default_limit: int = 10
    cursor_default_limit: int = 25
    members_max_limit: int = 10
    #: Serve at most this many rows per page whatever ``limit`` asks (0: no cap), as an
    #: API may: small data sets then still span several pages.
    max_page_size: int = 0
    # -- reporting data -----------------------------------------------------------
    licenses: int = 120
    transactions: int = 90
    feedback: int = 40
    #: Cloud license events (churn, conversion, renewal) are the cloud license histories'
    #: events. An int: exactly this many of each kind, the first ones in license order
    #: (taken from licenses beyond what ``licenses``/``transactions`` serve when more are
    #: asked than those give). None: every event of the histories the transactions serve,
    #: each naming a license the sandbox exports.
    events_per_kind: int | None = 30
    attributions: int = 35
    #: First and last day of generated license/transaction dates.
    first_day: str = "2016-01-01"
    last_day: str = "2025-06-30"
    #: Default ``limit`` of the offset endpoints (the spec example implies 10).
    offset_default_limit: int = 10
    #: Detail endpoints that put ``next``/``query``/``export`` at the top level.
    top_level_links_for: tuple[str, ...] = ("churn",)
    #: Every Nth event of this kind arrives with ``licenseDetails`` flattened.
    flattened_license_details_every: int = 3
    # -- async exports --------------------------------------------------------------
    #: How long an export stays QUEUED, then IN_PROGRESS. Zero by default so the demo
    #: and the benchmark need no poll; the export tests set them.
    export_queued_seconds: float = 0.0
    export_in_progress_seconds: float = 0.0
    #: Exports whose kind is listed end FAILED with ``export_failure_message``.
    failing_exports: tuple[str, ...] = ()
    export_failure_message: str = "Export failed due to an internal error. Please retry."
    #: Exports whose kind is listed never leave IN_PROGRESS.
    stuck_exports: tuple[str, ...] = ()
    #: Bytes per chunk of a streamed download.
    download_chunk_bytes: int = 1 << 16
    #: Keep each export file once written and serve the same bytes to a later export of
    #: the same query: the benchmark's timed run then waits on the tap, not on the
    #: emulator writing 500,000 rows in Python (see benchmarks/run.py).
    reuse_rendered_exports: bool = False
    # -- misbehaviour ---------------------------------------------------------------
    #: Every Nth request answers 429 with ``Retry-After`` (0: never).
    rate_limit_every: int = 0
    retry_after_seconds: float = 0.05
    # -- the state cycle (issue 18) -------------------------------------------------
    #: Fields the vendor has added since the schema was written, sent on every row of
    #: the kind named (``{"feedback": {"sentiment": "neutral"}}``).
    vendor_added_fields: dict[str, dict[str, t.Any]] = field(default_factory=dict)
    #: Once, right after the first page (offset 0) of feedback details is served, this
    #: many new rows dated today are put at the front of the feedback list, as rows
    #: arriving newest first between two page requests would be.
    feedback_rows_inserted_after_first_page: int = 0
    #: Once, right after the first page (offset 0) of feedback details is served, the
    #: first this many rows of the feedback list are deleted.
    feedback_rows_deleted_after_first_page: int = 0
    #: Feedback pages carry ``totalCount`` (optional in the spec).
    feedback_total_count: bool = True
    #: Settings of extension modules (see the module docstring).
    extra: dict[str, t.Any] = field(default_factory=dict)


class MarketplaceApp(VendorApp):
    """The Marketplace API v3 for one developer space."""

    URL_PREFIX = URL_PREFIX

    def __init__(self, settings: MarketplaceSettings | None = None) -> None:
        super().__init__()
        self.settings = settings or MarketplaceSettings()
        self.developer_id = self.settings.developer_id
        self._counter = itertools.count(1)
        self._lock = threading.Lock()
        #: Export files already written, by kind and query (``reuse_rendered_exports``).
        self._rendered_exports: dict[str, bytes] = {}
        self.exports: dict[str, dict] = {}
        rng = random.Random(self.settings.seed)
        self.apps = generate_apps(self.settings, rng)
        # Reporting rows are spread over the apps there were at the start (see add_app).
        self.data = ReportingData(self.settings, list(self.apps))
        self.catalog = Catalog(self.settings, self.apps, rng)
        self.route("GET", r"/rest/3/developer-space/vendor/(?P<vendor_id>[^/]+)", self.vendor)
        self.route("GET", r"/rest/3/developer-space/(?P<developer_id>[^/]+)", self.developer_space)
        self.route("GET", r"/rest/3/developer-space/(?P<developer_id>[^/]+)/members",
                   self.members)
        self.route("GET", r"/rest/3/developer-space/(?P<developer_id>[^/]+)/listings",
                   self.developer_space_listings)
        self.route("GET", r"/rest/3/product-listing/developer-space/(?P<developer_id>[^/]+)",
                   self.product_listings)
        self.route("GET", r"/rest/3/app-software/app-key/(?P<app_key>[^/]+)", self.app_software)
        self.route("GET", r"/rest/3/app-software/(?P<software_id>[^/]+)/versions",
                   self.app_software_versions)
        self.route("GET", r"/rest/3/app-software/(?P<software_id>[^/]+)/listings/all",
                   self.app_version_listings)
        self.route("GET", r"/rest/3/parent-software", self.parent_software)
        self.route("GET", r"/rest/3/parent-software/(?P<parent_id>[^/]+)/versions",
                   self.parent_software_versions)
        self.route("GET", r"/rest/3/products/(?P<product_id>[^/]+)/reviews", self.reviews)
        self.route("GET", r"/rest/3/cloud-migration-compatibility/products/(?P<product_id>[^/]+)",
                   self.cloud_migration)
        self.route("GET", r"/rest/3/privacy-and-security/products/(?P<product_id>[^/]+)",
                   self.privacy_and_security)
        self.route("GET", REPORTING + "/licenses", self.list_licenses)
        self.route("GET", REPORTING + "/sales/transactions", self.list_transactions)
        self.route("GET", REPORTING + "/feedback/details", self.feedback_details)
        self.route("GET", REPORTING + r"/sales/metrics/(?P<kind>churn|conversion|renewal)/details",
                   self.event_details)
        for kind, start in (("licenses", "/licenses"), ("transactions", "/sales/transactions"),
                            ("marketing_attribution", "/marketing-attribution")):
            self.route("POST", REPORTING + start + "/async/export",
                       lambda request, developer_id, kind=kind:
                       self.start_export(request, developer_id, kind))
        self.route("GET", REPORTING + r"(?P<prefix>/licenses|/sales/transactions|)/async/export/"
                   r"(?P<export_id>[^/]+)/status", self.export_status)
        self.route("GET", REPORTING + r"(?P<prefix>/licenses|/sales/transactions|)/async/export/"
                   r"(?P<export_id>[^/]+)", self.export_download)
        marketplace_reports.register(self)

    def add_app(self) -> dict:
        """An app that joins the developer space now (an acquisition, a transfer): it is
        listed and has report figures for the whole history, but no catalog entries."""
        index = len(self.apps)
        product_id = str(uuid.UUID(int=random.Random(f"{self.settings.seed}-{index}")
                                   .getrandbits(128), version=4))
        app = {**app_listing(self.settings, index, product_id), "state": "PUBLIC"}
        self.apps.append(app)
        return app

    def tap_config(self) -> dict:
        """Settings that point tap-marketplace at this sandbox."""
        return {
            "api_url": self.base_url,
            "username": self.settings.username,
            "api_token": self.settings.api_token,
            "developer_id": self.developer_id,
        }

    # -- every request --------------------------------------------------------------

    def authenticate(self, request: Request) -> Response | None:
        if request.basic_auth() != (self.settings.username, self.settings.api_token):
            return self.reporting_error(
                401, "Client must be authenticated to access this resource.")
        return None

    def before(self, request: Request) -> Response | None:
        every = self.settings.rate_limit_every
        if every and next(self._counter) % every == 0:
            return Response.json(
                {"errors": [{"message": "Rate limit exceeded. Try again later."}]}, 429,
                {"Retry-After": f"{self.settings.retry_after_seconds:g}"})
        return None

    def not_found(self, request: Request) -> Response:
        return self.reporting_error(404, f"No resource at {request.method} {request.path}")

    def error_envelope(self, message: str, status: int) -> bytes:
        return orjson.dumps({"errors": [{"message": message}]})

    @staticmethod
    def reporting_error(status: int, message: str) -> Response:
        """The reporting APIs' error body (``JsonErrorsDoc``)."""
        return Response.json({"errors": [{"message": message}]}, status)

    @staticmethod
    def catalog_error(status: int, code: str, title: str, detail: str) -> Response:
        """The app-software / parent-software error body (``ErrorResponse``)."""
        return Response.json({"errors": [{"status": str(status), "code": code, "title": title,
                                          "detail": detail}]}, status)

    def own_space(self, developer_id: str) -> Response | None:
        if developer_id != self.developer_id:
            return self.reporting_error(404, f"Developer space {developer_id} not found")
        return None

    # -- developer space --------------------------------------------------------------

    def vendor(self, request: Request, vendor_id: str) -> Response:
        if vendor_id != self.settings.vendor_id:
            return self.reporting_error(404, f"Vendor {vendor_id} not found")
        return Response.json({"developerId": self.developer_id})

    def developer_space(self, request: Request, developer_id: str) -> Response:
        return self.own_space(developer_id) or Response.json({
            "id": self.developer_id, "name": "Sandbox Apps Inc.", "status": "ACTIVE",
            "type": "ATLASSIAN_EXTERNAL", "vendorId": int(self.settings.vendor_id),
            "version": 3, "organisationId": "org-7d1f",
        })


    # -- catalog ----------------------------------------------------------------------

    def members(self, request: Request, developer_id: str) -> Response:
        if developer_id != self.developer_id:
            return self.reporting_error(400, f"Invalid developerId {developer_id}")
        limit = int(request.arg("limit") or self.settings.members_max_limit)
        if not 1 <= limit <= self.settings.members_max_limit:
            return self.reporting_error(
                400, f"limit must be between 1 and {self.settings.members_max_limit}")
        limit = self.capped(limit)
        start = int(read_cursor(request.arg("cursor")) or 0)
        page = self.catalog.members[start:start + limit]
        body: dict[str, t.Any] = {"members": page}
        if start + limit < len(self.catalog.members):
            body["next"] = b64_cursor(start + limit)
        # The spec declares 201 for this GET.
        return Response.json(body, 201)

    def developer_space_listings(self, request: Request, developer_id: str) -> Response:
        return self.own_space(developer_id) or Response.json(self.catalog.space_listings)

    def product_listings(self, request: Request, developer_id: str) -> Response:
        denied = self.own_space(developer_id)
        if denied:
            return denied
        include_private = request.arg("includePrivate") == "true"
        items = [a for a in self.apps if include_private or a["state"] != "PRIVATE"]
        return self.links_page(request, items, "items", self.settings.listing_default_limit)

    def app_software(self, request: Request, app_key: str) -> Response:
        software = self.catalog.software_by_app_key.get(app_key)
        if software is None:
            return self.catalog_error(404, "NOT_FOUND", "Not Found", f"No app with key {app_key}")
        hosting = request.arg("hosting")
        return Response.json([s for s in software if not hosting or s["hosting"] == hosting])

    def app_software_versions(self, request: Request, software_id: str) -> Response:
        versions = self.catalog.versions.get(software_id)
        if versions is None:
            return self.catalog_error(404, "NOT_FOUND", "Not Found",
                                      f"App software {software_id} not found")
        return self.links_page(request, versions, "versions",
                               self.settings.cursor_default_limit, total=True)

    def app_version_listings(self, request: Request, software_id: str) -> Response:
        listings = self.catalog.version_listings.get(software_id)
        if listings is None:
            return self.catalog_error(404, "NOT_FOUND", "Not Found",
                                      f"App software {software_id} not found")
        state = request.arg("state")
        rows = [row for row in listings if not state or row["state"] == state]
        # The list key is `versions` (spec example and schema, and the live API).
        return self.links_page(request, rows, "versions", 10)

    def parent_software(self, request: Request) -> Response:
        return self.links_page(request, self.catalog.parents, "parentSoftware",
                               self.settings.cursor_default_limit)

    def parent_software_versions(self, request: Request, parent_id: str) -> Response:
        versions = self.catalog.parent_versions.get(parent_id)
        if versions is None:
            return self.catalog_error(404, "NOT_FOUND", "Not Found",
                                      f"Parent software {parent_id} not found")
        return self.links_page(request, versions, "versions", self.settings.cursor_default_limit)

    def reviews(self, request: Request, product_id: str) -> Response:
        reviews = self.catalog.reviews.get(product_id)
        if reviews is None:
            return self.catalog_error(404, "NOT_FOUND", "Not Found", f"No product {product_id}")
        limit = self.capped(int(request.arg("limit") or 10))
        start = int(read_cursor(request.arg("cursor")) or 0)
        page = reviews[start:start + limit]
        body: dict[str, t.Any] = {
            "productId": product_id, "reviews": page, "count": len(page),
            "averageStars": round(sum(r["stars"] for r in reviews) / len(reviews), 2)
            if reviews else None,
        }
        if start + limit < len(reviews):
            body["cursor"] = b64_cursor(start + limit)
        return Response.json(body)

    def cloud_migration(self, request: Request, product_id: str) -> Response:
        info = self.catalog.migration.get(product_id)
        if info is None:
            return self.catalog_error(404, "NOT_FOUND", "Not Found",
                                      f"No migration information for product {product_id}")
        return Response.json(info)

    def privacy_and_security(self, request: Request, product_id: str) -> Response:
        info = self.catalog.privacy.get(product_id)
        if info is None:
            return self.catalog_error(404, "NOT_FOUND", "Not Found",
                                      f"No privacy and security information for {product_id}")
        return Response.json({**info, "state": request.arg("state") or "live"})

    def links_page(self, request: Request, rows: list, key: str, default_limit: int, *,
                   total: bool = False) -> Response:
        """A cursor page with ``links.next`` as a URL string (reference §3.2)."""
        try:
            limit = int(request.arg("limit") or default_limit)
        except ValueError:
            return self.catalog_error(400, "INVALID_PARAMETER", "Bad Request",
                                      "limit must be an integer")
        if not 1 <= limit <= 50:
            return self.catalog_error(400, "INVALID_PARAMETER", "Bad Request",
                                      "limit must be between 1 and 50")
        limit = self.capped(limit)
        start = int(read_cursor(request.arg("cursor")) or 0)
        kept = {k: v for k, v in request.query.items() if k not in ("cursor", "limit")}
        links: dict[str, str] = {"self": self.href(request, kept, limit=limit)}
        if start + limit < len(rows):
            links["next"] = self.href(request, kept, limit=limit, cursor=b64_cursor(start + limit))
        if start > 0:
            links["prev"] = self.href(request, kept, limit=limit,
                                      cursor=b64_cursor(max(0, start - limit)))
        body: dict[str, t.Any] = {"links": links, key: rows[start:start + limit]}
        if total:
            body["totalCount"] = len(rows)
        return Response.json(body)

    def capped(self, limit: int) -> int:
        cap = self.settings.max_page_size
        return min(limit, cap) if cap else limit

    @staticmethod
    def href(request: Request, query: dict[str, list[str]], **extra: t.Any) -> str:
        """A ``/rest/3/...`` link to this path, as the API writes them (no scheme or host)."""
        pairs = [(k, v) for k, values in query.items() for v in values]
        pairs += [(k, str(v)) for k, v in extra.items()]
        return f"{request.path}?{urlencode(pairs)}" if pairs else request.path

    # -- reporting lists ----------------------------------------------------------------

    def list_licenses(self, request: Request, developer_id: str) -> Response:
        query = self.data.query(request, "licenses")
        if isinstance(query, Response):
            return query
        return self.offset_page(request, developer_id, "licenses",
                                list(self.data.licenses(query)), strict_limit=True)

    def list_transactions(self, request: Request, developer_id: str) -> Response:
        query = self.data.query(request, "transactions")
        if isinstance(query, Response):
            return query
        return self.offset_page(request, developer_id, "transactions",
                                list(self.data.transactions(query)), strict_limit=True)

    def feedback_details(self, request: Request, developer_id: str) -> Response:
        query = self.data.query(request, "feedback")
        if isinstance(query, Response):
            return query
        page = self.offset_page(request, developer_id, "feedback",
                                list(self.data.feedback(query)),
                                total_count=self.settings.feedback_total_count)
        if int(request.arg("offset") or 0) == 0:
            self.change_feedback_between_pages()
        return page

    def change_feedback_between_pages(self) -> None:
        """The feedback_rows_*_after_first_page settings, applied once."""
        s = self.settings
        inserted, deleted = (s.feedback_rows_inserted_after_first_page,
                             s.feedback_rows_deleted_after_first_page)
        s.feedback_rows_inserted_after_first_page = s.feedback_rows_deleted_after_first_page = 0
        if inserted:
            today = datetime.datetime.now(datetime.timezone.utc).date().isoformat()
            self.data.insert_first("feedback", [
                self.data.feedback_row(5000 + i, today) for i in range(inserted)])
        if deleted:
            self.data.deleted.setdefault("feedback", set()).update(range(deleted))

    def event_details(self, request: Request, developer_id: str, kind: str) -> Response:
        query = self.data.query(request, kind)
        if isinstance(query, Response):
            return query
        return self.offset_page(request, developer_id, "events",
                                list(self.data.events(kind, query)),
                                top_level_links=kind in self.settings.top_level_links_for)

    def offset_page(self, request: Request, developer_id: str, key: str, rows: list, *,
                    strict_limit: bool = False, top_level_links: bool = False,
                    total_count: bool = True) -> Response:
        """An offset page with HAL ``_links`` (reference §3.1)."""
        denied = self.own_space(developer_id)
        if denied:
            return denied
        try:
            offset = int(request.arg("offset") or 0)
            limit = int(request.arg("limit") or self.settings.offset_default_limit)
        except ValueError:
            return self.reporting_error(400, "offset and limit must be integers")
        if limit > 50:
            if strict_limit:
                return self.reporting_error(400, "limit: Max limit is 50")
            limit = 50  # the details endpoints cap silently
        limit = self.capped(limit)
        kept = {k: v for k, v in request.query.items() if k not in ("offset", "limit")}
        links: dict[str, t.Any] = {
            "self": {"href": self.href(request, kept, offset=offset, limit=limit)},
            "query": {"href": request.path + "{?productId*,startDate,endDate,offset,limit}",
                      "templated": True},
            "export": [{"href": request.path + "/export?accept=csv", "type": "text/csv"},
                       {"href": request.path + "/export?accept=json",
                        "type": "application/json"}],
        }
        if offset + limit < len(rows):
            links["next"] = {"href": self.href(request, kept, offset=offset + limit, limit=limit)}
        if offset > 0:
            links["prev"] = {"href": self.href(request, kept, offset=max(0, offset - limit),
                                               limit=limit)}
        page = rows[offset:offset + limit]
        if top_level_links:
            # The irregular details shape: links as top-level arrays, no `_links`.
            body = {key: page, **{name: [link] if isinstance(link, dict) else link
                                  for name, link in links.items()}}
        else:
            body = {"_links": links, key: page, "totalCount": len(rows)}
            if not total_count:
                del body["totalCount"]
        return Response.json(body)

    # -- async exports ------------------------------------------------------------------

    def start_export(self, request: Request, developer_id: str, kind: str) -> Response:
        denied = self.own_space(developer_id)
        if denied:
            return denied
        query = self.data.query(request, kind)
        if isinstance(query, Response):
            return query
        if request.arg("accept") != "json":
            return self.reporting_error(400, "accept: the sandbox serves accept=json exports")
        export_id = str(uuid.uuid4())
        base = f"/rest/3/reporting/developer-space/{developer_id}{EXPORT_PREFIX[kind]}/async/export"
        start = request.path
        with self._lock:
            self.exports[export_id] = {"kind": kind, "query": query, "started": now(),
                                       "base": base, "start": start}
        return Response.json({"_links": self.export_links(export_id, request),
                              "export": {"id": export_id}})

    def export_links(self, export_id: str, request: Request) -> dict:
        export = self.exports[export_id]
        return {
            "self": {"href": export["start"]},
            "query": {"href": self.href(request, request.query) if request.method == "POST"
                      else export["start"]},
            "status": {"href": f"{export['base']}/{export_id}/status"},
            "download": {"href": f"{export['base']}/{export_id}"},
        }

    def export_state(self, export: dict) -> str:
        elapsed = now() - export["started"]
        settings = self.settings
        if elapsed < settings.export_queued_seconds:
            return "QUEUED"
        if (export["kind"] in settings.stuck_exports
                or elapsed < settings.export_queued_seconds + settings.export_in_progress_seconds):
            return "IN_PROGRESS"
        return "FAILED" if export["kind"] in settings.failing_exports else "COMPLETED"

    def find_export(self, developer_id: str, prefix: str, export_id: str) -> dict | None:
        export = self.exports.get(export_id)
        if export is None or developer_id != self.developer_id:
            return None
        return export if EXPORT_PREFIX[export["kind"]] == prefix else None

    def export_status(self, request: Request, developer_id: str, prefix: str,
                      export_id: str) -> Response:
        export = self.find_export(developer_id, prefix, export_id)
        if export is None:
            return self.reporting_error(404, f"Export {export_id} not found")
        status = self.export_state(export)
        body: dict[str, t.Any] = {"id": export_id, "status": status}
        if status == "FAILED":
            body["message"] = self.settings.export_failure_message
        links = self.export_links(export_id, request)
        return Response.json({"_links": {k: links[k] for k in ("self", "query", "download")},
                              "export": body})

    def export_download(self, request: Request, developer_id: str, prefix: str,
                        export_id: str) -> Response:
        export = self.find_export(developer_id, prefix, export_id)
        if export is None:
            return self.reporting_error(404, f"Export {export_id} not found")
        if self.export_state(export) != "COMPLETED":
            return self.reporting_error(404, "Export is being processed")
        kind, query = export["kind"], export["query"]
        rows = {"licenses": self.data.licenses, "transactions": self.data.transactions,
                "marketing_attribution": self.data.attributions}[kind](query)
        wrapper = "marketingAttribution" if kind == "marketing_attribution" else None
        chunk_bytes = self.settings.download_chunk_bytes
        body: t.Iterable[bytes] = json_array(rows, chunk_bytes, wrapper)
        if self.settings.reuse_rendered_exports:
            rendered = self._rendered_exports.setdefault(f"{kind} {query!r}", b"".join(body))
            body = (rendered[i:i + chunk_bytes] for i in range(0, len(rendered), chunk_bytes))
        return Response(200, body, {"Content-Type": "application/json"})


EXPORT_PREFIX = {"licenses": "/licenses", "transactions": "/sales/transactions",
                 "marketing_attribution": ""}


def json_array(rows: t.Iterable[dict], chunk_bytes: int,
               wrapper: str | None = None) -> t.Iterator[bytes]:
    """A JSON array written row by row, in chunks: a 500k-row export never sits in memory."""
    buffer = bytearray(b'{"%s":[' % wrapper.encode() if wrapper else b"[")
    separator = b""
    for row in rows:
        buffer += separator
        buffer += orjson.dumps(row)
        separator = b","
        if len(buffer) >= chunk_bytes:
            yield bytes(buffer)
            buffer.clear()
    buffer += b"]}" if wrapper else b"]"
    yield bytes(buffer)


def generate_apps(settings: MarketplaceSettings, rng: random.Random) -> list[dict]:
    """The developer space's apps, as product listing items (reference §7.8)."""
    return [app_listing(settings, i, str(uuid.UUID(int=rng.getrandbits(128), version=4)))
            for i in range(settings.apps)]


def app_listing(settings: MarketplaceSettings, i: int, product_id: str) -> dict:
    return {
        "productId": product_id,
        "appKey": f"com.sandbox.app{i + 1}",
        "developerId": settings.developer_id,
        "appName": f"Sandbox App {i + 1}",
        "communityEnabled": i % 2 == 0,
        "state": "PUBLIC" if i % 4 != 3 else "PRIVATE",
        "approvalStatus": "APPROVED",
        "slug": f"sandbox-app-{i + 1}",
        "revision": 1 + i,
        "cloudComplianceBoundary": i % 3 == 0,
        "summary": f"Does useful thing number {i + 1}.",
        "tagLine": "Sandbox-grade software",
        "tags": {"category": [{"id": "c1", "name": "Project management"}],
                 "keywords": [{"id": f"k{i}", "name": f"keyword{i}"}]},
        "hostingVisibility": {"cloud": "PUBLIC", "datacenter": "PUBLIC"},
    }


def b64_cursor(value: t.Any) -> str:
    return base64.urlsafe_b64encode(orjson.dumps(value)).decode()


def read_cursor(token: str | None) -> t.Any:
    if not token:
        return None
    return orjson.loads(base64.urlsafe_b64decode(token.encode()))


def now() -> float:
    return time.monotonic()


#: A converted Server or Data Center license's evaluation had its own SEN: this plus its number.
EVALUATION_SEN_BASE = 9000000
#: Data Center licenses carry an entitlement number from this day on (Atlassian added them in 2025).
DC_ENTITLEMENTS_SINCE = "2025-01-01"


def _add_months(day: datetime.date, months: int) -> datetime.date:
    month = day.month - 1 + months
    year, month = day.year + month // 12, month % 12 + 1
    for last in (31, 30, 29, 28):
        try:
            return datetime.date(year, month, min(day.day, last))
        except ValueError:
            continue
    raise AssertionError(day)


def _mix(i: int, seed: int) -> int:
    """A cheap deterministic hash of a row number: rows are generated, never stored."""
    x = (i + 1) * 0x9E3779B1 + seed * 0x85EBCA77
    x ^= x >> 15
    x = (x * 0x2C1B3C6D) & 0xFFFFFFFFFFFF
    x ^= x >> 12
    return x


@dataclass
class Query:
    """The filters of one reporting request, parsed and validated."""

    product_ids: set[str] | None = None
    start: str | None = None
    end: str | None = None
    last_updated: str | None = None
    insights: bool = False
    atlassian: bool = False


class ReportingData:
    """Licenses, transactions, feedback, license events and attribution, by row number.

    Rows are computed from their number on every request (so a 500,000-row export is
    streamed, not built); ``update(kind, numbers, **fields)`` changes rows the way a
    renewal or refund would, and ``add(kind, rows)`` adds rows that arrive late (feedback,
    marketing_attribution; build them with ``feedback_row``/``attribution_row``), for
    incremental tests.
    """

    def __init__(self, settings: MarketplaceSettings, apps: list[dict]) -> None:
        self.settings = settings
        self.apps = apps
        first = datetime.date.fromisoformat(settings.first_day)
        last = datetime.date.fromisoformat(settings.last_day)
        self.days = [(first + datetime.timedelta(days=d)).isoformat()
                     for d in range((last - first).days + 1)]
        self.overrides: dict[str, dict[int, dict]] = {}
        self.added: dict[str, list[dict]] = {}
        self.inserted_first: dict[str, list[dict]] = {}
        #: Numbers of generated rows deleted at the vendor, by kind (feedback).
        self.deleted: dict[str, set[int]] = {}
        #: Counts the changes below: what is derived from the rows (the reports) is
        #: computed again after one.
        self.version = 0

    def update(self, kind: str, numbers: t.Iterable[int], **fields: t.Any) -> None:
        self.version += 1
        for number in numbers:
            self.overrides.setdefault(kind, {}).setdefault(number, {}).update(fields)

    def add(self, kind: str, rows: t.Iterable[dict]) -> None:
        """Rows that appear from now on, after the generated ones (``licenses``,
        ``transactions``, ``churn``/``conversion``/``renewal`` events, ``feedback``,
        ``marketing_attribution``); identical rows may be added twice."""
        self.version += 1
        self.added.setdefault(kind, []).extend(dict(row) for row in rows)

    def insert_first(self, kind: str, rows: t.Iterable[dict]) -> None:
        """Rows that appear from now on before every other row of ``kind`` (newest first)."""
        self.version += 1
        self.inserted_first.setdefault(kind, []).extend(dict(row) for row in rows)

    def with_vendor_fields(self, kind: str, row: dict) -> dict:
        added = self.settings.vendor_added_fields.get(kind)
        return {**row, **added} if added else row

    def _added(self, kind: str, query: Query, date_field: str) -> t.Iterator[dict]:
        for row in self.added.get(kind, []):
            day = row[date_field][:10]
            if (query.product_ids is not None and row["productId"] not in query.product_ids
                    or query.start and day < query.start or query.end and day > query.end):
                continue
            yield dict(row)

    # -- filters ------------------------------------------------------------------------

    def query(self, request: Request, kind: str) -> Query | Response:
        values = {}
        for name in ("startDate", "endDate", "lastUpdated"):
            value = request.arg(name)
            if value is not None:
                try:
                    datetime.date.fromisoformat(value)
                except ValueError:
                    return MarketplaceApp.reporting_error(400, f"{name}: Must be a date")
                if len(value) != 10:
                    return MarketplaceApp.reporting_error(400, f"{name}: Must be a date")
            values[name] = value
        product_ids: set[str] | None = set(request.args("productId")) or None
        if product_ids and any("," in p for p in product_ids):
            product_ids = None  # the live API silently reads "a,b" as "every app"
        insights = request.arg("withDataInsights") == "true"
        if insights and kind == "licenses" and (values["startDate"] or "") < INSIGHTS_SINCE:
            return MarketplaceApp.reporting_error(
                400, "withDataInsights is only applicable if startDate is after July, 2018")
        return Query(product_ids, values["startDate"], values["endDate"],
                     values["lastUpdated"], insights,
                     request.arg("includeAtlassianLicenses") == "true")

    def _app(self, number: int, query: Query) -> dict | None:
        app = self.apps[number % len(self.apps)]
        if query.product_ids is not None and app["productId"] not in query.product_ids:
            return None
        return app

    def _dates(self, h: int, length: int) -> tuple[str, str, str]:
        """Start, end and last-updated days of a row (last update on or after the start)."""
        span = len(self.days)
        start = (h >> 4) % max(1, span - 1)
        end = min(span - 1, start + length)
        updated = min(span - 1, start + (h >> 14) % 400)
        return self.days[start], self.days[end], self.days[updated]

    @staticmethod
    def _updated_since(row: dict, query: Query) -> bool:
        return query.last_updated is None or row["lastUpdated"] >= query.last_updated

    # -- licenses -----------------------------------------------------------------------

    def licenses(self, query: Query) -> t.Iterator[dict]:
        overrides = self.overrides.get("licenses", {})
        for number in range(self.settings.licenses):
            app = self._app(number, query)
            if app is None:
                continue
            row = self.license(number, app, insights=query.insights)
            if number in overrides:
                row.update(overrides[number])
            if self._license_matches(row, query):
                yield row
        for row in self.added.get("licenses", []):
            if (query.product_ids is None or row["productId"] in query.product_ids) and \
                    self._license_matches(row, query):
                yield dict(row)

    def _license_matches(self, row: dict, query: Query) -> bool:
        if row.get("licenseSourceType") == "Atlassian" and not query.atlassian:
            return False
        # A license matches a date range when its maintenance period overlaps it, so
        # one active across 2018-07-01 is in both halves of the data-insights split.
        if query.start and (row.get("maintenanceEndDate") or "9999") < query.start:
            return False
        if query.end and row["maintenanceStartDate"] > query.end:
            return False
        return self._updated_since(row, query)

    def license(self, number: int, app: dict, *, insights: bool) -> dict:
        h = _mix(number, self.settings.seed)
        hosting = HOSTINGS[h % 3]
        license_type = LICENSE_TYPES[(h >> 9) % len(LICENSE_TYPES)]
        evaluating = license_type == "EVALUATION"
        # An evaluation lasts 30 days and is active until then (it converts, see
        # converted_evaluation, or expires); other licenses without sales keep drawn states.
        start, end, updated = self._dates(h, 30 if hosting == "Cloud" or evaluating else 365)
        country, region = REGIONS[(h >> 7) % len(REGIONS)]
        row: dict[str, t.Any] = {
            "addonKey": app["appKey"], "productId": app["productId"],
            "addonName": app["appName"], "hosting": hosting,
            "licenseType": license_type,
            "status": ("active" if end > self.settings.last_day else "inactive") if evaluating
            else ("active", "inactive", "cancelled")[(h >> 11) % 3],
            "tier": "Evaluation" if evaluating else f"{10 * (1 + (h >> 13) % 50)} Users",
            "lastUpdated": updated, "maintenanceStartDate": start, "maintenanceEndDate": end,
            "licenseSourceType": "Atlassian" if number % 15 == 14 else "Non-Atlassian",
            "contactDetails": {
                "company": f"Customer {number}", "country": country, "region": region,
                "technicalContact": {"email": f"admin{number}@customer.test",
                                     "name": f"Admin {number}"},
                "billingContact": {"email": "RTBF", "name": "RTBF"} if number % 11 == 0
                else {"email": f"billing{number}@customer.test", "city": "Springfield"},
            },
        }
        history = None
        if self._has_history(number):
            # A paying license is what its sale lines made it: its current period, and
            # cancelled when its last line was returned, else active until it ends.
            history = self.license_history(number)
            current = [line for line in history if line["sale_type"] != "Refund"][-1]
            last = datetime.date.fromisoformat(self.settings.last_day)
            row.update(
                status="cancelled" if history[-1]["sale_type"] == "Refund"
                else "active" if current["end"] > last else "inactive",
                maintenanceStartDate=current["start"].isoformat(),
                maintenanceEndDate=current["end"].isoformat(),
                lastUpdated=max(line["sale"] for line in history).isoformat(),
                tier=f"{25 * max(1, round(current['price'] / 100))} Users")
        # The spec says isNewBillingSystem, the live API newBillingSystem.
        row["isNewBillingSystem" if number % 5 == 0 else "newBillingSystem"] = (
            "Yes" if h % 2 else "No")
        if hosting == "Cloud":
            row.update(appEntitlementId=str(uuid.UUID(int=h << 40 | number, version=4)),
                       appEntitlementNumber=f"E-4{number:07d}",
                       cloudId=f"cloud-{h % 99991}", cloudSiteHostname=f"site{number}.atlassian.net",
                       appEdition=("Standard", "Advanced")[(h >> 17) % 2],
                       cloudComplianceBoundaries=["commercial"])
        else:
            row["addonLicenseId"] = str(2000000 + number)
            if number % 7:
                row["licenseId"] = f"SEN-{2000000 + number}"
            row["extendedServerSupport"] = "NA"
        if number % 4 == 0:
            row["partnerDetails"] = {"partnerName": "Reseller X", "partnerType": "Reseller",
                                     "billingContact": {"email": "partner@reseller.test"}}
        if insights:
            # Data insights describe the evaluation a license came from: an evaluation
            # license is its own (not converted: no sale date); a paying license that
            # converted names its evaluation, when it started and ended, the sale that
            # converted it and the days that took; other licenses have none ("NA").
            converted = history and self.converted_evaluation(number, history)
            if converted:
                evaluation = {
                    "evaluationLicense": row.get("appEntitlementNumber")
                    or f"SEN-{EVALUATION_SEN_BASE + number}",
                    "evaluationStartDate": converted["start"].isoformat(),
                    "evaluationEndDate": converted["end"].isoformat(),
                    "evaluationSaleDate": converted["sale"].isoformat(),
                    "daysToConvertEval": str(converted["days"])}
            elif evaluating:
                evaluation = {"evaluationLicense": None, "evaluationStartDate": row["maintenanceStartDate"],
                              "evaluationEndDate": row["maintenanceEndDate"],
                              "evaluationSaleDate": "NA", "daysToConvertEval": "NA"}
            else:
                evaluation = {"evaluationLicense": None, "evaluationStartDate": "NA",
                              "evaluationEndDate": "NA", "evaluationSaleDate": "NA",
                              "daysToConvertEval": "NA"}
            row.update(
                attribution={"channel": ("direct", "search", "referral")[h % 3],
                             "referrerDomain": "google.com", "campaignSource": None},
                evaluationOpportunitySize=("NA", "Pending", "100")[(h >> 5) % 3],
                **evaluation,
                parentProductBillingCycle=("ANNUAL", "MONTHLY", "NA")[(h >> 8) % 3],
                parentProductName=("Jira", "Confluence")[(h >> 10) % 2],
                parentProductEdition=("Free", "Standard", "Premium")[(h >> 12) % 3],
            )
        return row

    # -- transactions -------------------------------------------------------------------

    def transactions(self, query: Query) -> t.Iterator[dict]:
        overrides = self.overrides.get("transactions", {})
        for number, (license_number, history, position) in enumerate(self._sale_lines()):
            app = self._app(license_number, query)
            if app is None:
                continue
            row = self.transaction(number, app, license_number, history[position])
            if number in overrides:
                row.update(overrides[number])
            sale_date = row["purchaseDetails"]["saleDate"]
            if query.start and sale_date < query.start:
                continue
            if query.end and sale_date > query.end:
                continue
            if self._updated_since(row, query):
                yield row
        for row in self.added.get("transactions", []):
            sale_date = row["purchaseDetails"]["saleDate"]
            if (query.product_ids is None or row["productId"] in query.product_ids) and not (
                    query.start and sale_date < query.start or query.end and sale_date > query.end) \
                    and self._updated_since(row, query):
                yield dict(row)

    # Real transactions are license histories: a sale, then renewals at the same price,
    # upgrades and downgrades, returns (a refund of the line before), lapses and returns
    # after a gap; Data Center lines carry an entitlement number from 2025 on. The
    # sandbox's lines follow the paying licenses (COMMERCIAL, ACADEMIC) in license order,
    # each with the history license_history gives it, until `transactions` lines exist.

    def _sale_lines(self) -> t.Iterator[tuple[int, list[dict], int]]:
        """(license number, its history, line in it) for every transaction line, in order."""
        count = 0
        for license_number in itertools.count():
            if count >= self.settings.transactions:
                return
            if not self._is_paying(license_number):
                continue
            history = self.license_history(license_number)
            for position in range(len(history)):
                if count >= self.settings.transactions:
                    return
                count += 1
                yield license_number, history, position

    def _is_paying(self, license_number: int) -> bool:
        h = _mix(license_number, self.settings.seed)
        return LICENSE_TYPES[(h >> 9) % len(LICENSE_TYPES)] in ("COMMERCIAL", "ACADEMIC")

    def _has_history(self, license_number: int) -> bool:
        """Whether transaction lines name this license (a paying one reached by them)."""
        if not self._is_paying(license_number):
            return False
        reached = getattr(self, "_licenses_reached", None)
        if reached is None:
            reached = self._licenses_reached = max(
                (number for number, _, _ in self._sale_lines()), default=-1)
        return license_number <= reached

    def license_history(self, license_number: int) -> list[dict]:
        """The sale lines of one license: period, sale day, type and list price."""
        g = _mix(license_number, self.settings.seed + 7)
        hosting = HOSTINGS[_mix(license_number, self.settings.seed) % 3]
        months = 1 if hosting == "Cloud" and g % 2 == 0 else 12
        first = datetime.date.fromisoformat(self.settings.first_day)
        last = datetime.date.fromisoformat(self.settings.last_day)
        start = first + datetime.timedelta(days=(g >> 4) % max(1, (last - first).days))
        price = max(10.0, round(((g >> 11) % 5000) / 10, 2))
        wanted = 2 + (g >> 24) % 6
        lines: list[dict] = []
        sale_type, old_price = "New", None
        while len(lines) < wanted and start <= last:
            end = _add_months(start, months)
            lines.append({"start": start, "end": end, "sale": start, "sale_type": sale_type,
                          "price": price, "old_price": old_price, "months": months})
            choice = _mix(license_number * 16 + len(lines), self.settings.seed + 8) % 20
            old_price = price
            if choice < 9:
                sale_type, start = "Renewal", end
            elif choice < 13:
                sale_type, price, start = "Upgrade", round(price * 1.5, 2), end
            elif choice < 16:
                sale_type, price, start = "Downgrade", round(price * 0.6, 2), end
            elif choice < 18:  # lapses, comes back after a gap
                sale_type, start = "Renewal", _add_months(end, 3 * months if months == 1 else 12)
            else:  # returned within 30 days: the refund takes the line back
                returned = lines[-1]
                if len(lines) < wanted:
                    lines.append({**returned, "sale": min(last, returned["start"] + datetime.timedelta(days=10)),
                                  "sale_type": "Refund", "price": -returned["price"], "old_price": None})
                sale_type, old_price, start = "New", None, _add_months(end, 6 if months == 12 else 2)
        return lines

    def transaction(self, number: int, app: dict, license_number: int, line: dict) -> dict:
        h = _mix(number, self.settings.seed + 1)
        hosting = HOSTINGS[_mix(license_number, self.settings.seed) % 3]
        last = datetime.date.fromisoformat(self.settings.last_day)
        sale = line["sale"]
        updated = min(last, sale + datetime.timedelta(days=(h >> 14) % 400))
        country, region = REGIONS[(_mix(license_number, self.settings.seed) >> 7) % len(REGIONS)]
        price = line["price"]
        if hosting == "Cloud":
            g = _mix(license_number, self.settings.seed)
            ids: dict[str, str] = {"appEntitlementId": str(uuid.UUID(int=g << 40 | license_number, version=4)),
                                   "appEntitlementNumber": f"E-4{license_number:07d}"}
        else:
            ids = {"addonLicenseId": str(2000000 + license_number), "licenseId": f"SEN-{2000000 + license_number}"}
            if hosting == "Data Center" and sale.isoformat() >= DC_ENTITLEMENTS_SINCE:
                ids["appEntitlementNumber"] = f"E-8{license_number:07d}"
        details: dict[str, t.Any] = {
            "saleDate": sale.isoformat(), "hosting": hosting,
            "licenseType": LICENSE_TYPES[(_mix(license_number, self.settings.seed) >> 9) % len(LICENSE_TYPES)],
            "billingPeriod": "Monthly" if line["months"] == 1 else "Annual",
            "tier": f"{25 * max(1, round(abs(price) / 100))} Users",
            "purchasePrice": price, "vendorAmount": round(price * 0.85, 2),
            "discounts": [{"type": "MARKETPLACE_PROMOTION", "amount": 5.0, "code": "PROMO"}]
            if number % 6 == 0 else [],
            "saleType": line["sale_type"], "maintenanceStartDate": line["start"].isoformat(),
            "maintenanceEndDate": line["end"].isoformat(),
        }
        if line["sale_type"] in ("Upgrade", "Downgrade"):
            details.update(changeInTier="Increase" if line["sale_type"] == "Upgrade" else "Decrease",
                           oldTier=f"{25 * max(1, round(line['old_price'] / 100))} Users")
        if line["sale_type"] == "Refund":
            details["refundReason"] = "Returned within 30 days"
        return {
            # A transaction has one or two line items: the id repeats, the line item not.
            "transactionId": f"AT-{3000000 + number // 2}",
            "transactionLineItemId": f"li-{number:07d}",
            **ids,
            "addonKey": app["appKey"], "productId": app["productId"],
            "addonName": app["appName"], "lastUpdated": updated.isoformat(),
            "paymentStatus": "Open" if h % 10 == 0 else "Paid",
            "customerDetails": {"company": f"Customer {license_number}", "country": country,
                                "region": region,
                                "technicalContact": {"email": f"admin{license_number}@customer.test"}},
            "purchaseDetails": details,
            "dunningStatus": [{"attemptCount": 1, "paymentAttemptDate": sale.isoformat()}]
            if number % 9 == 0 else None,
        }

    # -- feedback, events, attribution ------------------------------------------------

    def feedback(self, query: Query) -> t.Iterator[dict]:
        yield from map(self.feedback_with_vendor_fields, self._inserted_first("feedback", query))
        deleted = self.deleted.get("feedback", set())
        for number in range(self.settings.feedback):
            app = self._app(number, query)
            if app is None or number in deleted:
                continue
            date = self._dates(_mix(number, self.settings.seed + 2), 0)[0]
            if (query.start and date < query.start) or (query.end and date > query.end):
                continue
            yield self.feedback_with_vendor_fields(self.feedback_row(number, date))
        yield from map(self.feedback_with_vendor_fields, self._added("feedback", query, "date"))

    def feedback_with_vendor_fields(self, row: dict) -> dict:
        return self.with_vendor_fields("feedback", row)

    def _inserted_first(self, kind: str, query: Query) -> t.Iterator[dict]:
        for row in self.inserted_first.get(kind, []):
            day = row["date"][:10]
            if not (query.start and day < query.start or query.end and day > query.end):
                yield dict(row)

    def feedback_row(self, number: int, date: str) -> dict:
        """Feedback row ``number`` (its app, type and text), dated ``date``."""
        app = self.apps[number % len(self.apps)]
        h = _mix(number, self.settings.seed + 2)
        row = {"addonKey": app["appKey"], "productId": app["productId"],
               "addonName": app["appName"], "addonVersion": f"1.{h % 9}.0",
               "hosting": HOSTINGS[h % 3], "date": date,
               "feedbackType": ("disable", "uninstall", "unsubscribe")[h % 3],
               "reasonKey": "usefulness", "reason": "Not useful enough",
               "message": f"feedback {number}"}
        if number % 3:
            row.update(email=f"user{number}@customer.test", fullName=f"User {number}",
                       licenseId=f"SEN-{2000000 + number}")
        return row

    # Cloud license events are what the cloud license histories did (reference §7.4):
    # a conversion when an evaluation's first sale makes it a paying license, a renewal
    # when a paid period is followed by the next one the day it ends (at the same, a higher
    # or a lower tier), a churn when a paid period ends with no next one (a returned
    # period is a refund, not a churn). Events name the license by its entitlement
    # number, as cloud events do; Atlassian-sourced licenses, which the tap does not ask
    # for, have none.

    def events(self, kind: str, query: Query) -> t.Iterator[dict]:
        overrides = self.overrides.get(kind, {})
        every = self.settings.flattened_license_details_every
        for number, (license_number, event_date, line, line_number) in enumerate(
                self._license_events(kind)):
            app = self._app(license_number, query)
            if app is None:
                continue
            if (query.start and event_date < query.start) or (
                    query.end and event_date > query.end):
                continue
            row = self.event_row(kind, number, app, license_number, event_date, line,
                                 line_number)
            if every and kind == "renewal" and number % every == 0:
                details = row.pop("licenseDetails")
                row.update(details, licenseDetails=None)  # the spec example's flat form
            if number in overrides:
                row.update(overrides[number])
            if self._updated_since(row, query):
                yield row
        yield from self._added(kind, query, "eventDate")

    def _license_events(self, kind: str) -> list[tuple[int, str, dict, int | None]]:
        """(license number, event day, the line it is about, its transaction line number)
        for every generated event of ``kind``, in license order (computed once)."""
        cache = self.__dict__.setdefault("_events_cache", {})
        if kind in cache:
            return cache[kind]
        wanted = self.settings.events_per_kind
        served = self._served_lines()
        reached = max(served, default=-1)
        events: list[tuple[int, str, dict, int | None]] = []
        # With a count, histories past the served ones are used too when it asks for
        # more (churn is rare in a short span of days); the bound only stops a sandbox
        # without any cloud license.
        last_number = reached if wanted is None else reached + 1000 * (wanted + 1)
        for license_number in range(last_number + 1):
            if wanted is not None and len(events) >= wanted:
                break
            if not self._has_cloud_events(license_number):
                continue
            history = self.license_history(license_number)
            first_line = served.get(license_number, (None, len(history)))[0]
            count = served.get(license_number, (None, len(history)))[1]
            for event_kind, day, position in self.history_events(license_number, history[:count]):
                if event_kind == kind:
                    line_number = None if first_line is None else first_line + position
                    events.append((license_number, day, history[position], line_number))
        cache[kind] = events if wanted is None else events[:wanted]
        return cache[kind]

    def _has_cloud_events(self, license_number: int) -> bool:
        h = _mix(license_number, self.settings.seed)
        return (HOSTINGS[h % 3] == "Cloud" and self._is_paying(license_number)
                and license_number % 15 != 14
                and (self.settings.events_per_kind is not None
                     or license_number < self.settings.licenses))

    def _served_lines(self) -> dict[int, tuple[int, int]]:
        """License number -> (its first transaction line number, how many of its lines
        the transactions serve), for every license the transactions reach."""
        served = self.__dict__.get("_served")
        if served is None:
            served = {}
            for number, (license_number, _, _) in enumerate(self._sale_lines()):
                first, count = served.get(license_number, (number, 0))
                served[license_number] = (first, count + 1)
            self._served = served
        return served

    def history_events(self, license_number: int, lines: list[dict]
                       ) -> t.Iterator[tuple[str, str, int]]:
        """(kind, day, position of the line in ``lines``) of a cloud license's events."""
        last = datetime.date.fromisoformat(self.settings.last_day)
        returned = {line["start"] for line in lines if line["sale_type"] == "Refund"}
        paid = [(position, line) for position, line in enumerate(lines)
                if line["sale_type"] != "Refund"]
        starts = {line["start"] for _, line in paid}
        if paid and self.converted_evaluation(license_number, lines):
            yield "conversion", paid[0][1]["sale"].isoformat(), paid[0][0]
        for index, (position, line) in enumerate(paid):
            if index and line["sale_type"] != "New" and line["start"] == paid[index - 1][1]["end"]:
                yield "renewal", line["start"].isoformat(), position
            if line["start"] not in returned and line["end"] <= last and line["end"] not in starts:
                yield "churn", line["end"].isoformat(), position

    def converted_evaluation(self, license_number: int, history: list[dict] | None = None
                             ) -> dict | None:
        """The evaluation a paying license converted from (two in three did): it started
        1 to 30 days before the first sale and was to last 30 days."""
        if not self._is_paying(license_number):
            return None
        g = _mix(license_number, self.settings.seed + 9)
        if g % 3 == 0:
            return None
        sale = (history or self.license_history(license_number))[0]["sale"]
        days = 1 + (g >> 3) % 30
        start = sale - datetime.timedelta(days=days)
        return {"start": start, "end": start + datetime.timedelta(days=30), "sale": sale,
                "days": days}

    def event_row(self, kind: str, number: int, app: dict, license_number: int,
                  event_date: str, line: dict, line_number: int | None) -> dict:
        """Event ``number`` of ``kind``: a cloud license's churn, conversion or renewal."""
        g = _mix(license_number, self.settings.seed)
        h = _mix(number, self.settings.seed + {"churn": 3, "conversion": 4, "renewal": 5}[kind])
        entitlement = f"E-4{license_number:07d}"
        last = self.settings.last_day
        day = datetime.date.fromisoformat(event_date)
        updated = min(last, (day + datetime.timedelta(days=h % 20)).isoformat())
        return {
            "addonKey": app["appKey"], "productId": app["productId"],
            "addonName": app["appName"], "hosting": "Cloud",
            "appEdition": ("Standard", "Advanced")[(g >> 17) % 2],
            "lastUpdated": updated, "eventDate": event_date,
            # A churn is no sale; a renewal or conversion is the sale line's transaction.
            "transactionId": None if kind == "churn" or line_number is None
            else f"AT-{3000000 + line_number // 2}",
            "licenseDetails": {
                # Cloud events put the entitlement number in licenseId (reference §7.4).
                "licenseId": entitlement,
                "appEntitlementId": str(uuid.UUID(int=g << 40 | license_number, version=4)),
                "appEntitlementNumber": entitlement, "cloudId": f"cloud-{g % 99991}",
                "maintenanceStartDate": line["start"].isoformat(),
                "maintenanceEndDate": line["end"].isoformat(), "monthsValid": line["months"]},
        }

    def attributions(self, query: Query) -> t.Iterator[dict]:
        for number in range(self.settings.attributions):
            app = self._app(number, query)
            if app is None:
                continue
            date = self._dates(_mix(number, self.settings.seed + 6), 0)[0]
            if (query.start and date < query.start) or (query.end and date > query.end):
                continue
            yield self.with_vendor_fields("marketing_attribution",
                                          self.attribution_row(number, date))
        for row in self._added("marketing_attribution", query, "eventTimestamp"):
            yield self.with_vendor_fields("marketing_attribution", row)

    def attribution_row(self, number: int, date: str) -> dict:
        """Attribution touch point ``number`` (its app, channel, user), on day ``date``."""
        app = self.apps[number % len(self.apps)]
        h = _mix(number, self.settings.seed + 6)
        return {"addonLicenseId": str(2000000 + number),
                "appEntitlementNumber": f"E-4{number:07d}",
                "addonKey": app["appKey"], "productId": app["productId"],
                "channel": ("Organic", "Paid search", "Referral")[h % 3],
                "referrerDomain": "google.com" if h % 2 else None,
                "marketplaceURL": f"https://marketplace.atlassian.com/apps/{number}",
                "campaignSource": "newsletter" if h % 4 == 0 else None,
                "eventTimestamp": f"{date} {h % 24:02d}:{h % 60:02d}:{(h >> 6) % 60:02d}",
                "userId": f"{h:x}", "userType": ("admin", "requester")[h % 2]}


class Catalog:
    """App software, versions, parent software, reviews, members and the like."""

    PARENTS = ("jira", "confluence", "bitbucket", "bamboo", "crowd", "fisheye", "compass")
    SOFTWARE_HOSTINGS = ("cloud", "datacenter", "server")

    def __init__(self, settings: MarketplaceSettings, apps: list[dict],
                 rng: random.Random) -> None:
        def new_id() -> str:
            return str(uuid.UUID(int=rng.getrandbits(128), version=4))

        self.software_by_app_key: dict[str, list[dict]] = {}
        self.versions: dict[str, list[dict]] = {}
        self.version_listings: dict[str, list[dict]] = {}
        self.reviews: dict[str, list[dict]] = {}
        self.migration: dict[str, dict] = {}
        self.privacy: dict[str, dict] = {}
        parents = self.PARENTS[:settings.parent_software]
        for index, app in enumerate(apps):
            software = []
            for hosting in self.SOFTWARE_HOSTINGS[:settings.software_per_app]:
                software_id = new_id()
                software.append({"appSoftwareId": software_id, "hosting": hosting,
                                 "complianceBoundaries": ["commercial"] if hosting == "cloud"
                                 else None, "archived": False})
                self.versions[software_id] = [{
                    "buildNumber": 1000 + k, "versionNumber": f"1.{k}.0",
                    "compatibilities": [{"parentSoftwareId": parents[0] if parents else "jira",
                                         "minBuildNumber": 900000, "maxBuildNumber": 990000}],
                    "supportedPaymentModel": "paid-via-atlassian",
                    "frameworkDetails": {"frameworkId": "forge" if hosting == "cloud"
                                         else "plugin", "attributes": {}},
                    "licenseType": {"id": "commercial", "name": "Commercial"},
                    "changelog": {"releaseSummary": f"Release {k}", "releaseNotes": "Fixes."},
                    "supported": True, "beta": k == settings.versions_per_software - 1,
                    "state": "active", "revision": 1,
                    "releaseDetails": {"releasedAt": f"2024-0{1 + k % 9}-15T10:00:00Z",
                                       "releasedBy": "release-bot"},
                    "createdAt": f"2024-0{1 + k % 9}-14T10:00:00Z",
                } for k in range(settings.versions_per_software)]
                self.version_listings[software_id] = [{
                    "buildNumber": 1000 + k, "state": "PUBLIC" if k % 3 else "PRIVATE",
                    "approvalStatus": "APPROVED", "revision": 1 + k,
                    "moreDetails": f"What is new in 1.{k}.0",
                    "heroImage": new_id(), "youtubeId": None,
                    "screenshots": [{"caption": "Dashboard", "imageId": new_id()}],
                    "highlights": [{"title": "Fast", "caption": "Very", "summary": "Quick",
                                    "screenshot": {"caption": "x", "imageId": new_id()},
                                    "thumbnail": new_id()}],
                    "deploymentInstructions": [],
                    "developerLinks": {"documentation": "https://docs.sandbox.test",
                                       "bonTermsSupported": True},
                    # Documented without its fields (spec: `approvalDetails?`): made up here.
                    **({"approvalDetails": {"reviewedAt": "2024-02-01T09:00:00Z",
                                            "reviewer": {"team": "ecosystem"}}} if k % 2 else {}),
                } for k in range(settings.version_listings_per_software)]
            self.software_by_app_key[app["appKey"]] = software
            self.reviews[app["productId"]] = [{
                "id": f"rev-{index}-{k}", "content": f"Review {k} of {app['appName']}",
                "responseContent": "Thanks!" if k % 2 else None, "stars": 1 + (k + index) % 5,
                "date": f"2025-01-{1 + k % 28:02d}T08:15:00Z", "totalVotes": k,
                "helpfulVotes": k // 2, "productHosting": "cloud", "isFlagged": False,
                "authorName": f"Reviewer {k}", "transitionedToFiveStarRating": k % 3 == 0,
            } for k in range(settings.reviews_per_app)]
            if index % 3 != 2:  # some apps never filled in migration information
                self.migration[app["productId"]] = {
                    "addonKey": app["appKey"], "addonName": app["appName"],
                    "productId": app["productId"], "developerId": settings.developer_id,
                    "cloudAddonKey": app["appKey"] + ".cloud", "cloudVersionAvailability": "PUBLIC",
                    "migrationPath": "AUTOMATED", "cloudMigrationAssistantCompatibility": "4.5.0",
                    "isDualLicenseOptedIn": index % 2 == 0,
                    "migrationDocumentation": "https://docs.sandbox.test/migrate",
                    "cloudMigrationAssistantCompatibilityRanges": [{"start": "4.0.0",
                                                                    "end": "4.5.0"}],
                }
            if index % 4 != 3:
                self.privacy[app["productId"]] = {"commonCloud": {
                    "dataAccessAndStorage": {"dataAccess": {"dataAccessTypes": ["USER_PROFILE"],
                                                            "dataAccessScope": "USER_LEVEL"}},
                    "thirdPartyInformation": {"thirdPartyServices": ["AWS"],
                                              "dataSharing": False},
                    "logDetails": {"loggingEnabled": True, "logRetention": "30_DAYS"},
                    "dataResidency": {"dataResidencyRegions": ["US", "EU"]},
                    "dataRetention": {"retentionPeriod": "90_DAYS"},
                    "privacy": {"gdpr": {"gdprCompliant": True}},
                    "security": {"securityContact": "security@sandbox.test",
                                 "isDiskEncryptionSupported": True,
                                 "compliantCertifications": ["SOC2"]},
                }}
        self.parents = [{"id": parent, "developerId": "atlassian", "name": parent.title(),
                         "hostingOptions": ["cloud", "datacenter"],
                         "extensibilityFrameworks": ["forge", "connect"], "state": "active",
                         "revision": 2} for parent in parents]
        self.parent_versions = {parent: [{
            "buildNumber": 900000 + 100 * k, "versionNumber": f"9.{k}.0",
            "hosting": ["datacenter"], "state": "active", "revision": 1,
            "createdAt": f"2024-0{1 + k % 9}-01T00:00:00Z",
        } for k in range(settings.versions_per_parent)] for parent in parents}
        self.members = [{
            "aaid": f"5b10a2844c20165700ede{k:03d}", "email": f"member{k}@sandbox.test",
            "userName": f"Member {k}",
            "roles": [{"roleId": ("admin", "data-analyst", "viewer")[k % 3],
                       "resourceType": "DEVELOPER_SPACE", "resourceId": settings.developer_id}],
            "categories": ["engineering"] if k % 2 else ["finance", "primary"],
        } for k in range(settings.members)]
        self.space_listings = [{
            "developerId": settings.developer_id, "name": "Sandbox Apps Inc.",
            "description": "We build sandbox apps.", "homePageUrl": "https://sandbox.test",
            "supportContact": {"email": "support@sandbox.test", "phone": "+1 555 0100"},
            "location": {"city": "Sydney", "country": "Australia"},
            "logoImageId": new_id(), "trustCenterUrl": None,
        }]
