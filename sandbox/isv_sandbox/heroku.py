"""Heroku's legacy Add-on Partner App Info API (seed 003), as a sandbox."""

from __future__ import annotations

import random
import uuid
from dataclasses import dataclass, field

import orjson

from isv_sandbox.core import Request, Response, TokenBucket, VendorApp

REGIONS = ["amazon-web-services::us-east-1", "amazon-web-services::eu-west-1",
           "amazon-web-services::ap-northeast-1"]
PLANS = ["test", "basic", "premium", "enterprise"]


@dataclass
class HerokuSettings:
    manifest_id: str = "sandbox-addon"
    manifest_password: str = "sandbox-manifest-password"
    apps: int = 250
    page_size: int = 4000
    #: Every Nth app answers 404 on its detail call (deprovisioned after listing).
    deprovisioned_every: int = 0
    #: Heroku's request pool: 4500 tokens refilled at 75/minute.
    pool_capacity: float = 4500
    pool_refill_per_second: float = 1.25
    seed: int = 3
    extra_apps: list[dict] = field(default_factory=list)


class HerokuApp(VendorApp):
    def __init__(self, settings: HerokuSettings | None = None) -> None:
        super().__init__()
        self.settings = settings or HerokuSettings()
        self.pool = TokenBucket(self.settings.pool_capacity, self.settings.pool_refill_per_second)
        self.apps = generate_apps(self.settings)
        self.by_identifier: dict[str, dict] = {}
        for app in self.apps:
            for ident in (app["provider_id"], app["resource"]["uuid"], app["heroku_id"]):
                self.by_identifier[ident] = app
        self.route("GET", "/vendor/apps", self.list_apps)
        self.route("GET", r"/vendor/apps/(?P<identifier>[^/]+)", self.app_info)

    def tap_config(self) -> dict:
        """Settings that point tap-heroku-vendor at this sandbox."""
        return {
            "api_url": self.base_url,
            "manifest_id": self.settings.manifest_id,
            "manifest_password": self.settings.manifest_password,
        }

    def authenticate(self, request: Request) -> Response | None:
        if request.basic_auth() != (self.settings.manifest_id, self.settings.manifest_password):
            return Response.json(
                {"id": "unauthorized", "message": "Invalid credentials provided."}, 401
            )
        return None

    def error_envelope(self, message: str, status: int) -> bytes:
        ids = {400: "bad_request", 404: "not_found", 429: "rate_limit", 503: "unavailable"}
        return orjson.dumps({"id": ids.get(status, "error"), "message": message})

    def before(self, request: Request) -> Response | None:
        if not self.pool.take():
            return Response.json(
                {"id": "rate_limit",
                 "message": "Your account reached the API rate limit. Please wait a few "
                            "minutes before making new requests"},
                429, {"RateLimit-Remaining": "0"},
            )
        return None

    def after(self, request: Request, response: Response) -> Response:
        response.headers["RateLimit-Remaining"] = str(self.pool.remaining)
        return response

    def list_apps(self, request: Request) -> Response:
        offset = int(request.arg("offset", "0") or 0)
        size = self.settings.page_size
        page = [listing(app) for app in self.apps[offset:offset + size]]
        links = []
        if offset > 0:
            links.append(f'<{self.base_url}/vendor/apps?offset={max(0, offset - size)}>; rel="prev"')
        if offset + size < len(self.apps):
            links.append(f'<{self.base_url}/vendor/apps?offset={offset + size}>; rel="next"')
        headers = {"Link": ", ".join(links)} if links else {}
        return Response.json(page, headers=headers)

    def app_info(self, request: Request, identifier: str) -> Response:
        app = self.by_identifier.get(identifier)
        if app is None or app["_deprovisioned"]:
            return Response.json({"id": "not_found", "message": "App not found."}, 404)
        return Response.json({k: v for k, v in app.items() if not k.startswith("_")
                              and k not in ("heroku_id",)} | {"id": app["heroku_id"]})


def listing(app: dict) -> dict:
    fields = ["callback_url", "heroku_id", "plan", "provider_id", "resource"]
    if "name" in app and app["_listed_with_name"]:
        fields.append("name")
    return {k: app[k] for k in fields}


def generate_apps(settings: HerokuSettings) -> list[dict]:
    rng = random.Random(settings.seed)
    apps = []
    for i in range(settings.apps):
        resource_uuid = str(uuid.UUID(int=rng.getrandbits(128), version=4))
        owner_uuid = str(uuid.UUID(int=rng.getrandbits(128), version=4))
        name = f"app-{i + 1:05d}"
        email = f"owner{rng.randrange(max(1, settings.apps // 3))}@example.test"
        apps.append({
            "callback_url": f"https://api.heroku.com/vendor/apps/{resource_uuid}",
            "heroku_id": f"app{100000 + i}@heroku.com",
            "plan": rng.choice(PLANS),
            "provider_id": str(i + 1),
            "resource": {"uuid": resource_uuid, "name": f"addon-{name}-{rng.randrange(9999)}"},
            "name": name,
            "config": {"MYADDON_URL": f"https://myaddon.example/{resource_uuid[:8]}"},
            "domains": [f"www.{name}.example", f"{name}.example"][: rng.randrange(3)],
            "log_input_url": f"https://token:t.{resource_uuid}@1.us.logplex.io/logs",
            "owner_email": email,
            "owner": {"uuid": owner_uuid, "email": email},
            "region": rng.choice(REGIONS),
            "_listed_with_name": i % 2 == 0,
            "_deprovisioned": bool(settings.deprovisioned_every)
            and (i + 1) % settings.deprovisioned_every == 0,
        })
    apps.extend(settings.extra_apps)
    return apps
