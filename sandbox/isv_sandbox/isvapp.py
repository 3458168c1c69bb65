"""The ISVapp REST API (seeds 000 and 001 + reference notes §1), as a sandbox.

Both auth modes (a static API key, or OAuth2 client-credentials tokens per scope that
expire), the 2 requests/second limit answered with 429, the ``{data, success}``
envelope, the asynchronous export state machine (PENDING for a while, then COMPLETED
or ERRORED) with gzip NDJSON downloads generated as a stream, the 31-day rule on
``/requests``, and signed download URLs for raw request files on a second loopback
host (``127.0.0.2``) that, like S3, refuses any request carrying an ``Authorization``
header and any URL past its expiry.

Every clock, limit and size is a setting of ``IsvappSettings``.
"""

from __future__ import annotations

import csv
import datetime as dt
import hashlib
import hmac
import io
import itertools
import math
import random
import secrets
import threading
import time
import typing as t
import uuid
import zlib
from dataclasses import dataclass, field

import orjson

from isv_sandbox.core import Request, Response, SandboxServer, TokenBucket, VendorApp, public

#: OAuth scope each path needs (seed 001; the raw-request endpoints' scope is unknown).
SCOPES = (
    ("/api/v1/account", "identity"),
    ("/api/v1/salesforce_account", "salesforce_accounts"),
    ("/api/v1/exports", "exports"),
    ("/api/v1/requests", "requests"),
)

#: The Salesforce App Analytics package usage log header (reference §1.7, sample order).
PACKAGE_LOG_COLUMNS = (
    "timestamp_derived", "log_record_type", "request_id", "organization_id",
    "organization_name", "organization_status", "organization_edition",
    "organization_country_code", "organization_language_locale", "organization_time_zone",
    "organization_instance", "organization_type", "cloned_from_organization_id",
    "user_id_token", "user_type", "url", "package_id", "package_version_id",
    "managed_package_namespace", "custom_entity", "custom_entity_type", "operation_type",
    "operation_count", "request_status", "referrer_uri", "session_key", "login_key",
    "user_agent", "user_country_code", "user_time_zone", "api_type", "api_version",
    "rows_processed", "request_size", "response_size", "http_method", "http_status_code",
    "num_fields", "app_name", "page_app_name", "page_context", "ui_event_source",
    "ui_event_type", "ui_event_sequence_num", "target_ui_element", "parent_ui_element",
    "page_url", "prevpage_url", "class_name", "method_name", "event", "event_subscriber",
    "event_count",
)
LOG_RECORD_TYPES = ("API", "ApexExecution", "LightningPageView", "RestApi", "URI",
                    "VisualforceRequest")
OPERATION_TYPES = ("INSERT", "READ", "UPDATE", "DELETE", "SOQL_QUERY", "SOSL_QUERY")
METRICS = ("unique_users", "unique_users_external", "unique_users_internal",
           "operations", "operations_external", "operations_internal")
_CHUNK = 256 * 1024


