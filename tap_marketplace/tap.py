"""tap-marketplace: Atlassian Marketplace reporting (licenses, transactions, events) and catalog."""

from __future__ import annotations

import datetime
import importlib
import re
import threading
import typing as t
from types import ModuleType

from singer_sdk import typing as th
from singer_sdk.authenticators import BasicAuthenticator

from tap_common.errors import VendorAPIError
from tap_common.responses import ErrorsListEnvelope
from tap_common.tap import COMMON_SETTINGS, VendorTap
from tap_marketplace import streams

AGGREGATIONS = ("week", "month")


def _reports_module() -> ModuleType | None:
    """The aggregated-report streams, when that module is part of this build."""
    try:
        return importlib.import_module("tap_marketplace.reports")
    except ModuleNotFoundError as exc:
        if exc.name != "tap_marketplace.reports":
            raise
        return None


_REPORTS = _reports_module()


class TapMarketplace(VendorTap):
    """Atlassian Marketplace API v3: reporting for a developer space, and its catalog."""

    name = "tap-marketplace"
    error_envelope = ErrorsListEnvelope()
    basic_auth_settings = ("username", "api_token")

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
            th.StringType,
            description="The developer space id (a UUID). Either this or `vendor_id` is "
            "required.",
        ),
        th.Property(
            "vendor_id",
            th.StringType,
            description="The numeric Marketplace vendor id, resolved once per run to the "
            "developer id through `/rest/3/developer-space/vendor/{vendorId}` when "
            "`developer_id` is not set.",
        ),
        th.Property(
            "api_url",
            th.URIType,
            default="https://api.atlassian.com/marketplace",
            description="Base URL of the Marketplace API (the `/rest/3/...` paths hang off it).",
        ),
        th.Property(
            "start_date",
            th.DateType,
            description="Earliest date of reporting data to sync (YYYY-MM-DD): sent as "
            "`startDate`, and as the first `lastUpdated` bound before a bookmark exists.",
        ),
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
        th.Property(
            "export_poll_interval_seconds",
            th.NumberType,
            default=5,
            description="Seconds between two polls of an export's status.",
        ),
        th.Property(
            "export_timeout_seconds",
            th.NumberType,
            default=1800,
            description="Fail the run if an export has not completed after this long.",
        ),
        th.Property(
            "marketing_attribution_lookback_days",
            th.IntegerType,
            default=streams.ATTRIBUTION_LOOKBACK_DAYS,
            description="`marketing_attribution` is read again from this many days before "
            "its bookmark: a touch point arrives when the evaluation it led to starts, dated "
            "up to 30 days earlier. The default (35) is those 30 days and 5 to spare.",
        ),
        th.Property(
            "feedback_lookback_days",
            th.IntegerType,
            default=streams.FEEDBACK_LOOKBACK_DAYS,
            description="`feedback` is read again from this many days before its bookmark: "
            "it can only be asked by its `date` (there is no `lastUpdated`), so a row that "
            "becomes visible after its day is only read if that day is read again.",
        ),
        th.Property(
            "aggregation",
            th.StringType,
            default="month",
            allowed_values=list(AGGREGATIONS),
            description="Period of the aggregated metric reports: `week` or `month`.",
        ),
        th.Property(
            "requests_per_second",
            th.NumberType,
            description="Client-side cap on requests per second across all streams "
            "(unset: no cap).",
        ),
        *getattr(_REPORTS, "SETTINGS", ()),
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
        if vendor_id and not developer_id and not re.fullmatch(r"\d+", str(vendor_id)):
            errors.append(f"`vendor_id` must be the numeric vendor id, not {vendor_id!r}.")
        start_date = config.get("start_date")
        if start_date:
            try:
                start = datetime.date.fromisoformat(str(start_date)[:10])
            except ValueError:
                errors.append(f"`start_date` must be a date (YYYY-MM-DD), not {start_date!r}.")
            else:
                if start > datetime.datetime.now(datetime.timezone.utc).date():
                    errors.append(f"`start_date` {start_date} is in the future.")
        for name in ("marketing_attribution_lookback_days", "feedback_lookback_days"):
            value = config.get(name)
            if value is not None and value < 0:
                errors.append(f"`{name}` must be 0 or more, not {value}.")
        for name in ("export_poll_interval_seconds", "export_timeout_seconds"):
            value = config.get(name)
            if value is not None and value <= 0:
                errors.append(f"`{name}` must be greater than 0, not {value}.")
        if _REPORTS is not None and hasattr(_REPORTS, "config_errors"):
            errors.extend(_REPORTS.config_errors(config))
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

    # -- streams --------------------------------------------------------------------

    def discover_streams(self) -> list:
        found = [stream_class(self) for stream_class in streams.STREAMS]
        if _REPORTS is not None:
            found.extend(_REPORTS.report_streams(self))
        return found


if __name__ == "__main__":
    TapMarketplace.cli()
