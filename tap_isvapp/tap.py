"""tap-isvapp: ISVapp accounts, exports, taxonomy item usage and raw package usage logs."""

from __future__ import annotations

import typing as t
from functools import cached_property

from singer_sdk import typing as th
from singer_sdk.exceptions import ConfigValidationError

from tap_common import settings
from tap_common.responses import SuccessFlagEnvelope
from tap_common.tap import COMMON_SETTINGS, VendorTap
from tap_isvapp import streams
from tap_isvapp.client import IsvappCredentials

if t.TYPE_CHECKING:
    import requests

#: ISVapp's documented limit, on every endpoint: two requests per second.
ISVAPP_REQUESTS_PER_SECOND = 2.0
#: ``--test`` reads the account, as ISVapp recommends; its name in `oauth_scopes`, and the
#: scope it asks for unless `oauth_scopes` says otherwise.
CONNECTION_TEST = "account"
CONNECTION_TEST_PATH = "/api/v1/account"
CONNECTION_TEST_SCOPE = "identity"


def _ids(name: str, what: str) -> th.Property:
    return th.Property(
        name,
        th.ArrayType(th.StringType),
        description=f"{what} to export in `taxonomy_item_usage`. Exactly one of "
        "`export_taxonomy_ids`, `export_taxonomy_level_ids` and `export_taxonomy_item_ids` "
        "is needed when that stream is selected.",
    )


