"""The fault matrix: every endpoint the taps call, every kind of misbehaviour that fits it.

``ENDPOINTS`` lists each endpoint once, with the stream selection that calls it and what
kind of answer it gives (a JSON page with a next-page pointer, an export status, a
download, a storage host or another host of the vendor, the refusals the tap tolerates).
Heroku's partner mode is its own vendor key (``heroku_partner``: the Platform API, the
OAuth host and addons.heroku.com); its Range pages count as paged, and "the same page
again" there is a ``Next-Range`` equal to the page's own ``Range``. ``PAIRS`` is generated from it and ``isv_sandbox.faults.KINDS``
by ``applies``; tests/test_fault_matrix.py runs every pair against the sandbox and checks
one invariant. ``test_every_sandbox_route_the_taps_call_is_in_the_matrix`` keeps the
table complete: a route the taps call that is not listed fails the suite.
"""

from __future__ import annotations

import datetime as dt
import typing as t
from dataclasses import dataclass, field

from isv_sandbox.faults import ECHO_KINDS, ENVELOPE_KINDS, KINDS, PAGING_KINDS, REFUSAL_KINDS
from tap_common.responses import Expected
from tap_heroku_vendor.tap import TapHerokuVendor
from tap_isvapp.tap import TapIsvapp
from tap_marketplace.tap import TapMarketplace

TAPS: dict[str, type] = {"heroku": TapHerokuVendor, "heroku_partner": TapHerokuVendor,
                         "isvapp": TapIsvapp, "marketplace": TapMarketplace}

TODAY = dt.datetime.now(dt.timezone.utc).date()
LAST_MONTH = (TODAY.replace(day=1) - dt.timedelta(days=1)).strftime("%Y-%m")
R = r"^/rest/3/reporting/developer-space/[^/]+"
#: The records key is taken from the stream's own ``records_jsonpath``.
FROM_STREAM = "<from the stream>"

#: Small data sets, several pages everywhere, fast clocks.
SANDBOX: dict[str, dict[str, t.Any]] = {
    "heroku": {"apps": 6, "page_size": 4},
    # Three installs (one app each); the listing in pages of 2.
    "heroku_partner": {"installs": 3, "listing_page_size": 2, "max_domains": 5,
                       "max_collaborators": 4, "seed": 7},
    "isvapp": {
        "rate_limit_per_second": 1000, "rate_limit_burst": 1000, "accounts": 3,
        "health_scores_per_account": 1, "subscriber_orgs_per_account": 1,
        "custom_objects_per_account": 1, "taxonomies": 1, "levels_per_taxonomy": 1,
        "items_per_level": 2, "export_rows_per_month": 4, "export_pending_seconds": 0.05,
        "latest_completed_month": LAST_MONTH, "historical_exports": 2,
        "request_history_days": 40, "csv_rows_per_file": 3,
    },
    "marketplace": {
        "apps": 3, "software_per_app": 1, "versions_per_software": 3,
        "version_listings_per_software": 3, "parent_software": 3, "versions_per_parent": 3,
        "reviews_per_app": 5, "members": 25, "licenses": 12, "transactions": 10,
        "feedback": 8, "events_per_kind": 8, "attributions": 6, "max_page_size": 2,
        "first_day": "2018-06-01", "last_day": "2018-07-31",
        "extra": {"report_history_days": 45, "catalog_rows": 12, "catalog_chunk_rows": 4,
                  "search_keywords_per_period": 2, "zero_result_keywords_per_period": 2,
                  "free_tier_entitlements": 2, "partner_metric_versions": 1},
    },
}
#: Tap settings: retries at 0.01 s, a request timeout the ``slow`` fault overruns.
TAP: dict[str, dict[str, t.Any]] = {
    "heroku": {},
    # Range pages of 2 (the attachments endpoint: of 1, as an add-on has at most 2).
    "heroku_partner": {"page_size": 2, "requests_per_second": 1000},
    "isvapp": {"requests_per_second": 1000, "export_poll_interval_seconds": 0.02,
               "export_timeout_seconds": 10,
               "start_date": str(TODAY - dt.timedelta(days=40))},
    "marketplace": {"export_poll_interval_seconds": 0.02, "export_timeout_seconds": 10,
                    "start_date": "2018-06-15"},
}
COMMON_TAP = {"retry_backoff_seconds": 0.01, "max_retries": 3, "request_timeout_seconds": 5}
#: The request timeout of ``slow`` runs, whose stall lasts 2.5 times as long.
SLOW_TIMEOUT_SECONDS = 0.5
#: Report streams read recent periods, not 2018.
REPORTS = {"start_date": None, "report_history_days": 40, "aggregation": "month"}


