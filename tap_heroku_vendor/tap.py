"""tap-heroku-vendor: every app that installed your Heroku add-on, with its details."""

from __future__ import annotations

import typing as t

from singer_sdk import typing as th
from singer_sdk.authenticators import BasicAuthenticator

from tap_common.responses import IdMessageEnvelope
from tap_common.tap import COMMON_SETTINGS, VendorTap
from tap_heroku_vendor import streams

# Heroku's platform pool: 4500 tokens, refilled at 75 per minute.
HEROKU_POOL_REFILL_PER_SECOND = 75 / 60


class TapHerokuVendor(VendorTap):
    """Heroku add-on partner App Info API (`/vendor/apps`): installed apps and their details."""

    name = "tap-heroku-vendor"
    error_envelope = IdMessageEnvelope()
    basic_auth_settings = ("manifest_id", "manifest_password")

    config_jsonschema = th.PropertiesList(
        th.Property(
            "manifest_id",
            th.StringType,
            required=True,
            description="The add-on manifest `id` (slug); the Basic auth user name.",
        ),
        th.Property(
            "manifest_password",
            th.StringType,
            required=True,
            secret=True,
            description="The add-on manifest `api.password`; the Basic auth password.",
        ),
        th.Property(
            "api_url",
            th.URIType,
            default="https://api.heroku.com",
            description="Base URL of the Heroku API.",
        ),
        th.Property(
            "requests_per_second",
            th.NumberType,
            description="Client-side cap on requests per second (unset: no cap beyond "
            "Heroku's request pool).",
        ),
        th.Property(
            "rate_limit_reserve",
            th.IntegerType,
            default=100,
            description="When `RateLimit-Remaining` falls to this many requests, the tap "
            "paces itself at the pool's refill rate instead of running into 429s.",
        ),
        th.Property(
            "rate_limit_refill_per_second",
            th.NumberType,
            default=HEROKU_POOL_REFILL_PER_SECOND,
            description="Refill rate of Heroku's request pool (75 per minute); 0 turns "
            "the pacing off.",
        ),
        *COMMON_SETTINGS,
    ).to_dict()

    def build_authenticator(self) -> t.Callable:
        return BasicAuthenticator(
            username=self.config["manifest_id"], password=self.config["manifest_password"]
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

    def discover_streams(self) -> list:
        return [streams.AppsStream(self), streams.AppInfoStream(self)]


if __name__ == "__main__":
    TapHerokuVendor.cli()
