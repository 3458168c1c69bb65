"""Atlassian Marketplace API v3 (seed 002 + reference notes), as a sandbox.

Served under the URL prefix ``/marketplace``, like ``https://api.atlassian.com/marketplace``;
links in bodies are ``/rest/3/...`` hrefs without scheme and host, as the live API gives.

Extension point: every module named in ``MarketplaceApp.EXTENSIONS`` that can be
imported provides ``register(app: MarketplaceApp) -> None``, called at the end of
``MarketplaceApp.__init__``; it adds routes with ``app.route(...)`` (under the
``REPORTING`` prefix for reporting endpoints) and may read ``app.settings``,
``app.apps`` (the generated products: ``productId``, ``appKey``, ``appName`` …),
``app.developer_id`` and the helpers ``app.reporting_error`` / ``app.catalog_error``.
A module that is absent is skipped, so extensions can be developed independently.
Extension-specific sandbox settings go in ``MarketplaceSettings.extra`` (a dict).
"""

from __future__ import annotations

import base64
import datetime
import importlib
import itertools
import random
import threading
import time
import typing as t
import uuid
from dataclasses import dataclass, field

import orjson

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
    # -- reporting data -----------------------------------------------------------
    licenses: int = 120
    transactions: int = 90
    feedback: int = 40
    events_per_kind: int = 30
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
    export_queued_seconds: float = 0.05
    export_in_progress_seconds: float = 0.1
    #: Exports whose kind is listed end FAILED with ``export_failure_message``.
    failing_exports: tuple[str, ...] = ()
    export_failure_message: str = "Export failed due to an internal error. Please retry."
    #: Exports whose kind is listed never leave IN_PROGRESS.
    stuck_exports: tuple[str, ...] = ()
    #: Bytes per chunk of a streamed download.
    download_chunk_bytes: int = 1 << 16
    # -- misbehaviour ---------------------------------------------------------------
    #: Every Nth request answers 429 with ``Retry-After`` (0: never).
    rate_limit_every: int = 0
    retry_after_seconds: float = 0.05
    #: Settings of extension modules (see the module docstring).
    extra: dict[str, t.Any] = field(default_factory=dict)


class MarketplaceApp(VendorApp):
    """The Marketplace API v3 for one developer space."""

    URL_PREFIX = URL_PREFIX
    #: Modules that add routes (see the module docstring); absent ones are skipped.
    EXTENSIONS: t.ClassVar[tuple[str, ...]] = ("isv_sandbox.marketplace_reports",)

    def __init__(self, settings: MarketplaceSettings | None = None) -> None:
        super().__init__()
        self.settings = settings or MarketplaceSettings()
        self.developer_id = self.settings.developer_id
        self._counter = itertools.count(1)
        self._lock = threading.Lock()
        self.exports: dict[str, dict] = {}
        rng = random.Random(self.settings.seed)
        self.apps = generate_apps(self.settings, rng)
        self.route("GET", r"/rest/3/developer-space/vendor/(?P<vendor_id>[^/]+)", self.vendor)
        self.route("GET", r"/rest/3/developer-space/(?P<developer_id>[^/]+)", self.developer_space)
        for module_name in self.EXTENSIONS:
            try:
                module = importlib.import_module(module_name)
            except ModuleNotFoundError as exc:
                if exc.name != module_name:
                    raise
                continue
            module.register(self)

    def tap_config(self) -> dict:
        """Settings that point tap-marketplace at this sandbox."""
        return {
            "api_url": self.base_url,
            "username": self.settings.username,
            "api_token": self.settings.api_token,
            "developer_id": self.developer_id,
            "export_poll_interval_seconds": 0.05,
            "export_timeout_seconds": 20,
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


def generate_apps(settings: MarketplaceSettings, rng: random.Random) -> list[dict]:
    """The developer space's apps, as product listing items (reference §7.8)."""
    apps = []
    for i in range(settings.apps):
        product_id = str(uuid.UUID(int=rng.getrandbits(128), version=4))
        apps.append({
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
        })
    return apps


def b64_cursor(value: t.Any) -> str:
    return base64.urlsafe_b64encode(orjson.dumps(value)).decode()


def read_cursor(token: str | None) -> t.Any:
    if not token:
        return None
    return orjson.loads(base64.urlsafe_b64decode(token.encode()))


def day(offset: int, first: str) -> str:
    return (datetime.date.fromisoformat(first) + datetime.timedelta(days=offset)).isoformat()


def now() -> float:
    return time.monotonic()