@dataclass
class Endpoint:
    vendor: str
    name: str
    method: str
    #: Regex of the request path, as the sandbox sees it (the route).
    path: str
    #: The streams selected for the run (their parents run too).
    streams: tuple[str, ...]
    #: Where the records are in a JSON body (``missing_key``, ``empty_page``).
    records_key: str | None = FROM_STREAM
    #: The vendor points at the next page (Link header, links.next, cursor, offset link).
    paged: bool = False
    export_status: bool = False
    #: json, or a streamed download: json-array, gzip, csv.
    body: str = "json"
    #: Served by the presigned-URL storage host, not the vendor's API.
    storage: bool = False
    #: Served by another host of the vendor: the attribute of the sandbox app holding its
    #: server (Heroku's OAuth host ``oauth``, addons.heroku.com ``addons_host``).
    companion: str | None = None
    #: Refusals (``isv_sandbox.faults.REFUSAL_KINDS``) the tap documents as tolerated here:
    #: the run ends with exit 0, only the refused item's rows missing, and a warning.
    tolerated: frozenset[str] = frozenset()
    #: Refusals that apply here but end the run (checked like any other fault).
    refusals_failing: frozenset[str] = frozenset()
    #: Only these kinds apply (None: every kind that fits); for an endpoint listed again
    #: under other settings to check one behaviour.
    kinds: frozenset[str] | None = None
    config: dict[str, t.Any] = field(default_factory=dict)
    sandbox: dict[str, t.Any] = field(default_factory=dict)

    @property
    def id(self) -> str:
        return f"{self.vendor}:{self.name}"


def _e(vendor: str, name: str, method: str, path: str, *streams: str, **traits: t.Any) -> Endpoint:
    return Endpoint(vendor, name, method, path, streams, **traits)


#: Partner mode: a 403/404 ends a stream for one install only (a warning).
PER_INSTALL = frozenset({"forbidden", "not_found"})


def _partner(name: str, path: str, stream: str, **traits: t.Any) -> Endpoint:
    return _e("heroku_partner", name, "GET", path, stream, tolerated=PER_INSTALL, **traits)


def _report(name: str, path: str, stream: str, **traits: t.Any) -> Endpoint:
    return _e("marketplace", name, "GET", R + path, stream, records_key=None,
              config={**REPORTS, **traits.pop("config", {})}, **traits)


