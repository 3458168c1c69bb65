"""Settings several taps share, declared once: each function returns the ``th.Property``
(or properties) with the wording and constraints every tap uses, and takes only what
differs per tap (a default, the streams it concerns, why).

Constraints on one setting live in the JSON Schema (``minimum``, ``exclusiveMinimum``,
``maximum``, ``enum``, ``pattern``, ``format``); ``VendorTap.extra_config_errors`` keeps
only the checks that span settings (or need today's date).
"""

from __future__ import annotations

import datetime as dt
import difflib
import re
import typing as t
import uuid

from jsonschema import FormatChecker
from singer_sdk import typing as th


def api_url(default: str, api: str) -> th.Property:
    """``api_url``: the vendor API's base URL; its requests alone carry the credentials."""
    return th.Property("api_url", th.URIType, default=default, description=f"Base URL of the {api}.")


def start_date(use: str) -> th.Property:
    """``start_date``: where a first run starts; ``use`` says what it bounds for this tap."""
    return th.Property(
        "start_date",
        th.DateType,
        description=f"First day of data to sync (YYYY-MM-DD, not in the future): {use}",
    )


def requests_per_second(default: float | None = None, vendor_limit: str = "") -> th.Property:
    """``requests_per_second``: the client-side pace. With a ``default`` (the vendor's
    documented limit, which ``vendor_limit`` states) it must stay positive; without one it
    is an optional cap, 0 or unset meaning none (beyond ``vendor_limit``, if any)."""
    if default:
        return th.Property(
            "requests_per_second", th.NumberType(exclusive_minimum=0), default=default,
            description=f"Requests per second across all streams and token calls; {vendor_limit}.")
    beyond = f" beyond {vendor_limit}" if vendor_limit else ""
    return th.Property(
        "requests_per_second", th.NumberType(minimum=0),
        description=f"Client-side cap on requests per second across all streams (unset or 0: "
        f"no cap{beyond}).")


def export_polling(poll_interval_default: float, timeout_default: float = 1800) -> list[th.Property]:
    """How an asynchronous export is waited for: the poll interval and the timeout."""
    return [
        th.Property(
            "export_poll_interval_seconds",
            th.NumberType(exclusive_minimum=0),
            default=poll_interval_default,
            description="Seconds between two status checks of a pending export.",
        ),
        th.Property(
            "export_timeout_seconds",
            th.NumberType(exclusive_minimum=0),
            default=timeout_default,
            description="Fail the run if an export has not completed after this many seconds.",
        ),
    ]


def lookback_days(name: str, default: int, what: str, why: str) -> th.Property:
    """A ``…lookback_days`` setting: ``what`` is read again from that many days before
    its bookmark on every run, ``why`` (the vendor's late or restated data)."""
    return th.Property(
        name,
        th.IntegerType(minimum=0),
        default=default,
        description=f"Read {what} again from this many days before the bookmark on every "
        f"run: {why}",
    )


#: The HTTP client's settings, the same in every tap (see ``tap_common.client``).
HTTP_CLIENT = (
    th.Property(
        "user_agent",
        th.StringType,
        description="User-Agent header sent with every request.",
    ),
    th.Property(
        "request_timeout_seconds",
        th.NumberType(exclusive_minimum=0),
        default=300,
        description="Seconds to wait for a response before the request is retried.",
    ),
    th.Property(
        "max_retries",
        th.IntegerType(minimum=0),
        default=8,
        description="Retries of a request that failed with 429, 5xx or a network error.",
    ),
    th.Property(
        "connect_retry_seconds",
        th.NumberType(minimum=0),
        default=10,
        description=(
            "How long a request whose host cannot be reached (DNS failure, connection "
            "refused, TLS error) is retried before the run fails, naming the host: retrying "
            "longer rarely helps, unlike a 429 or 5xx, which get `max_retries`."
        ),
    ),
    th.Property(
        "retry_backoff_seconds",
        th.NumberType(minimum=0),
        default=2,
        description=(
            "First wait before a retry; it doubles on each further retry (capped at "
            "120 s). A Retry-After header from the vendor takes precedence."
        ),
    ),
    th.Property(
        "max_retry_after_seconds",
        th.NumberType(minimum=0),
        default=300,
        description=(
            "Longest wait a Retry-After header may ask for; a longer one fails the run at "
            "once, naming the wait, instead of sleeping through it."
        ),
    ),
)