@dataclass
class IsvappSettings:
    api_key: str = "sandbox-isvapp-api-key-7d41"
    client_id: str = "sandbox-isvapp-client"
    client_secret: str = "sandbox-isvapp-client-secret-93be"  # noqa: S105
    #: Which credentials ``tap_config()`` hands out: ``oauth`` or ``api_key``.
    auth_mode: str = "oauth"
    token_lifetime_seconds: float = 3600
    #: After this many authenticated requests every token issued so far is revoked
    #: (once); 0 never revokes.
    revoke_tokens_after_requests: int = 0
    #: ISVapp's documented limit: two requests per second, on every endpoint.
    rate_limit_per_second: float = 2
    rate_limit_burst: float = 2
    company_name: str = "Sandbox ISV GmbH"
    seed: int = 7
    # -- accounts --------------------------------------------------------------------
    accounts: int = 40
    health_scores_per_account: int = 2
    subscriber_orgs_per_account: int = 2
    custom_objects_per_account: int = 3
    # -- exports ---------------------------------------------------------------------
    taxonomies: int = 2
    levels_per_taxonomy: int = 2
    items_per_level: int = 3
    #: Rows per month of a taxonomy item export (accounts x items, generated on the fly).
    export_rows_per_month: int = 30
    export_pending_seconds: float = 0.3
    #: What a requested export becomes once it leaves PENDING: COMPLETED or ERRORED.
    export_outcome: str = "COMPLETED"
    export_error_message: str = "Taxonomy recalculation in progress, please retry later"
    #: A download can be fetched this long after completion (the example: 1 hour).
    export_expiry_seconds: float = 3600
    #: If set, this 1-based line of every export file is written as broken JSON.
    export_malformed_line: int = 0
    #: The latest month whose data retrieval is complete; default: last month from the
    #: 5th of this month on, else the month before.
    latest_completed_month: str | None = None
    #: Exports that exist before the tap runs (listed by ``GET /api/v1/exports``).
    historical_exports: int = 3
    # -- raw package usage log requests ----------------------------------------------
    request_history_days: int = 30
    requests_per_day: int = 1
    csv_rows_per_file: int = 12
    #: Columns Salesforce added after the sample header, appended to every file.
    csv_extra_columns: list[str] = field(default_factory=list)
    signed_url_lifetime_seconds: float = 900
    #: Start every CSV file with a UTF-8 byte order mark.
    csv_byte_order_mark: bool = False
    # -- what tap_config() adds for the tap --------------------------------------------
    tap_start_date: str | None = None


def today() -> dt.date:
    return dt.datetime.now(dt.timezone.utc).date()


def month_before(month: str, count: int = 1) -> str:
    year, number = (int(p) for p in month.split("-"))
    index = year * 12 + number - 1 - count
    return f"{index // 12:04d}-{index % 12 + 1:02d}"


def iso(timestamp: float | None) -> str | None:
    if timestamp is None:
        return None
    moment = dt.datetime.fromtimestamp(timestamp, dt.timezone.utc)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def envelope(data: t.Any, status: int = 200, headers: dict | None = None) -> Response:
    return Response.json({"data": data, "success": True}, status, headers)


def error(message: str, status: int, headers: dict | None = None) -> Response:
    return Response.json({"error": message, "success": False}, status, headers)