ENDPOINTS: tuple[Endpoint, ...] = (
    # -- Heroku --------------------------------------------------------------------------
    _e("heroku", "GET /vendor/apps", "GET", r"^/vendor/apps$", "apps", paged=True),
    _e("heroku", "GET /vendor/apps/{app}", "GET", r"^/vendor/apps/[^/]+$", "app_info"),
    # -- Heroku partner mode (api: partner): three hosts ---------------------------------
    # A refused grant of an install that addons.heroku.com still lists ends the run; one
    # it does not list (deprovisioned), or with no listing to ask, is skipped.
    _e("heroku_partner", "POST id.heroku.com /oauth/token", "POST", r"^/oauth/token$", "addons",
       records_key=None, companion="oauth", refusals_failing=frozenset({"invalid_grant"})),
    _e("heroku_partner", "POST id.heroku.com /oauth/token (no listing)", "POST",
       r"^/oauth/token$", "addons", records_key=None, companion="oauth",
       tolerated=frozenset({"invalid_grant"}), kinds=frozenset({"invalid_grant"}),
       config={"manifest_id": None, "manifest_password": None}),
    _partner("GET /addons/{uuid}", r"^/addons/[^/]+$", "addons"),
    _partner("GET /addons/{uuid}/config", r"^/addons/[^/]+/config$", "addon_config"),
    _partner("GET /addons/{uuid}/addon-attachments", r"^/addons/[^/]+/addon-attachments$",
             "addon_attachments", paged=True, config={"page_size": 1}),
    _partner("GET /apps/{id}", r"^/apps/[^/]+$", "partner_apps"),
    _partner("GET /apps/{id}/domains", r"^/apps/[^/]+/domains$", "app_domains", paged=True),
    _partner("GET /apps/{id}/collaborators", r"^/apps/[^/]+/collaborators$",
             "app_collaborators", paged=True),
    _e("heroku_partner", "GET addons.heroku.com /api/v3/apps", "GET", r"^/api/v3/apps$",
       "addons", records_key=None, paged=True, companion="addons_host"),
    # -- ISVapp --------------------------------------------------------------------------
    _e("isvapp", "POST /api/oauth2/token", "POST", r"^/api/oauth2/token$",
       "salesforce_accounts", records_key=None),
    _e("isvapp", "GET /api/v1/salesforce_accounts", "GET", r"^/api/v1/salesforce_accounts$",
       "salesforce_accounts"),
    # The API key instead of OAuth: a host quoting it back.
    _e("isvapp", "GET /api/v1/salesforce_accounts (api_key)", "GET",
       r"^/api/v1/salesforce_accounts$", "salesforce_accounts", kinds=ECHO_KINDS,
       sandbox={"auth_mode": "api_key"}),
    _e("isvapp", "GET /api/v1/salesforce_account_summary", "GET",
       r"^/api/v1/salesforce_account_summary$", "salesforce_account_summaries"),
    _e("isvapp", "GET /api/v1/exports", "GET", r"^/api/v1/exports$", "exports"),
    _e("isvapp", "POST /api/v1/exports", "POST", r"^/api/v1/exports$", "taxonomy_item_usage",
       records_key="data"),
    _e("isvapp", "GET /api/v1/exports/{id}", "GET", r"^/api/v1/exports/[^/]+$",
       "taxonomy_item_usage", records_key="data", export_status=True),
    _e("isvapp", "GET /api/v1/exports/{id}/download/{key}", "GET",
       r"^/api/v1/exports/[^/]+/download/[^/]+$", "taxonomy_item_usage", body="gzip"),
    _e("isvapp", "GET /api/v1/requests", "GET", r"^/api/v1/requests$",
       "package_usage_requests"),
    _e("isvapp", "POST /api/v1/requests/downloads", "POST", r"^/api/v1/requests/downloads$",
       "package_usage_logs", records_key="data"),
    _e("isvapp", "GET storage /files/{id}.csv.gz", "GET", r"^/files/[^/]+\.csv\.gz$",
       "package_usage_logs", body="gzip", storage=True),
    # -- Marketplace: the developer space and the catalog -------------------------------
    _e("marketplace", "GET developer-space/vendor/{id}", "GET",
       r"^/rest/3/developer-space/vendor/[^/]+$", "developer_space", records_key=None,
       config={"developer_id": None, "vendor_id": "1212"}),
    _e("marketplace", "GET developer-space/{d}", "GET", r"^/rest/3/developer-space/[^/]+$",
       "developer_space"),
    _e("marketplace", "GET developer-space/{d}/members", "GET",
       r"^/rest/3/developer-space/[^/]+/members$", "developer_space_members", paged=True),
    _e("marketplace", "GET developer-space/{d}/listings", "GET",
       r"^/rest/3/developer-space/[^/]+/listings$", "developer_space_listings"),
    _e("marketplace", "GET product-listing/developer-space/{d}", "GET",
       r"^/rest/3/product-listing/developer-space/[^/]+$", "app_listings", paged=True),
    _e("marketplace", "GET app-software/app-key/{key}", "GET",
       r"^/rest/3/app-software/app-key/[^/]+$", "app_software"),
    _e("marketplace", "GET app-software/{id}/versions", "GET",
       r"^/rest/3/app-software/[^/]+/versions$", "app_software_versions", paged=True),
    _e("marketplace", "GET app-software/{id}/listings/all", "GET",
       r"^/rest/3/app-software/[^/]+/listings/all$", "app_version_listings", paged=True),
    _e("marketplace", "GET parent-software", "GET", r"^/rest/3/parent-software$",
       "parent_software", paged=True),
    _e("marketplace", "GET parent-software/{id}/versions", "GET",
       r"^/rest/3/parent-software/[^/]+/versions$", "parent_software_versions", paged=True),
    _e("marketplace", "GET products/{id}/reviews", "GET", r"^/rest/3/products/[^/]+/reviews$",
       "reviews", paged=True),
    _e("marketplace", "GET cloud-migration-compatibility/products/{id}", "GET",
       r"^/rest/3/cloud-migration-compatibility/products/[^/]+$",
       "cloud_migration_compatibility"),
    _e("marketplace", "GET privacy-and-security/products/{id}", "GET",
       r"^/rest/3/privacy-and-security/products/[^/]+$", "privacy_and_security"),
    # -- Marketplace: reporting lists and exports ----------------------------------------
    _e("marketplace", "GET licenses", "GET", R + r"/licenses$", "licenses", paged=True,
       config={"use_async_exports": False}),
    _e("marketplace", "GET sales/transactions", "GET", R + r"/sales/transactions$",
       "transactions", paged=True, config={"use_async_exports": False}),
    _e("marketplace", "GET feedback/details", "GET", R + r"/feedback/details$", "feedback",
       paged=True),
    _e("marketplace", "GET sales/metrics/churn/details", "GET",
       R + r"/sales/metrics/churn/details$", "license_churn_events", paged=True),
    _e("marketplace", "GET sales/metrics/renewal/details", "GET",
       R + r"/sales/metrics/(conversion|renewal)/details$", "license_renewal_events",
       paged=True),
    _e("marketplace", "POST licenses/async/export", "POST", R + r"/licenses/async/export$",
       "licenses", records_key=None),
    _e("marketplace", "GET licenses/async/export/{id}/status", "GET",
       R + r"(/licenses|/sales/transactions)?/async/export/[^/]+/status$", "licenses",
       records_key="export", export_status=True),
    _e("marketplace", "GET licenses/async/export/{id}", "GET",
       R + r"/licenses/async/export/[^/]+$", "licenses", body="json-array"),
    _e("marketplace", "POST sales/transactions/async/export", "POST",
       R + r"/sales/transactions/async/export$", "transactions", records_key=None),
    _e("marketplace", "POST marketing-attribution/async/export", "POST",
       R + r"/marketing-attribution/async/export$", "marketing_attribution", records_key=None),
    _e("marketplace", "GET async/export/{id} (attribution)", "GET",
       R + r"(/sales/transactions)?/async/export/[^/]+$", "marketing_attribution",
       body="json-array"),
    # -- Marketplace: aggregated reports (tap_marketplace/streams/) -----------------------
    _report("GET evaluations/{metric}", r"/evaluations/[^/]+$", "evaluation_metrics"),
    _report("GET feedback/metrics/{metric}", r"/feedback/metrics/[^/]+$", "feedback_metrics"),
    _report("GET sales/transactions/{metric}",
            r"/sales/transactions/(country|hosting|partner|region|tier|type)$", "sales_metrics"),
    _report("GET sales/metrics/{metric}", r"/sales/metrics/(churn|conversion|renewal)$",
            "license_event_metrics"),
    _report("GET sales/metrics/churn/benchmark", r"/sales/metrics/churn/benchmark$",
            "churn_benchmarks"),
    _report("GET benchmark/evaluations", r"/benchmark/evaluations$", "evaluation_benchmarks"),
    _report("GET benchmark/sales", r"/benchmark/sales$", "sales_benchmarks"),
    _report("GET customer-insights/{kind}", r"/customer-insights/[^/]+$", "customer_insights"),
    _report("GET app-requests-and-approvals", r"/app-requests-and-approvals$",
            "app_requests_and_approvals"),
    _report("GET search-keywords/source/{source}", r"/search-keywords/source/[^/]+$",
            "search_keywords"),
    _report("GET search-keywords", r"/search-keywords$", "search_keywords"),
    _report("GET products/{id}/search-keywords", r"/products/[^/]+/search-keywords$",
            "search_keywords"),
    _report("GET zero-search-results-keywords/source/{source}",
            r"/zero-search-results-keywords/source/[^/]+$", "zero_result_search_keywords"),
    _report("GET sales/freeStarterTier/export", r"/sales/freeStarterTier/export$",
            "free_starter_tier_entitlements", config={"report_history_days": 4}),
    _e("marketplace", "POST partner-metrics/developer-space/{d}", "POST",
       r"^/rest/3/partner-metrics/developer-space/[^/]+$", "partner_metrics", records_key=None,
       config={**REPORTS, "partner_metrics_page_periods": 2}),
    _e("marketplace", "GET reporting/product-catalog/latest", "GET",
       r"^/rest/3/reporting/product-catalog/latest$", "product_catalog", records_key=None),
    _e("marketplace", "GET storage product-catalog/{date}/catalog.csv", "GET",
       r"^/product-catalog/[^/]+/catalog\.csv$", "product_catalog", body="csv", storage=True),
)