class TapIsvapp(VendorTap):
    # One line: it is the --about description, and the SDK's Markdown template breaks on a second.
    """ISVapp REST API: Salesforce accounts and summaries, data exports, monthly taxonomy item usage (async exports), raw package usage logs."""

    name = "tap-isvapp"
    default_requests_per_second = ISVAPP_REQUESTS_PER_SECOND
    error_envelope = SuccessFlagEnvelope()
    basic_auth_settings = ("client_id", "client_secret")
    connection_test_reads = ("reads the account (GET /api/v1/account, with the `api_key` or "
                             "an OAuth2 token of scope identity)")
    #: An export's download URL works without credentials: its last segment is the key.
    signed_paths = (r"/download/(?P<secret>[A-Za-z0-9_.~%+=-]+)",)

    config_jsonschema = th.PropertiesList(
        th.Property(
            "api_key",
            th.StringType,
            secret=True,
            description="A static API key (ISVapp > Setup > REST API), sent as "
            "`Authorization: Bearer`. Use it or `client_id` + `client_secret`, not both.",
        ),
        th.Property(
            "client_id",
            th.StringType,
            description="OAuth2 client ID (client-credentials flow); the tap asks for one "
            "token per scope it needs.",
        ),
        th.Property(
            "client_secret",
            th.StringType,
            secret=True,
            description="OAuth2 client secret, sent with `client_id` as HTTP Basic to the "
            "token endpoint only.",
        ),
        settings.api_url("https://api.isvapp.com", "ISVapp API"),
        settings.start_date(
            "the month of taxonomy usage to export from, and the first day of raw request "
            "files. Unset: the latest 12 completed months of usage, the last 45 days of files."),
        settings.requests_per_second(ISVAPP_REQUESTS_PER_SECOND, "ISVapp allows 2"),
        th.Property(
            "include_health_scores",
            th.BooleanType,
            default=True,
            description="Add every health score to `salesforce_accounts`.",
        ),
        th.Property(
            "include_subscriber_orgs",
            th.BooleanType,
            default=True,
            description="Add the subscriber orgs to `salesforce_accounts`.",
        ),
        _ids("export_taxonomy_ids", "Taxonomy IDs whose items"),
        _ids("export_taxonomy_level_ids", "Taxonomy level IDs whose items"),
        _ids("export_taxonomy_item_ids", "Taxonomy item IDs"),
        th.Property(
            "export_salesforce_account_ids",
            th.ArrayType(settings.SalesforceIdType),
            description="Limit `taxonomy_item_usage` to these Salesforce account IDs "
            "(15 or 18 characters). Unset: every account.",
        ),
        *settings.export_polling(poll_interval_default=10),
        settings.lookback_days(
            "lookback_days", 3, "`package_usage_requests` and `package_usage_logs`",
            "Salesforce delivers usage logs up to a few days late."),
        th.Property(
            "oauth_scopes",
            th.ObjectType(additional_properties=th.StringType),
            propertyNames={"enum": sorted(
                {s.name for s in streams.STREAMS} | {CONNECTION_TEST})},
            description="OAuth2 scope per stream name, where it differs from the tap's "
            "default (`salesforce_accounts` and `salesforce_account_summaries`: "
            "salesforce_accounts; `exports`, `taxonomy_item_usage`: exports; "
            "`package_usage_requests`, `package_usage_logs`: requests; connection test: "
            "identity).",
        ),
        *COMMON_SETTINGS,
    ).to_dict()

    @cached_property
    def credentials(self) -> IsvappCredentials:
        return IsvappCredentials(self.config, self.client)

    def build_authenticator(self) -> t.Callable:
        return self.credentials.authenticator(CONNECTION_TEST_SCOPE)

    def scope_for(self, stream_name: str, default: str) -> str:
        return (self.config.get("oauth_scopes") or {}).get(stream_name, default)

    def credential_hint(self, status: int) -> str:
        return ("ISVapp rejected the configured credential: check `api_key`, or "
                "`client_id` and `client_secret`.")

    def extra_config_errors(self) -> list[str]:
        config = self.config
        errors = []
        has_key = bool(config.get("api_key"))
        has_id, has_secret = bool(config.get("client_id")), bool(config.get("client_secret"))
        if has_key and (has_id or has_secret):
            errors.append("Set either `api_key` or `client_id` + `client_secret` (OAuth2), "
                          "not both.")
        elif not has_key and not has_id and not has_secret:
            errors.append("No credentials: set `api_key`, or `client_id` and `client_secret` "
                          "for OAuth2.")
        elif has_id != has_secret:
            present, missing = ("client_id", "client_secret") if has_id else ("client_secret", "client_id")
            errors.append(f"`{present}` is set but `{missing}` is missing: OAuth2 needs both.")
        errors.extend(settings.start_date_errors(config))
        selectors = [s for s in streams.TAXONOMY_SELECTORS if config.get(s)]
        if len(selectors) > 1:
            errors.append(f"Set only one of `export_taxonomy_ids`, `export_taxonomy_level_ids`, "
                          f"`export_taxonomy_item_ids` (ISVapp accepts exactly one); set: "
                          f"{', '.join(selectors)}.")
        return errors

    def sync_all(self) -> None:
        taxonomy = self.streams[streams.TaxonomyItemUsageStream.name]
        if taxonomy.selected and not any(self.config.get(s) for s in streams.TAXONOMY_SELECTORS):
            msg = "Config validation failed"
            raise ConfigValidationError(msg, errors=[
                "The `taxonomy_item_usage` stream is selected but none of "
                "`export_taxonomy_ids`, `export_taxonomy_level_ids`, `export_taxonomy_item_ids` "
                "is set: ISVapp needs exactly one of them to export taxonomy items. Set one, "
                "or deselect the stream."])
        super().sync_all()

    def connection_checks(self) -> t.Iterator[str]:
        """``GET /api/v1/account`` (scope identity), as ISVapp recommends."""
        scope = self.scope_for(CONNECTION_TEST, CONNECTION_TEST_SCOPE)

        def check(response: requests.Response) -> None:
            self.credentials.raise_if_rejected(response, scope)
            self.client.check(response)

        response = self.client.send("GET", CONNECTION_TEST_PATH,
                                    credentials=self.credentials.authenticator(scope),
                                    validate=check)
        account = self.client.decode_json(response, "$.data")
        yield (f"Connected to the ISVapp account of {account.get('company_name')} "
               f"(id {account.get('id')})")

    def discover_streams(self) -> list:
        return [stream_class(self) for stream_class in streams.STREAMS]


if __name__ == "__main__":
    TapIsvapp.cli()
