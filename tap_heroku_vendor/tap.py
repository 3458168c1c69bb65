"""tap-heroku-vendor: every app that installed your Heroku add-on, with its details.

Two APIs (the `api` setting): `legacy`, the App Info API (`/vendor/apps`, manifest
Basic auth), and `partner`, the Platform API for Partners (one OAuth token per
installed add-on resource; see `partner.py` and `partner_streams.py`).
"""

from __future__ import annotations

import typing as t
from functools import cached_property

from singer_sdk import typing as th
from singer_sdk.authenticators import BasicAuthenticator

from tap_common import settings
from tap_common.auth import origin
from tap_common.ratelimit import RequestThrottle
from tap_common.responses import ErrorEnvelope, IdMessageEnvelope
from tap_common.tap import COMMON_SETTINGS, VendorTap
from tap_heroku_vendor import partner as partner_api
from tap_heroku_vendor import streams
from tap_heroku_vendor.partner_streams import PARTNER_STREAMS

# Heroku's platform pool: 4500 tokens, refilled at 75 per minute.
HEROKU_POOL_REFILL_PER_SECOND = 75 / 60


class TapHerokuVendor(VendorTap):
    """Heroku add-on partner APIs: the legacy App Info API or the Platform API for Partners."""

    name = "tap-heroku-vendor"
    error_envelope = IdMessageEnvelope()
    basic_auth_settings = ("manifest_id", "manifest_password")

    config_jsonschema = th.PropertiesList(
        th.Property(
            "api",
            th.StringType,
            default="legacy",
            allowed_values=["legacy", "partner"],
            description="Which Heroku API to read: `legacy`, the App Info API (`/vendor/apps`, "
            "manifest credentials; end of life announced for 3 July 2023), or `partner`, the "
            "Platform API for Partners (one OAuth token per installed add-on resource: "
            "`oauth_client_secret` and `installs` or `installs_file`).",
        ),
        th.Property(
            "manifest_id",
            th.StringType,
            description="The add-on manifest `id` (slug); the Basic auth user name. Required "
            "with `api: legacy`; with `api: partner`, optional: it lets the tap list every "
            "install on addons.heroku.com and warn about those without a refresh token.",
        ),
        th.Property(
            "manifest_password",
            th.StringType,
            secret=True,
            description="The add-on manifest `api.password`; the Basic auth password (see "
            "`manifest_id`).",
        ),
        settings.api_url("https://api.heroku.com", "Heroku API (App Info API and Platform API)"),
        th.Property(
            "oauth_client_secret",
            th.StringType,
            secret=True,
            description="Partner mode: the add-on's OAuth client secret (Add-on Partner "
            "Portal); sent only to `oauth_token_url`, in the body of refresh-token grants.",
        ),
        th.Property(
            "installs",
            th.ArrayType(
                th.ObjectType(
                    th.Property("resource_uuid", th.StringType, required=True),
                    th.Property("refresh_token", th.StringType, required=True, secret=True),
                )
            ),
            secret=True,
            description="Partner mode: the installs to read, each `{resource_uuid, "
            "refresh_token}` as stored at provisioning (the add-on resource uuid and the "
            "refresh token of its OAuth grant). Or use `installs_file`; both may be given.",
        ),
        th.Property(
            "installs_file",
            th.StringType,
            description="Partner mode: path of a JSON Lines file, one install per line: "
            '`{"resource_uuid": "...", "refresh_token": "..."}` (e.g. exported from your '
            "database). Keep it private: it holds the refresh tokens.",
        ),
        th.Property(
            "oauth_token_url",
            th.URIType,
            default=partner_api.DEFAULT_TOKEN_URL,
            description="Partner mode: Heroku's OAuth token endpoint.",
        ),
        th.Property(
            "addons_api_url",
            th.URIType,
            default=partner_api.DEFAULT_ADDONS_API_URL,
            description="Partner mode: base URL of the addons.heroku.com API, whose "
            "`/api/v3/apps` lists every install (read only when `manifest_id` and "
            "`manifest_password` are set).",
        ),
        th.Property(
            "page_size",
            th.IntegerType(minimum=1, maximum=partner_api.MAX_PAGE_SIZE),
            default=partner_api.MAX_PAGE_SIZE,
            description="Partner mode: items per page of the list endpoints (`Range: id ..; "
            "max=N`; Heroku allows 1 to 1000).",
        ),
        th.Property(
            "rate_limit_scope",
            th.StringType,
            default="shared",
            allowed_values=["shared", "per_install"],
            description="Partner mode: whether Heroku's request pool (`RateLimit-Remaining`) "
            "is one for the whole run (`shared`: right whether Heroku meters per account or "
            "per token) or one per install's token (`per_install`: only if Heroku is known "
            "to meter each token separately).",
        ),
        settings.requests_per_second(vendor_limit="Heroku's request pool"),
        th.Property(
            "rate_limit_reserve",
            th.IntegerType(minimum=0),
            default=100,
            description="When `RateLimit-Remaining` falls to this many requests, the tap "
            "paces itself at the pool's refill rate instead of running into 429s.",
        ),
        th.Property(
            "rate_limit_refill_per_second",
            th.NumberType(minimum=0),
            default=HEROKU_POOL_REFILL_PER_SECOND,
            description="Refill rate of Heroku's request pool (75 per minute); 0 turns "
            "the pacing off.",
        ),
        *COMMON_SETTINGS,
    ).to_dict()

    @property
    def partner_mode(self) -> bool:
        return self.config.get("api", "legacy") == "partner"

    def extra_config_errors(self) -> list[str]:
        config = self.config
        if not self.partner_mode:
            missing = [name for name in ("manifest_id", "manifest_password") if not config.get(name)]
            if missing:
                return [f"{' and '.join(missing)} required with api: legacy (the add-on "
                        "manifest's id and api.password); or set api: partner"]
            return []
        errors = []
        if not config.get("oauth_client_secret"):
            errors.append("oauth_client_secret is required with api: partner (the add-on's "
                          "OAuth client secret)")
        if not config.get("installs") and not config.get("installs_file"):
            errors.append("installs or installs_file is required with api: partner (each "
                          "install's resource_uuid and refresh_token)")
        if bool(config.get("manifest_id")) != bool(config.get("manifest_password")):
            errors.append("manifest_id and manifest_password go together (both or neither)")
        urls = {name: str(config.get(name) or default) for name, default in (
            ("api_url", ""), ("oauth_token_url", partner_api.DEFAULT_TOKEN_URL),
            ("addons_api_url", partner_api.DEFAULT_ADDONS_API_URL))}
        origins = [origin(url) for url in urls.values()]
        if len(set(origins)) < len(origins):
            errors.append("api_url, oauth_token_url and addons_api_url must be three different "
                          "hosts: each receives its own credential only")
        return errors

    def build_authenticator(self) -> t.Callable:
        return BasicAuthenticator(
            username=self.config.get("manifest_id") or "",
            password=self.config.get("manifest_password") or "",
        )

    def credential_hint(self, status: int) -> str:
        return (
            "Heroku rejected the add-on manifest credentials: check the `manifest_id` and "
            "`manifest_password` settings (the manifest's `id` and `api.password`)."
        )

    def pool_settings(self) -> dict[str, t.Any]:
        return {
            "pool_reserve": self.config.get("rate_limit_reserve", 100),
            "pool_refill_per_second": self.config.get(
                "rate_limit_refill_per_second", HEROKU_POOL_REFILL_PER_SECOND
            ),
        }

    @cached_property
    def throttle(self) -> RequestThrottle | partner_api.PerInstallThrottle:  # type: ignore[override]
        rps = self.config.get("requests_per_second", self.default_requests_per_second)
        if self.partner_mode and self.config.get("rate_limit_scope") == "per_install":
            return partner_api.PerInstallThrottle(rps, **self.pool_settings())
        return RequestThrottle(rps, **self.pool_settings())

    @cached_property
    def partner(self) -> partner_api.PartnerSession:
        return partner_api.PartnerSession(self.config, self.client, self.logger)

    def named_hosts(self) -> dict[str, ErrorEnvelope | None]:
        if not self.partner_mode:
            return {}
        return {
            str(self.config.get("oauth_token_url") or partner_api.DEFAULT_TOKEN_URL):
                partner_api.TOKEN_HOST_ENVELOPE,
            str(self.config.get("addons_api_url") or partner_api.DEFAULT_ADDONS_API_URL): None,
        }

    def discover_streams(self) -> list:
        if self.partner_mode:
            return [stream_class(self) for stream_class in PARTNER_STREAMS]
        return [streams.AppsStream(self), streams.AppInfoStream(self)]

    def sync_all(self) -> None:
        try:
            super().sync_all()
        finally:
            if self.partner_mode and self.partner.prepared:
                # New refresh tokens reach installs_file however the run ends.
                self.partner.rotated_tokens.write()
        if self.partner_mode and self.partner.prepared:
            self.logger.info("%s", self.partner.summary())
            lost = self.partner.failure_line("addons")
            if lost:
                raise partner_api.InstallsLostError(lost)


if __name__ == "__main__":
    TapHerokuVendor.cli()
