"""Heroku's APIs for add-on partners after the legacy App Info API, as a sandbox.

Three hosts, as in production (each its own loopback server, so the tests can check
which credential reached which host):

* the Platform API (``api.heroku.com``): ``/addons/{uuid}``, its config and
  attachments, ``/apps/{id}`` with its domains and collaborators; one bearer token
  per add-on resource, valid for that resource and its app only; ``Accept:
  application/vnd.heroku+json; version=3``; list endpoints paged with ``Range`` /
  ``206 Partial Content`` / ``Next-Range``; the ``RateLimit-Remaining`` pool;
* the OAuth host (``id.heroku.com``): ``POST /oauth/token`` with
  ``grant_type=refresh_token``; access tokens expire after
  ``access_token_expires_in`` seconds; a revoked install's refresh token is answered
  with ``invalid_grant``, a wrong client secret with ``invalid_client``;
* ``addons.heroku.com``: ``GET /api/v3/apps``, every install of the add-on, with the
  manifest credentials as HTTP Basic.

What Heroku does not document is a setting here (the shape of the addons.heroku.com
listing, the OAuth error body), so the tap can be tested against each reading.
"""

from __future__ import annotations

import random
import re
import secrets
import threading
import time
import typing as t
import uuid
from dataclasses import dataclass, field

from isv_sandbox.core import Request, Response, SandboxServer, TokenBucket, VendorApp, public

ACCEPT_V3 = "application/vnd.heroku+json; version=3"
MAX_RANGE = 1000
PLANS = ["test", "basic", "premium", "enterprise"]
REGIONS = ["us", "eu", "tokyo", "virginia", "oregon"]
#: Endpoint kinds, for ``forbidden``: a partner token answered 403 on these.
KINDS = ("addon", "config", "attachments", "app", "domains", "collaborators")
_RANGE_RE = re.compile(r"^\s*(?P<key>[a-z_]+)\s+(?P<start>\]?[^.;\s]*)\.\.(?P<end>[^;\s]*)\s*(?:;\s*(?P<opts>.*))?$")


@dataclass
class HerokuPartnerSettings:
    #: Add-on resources provisioned (installs), each with a refresh token.
    installs: int = 40
    #: Installs that addons.heroku.com lists but for which the tap is given no token.
    tokenless_installs: int = 0
    #: Every Nth install's refresh token has been revoked (deprovisioned): invalid_grant.
    revoked_every: int = 0
    #: Every Nth install is a second resource of the add-on on the previous install's app.
    shared_app_every: int = 0
    oauth_client_secret: str = "sandbox-oauth-client-secret"
    manifest_id: str = "sandbox-addon"
    manifest_password: str = "sandbox-manifest-password"
    #: Lifetime of an access token, in seconds (Heroku sends it as ``expires_in``).
    access_token_expires_in: float = 28800
    #: Each refresh-token grant answers with a new refresh token and revokes the one it
    #: was given (OAuth servers may rotate; Heroku's docs do not say it does).
    rotate_refresh_tokens: bool = False
    #: ``rfc6749`` (``{"error": "invalid_grant", ...}``) or ``heroku`` (``{"id", "message"}``).
    oauth_error_style: str = "rfc6749"
    #: Endpoint kinds (see KINDS) a partner token may not call: 403 ``forbidden``.
    forbidden: list[str] = field(default_factory=list)
    max_attachments: int = 2
    max_domains: int = 6
    max_collaborators: int = 4
    config_vars: int = 2
    #: Items per page when the request has no ``Range`` (Heroku: 200).
    default_page_size: int = 200
    #: The most items a page holds whatever ``max`` asks (Heroku: 1000).
    page_cap: int = MAX_RANGE
    #: Heroku's request pool: 4500 tokens refilled at 75 per minute.
    pool_capacity: float = 4500
    pool_refill_per_second: float = 1.25
    #: One pool per access token (else one for the whole partner account).
    pool_per_token: bool = False
    #: Where the addons.heroku.com listing puts the resource uuid (dotted path), or "".
    listing_uuid_field: str = "addon.id"
    #: Wrap the listing in an object under this key ("" for a bare array).
    listing_envelope: str = ""
    listing_page_size: int = 1000
    seed: int = 13