#: What the log holds, the same in every tap (see ``tap_common.runlog``).
LOGGING = (
    th.Property(
        "log_metrics",
        th.BooleanType,
        default=False,
        description=(
            "Log the SDK's METRIC lines (JSON, one per request and counter). Off, the log "
            "has one summary line per stream and one per run; a run at DEBUG logs them too."
        ),
    ),
)


#: The string formats the taps check (JSON Schema only annotates ``format`` unless asked),
#: and how a config error names them.
FORMATS = FormatChecker(formats=())
FORMAT_WORDS = {"date": "a date (YYYY-MM-DD)",
                "uuid": "a UUID (like 6f0e9a3c-1c2b-4d5e-9f00-5a1b2c3d4e5f)",
                "salesforce-id": "a Salesforce id (15 or 18 letters and digits)"}


class SalesforceIdType(th.StringType):
    """A Salesforce record id: 15 characters, or 18 with the case-safe suffix."""

    string_format = "salesforce-id"


@FORMATS.checks("date", raises=ValueError)
def _is_date(value: object) -> bool:
    # As the streams read it: the first ten characters, so a timestamp's date part counts too.
    return not isinstance(value, str) or bool(dt.date.fromisoformat(value[:10]))


@FORMATS.checks("uuid", raises=ValueError)
def _is_uuid(value: object) -> bool:
    return not isinstance(value, str) or bool(uuid.UUID(value)) and len(value) == 36  # noqa: PLR2004


@FORMATS.checks("salesforce-id", raises=ValueError)
def _is_salesforce_id(value: object) -> bool:
    return not isinstance(value, str) or bool(re.fullmatch(r"[A-Za-z0-9]{15}([A-Za-z0-9]{3})?",
                                                           value))


def numbers_from_strings(config: dict[str, t.Any], schema: t.Mapping[str, t.Any]) -> None:
    """Numeric settings given as strings ("1.5"), made numbers in ``config``, in place.

    Meltano passes a setting from an environment variable as the string it is when the
    setting's kind is ``string``, which is the kind the plugin definitions give the
    ``number`` settings: Meltano 4.4.1 turns a ``decimal`` kind into a ``Decimal`` that
    it then cannot write into the tap's config file. A string that is not a number is
    left as it is, for the schema's error naming the setting.
    """
    for name, prop in schema.get("properties", {}).items():
        value = config.get(name)
        types = prop.get("type", [])
        types = {types} if isinstance(types, str) else set(types)
        if not isinstance(value, str) or not types & {"number", "integer"}:
            continue
        try:
            number = float(value.strip())
        except ValueError:
            continue
        if "integer" in types and number.is_integer():
            config[name] = int(number)
        elif "number" in types:
            config[name] = number


def unknown_settings(config: t.Mapping[str, t.Any], known: t.Collection[str]) -> list[str]:
    """One warning per setting the tap does not know (a typo is otherwise ignored silently,
    and the run uses the default), naming the closest known setting if one is close."""
    warnings = []
    for name in sorted(set(config) - set(known)):
        close = difflib.get_close_matches(name, known, n=1, cutoff=0.6)
        hint = f"; did you mean {close[0]}?" if close else ""
        warnings.append(f"Unknown setting `{name}` is ignored{hint}")
    return warnings


def start_date_errors(config: t.Mapping[str, t.Any]) -> list[str]:
    """``start_date`` in the future: a check against today, which a schema cannot make."""
    value = config.get("start_date")
    if value and dt.date.fromisoformat(str(value)[:10]) > dt.datetime.now(dt.timezone.utc).date():
        return [f"`start_date` {value} is in the future."]
    return []
