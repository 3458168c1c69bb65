"""tap-marketplace: Atlassian Marketplace reporting (licenses, transactions, events) and catalog."""

from __future__ import annotations

import threading
import typing as t

from singer_sdk import typing as th
from singer_sdk.authenticators import BasicAuthenticator

from tap_common import settings
from tap_common.errors import VendorAPIError
from tap_common.responses import ErrorsListEnvelope
from tap_common.tap import COMMON_SETTINGS, VendorTap
from tap_marketplace import streams
from tap_marketplace.client import REPORTING
from tap_marketplace.streams import report_settings

AGGREGATIONS = ("week", "month")


class TapMarketplace(VendorTap):
    """Atlassian Marketplace API v3: reporting for a developer space, and its catalog."""

    name = "tap-marketplace"
    error_envelope = ErrorsListEnvelope()
    basic_auth_settings = ("username", "api_token")
    connection_test_reads = ("reads the developer space (`developer_id`, or the one of "
                             "`vendor_id`) and one license of its reporting; starts no export")

    config_jsonschema = th.PropertiesList(
        th.Property(
            "username",
            th.StringType,
            required=True,
            description="Email address of the Atlassian account; the Basic auth user name.",
        ),
        th.Property(
            "api_token",
            th.StringType,
            required=True,
            secret=True,
            description="API token of that account (id.atlassian.com → Security → API "
            "tokens); the Basic auth password.",
        ),
        th.Property(
            "developer_id",
            th.UUIDType,
            description="The developer space id (a UUID). Either this or `vendor_id` is "
            "required.",
        ),
        th.Property(
            "vendor_id",
            th.StringType(pattern=r"^[0-9]+$"),
            description="The numeric Marketplace vendor id, resolved once per run to the "
            "developer id through `/rest/3/developer-space/vendor/{vendorId}` when "
            "`developer_id` is not set.",
        ),
        settings.api_url("https://api.atlassian.com/marketplace",
                         "Marketplace API (the `/rest/3/...` paths hang off it)"),
        settings.start_date(
            "sent as `startDate`, and as the first `lastUpdated` bound before a bookmark exists."),
        th.Property(
            "product_ids",
            th.ArrayType(th.StringType),
            description="Only these apps (product ids, UUIDs), sent as repeated `productId` "
            "parameters. Unset: every app of the developer space.",
        ),
        th.Property(
            "include_atlassian_licenses",
            th.BooleanType,
            default=False,
            description="Include licenses Atlassian issued (e.g. for its own use).",
        ),
        th.Property(
            "with_data_insights",
            th.BooleanType,
            default=True,
            description="Ask for the data-insight fields of licenses (attribution, "
            "evaluation and parent-product details). Atlassian only has them for licenses "
            "from July 2018 on; older licenses are pulled separately without them.",
        ),
        th.Property(
            "use_async_exports",
            th.BooleanType,
            default=True,
            description="Read licenses and transactions through Atlassian's asynchronous "
            "export (recommended for large vendors) instead of paging the list endpoints.",
        ),
        *settings.export_polling(poll_interval_default=5),
        settings.lookback_days(
            "marketing_attribution_lookback_days", streams.ATTRIBUTION_LOOKBACK_DAYS,
            "`marketing_attribution`", "a touch point arrives when the evaluation it led to "
            "starts, dated up to 30 days earlier. The default (35) is those 30 days and 5 to "
            "spare."),
        settings.lookback_days(
            "feedback_lookback_days", streams.FEEDBACK_LOOKBACK_DAYS, "`feedback`",
            "it can only be asked by its `date` (there is no `lastUpdated`), so a row that "
            "becomes visible after its day is only read if that day is read again."),
        th.Property(
            "aggregation",
            th.StringType,
            default="month",
            allowed_values=list(AGGREGATIONS),
            description="Period of the aggregated metric reports: `week` or `month`.",
        ),
        settings.requests_per_second(),
        *report_settings.SETTINGS,
        *COMMON_SETTINGS,
    ).to_dict()

    def __init__(self, *args: t.Any, **kwargs: t.Any) -> None:
        self._developer_id: str | None = None
        self._developer_id_lock = threading.Lock()
        super().__init__(*args, **kwargs)

    # -- credentials and config -----------------------------------------------------

    def build_authenticator(self) -> t.Callable:
        return BasicAuthenticator(
            username=self.config["username"], password=self.config["api_token"]
        )

    def credential_hint(self, status: int) -> str:
        if status == 403:
            return (
                "The account in `username` authenticated but may not read this: it needs a "
                "role in the developer space (`developer_id`/`vendor_id`) that allows "
                "reporting, and its `api_token` must be a classic API token."
            )
        return (
            "Atlassian rejected the Basic auth credentials: check `username` (the "
            "account's email address) and `api_token` (an API token of that account)."
        )

    def extra_config_errors(self) -> list[str]:
        errors = []
        config = self.config
        for name in ("username", "api_token"):
            if not str(config.get(name) or "").strip():
                errors.append(f"`{name}` is empty; it is required for Basic auth.")
        developer_id, vendor_id = config.get("developer_id"), config.get("vendor_id")
        if not developer_id and not vendor_id:
            errors.append(
                "Set `developer_id` (the developer space UUID) or `vendor_id` (the numeric "
                "vendor id, resolved to the developer id); neither is set."
            )
        errors.extend(settings.start_date_errors(config))
        return errors

    # -- the developer space --------------------------------------------------------

    def developer_id(self) -> str:
        """The developer space id: configured, or resolved from `vendor_id` once per run."""
        configured = self.config.get("developer_id")
        if configured:
            return str(configured)
        with self._developer_id_lock:
            if self._developer_id is None:
                vendor_id = self.config["vendor_id"]
                path = f"/rest/3/developer-space/vendor/{vendor_id}"
                client = self.client
                # Named for the stream that needs it, as every line (the first one to ask).
                resolved = client.decode_json(client.send("GET", path), "$").get("developerId")
                if not resolved:
                    msg = (f"{client.caller}: {path} gave no developerId; check `vendor_id`")
                    raise VendorAPIError(msg)
                self.logger.info("vendor %s is developer space %s", vendor_id, resolved)
                self._developer_id = str(resolved)
            return self._developer_id

    def connection_checks(self) -> t.Iterator[str]:
        """The developer space (the credentials and the space are right) and one license
        of its reporting (the account may read reports); no export is started."""
        client = self.client
        developer_id = self.developer_id()
        space = client.decode_json(
            client.send("GET", f"/rest/3/developer-space/{developer_id}"), "$", fields=("id",))
        client.decode_json(
            client.send("GET", REPORTING.format(developerId=developer_id) + "/licenses",
                        params={"offset": 0, "limit": 1}), "$.licenses[*]",
            # As the licenses stream reads it: the spec types the collection as one object.
            one_as_many=True)
        yield (f"Connected to the developer space {space.get('name')} ({developer_id}); "
               "its reporting is readable")

    # -- streams --------------------------------------------------------------------

    def discover_streams(self) -> list:
        return [stream_class(self) for stream_class in streams.STREAMS]


if __name__ == "__main__":
    TapMarketplace.cli()
