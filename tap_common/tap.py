"""The base tap: settings every vendor tap shares, one throttle, one authenticator,
secrets kept out of every log, and a run that ends with one line when it fails."""

from __future__ import annotations

import base64
import contextlib
import signal
import sys
import typing as t
from functools import cached_property

import click
from jsonschema import ValidationError
from singer_sdk.plugin_base import JSONSchemaValidator
from singer_sdk import typing as th
from singer_sdk.exceptions import ConfigValidationError, FatalAPIError, RetriableAPIError
from singer_sdk.helpers.capabilities import CapabilitiesEnum, PluginCapabilities, TapCapabilities

from tap_common import redact, settings, writer
from tap_common._sdk import TapInternals
from tap_common.http import VendorClient
from tap_common.ratelimit import RequestThrottle
from tap_common.responses import ErrorEnvelope
from tap_common.writer import OrjsonSingerWriter

#: The settings of the HTTP client, shared by every tap (kept under this name for the taps).
COMMON_SETTINGS = th.PropertiesList(*settings.HTTP_CLIENT)


class Terminated(BaseException):
    """SIGTERM or SIGINT arrived: unwind (not an Exception, so nothing swallows it)."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum

    @property
    def signal_name(self) -> str:
        try:
            return signal.Signals(self.signum).name
        except ValueError:
            return f"signal {self.signum}"


def _describe_config_error(error: ValidationError, secrets: set[str]) -> str:
    """One line naming the setting that broke a schema constraint, never a secret's value."""
    setting = str(error.path[0]) if error.path else None
    schema = error.schema if isinstance(error.schema, dict) else {}
    if setting in secrets:  # the constraint, in words where they exist; never the value
        rule = _rule(error.validator, schema) if len(error.path) == 1 else None
        if rule:
            broken = f"must {rule}"
        elif error.validator == "type":
            broken = f"type: {error.validator_value}"
        else:
            broken = str(error.validator)
        return f"setting '{setting}' is invalid ({broken}); its value is secret and not shown"
    if setting is None or error.validator == "type":  # jsonschema's words are clear here
        where = f" in config[{']['.join(repr(p) for p in error.path)}]" if error.path else ""
        return f"{error.message}{where}"
    subject = f"`{setting}{''.join(f'[{p!r}]' for p in list(error.path)[1:])}`"
    if "propertyNames" in error.schema_path:
        return f"{subject} has an unknown key {error.instance!r}; known: {error.validator_value}."
    if error.validator == "required":  # of an object inside a setting: say what it needs
        missing = error.message.split("'")[1]  # jsonschema names it in the message only
        needed = schema.get("properties", {}).get(missing, {}).get("description")
        return f"{subject} needs `{missing}`" + (f": {needed}" if needed else ".")
    if error.validator == "not":  # a key the tap sets itself
        return f"`{setting}` must not contain `{error.path[-1]}`: {schema.get('description')}"
    rule = _rule(error.validator, schema)
    if rule is None and schema.get("description"):  # e.g. anyOf: the description says it
        return f"{subject} must be {schema['description']}"
    if rule is None:
        return f"{error.message} in {subject}"
    return f"{subject} must {rule}, not {error.instance!r}."


def _rule(validator: str, schema: dict[str, t.Any]) -> str | None:
    """The constraint ``validator`` of a setting's ``schema``, in words."""
    if validator in {"minimum", "maximum"} and {"minimum", "maximum"} <= schema.keys():
        return f"be between {schema['minimum']} and {schema['maximum']}"
    if validator == "minimum":
        return f"be {schema['minimum']} or more"
    if validator == "maximum":
        return f"be {schema['maximum']} or less"
    if validator == "exclusiveMinimum":
        return f"be greater than {schema['exclusiveMinimum']}"
    if validator == "exclusiveMaximum":
        return f"be less than {schema['exclusiveMaximum']}"
    if validator == "enum":
        return f"be one of {schema['enum']}"
    if validator == "pattern":
        return f"match {schema['pattern']}"
    if validator == "format":
        return f"be {settings.FORMAT_WORDS.get(schema['format'], 'a ' + schema['format'])}"
    return None