class HerokuPartnerApp(VendorApp):
    """The Platform API host; the OAuth and addons.heroku.com hosts are companions."""

    def __init__(self, settings: HerokuPartnerSettings | None = None) -> None:
        super().__init__()
        self.settings = s = settings or HerokuPartnerSettings()
        unknown = set(s.forbidden) - set(KINDS)
        if unknown:
            msg = f"unknown endpoint kinds in forbidden: {sorted(unknown)}; known: {KINDS}"
            raise ValueError(msg)
        self._lock = threading.Lock()
        self.rng = random.Random(s.seed)
        self.shared_pool = TokenBucket(s.pool_capacity, s.pool_refill_per_second)
        self.token_pools: dict[str, TokenBucket] = {}
        #: access token -> (resource uuid, expiry on the monotonic clock)
        self.access_tokens: dict[str, tuple[str, float]] = {}
        #: resource uuid -> number of access tokens issued
        self.grants: dict[str, int] = {}
        self.expired_token_requests = 0
        #: Refresh tokens replaced (``rotate_refresh_tokens``).
        self.rotations = 0
        #: (path, Range header or None, status, Next-Range or None) of every list request
        self.range_log: list[tuple[str, str | None, int, str | None]] = []
        self.generate()
        self.oauth = SandboxServer(OAuthApp(self), host="127.0.0.3").start()
        self.addons_host = SandboxServer(AddonsApp(self), host="127.0.0.4").start()
        self.companions += [self.oauth, self.addons_host]

        self.route("GET", r"/addons/(?P<uuid>[^/]+)", self.addon_info)
        self.route("GET", r"/addons/(?P<uuid>[^/]+)/config", self.addon_config)
        self.route("GET", r"/addons/(?P<uuid>[^/]+)/addon-attachments", self.addon_attachments)
        self.route("GET", r"/apps/(?P<app_id>[^/]+)", self.app_info)
        self.route("GET", r"/apps/(?P<app_id>[^/]+)/domains", self.app_domains)
        self.route("GET", r"/apps/(?P<app_id>[^/]+)/collaborators", self.app_collaborators)

    # -- data -------------------------------------------------------------------------

    def new_id(self) -> str:
        return str(uuid.UUID(int=self.rng.getrandbits(128), version=4))

    def generate(self) -> None:
        s = self.settings
        rng = self.rng
        self.addons: dict[str, dict] = {}
        self.apps: dict[str, dict] = {}
        self.refresh_tokens: dict[str, str] = {}  # refresh token -> resource uuid
        self.install_list: list[dict] = []  # what the partner's database holds
        self.revoked: set[str] = set()
        service = {"id": self.new_id(), "name": s.manifest_id}
        app = None
        for i in range(s.installs + s.tokenless_installs):
            resource = self.new_id()
            if app is None or not (s.shared_app_every and (i + 1) % s.shared_app_every == 0):
                app = self.make_app(i)
            plan = rng.choice(PLANS)
            addon = {
                "id": resource,
                "name": f"{s.manifest_id}-{rng.choice(['fluffy', 'shiny', 'rigid', 'cubic'])}-{rng.randrange(99999)}",
                "addon_service": service,
                "app": {"id": app["id"], "name": app["name"]},
                "billing_entity": {"id": app["id"], "name": app["name"], "type": "app"},
                "billed_price": {"cents": rng.choice([0, 900, 2500]), "contract": False, "unit": "month"},
                "config_vars": [f"{s.manifest_id.upper().replace('-', '_')}_URL"],
                "created_at": stamp(1_650_000_000 + i * 3600),
                "updated_at": stamp(1_700_000_000 + i * 60),
                "plan": {"id": self.new_id(), "name": f"{s.manifest_id}:{plan}"},
                "provider_id": str(i + 1),
                "state": "provisioned",
                "web_url": f"https://addons-sso.heroku.com/apps/{app['id']}/addons/{resource}",
                "actions": [],
            }
            addon["_config"] = [
                {"name": f"{s.manifest_id.upper().replace('-', '_')}_VAR_{n}",
                 "value": f"secret-value-{resource[:8]}-{n}"} for n in range(s.config_vars)]
            addon["_attachments"] = [
                {"id": self.new_id(), "name": name, "namespace": None,
                 "addon": {"id": resource, "name": addon["name"], "app": addon["app"]},
                 "app": addon["app"],
                 "created_at": addon["created_at"], "updated_at": addon["updated_at"],
                 "web_url": addon["web_url"],
                 "log_input_url": f"https://token:t.{resource}@1.us.logplex.io/logs"}
                for name in ["MYADDON", "MYADDON_SECOND"][: 1 + rng.randrange(max(1, s.max_attachments))]]
            self.addons[resource] = addon
            if i >= s.installs:
                continue  # listed by addons.heroku.com, but the partner has no token for it
            refresh = f"refresh-{secrets.token_hex(12)}"
            self.refresh_tokens[refresh] = resource
            if s.revoked_every and (i + 1) % s.revoked_every == 0:
                self.revoked.add(resource)
            self.install_list.append({"resource_uuid": resource, "refresh_token": refresh})

    def make_app(self, i: int) -> dict:
        rng = self.rng
        s = self.settings
        app_id = self.new_id()
        name = f"customer-app-{i + 1:05d}"
        owner = {"email": f"owner{rng.randrange(max(1, s.installs // 2))}@example.test", "id": self.new_id()}
        app = {
            "id": app_id, "name": name, "acm": rng.random() < 0.5, "archived_at": None,
            "buildpack_provided_description": rng.choice(["Ruby", "Node.js", "Python", None]),
            "build_stack": {"id": self.new_id(), "name": "heroku-24"},
            "stack": {"id": self.new_id(), "name": "heroku-24"},
            "created_at": stamp(1_600_000_000 + i * 7200),
            "updated_at": stamp(1_700_000_000 + i * 120),
            "released_at": stamp(1_700_000_000 + i * 100),
            "git_url": f"https://git.heroku.com/{name}.git",
            "web_url": f"https://{name}.herokuapp.com/",
            "internal_routing": None, "maintenance": False,
            "owner": owner, "organization": None, "team": None,
            "region": {"id": self.new_id(), "name": rng.choice(REGIONS)},
            "repo_size": rng.choice([None, rng.randrange(10**5, 10**7)]), "slug_size": rng.randrange(10**6, 10**8), "space": None,
        }
        ref = {"id": app_id, "name": name}
        app["_domains"] = sorted(
            [{"id": self.new_id(), "app": ref, "hostname": f"{name}.herokuapp.com", "kind": "heroku",
              "cname": None, "status": "none", "acm_status": None, "acm_status_reason": None,
              "created_at": app["created_at"], "updated_at": app["updated_at"]}]
            + [{"id": self.new_id(), "app": ref, "hostname": f"www{n}.{name}.example", "kind": "custom",
                "cname": f"{name}-{n}.herokudns.com", "status": "succeeded",
                "acm_status": "cert issued", "acm_status_reason": None,
                "created_at": app["created_at"], "updated_at": app["updated_at"]}
               for n in range(rng.randrange(s.max_domains))],
            key=lambda d: d["id"])
        app["_collaborators"] = sorted(
            [{"id": self.new_id(), "app": ref, "created_at": app["created_at"],
              "updated_at": app["updated_at"], "permissions": [], "role": "owner",
              "user": {"email": owner["email"], "federated": False, "id": owner["id"]}}]
            + [{"id": self.new_id(), "app": ref, "created_at": app["created_at"],
                "updated_at": app["updated_at"],
                "permissions": [{"name": "view", "description": "Can view the app"}],
                "role": "collaborator",
                "user": {"email": f"dev{n}.{i}@example.test", "federated": False, "id": self.new_id()}}
               for n in range(rng.randrange(s.max_collaborators))],
            key=lambda c: c["id"])
        self.apps[app_id] = app
        return app

    def tap_config(self) -> dict:
        """Settings that point tap-heroku-vendor's partner mode at this sandbox."""
        s = self.settings
        return {
            "api": "partner",
            "api_url": self.base_url,
            "oauth_token_url": f"{self.oauth.url}/oauth/token",
            "addons_api_url": self.addons_host.url,
            "oauth_client_secret": s.oauth_client_secret,
            "manifest_id": s.manifest_id,
            "manifest_password": s.manifest_password,
            "installs": [dict(i) for i in self.install_list],
        }

    # -- what a test checks ----------------------------------------------------------

    def rows(self, kind: str, *, skip_revoked: bool = True) -> list[dict]:
        """What the API would return for every install with a working token."""
        live = [a for u, a in self.addons.items()
                if any(i["resource_uuid"] == u for i in self.install_list)
                and not (skip_revoked and u in self.revoked)]
        apps = {a["app"]["id"]: self.apps[a["app"]["id"]] for a in live}
        if kind == "addons":
            return live
        if kind == "addon_config":
            return [dict(c, addon_id=a["id"]) for a in live for c in a["_config"]]
        if kind == "addon_attachments":
            return [x for a in live for x in a["_attachments"]]
        if kind == "partner_apps":
            return list(apps.values())
        if kind == "app_domains":
            return [d for app in apps.values() for d in app["_domains"]]
        if kind == "app_collaborators":
            return [c for app in apps.values() for c in app["_collaborators"]]
        raise KeyError(kind)

    # -- credentials, headers, pool ---------------------------------------------------

    def authenticate(self, request: Request) -> Response | None:
        token = request.bearer()
        if token is None:
            return heroku_error(401, "unauthorized", "Invalid credentials provided.")
        with self._lock:
            entry = self.access_tokens.get(token)
        if entry is None:
            return heroku_error(401, "unauthorized", "Invalid credentials provided.")
        if time.monotonic() >= entry[1]:
            with self._lock:
                self.expired_token_requests += 1
            return heroku_error(401, "unauthorized", "Invalid credentials provided.")
        if request.headers.get("Accept", "") != ACCEPT_V3:
            return heroku_error(406, "not_acceptable",
                                "Please specify a version along with Heroku's API MIME type. "
                                "For example, `Accept: application/vnd.heroku+json; version=3`.")
        request.resource = entry[0]  # type: ignore[attr-defined]
        return None

    def pool_for(self, request: Request) -> TokenBucket:
        token = request.bearer() or ""
        if not self.settings.pool_per_token:
            return self.shared_pool
        with self._lock:
            if token not in self.token_pools:
                self.token_pools[token] = TokenBucket(self.settings.pool_capacity,
                                                      self.settings.pool_refill_per_second)
            return self.token_pools[token]

    def before(self, request: Request) -> Response | None:
        pool = self.pool_for(request)
        if not pool.take():
            return heroku_error(429, "rate_limit",
                                "Your account reached the API rate limit. Please wait a few "
                                "minutes before making new requests",
                                {"RateLimit-Remaining": "0"})
        return None

    def after(self, request: Request, response: Response) -> Response:
        response.headers["RateLimit-Remaining"] = str(self.pool_for(request).remaining)
        return response

    def not_found(self, request: Request) -> Response:
        return heroku_error(404, "not_found", "The requested API endpoint was not found.")

    def error_envelope(self, message: str, status: int) -> bytes:
        return heroku_envelope(message, status)

    def scoped_addon(self, request: Request, kind: str, resource: str) -> dict | Response:
        """The add-on, if this request's token may read it as ``kind``."""
        if kind in self.settings.forbidden or getattr(request, "resource", None) != resource:
            return forbidden()
        addon = self.addons.get(resource)
        if addon is None:
            return heroku_error(404, "not_found", "Couldn't find that add-on.")
        return addon

    def scoped_app(self, request: Request, kind: str, app_id: str) -> dict | Response:
        """The app, if this request's token belongs to an add-on attached to it."""
        if kind in self.settings.forbidden:
            return forbidden()
        addon = self.addons.get(getattr(request, "resource", ""))
        attached = addon is not None and (
            addon["app"]["id"] == app_id or any(a["app"]["id"] == app_id for a in addon["_attachments"]))
        if not attached:
            return forbidden()
        app = self.apps.get(app_id)
        if app is None:
            return heroku_error(404, "not_found", "Couldn't find that app.")
        return app

    # -- the Platform API -------------------------------------------------------------

    def addon_info(self, request: Request, uuid: str) -> Response:
        addon = self.scoped_addon(request, "addon", uuid)
        if isinstance(addon, Response):
            return addon
        return Response.json(public_view(addon))

    def addon_config(self, request: Request, uuid: str) -> Response:
        addon = self.scoped_addon(request, "config", uuid)
        if isinstance(addon, Response):
            return addon
        return Response.json(addon["_config"])

    def addon_attachments(self, request: Request, uuid: str) -> Response:
        addon = self.scoped_addon(request, "attachments", uuid)
        if isinstance(addon, Response):
            return addon
        return self.ranged(request, addon["_attachments"])

    def app_info(self, request: Request, app_id: str) -> Response:
        app = self.scoped_app(request, "app", app_id)
        if isinstance(app, Response):
            return app
        return Response.json(public_view(app))

    def app_domains(self, request: Request, app_id: str) -> Response:
        app = self.scoped_app(request, "domains", app_id)
        if isinstance(app, Response):
            return app
        return self.ranged(request, app["_domains"])

    def app_collaborators(self, request: Request, app_id: str) -> Response:
        app = self.scoped_app(request, "collaborators", app_id)
        if isinstance(app, Response):
            return app
        return self.ranged(request, app["_collaborators"])

    def ranged(self, request: Request, items: list[dict]) -> Response:
        """A list endpoint: items ordered by ``id``, paged by the ``Range`` header."""
        response = self._ranged(request, items)
        with self._lock:
            self.range_log.append((request.path, request.headers.get("Range"), response.status,
                                   response.headers.get("Next-Range")))
        return response

    def _ranged(self, request: Request, items: list[dict]) -> Response:
        header = request.headers.get("Range")
        size = self.settings.default_page_size
        start = ""
        exclusive = False
        if header:
            match = _RANGE_RE.match(header)
            if not match or match["key"] != "id":
                return heroku_error(416, "requested_range_not_satisfiable",
                                    f"Invalid Range header: {header!r}; accepted ranges: id")
            start = match["start"]
            exclusive = start.startswith("]")
            start = start.lstrip("]")
            for option in (match["opts"] or "").split(","):
                name, _, value = option.strip().partition("=")
                if name == "max":
                    try:
                        size = int(value)
                    except ValueError:
                        size = -1
                    if not 1 <= size <= MAX_RANGE:
                        return heroku_error(416, "requested_range_not_satisfiable",
                                            f"max must be between 1 and {MAX_RANGE}")
        size = min(size, self.settings.page_cap)
        ordered = sorted(items, key=lambda x: x["id"])
        if start:
            ordered = [x for x in ordered if x["id"] > start or (not exclusive and x["id"] == start)]
        page = ordered[:size]
        headers = {"Accept-Ranges": "id"}
        if page:
            headers["Content-Range"] = f"id {page[0]['id']}..{page[-1]['id']}; max={size}"
        if len(ordered) > size:
            headers["Next-Range"] = f"id ]{page[-1]['id']}..; max={size}"
            return Response.json(page, 206, headers)
        return Response.json(page, 200, headers)

    # -- tokens (served by the OAuth companion) --------------------------------------

    def issue_token(self, request: Request) -> Response:
        s = self.settings
        form = request.form()
        if form.get("client_secret") != s.oauth_client_secret:
            return self.oauth_error(401, "invalid_client", "Invalid OAuth client secret.")
        if form.get("grant_type") != "refresh_token":
            return self.oauth_error(400, "unsupported_grant_type", "Unsupported grant type.")
        resource = self.refresh_tokens.get(form.get("refresh_token", ""))
        if resource is None or resource in self.revoked:
            return self.oauth_error(400, "invalid_grant", "Invalid refresh token.")
        access = f"access-{secrets.token_hex(16)}"
        with self._lock:
            self.access_tokens[access] = (resource, time.monotonic() + s.access_token_expires_in)
            self.grants[resource] = self.grants.get(resource, 0) + 1
        refresh = form["refresh_token"]
        if s.rotate_refresh_tokens:
            with self._lock:
                del self.refresh_tokens[refresh]
                refresh = f"refresh-{secrets.token_hex(12)}"
                self.refresh_tokens[refresh] = resource
                self.rotations += 1
        expires_in: float = s.access_token_expires_in
        if float(expires_in).is_integer():
            expires_in = int(expires_in)
        return Response.json({"access_token": access, "expires_in": expires_in,
                              "refresh_token": refresh, "token_type": "Bearer",
                              "user_id": str(uuid.uuid4()), "session_nonce": None})

    def oauth_error(self, status: int, code: str, message: str) -> Response:
        if self.settings.oauth_error_style == "heroku":
            return Response.json({"id": code, "message": message}, status)
        return Response.json({"error": code, "error_description": message}, status)

    # -- addons.heroku.com (served by the AddonsApp companion) ------------------------

    def listing(self, request: Request) -> Response:
        s = self.settings
        offset = int(request.arg("offset", "0") or 0)
        rows = []
        # A revoked install was deprovisioned: the listing no longer has it.
        installed = [a for a in self.addons.values() if a["id"] not in self.revoked]
        for addon in installed[offset:offset + s.listing_page_size]:
            row = {"app": {"id": addon["app"]["id"], "name": addon["app"]["name"]},
                   "plan": addon["plan"]["name"].split(":", 1)[-1],
                   "provider_id": addon["provider_id"], "addon": {"name": addon["name"]}}
            if s.listing_uuid_field:
                put(row, s.listing_uuid_field, addon["id"])
            rows.append(row)
        headers = {}
        if offset + s.listing_page_size < len(installed):
            headers["Link"] = f'<{self.addons_host.url}/api/v3/apps?offset={offset + s.listing_page_size}>; rel="next"'
        body: t.Any = {s.listing_envelope: rows} if s.listing_envelope else rows
        return Response.json(body, headers=headers)