#: What a vendor key needs beyond the common discovery settings (partner mode's streams).
DISCOVERY_CONFIG: dict[str, dict[str, t.Any]] = {
    "heroku_partner": {"api": "partner", "oauth_client_secret": "s",
                       "installs": [{"resource_uuid": "u", "refresh_token": "r"}]},
}


def discovery_tap(vendor: str) -> t.Any:
    """A tap instance of the vendor (no requests): its streams as declared."""
    if vendor not in _DISCOVERY:
        config = {"api_url": "http://127.0.0.1:9", "developer_id": "d", "username": "u",
                  "api_token": "t", "manifest_id": "m", "manifest_password": "p",
                  "api_key": "k", **DISCOVERY_CONFIG.get(vendor, {})}
        _DISCOVERY[vendor] = TAPS[vendor](config=config, parse_env_config=False,
                                          validate_config=False)
    return _DISCOVERY[vendor]


def _records_key(endpoint: Endpoint) -> str | None:
    """The first key of the stream's ``records_jsonpath`` (None for a bare array/object)."""
    stream = discovery_tap(endpoint.vendor).streams[endpoint.streams[0]]
    keys = Expected.parse(stream.records_jsonpath).keys
    return keys[0] if keys else None


_DISCOVERY: dict[str, t.Any] = {}
for _endpoint in ENDPOINTS:
    if _endpoint.records_key == FROM_STREAM:
        _endpoint.records_key = _records_key(_endpoint)