class VendorTap(TapInternals):
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
    #: The vendor's error body, recognised on any status (200 included).
    error_envelope: t.ClassVar[ErrorEnvelope] = ErrorEnvelope()
    #: Settings sent together as HTTP Basic credentials (user, password): their
    #: encoded form is kept out of logs like the password itself.
    basic_auth_settings: t.ClassVar[tuple[str, str] | None] = None
    #: Regexes of URL path segments that work as credentials (group ``secret``).
    signed_paths: t.ClassVar[tuple[str, ...]] = ()

    def __init__(self, *args: t.Any, **kwargs: t.Any) -> None:
        redact.install()
        super().__init__(*args, **kwargs)
        self.protect_secrets()

    def protect_secrets(self) -> None:
        """Register what must never appear in a log line: secret settings, their Basic
        auth encoding, signed path segments; and filter every log handler."""
        properties = self.config_jsonschema.get("properties", {})
        for name, prop in properties.items():
            if prop.get("secret") and self.config.get(name):
                # Each string of a list or object on its own (the whole list as one string
                # would leave every element in clear).
                redact.REDACTOR.add_secrets_in(self.config[name], prop)
        if self.basic_auth_settings:
            user, password = (self.config.get(n) for n in self.basic_auth_settings)
            if user and password:
                redact.REDACTOR.add_secret(base64.b64encode(f"{user}:{password}".encode()).decode())
        for pattern in self.signed_paths:
            redact.REDACTOR.add_signed_path(pattern)
        redact.install()

    def credential_hint(self, status: int) -> str:
        """What a 401/403 means for this vendor's credentials, without their values."""
        return "The API rejected the configured credentials."

    def build_authenticator(self) -> t.Callable:
        """The vendor's authenticator; it only ever sees requests to ``api_url``."""
        raise NotImplementedError

    def extra_config_errors(self) -> list[str]:
        """Checks JSON Schema cannot express; each message names its setting."""
        return []

    @property
    def authenticator(self) -> t.Callable:
        """The vendor's credentials, bound to ``api_url`` once, by the client."""
        return self.client.credentials

    @cached_property
    def client(self) -> VendorClient:
        """The tap's one client: every request of this process goes through it."""
        return VendorClient(
            str(self.config["api_url"]),
            throttle=self.throttle,
            settings=self.config,
            credentials=self.build_authenticator,
            error_envelope=self.error_envelope,
            credential_hint=self.credential_hint,
            named_hosts=self.named_hosts(),
            user_agent=self.config.get("user_agent") or f"{self.name}/{self.plugin_version}",
            logger=self.logger,
        )

    def named_hosts(self) -> dict[str, ErrorEnvelope | None]:
        """Other hosts the tap calls on purpose, and their error envelopes (see
        ``VendorClient``)."""
        return {}

    @cached_property
    def throttle(self) -> RequestThrottle:
        rps = self.config.get("requests_per_second", self.default_requests_per_second)
        return RequestThrottle(rps, **self.pool_settings())

    def pool_settings(self) -> dict[str, t.Any]:
        """Settings of a vendor-metered request pool (see ``RequestThrottle``)."""
        return {}

    def validate_settings(self, *, raise_errors: bool = True) -> list[str]:
        # The SDK's own messages quote the offending value, a secret one included.
        schema = self.config_jsonschema
        self.append_builtin_config(schema)
        properties = schema.get("properties", {})
        secrets = {name for name, prop in properties.items() if prop.get("secret")}
        validator = JSONSchemaValidator(schema, format_checker=settings.FORMATS)
        errors = [_describe_config_error(error, secrets)
                  for error in validator.iter_errors(self.settings_as_given)]
        if not errors:
            errors = self.extra_config_errors()
        if errors and raise_errors:
            raise ConfigValidationError("Config validation failed", errors=errors, schema=schema)
        return errors

    def sync_all(self) -> None:
        writer.forget_last_state()
        super().sync_all()

    def on_termination(self, signum: int) -> None:
        # The SDK writes the live state and exits 0, which tells a scheduler the run
        # succeeded. Unwind instead; invoke() ends the run with the last safe STATE.
        raise Terminated(signum)

    @classmethod
    def invoke(cls, *args: t.Any, **kwargs: t.Any) -> None:  # type: ignore[override]
        """Run the tap. Whatever goes wrong ends it with one error line (never a
        traceback, which is logged at DEBUG, redacted) and a non-zero exit code."""
        with cls._one_line_on_failure():
            super().invoke(*args, **kwargs)

    @classmethod
    def cb_test(cls, ctx: click.Context, param: click.Option, value: str) -> None:  # type: ignore[override]
        """``--test``, with failures reported like a run's."""
        with cls._one_line_on_failure():
            super().cb_test(ctx, param, value)

    @classmethod
    @contextlib.contextmanager
    def _one_line_on_failure(cls) -> t.Iterator[None]:
        redact.install()
        try:
            yield
        except Terminated as stop:
            written = writer.write_last_state_again()
            cls.logger.error(  # noqa: TRY400
                "%s: stopped by %s; %s", cls.name, stop.signal_name,
                "the last STATE (written again above) covers only records written before it"
                if written else "no STATE had been written yet")
            sys.exit(128 + stop.signum)
        except (ConfigValidationError, click.exceptions.Exit, click.exceptions.ClickException):
            raise  # the SDK reports each config error on its own line
        except Exception as exc:  # noqa: BLE001
            cls.logger.debug("Traceback of the failure", exc_info=True)
            line = str(exc) if isinstance(exc, (FatalAPIError, RetriableAPIError)) \
                else f"{cls.name}: {type(exc).__name__}: {exc}"
            cls.logger.error("%s", redact.redact(line))  # noqa: TRY400
            sys.exit(1)
