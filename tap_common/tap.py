"""The base tap: settings every vendor tap shares, one throttle, one authenticator."""

from __future__ import annotations

import sys
import typing as t
from functools import cached_property

from jsonschema import ValidationError
from singer_sdk import Tap
from singer_sdk.plugin_base import JSONSchemaValidator
from singer_sdk import typing as th
from singer_sdk.exceptions import ConfigValidationError, FatalAPIError, RetriableAPIError
from singer_sdk.helpers.capabilities import CapabilitiesEnum, PluginCapabilities, TapCapabilities

from tap_common.auth import HostBoundAuth
from tap_common.ratelimit import RequestThrottle
from tap_common.writer import OrjsonSingerWriter

COMMON_SETTINGS = th.PropertiesList(
    th.Property(
        "user_agent",
        th.StringType,
        description="User-Agent header sent with every request.",
    ),
    th.Property(
        "request_timeout_seconds",
        th.NumberType,
        default=300,
        description="Seconds to wait for a response before the request is retried.",
    ),
    th.Property(
        "max_retries",
        th.IntegerType,
        default=8,
        description="Retries of a request that failed with 429, 5xx or a network error.",
    ),
    th.Property(
        "retry_backoff_seconds",
        th.NumberType,
        default=2,
        description=(
            "First wait before a retry; it doubles on each further retry (capped at "
            "120 s). A Retry-After header from the vendor takes precedence."
        ),
    ),
)


def _describe_config_error(error: ValidationError, secrets: set[str]) -> str:
    setting = str(error.path[0]) if error.path else None
    where = f" in config[{']['.join(repr(p) for p in error.path)}]" if error.path else ""
    if setting in secrets:
        expected = error.validator_value if error.validator == "type" else error.validator
        return f"setting '{setting}' is invalid ({error.validator}: {expected}); its value is secret and not shown"
    return f"{error.message}{where}"


class VendorTap(Tap):
    """A tap for one vendor API; subclasses add settings, auth and streams."""

    message_writer_class = OrjsonSingerWriter
    #: What the taps declare (--about, meltano.yml, the Hub definitions): the SDK's defaults less
    #: batch, activate-version and structured-logging, which no test here exercises.
    capabilities: t.ClassVar[list[CapabilitiesEnum]] = [
        TapCapabilities.CATALOG,
        TapCapabilities.STATE,
        TapCapabilities.DISCOVER,
        PluginCapabilities.ABOUT,
        PluginCapabilities.STREAM_MAPS,
        PluginCapabilities.FLATTENING,
    ]
    #: The distribution the three taps ship in (the SDK would look for one named like the tap).
    package_name = "isv-revenue-taps"

    #: Default for the ``requests_per_second`` setting (None: unthrottled).
    default_requests_per_second: t.ClassVar[float | None] = None

    def credential_hint(self, status: int) -> str:
        """What a 401/403 means for this vendor's credentials, without their values."""
        return "The API rejected the configured credentials."

    def build_authenticator(self) -> t.Callable:
        """The vendor's authenticator; it only ever sees requests to ``api_url``."""
        raise NotImplementedError

    def extra_config_errors(self) -> list[str]:
        """Checks JSON Schema cannot express; each message names its setting."""
        return []

    @cached_property
    def authenticator(self) -> HostBoundAuth:
        return HostBoundAuth(self.build_authenticator(), str(self.config["api_url"]))

    @cached_property
    def throttle(self) -> RequestThrottle:
        rps = self.config.get("requests_per_second", self.default_requests_per_second)
        return RequestThrottle(rps, **self.pool_settings())

    def pool_settings(self) -> dict[str, t.Any]:
        """Settings of a vendor-metered request pool (see ``RequestThrottle``)."""
        return {}

    def _validate_config(self, *, raise_errors: bool = True) -> list[str]:
        # The SDK's own messages quote the offending value, a secret one included.
        schema = self.config_jsonschema
        self.append_builtin_config(schema)
        properties = schema.get("properties", {})
        secrets = {name for name, prop in properties.items() if prop.get("secret")}
        errors = [
            _describe_config_error(error, secrets)
            for error in JSONSchemaValidator(schema).iter_errors(self._config)
        ]
        if not errors:
            errors = self.extra_config_errors()
        if errors and raise_errors:
            raise ConfigValidationError("Config validation failed", errors=errors, schema=schema)
        return errors

    @classmethod
    def invoke(cls, *args: t.Any, **kwargs: t.Any) -> None:  # type: ignore[override]
        """Run the tap; a vendor failure ends it with one error line and exit code 1."""
        try:
            super().invoke(*args, **kwargs)
        except (FatalAPIError, RetriableAPIError) as exc:
            cls.logger.debug("Traceback of the failure", exc_info=True)
            cls.logger.error("%s", exc)  # noqa: TRY400
            sys.exit(1)