class OAuthApp(VendorApp):
    """``id.heroku.com``: the token endpoint only; no Authorization header expected."""

    def __init__(self, platform: HerokuPartnerApp) -> None:
        super().__init__()
        self.platform = platform
        self.authorization_headers_seen = 0
        self.route("POST", "/oauth/token", self.token)

    def error_envelope(self, message: str, status: int) -> bytes:
        """The OAuth host's error body, in the style the sandbox is set to."""
        codes = {400: "invalid_request", 401: "invalid_client", 429: "slow_down",
                 503: "temporarily_unavailable"}
        return self.oauth_error_body(codes.get(status, "server_error"), message)

    def oauth_error_body(self, code: str, message: str) -> bytes:
        return self.platform.oauth_error(400, code, message).body  # type: ignore[return-value]

    @public
    def token(self, request: Request) -> Response:
        if "Authorization" in request.headers:
            self.authorization_headers_seen += 1
        return self.platform.issue_token(request)


class AddonsApp(VendorApp):
    """``addons.heroku.com`` API v3: the manifest credentials as HTTP Basic."""

    def __init__(self, platform: HerokuPartnerApp) -> None:
        super().__init__()
        self.platform = platform
        self.route("GET", "/api/v3/apps", platform.listing)

    def error_envelope(self, message: str, status: int) -> bytes:
        return heroku_envelope(message, status)

    def authenticate(self, request: Request) -> Response | None:
        s = self.platform.settings
        if request.basic_auth() != (s.manifest_id, s.manifest_password):
            return heroku_error(401, "unauthorized", "Invalid credentials provided.")
        return None


def heroku_envelope(message: str, status: int) -> bytes:
    """Heroku's error body: ``{"id", "message"}``."""
    ids = {400: "bad_request", 401: "unauthorized", 403: "forbidden", 404: "not_found",
           429: "rate_limit", 503: "service_unavailable"}
    return heroku_error(status, ids.get(status, "error"), message).body  # type: ignore[return-value]


def heroku_error(status: int, error_id: str, message: str, headers: dict | None = None) -> Response:
    return Response.json({"id": error_id, "message": message}, status, headers)


def forbidden() -> Response:
    return heroku_error(403, "forbidden", "You do not have access to this resource with this token.")


def public_view(item: dict) -> dict:
    return {k: v for k, v in item.items() if not k.startswith("_")}


def put(row: dict, dotted: str, value: t.Any) -> None:
    *parents, last = dotted.split(".")
    for name in parents:
        row = row.setdefault(name, {})
    row[last] = value


def stamp(epoch: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(epoch))