def applies(endpoint: Endpoint, kind: str) -> bool:
    """Whether a kind of fault can happen at an endpoint."""
    if endpoint.kinds is not None and kind not in endpoint.kinds:
        return False
    if kind in ECHO_KINDS:
        return True  # every host may quote what it received
    if kind in ("envelope_200", "envelope_200_transient"):
        return not endpoint.storage  # a storage host (S3) has no error envelope at 200
    if kind in ENVELOPE_KINDS or kind in ("truncated", "reset", "slow", "huge_retry_after",
                                          "unreachable"):
        return True
    if kind == "wrong_shape":
        return endpoint.body in ("json", "json-array")
    if kind == "missing_key":
        return endpoint.body == "json" and endpoint.records_key is not None
    if kind in PAGING_KINDS:
        return endpoint.paged
    if kind == "unknown_status":
        return endpoint.export_status
    if kind in REFUSAL_KINDS:
        return kind in endpoint.tolerated or kind in endpoint.refusals_failing
    msg = f"no applicability rule for fault kind {kind!r}"
    raise AssertionError(msg)


PAIRS: tuple[tuple[Endpoint, str], ...] = tuple(
    (endpoint, kind) for endpoint in ENDPOINTS for kind in KINDS if applies(endpoint, kind))


def summary() -> str:
    kinds = {kind for _, kind in PAIRS}
    return (f"fault matrix: {len(ENDPOINTS)} endpoints x {len(kinds)} fault kinds -> "
            f"{len(PAIRS)} applicable pairs")