class IsvappApp(VendorApp):
    def __init__(self, settings: IsvappSettings | None = None) -> None:
        super().__init__()
        self.settings = s = settings or IsvappSettings()
        self.rng = random.Random(s.seed)
        self._lock = threading.Lock()
        self.rate = TokenBucket(s.rate_limit_burst, s.rate_limit_per_second)
        self.tokens: dict[str, tuple[frozenset[str], float]] = {}
        self.tokens_issued: list[tuple[str, float]] = []  # (scope, time)
        self.authenticated_requests = 0
        self._revoked_once = False
        self.accounts = self._generate_accounts()
        self.taxonomy = self._generate_taxonomy()
        self.exports: dict[str, dict] = {}
        self.export_requests: list[dict] = []  # request bodies, for tests
        self.requests_data = self._generate_requests()
        # Numbers (and so ids) of late requests never repeat, even after one is removed.
        self._request_numbers = itertools.count(len(self.requests_data))
        self.signing_key = secrets.token_bytes(16)
        self._seed_historical_exports()
        self.storage = SandboxServer(StorageApp(self), host="127.0.0.2").start()
        self.companions.append(self.storage)

        self.route("POST", "/api/oauth2/token", self.issue_token)
        self.route("GET", "/api/v1/account", self.show_account)
        self.route("GET", "/api/v1/salesforce_accounts", self.list_accounts)
        self.route("GET", "/api/v1/salesforce_account_summary", self.account_summary)
        self.route("POST", "/api/v1/exports", self.request_export)
        self.route("GET", "/api/v1/exports", self.list_exports)
        self.route("GET", r"/api/v1/exports/(?P<export_id>[^/]+)", self.show_export)
        self.route("GET", r"/api/v1/exports/(?P<export_id>[^/]+)/download/(?P<token>[^/]+)",
                   self.download_export)
        self.route("GET", "/api/v1/requests", self.list_requests)
        self.route("POST", "/api/v1/requests/downloads", self.request_downloads)

    def tap_config(self) -> dict:
        """Settings that point tap-isvapp at this sandbox (no decimal values: Meltano
        4.4.1 cannot pass those through environment variables)."""
        s = self.settings
        config: dict[str, t.Any] = {"api_url": self.base_url}
        if s.auth_mode == "api_key":
            config["api_key"] = s.api_key
        else:
            config |= {"client_id": s.client_id, "client_secret": s.client_secret}
        config["export_taxonomy_ids"] = [self.taxonomy[0]["id"]]
        config["export_poll_interval_seconds"] = 1
        # From the first of last month: usage of the latest completed month, and the
        # raw request files of the last few weeks.
        config["start_date"] = s.tap_start_date or f"{month_before(today().strftime('%Y-%m'), 1)}-01"
        return config

    def error_envelope(self, message: str, status: int) -> bytes:
        return orjson.dumps({"error": message, "success": False})

    # -- limits and credentials -------------------------------------------------------

    def before(self, request: Request) -> Response | None:
        if not self.rate.take():
            limit = self.settings.rate_limit_per_second
            return error(f"Rate limit exceeded: at most {limit:g} requests per second",
                         429, {"Retry-After": "1"})
        return None

    def authenticate(self, request: Request) -> Response | None:
        token = request.bearer()
        if token is None:
            return error("Missing Authorization: Bearer header", 401)
        with self._lock:
            self.authenticated_requests += 1
            limit = self.settings.revoke_tokens_after_requests
            if limit and not self._revoked_once and self.authenticated_requests > limit:
                self._revoked_once = True
                self.tokens.clear()
        if token == self.settings.api_key:
            return None  # an API key with the "ISVapp metrics retrieval" permission
        granted = self.tokens.get(token)
        if granted is None:
            return error("Invalid access token", 401)
        scopes, expires = granted
        if time.time() >= expires:
            return error("Access token expired", 401)
        needed = scope_for(request.path)
        if needed not in scopes:
            return error(f"Access token lacks the scope required for this endpoint: {needed}",
                         403)
        return None

    @public
    def issue_token(self, request: Request) -> Response:
        s = self.settings
        if request.basic_auth() != (s.client_id, s.client_secret):
            return Response.json({"error": "invalid_client",
                                  "error_description": "Client authentication failed"}, 401)
        form = request.form()
        if form.get("grant_type") != "client_credentials":
            return Response.json({"error": "unsupported_grant_type"}, 400)
        scopes = frozenset((form.get("scope") or "").split())
        known = {scope for _, scope in SCOPES}
        if not scopes or not scopes <= known:
            return Response.json({"error": "invalid_scope",
                                  "error_description": f"Unknown scope: {form.get('scope')!r}"},
                                 400)
        token = secrets.token_urlsafe(24)
        with self._lock:
            self.tokens[token] = (scopes, time.time() + s.token_lifetime_seconds)
            self.tokens_issued.extend((scope, time.monotonic()) for scope in scopes)
        return Response.json({"access_token": token, "token_type": "Bearer",
                              "expires_in": s.token_lifetime_seconds,
                              "scope": " ".join(sorted(scopes))})

    # -- account and Salesforce accounts -----------------------------------------------

    def show_account(self, request: Request) -> Response:
        return envelope({"id": "a7c1e2d4-0b6f-4c53-9d2e-5f1a2b3c4d5e",
                         "company_name": self.settings.company_name})

    def list_accounts(self, request: Request) -> Response:
        scores = request.arg("includeHealthScores") == "1"
        orgs = request.arg("includeSubscriberOrgs") == "1"
        rows = []
        for account in self.accounts:
            row = {k: account[k] for k in ("isvapp_id", "salesforce_id", "name")}
            if scores:
                row["health_scores"] = account["health_scores"]
            if orgs:
                row["subscriber_orgs"] = account["subscriber_orgs"]
            rows.append(row)
        return envelope(rows)

    def account_summary(self, request: Request) -> Response:
        by_salesforce_id = request.arg("salesforce_account_id")
        by_isvapp_id = request.arg("isvapp_id")
        if bool(by_salesforce_id) == bool(by_isvapp_id):
            return error("Exactly one of salesforce_account_id or isvapp_id is required", 400)
        for account in self.accounts:
            if by_salesforce_id in (account["salesforce_id"], account["salesforce_id"][:15]) \
                    or by_isvapp_id == account["isvapp_id"]:
                return envelope(account["summary"])
        return error("Salesforce account not found", 404)

    # -- exports ---------------------------------------------------------------------

    def latest_completed_month(self) -> str:
        if self.settings.latest_completed_month:
            return self.settings.latest_completed_month
        now = today()
        this_month = f"{now.year:04d}-{now.month:02d}"
        return month_before(this_month, 1 if now.day >= 5 else 2)

    def request_export(self, request: Request) -> Response:
        try:
            body = request.json() or {}
        except orjson.JSONDecodeError:
            return error("Request body must be JSON", 400)
        if body.get("type") != "TAXONOMY_ITEM":
            return error("type must be one of: TAXONOMY_ITEM", 400)
        if body.get("aggregation") != "MONTHLY":
            return error("aggregation must be one of: MONTHLY", 400)
        months = self._months_of(body.get("timeframe"))
        if isinstance(months, Response):
            return months
        selectors = [k for k in ("taxonomy_ids", "taxonomy_level_ids", "taxonomy_item_ids")
                     if body.get(k)]
        if len(selectors) != 1:
            return error("Exactly one of taxonomy_ids, taxonomy_level_ids or "
                         "taxonomy_item_ids is required", 400)
        items = self._items_for(selectors[0], body[selectors[0]])
        if not items:
            return error(f"No taxonomy items match {selectors[0]}", 404)
        now = time.time()
        export_id = str(uuid.uuid4())
        export = {
            "id": export_id, "type": "TAXONOMY_ITEM", "_created": now,
            "_months": months, "_items": items,
            "_accounts": body.get("salesforce_account_ids") or None,
            "_token": secrets.token_urlsafe(12), "_outcome": self.settings.export_outcome,
        }
        with self._lock:
            self.exports[export_id] = export
            self.export_requests.append(body)
        return envelope(self._export_view(export), 201)

    def list_exports(self, request: Request) -> Response:
        with self._lock:
            exports = sorted(self.exports.values(), key=lambda e: e["_created"], reverse=True)
        return envelope([self._export_view(e) for e in exports[:1000]])

    def show_export(self, request: Request, export_id: str) -> Response:
        export = self.exports.get(export_id)
        if export is None:
            return error("Export not found", 404)
        return envelope(self._export_view(export))

    def download_export(self, request: Request, export_id: str, token: str) -> Response:
        export = self.exports.get(export_id)
        if export is None or not hmac.compare_digest(token, export["_token"]):
            return error("Export not found", 404)
        view = self._export_view(export)
        if view["status"] != "COMPLETED":
            return error(f"Export is {view['status']}, not COMPLETED", 409)
        if view["is_expired"]:
            return error("Export has expired", 410)
        return Response(200, gzip_stream(self.export_lines(export)),
                        {"Content-Type": "application/gzip",
                         "Content-Disposition": f'attachment; filename="{export_id}.ndjson.gz"'})

    def export_lines(self, export: dict) -> t.Iterator[bytes]:
        """The NDJSON lines of an export, generated row by row."""
        broken = self.settings.export_malformed_line
        number = 0
        for month in export["_months"]:
            for account_id, account_name, item in self._export_cells(export):
                number += 1
                seed = zlib.crc32(f"{month}{account_id}{item['id']}".encode())
                users = seed % 500
                internal = seed % 37 if users > 37 else 0
                operations = users * (seed % 41 + 1)
                op_internal = internal * (seed % 41 + 1)
                row = {
                    "type": "TAXONOMY_ITEM", "aggregation": "MONTHLY", "reference_date": month,
                    "salesforce_account_id": account_id,
                    "salesforce_account_name": account_name,
                    "taxonomy_id": item["taxonomy_id"], "taxonomy_item_id": item["id"],
                    "taxonomy_item_label": item["label"],
                    "taxonomy_item_parent_item_id": item["parent_item_id"],
                    "taxonomy_label": item["taxonomy_label"],
                    "taxonomy_level_id": item["level_id"],
                    "taxonomy_level_label": item["level_label"],
                    "unique_users": str(users), "unique_users_external": str(users - internal),
                    "unique_users_internal": str(internal), "operations": str(operations),
                    "operations_external": str(operations - op_internal),
                    "operations_internal": str(op_internal),
                }
                line = orjson.dumps(row) + b"\n"
                if number == broken:
                    line = line[: len(line) // 2] + b"\n"
                yield line

    def _export_cells(self, export: dict) -> t.Iterator[tuple[str, str, dict]]:
        items = export["_items"]
        if export["_accounts"]:
            accounts = [(a, f"Account {a}") for a in export["_accounts"]]
        else:
            needed = -(-self.settings.export_rows_per_month // len(items))
            accounts = ((f"0014x{n:013d}", f"Customer {n}") for n in range(needed))
        cells = ((a, name, item) for a, name in accounts for item in items)
        return itertools.islice(cells, self.settings.export_rows_per_month)

    def _rows_per_month(self, export: dict) -> int:
        cells = len(export["_items"]) * len(export["_accounts"] or [])
        return min(self.settings.export_rows_per_month, cells or self.settings.export_rows_per_month)

    def _months_of(self, timeframe: t.Any) -> list[str] | Response:
        latest = self.latest_completed_month()
        if timeframe == "LATEST_COMPLETED_MONTH":
            return [latest]
        if timeframe == "LATEST_12_COMPLETED_MONTHS":
            return [month_before(latest, n) for n in range(11, -1, -1)]
        if not isinstance(timeframe, str) or len(timeframe) != 7 or timeframe[4] != "-":
            return error("timeframe must be YYYY-MM, LATEST_COMPLETED_MONTH or "
                         "LATEST_12_COMPLETED_MONTHS", 400)
        if timeframe > latest:
            return error(f"Data retrieval for {timeframe} has not been completed yet; the "
                         f"latest completed month is {latest}", 400)
        return [timeframe]

    def _items_for(self, selector: str, ids: list[str]) -> list[dict]:
        wanted = set(ids)
        field_name = {"taxonomy_ids": "taxonomy_id", "taxonomy_level_ids": "level_id",
                      "taxonomy_item_ids": "id"}[selector]
        return [item for item in self.taxonomy_items if item[field_name] in wanted]

    def _export_view(self, export: dict) -> dict:
        now = time.time()
        done_at = export["_created"] + self.settings.export_pending_seconds
        status = "PENDING" if now < done_at else export["_outcome"]
        view = {
            "id": export["id"], "type": export["type"], "status": status,
            "url": f"{self.base_url}/api/v1/exports/{export['id']}",
            "download_url": None, "created_at": iso(export["_created"]),
            "completed_at": None, "expires_at": None, "is_expired": False,
            "download_size_compressed_bytes": None, "download_size_uncompressed_bytes": None,
            "error_message": None, "errored_at": None,
        }
        if status == "COMPLETED":
            expires = done_at + self.settings.export_expiry_seconds
            rows = len(export["_months"]) * self._rows_per_month(export)
            view |= {
                "download_url": f"{self.base_url}/api/v1/exports/{export['id']}/download/"
                                f"{export['_token']}",
                "completed_at": iso(done_at), "expires_at": iso(expires),
                "is_expired": now >= expires,
                "download_size_compressed_bytes": rows * 120,
                "download_size_uncompressed_bytes": rows * 640,
            }
        elif status == "ERRORED":
            view |= {"error_message": self.settings.export_error_message,
                     "errored_at": iso(done_at)}
        return view

    def _seed_historical_exports(self) -> None:
        long_ago = time.time() - 40 * 86400
        outcomes = itertools.cycle(["COMPLETED", "ERRORED"])
        for n in range(self.settings.historical_exports):
            export_id = str(uuid.UUID(int=self.rng.getrandbits(128), version=4))
            self.exports[export_id] = {
                "id": export_id, "type": "TAXONOMY_ITEM", "_created": long_ago + n * 3600,
                "_months": [self.latest_completed_month()], "_items": self.taxonomy_items[:1],
                "_accounts": None, "_token": secrets.token_urlsafe(12),
                "_outcome": next(outcomes),
            }

    # -- raw package usage log requests ------------------------------------------------

    def list_requests(self, request: Request) -> Response:
        first, last = request.arg("from"), request.arg("to")
        if not first or not last:
            return error("from and to are required (YYYY-MM-DD)", 400)
        try:
            start, end = dt.date.fromisoformat(first), dt.date.fromisoformat(last)
        except ValueError:
            return error("from and to must be dates in the format YYYY-MM-DD", 400)
        if end > today():
            return error("to cannot be in the future", 400)
        if start > end:
            return error("from must not be after to", 400)
        if (end - start).days + 1 > 31:
            return error("from and to cannot span more than 31 days", 400)
        rows = [{k: v for k, v in r.items() if not k.startswith("_")}
                for r in self.requests_data if start <= r["_day"] <= end]
        return envelope(rows)

    def request_downloads(self, request: Request) -> Response:
        body = request.json() or {}
        ids = body.get("request_ids")
        if not isinstance(ids, list) or not 1 <= len(ids) <= 1000:
            return error("request_ids must be an array of 1 to 1000 request IDs", 400)
        known = {r["id"] for r in self.requests_data}
        unknown = [i for i in ids if i not in known]
        if unknown:
            return error(f"Unknown request IDs: {', '.join(unknown[:5])}", 404)
        # Rounded up: a URL never lives shorter than the setting says.
        expires = math.ceil(time.time() + self.settings.signed_url_lifetime_seconds)
        return envelope([{"request_id": i, "original_file_url": self.signed_url(i, expires)}
                         for i in ids])

    def add_request(self, day: dt.date, **fields: t.Any) -> dict:
        """A request that Salesforce delivered late (appears from now on)."""
        row = self._request_row(day, next(self._request_numbers), **fields)
        self.requests_data.append(row)
        return row

    def signed_url(self, request_id: str, expires: int) -> str:
        path = f"/files/{request_id}.csv.gz"
        return f"{self.storage.url}{path}?expires={expires}&signature={self.sign(path, expires)}"

    def sign(self, path: str, expires: int) -> str:
        return hmac.new(self.signing_key, f"{path}:{expires}".encode(), hashlib.sha256).hexdigest()

    def request_file_lines(self, request_id: str) -> t.Iterator[bytes]:
        """The CSV of one request: header row, then rows, generated one at a time."""
        columns = [*PACKAGE_LOG_COLUMNS, *self.settings.csv_extra_columns]
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")

        def line(values: t.Iterable[t.Any]) -> bytes:
            buffer.seek(0)
            buffer.truncate()
            writer.writerow(values)
            return buffer.getvalue().encode()

        yield (b"\xef\xbb\xbf" if self.settings.csv_byte_order_mark else b"") + line(columns)
        rng = random.Random(request_id)
        day = next(r["_day"] for r in self.requests_data if r["id"] == request_id)
        for n in range(self.settings.csv_rows_per_file):
            values = {
                "timestamp_derived": f"{day}T{n % 24:02d}:{rng.randrange(60):02d}:14.461049",
                "log_record_type": rng.choice(LOG_RECORD_TYPES),
                "request_id": f"TID:{rng.getrandbits(40):x}",
                "organization_id": f"00D{rng.randrange(10**11):012d}",
                "organization_name": "Acme, Inc." if n % 3 == 0 else f"Org {n}",
                "organization_status": "Active", "organization_edition": "Enterprise Edition",
                "user_id_token": f"005-{rng.getrandbits(48):x}", "user_type": "Standard",
                "custom_entity": "Invoice__c", "custom_entity_type": "CustomObject",
                "operation_type": rng.choice(OPERATION_TYPES),
                "operation_count": str(rng.randrange(1, 50)),
                "request_status": "S", "http_status_code": "200" if n % 5 else "",
                "url": "/apex/Invoices?id=a01,a02",
            }
            for extra in self.settings.csv_extra_columns:
                values[extra] = f"{extra}-{n}"
            yield line(values.get(c, "") for c in columns)

    # -- generated data ------------------------------------------------------------------

    def _generate_accounts(self) -> list[dict]:
        s, rng = self.settings, self.rng
        accounts = []
        for n in range(s.accounts):
            salesforce_id = f"0014x00000{n:08d}"
            isvapp_id = str(uuid.UUID(int=rng.getrandbits(128), version=4))
            name = f"Customer {n}"
            accounts.append({
                "isvapp_id": isvapp_id, "salesforce_id": salesforce_id, "name": name,
                "health_scores": [{"score": rng.randrange(101), "is_primary": i == 0,
                                   "label": ["Overall health", "Adoption", "Support"][i % 3]}
                                  for i in range(s.health_scores_per_account)],
                "subscriber_orgs": [{"name": f"{name} org {i}",
                                     "salesforce_id": f"00D{rng.randrange(10**12):012d}"}
                                    for i in range(s.subscriber_orgs_per_account)],
                "summary": {
                    "account_name": name,
                    "activation_date": (dt.date(2020, 1, 1) + dt.timedelta(days=n * 7)).isoformat(),
                    "custom_object_record_counts": [
                        {"count": rng.randrange(10**5), "custom_object_isvapp_id": f"co-{i}",
                         "custom_object_name": f"Object{i}__c",
                         "growth_per_day_avg_last_7days": round(rng.uniform(-5, 20), 2),
                         "package_name": "Sandbox Package"}
                        for i in range(s.custom_objects_per_account)],
                    "custom_object_records_reference_date": (today() - dt.timedelta(days=1)).isoformat(),
                    "isvapp_id": isvapp_id,
                    "main_org_id": f"00D{rng.randrange(10**12):012d}",
                    "main_org_instance_key": f"NA{rng.randrange(10, 200)}",
                    "main_org_mau_most_recent": rng.randrange(1000),
                    "main_package_version": f"2.{rng.randrange(40)}.0",
                    "salesforce_id": salesforce_id,
                    "seats_assigned": rng.randrange(50),
                    "seats_total": 50,
                },
            })
        return accounts

    def _generate_taxonomy(self) -> list[dict]:
        s, rng = self.settings, self.rng
        taxonomies, items = [], []
        for n in range(s.taxonomies):
            taxonomy = {"id": str(uuid.UUID(int=rng.getrandbits(128), version=4)),
                        "label": ["Main Product Taxonomy", "Add-on Taxonomy"][n % 2]}
            taxonomies.append(taxonomy)
            parents: list[dict] = []
            for level in range(s.levels_per_taxonomy):
                level_id = str(uuid.UUID(int=rng.getrandbits(128), version=4))
                label = ["Product Area", "Feature Group", "Feature"][level % 3]
                current = []
                for i in range(s.items_per_level):
                    item = {"id": str(uuid.UUID(int=rng.getrandbits(128), version=4)),
                            "label": f"{label} {i + 1}", "taxonomy_id": taxonomy["id"],
                            "taxonomy_label": taxonomy["label"], "level_id": level_id,
                            "level_label": label,
                            "parent_item_id": parents[i % len(parents)]["id"] if parents else None}
                    current.append(item)
                items.extend(current)
                parents = current
        self.taxonomy_items = items
        return taxonomies

    def _generate_requests(self) -> list[dict]:
        s = self.settings
        last = today() - dt.timedelta(days=1)
        rows = []
        for back in range(s.request_history_days, 0, -1):
            day = last - dt.timedelta(days=back - 1)
            for _ in range(s.requests_per_day):
                rows.append(self._request_row(day, len(rows)))
        return rows

    def _request_row(self, day: dt.date, n: int, **fields: t.Any) -> dict:
        rng = random.Random(f"{self.settings.seed}-{day}-{n}")
        row = {
            "id": str(uuid.UUID(int=rng.getrandbits(128), version=4)),
            "original_file_size": self.settings.csv_rows_per_file * 420 + 700,
            "original_file_size_compressed": self.settings.csv_rows_per_file * 90 + 300,
            "sf_data_type": "PackageUsageLog",
            "sf_start_time": f"{day}T00:00:00Z", "sf_end_time": f"{day}T23:59:59Z",
            "_day": day,
        }
        row.update(fields)
        return row


class StorageApp(VendorApp):
    """The signed-URL file host: no credentials accepted, signatures and expiry checked."""

    def __init__(self, isvapp: IsvappApp) -> None:
        super().__init__()
        self.isvapp = isvapp
        self.route("GET", r"/files/(?P<request_id>[^/]+)\.csv\.gz", self.download)

    def error_envelope(self, message: str, status: int) -> bytes:
        code = {403: "AccessDenied", 503: "SlowDown"}.get(status, "InternalError")
        return s3_error(code, message, status).body  # type: ignore[return-value]

    @public
    def download(self, request: Request, request_id: str) -> Response:
        if "Authorization" in request.headers:
            return s3_error("InvalidArgument", "Only one auth mechanism allowed; only the "
                            "X-Amz-Algorithm query parameter, Signature query string parameter "
                            "or the Authorization header should be specified", 400)
        try:
            expires = int(request.arg("expires") or "")
        except ValueError:
            return s3_error("AccessDenied", "Query-string authentication requires the "
                            "Signature and Expires parameters", 403)
        signature = request.arg("signature") or ""
        expected = self.isvapp.sign(f"/files/{request_id}.csv.gz", expires)
        if not hmac.compare_digest(signature, expected):
            return s3_error("SignatureDoesNotMatch", "The request signature we calculated does "
                            "not match the signature you provided", 403)
        if time.time() >= expires:
            return s3_error("AccessDenied", "Request has expired", 403)
        return Response(200, gzip_stream(self.isvapp.request_file_lines(request_id)),
                        {"Content-Type": "application/gzip"})


def s3_error(code: str, message: str, status: int) -> Response:
    body = (f'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>{code}</Code>'
            f"<Message>{message}</Message></Error>").encode()
    return Response(status, body, {"Content-Type": "application/xml"})


def scope_for(path: str) -> str:
    for prefix, scope in SCOPES:
        if path.startswith(prefix):
            return scope
    return "identity"


def gzip_stream(lines: t.Iterable[bytes]) -> t.Iterator[bytes]:
    """A gzip file made on the fly, in chunks of about 256 KiB: never whole in memory."""
    compressor = zlib.compressobj(1, zlib.DEFLATED, 31)
    pending: list[bytes] = []
    size = 0
    for line in lines:
        pending.append(line)
        size += len(line)
        if size >= _CHUNK:
            yield compressor.compress(b"".join(pending))
            pending, size = [], 0
    yield compressor.compress(b"".join(pending)) + compressor.flush()
