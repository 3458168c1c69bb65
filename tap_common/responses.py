"""What a vendor's answer must look like: its error envelope, and where the records are.

Each tap declares its vendor's ``ErrorEnvelope`` (an error body the vendor may send with
any status, 200 included), and each stream where its records are (``records_jsonpath``,
or ``expect=`` for requests outside the paginated flow). The base stream checks every
answer against both, once, so no stream can mistake an error or a reshaped body for
"no records".
"""

from __future__ import annotations

import re
import typing as t

from tap_common.errors import PayloadError, describe_error

#: Words in a vendor's error message that say trying again may help.
_TRANSIENT_RE = re.compile(
    r"temporar|try again|retry|unavailable|timed? ?out|timeout|rate.?limit|too many requests|"
    r"overloaded|busy|throttl",
    re.IGNORECASE,
)
_TRANSIENT_STATUSES = frozenset({"429", "500", "502", "503", "504"})


class ErrorEnvelope:
    """A vendor's error body. ``message`` is None for a body that is not one."""

    #: Shown in messages: whose envelope this is.
    vendor = "the vendor"

    def message(self, payload: t.Any) -> str | None:
        raise NotImplementedError

    def is_transient(self, payload: t.Any, message: str) -> bool:
        """Whether the vendor's own words say the failure may pass (a retry may help)."""
        return bool(_TRANSIENT_RE.search(message))


class SuccessFlagEnvelope(ErrorEnvelope):
    """ISVapp: ``{"error": "…", "success": false}``, with whatever HTTP status."""

    vendor = "ISVapp"

    def message(self, payload: t.Any) -> str | None:
        if not isinstance(payload, dict) or payload.get("success") is not False:
            return None
        error = payload.get("error")
        if isinstance(error, dict):
            error = error.get("message") or error.get("error_description") or str(error)
        return str(error or payload.get("message") or "(ISVapp gave no message)")


class ErrorsListEnvelope(ErrorEnvelope):
    """Atlassian: ``{"errors": [{"message"}]}`` or ``{"errors": [{"status", "code",
    "title", "detail"}]}``."""

    vendor = "Atlassian"

    def message(self, payload: t.Any) -> str | None:
        if not isinstance(payload, dict):
            return None
        errors = payload.get("errors")
        if not isinstance(errors, list) or not errors:
            return None
        return "; ".join(describe_error(error) for error in errors)

    def is_transient(self, payload: t.Any, message: str) -> bool:
        statuses = {str(e.get("status")) for e in payload.get("errors", []) if isinstance(e, dict)}
        return bool(statuses & _TRANSIENT_STATUSES) or super().is_transient(payload, message)


class IdMessageEnvelope(ErrorEnvelope):
    """Heroku: ``{"id": "not_found", "message": "…", "url": "…"}`` and nothing else (an
    app's own ``id`` comes with many other fields)."""

    vendor = "Heroku"
    FIELDS = frozenset({"id", "message", "url"})

    def message(self, payload: t.Any) -> str | None:
        if (isinstance(payload, dict) and isinstance(payload.get("id"), str)
                and isinstance(payload.get("message"), str) and set(payload) <= self.FIELDS):
            return f"{payload['message']} ({payload['id']})"
        return None

    def is_transient(self, payload: t.Any, message: str) -> bool:
        return payload.get("id") in ("rate_limit", "service_unavailable") or super().is_transient(
            payload, message)


class OAuthErrorEnvelope(ErrorEnvelope):
    """An OAuth 2.0 token endpoint (RFC 6749 section 5.2): ``{"error": "invalid_grant",
    "error_description": "…"}``; a body with an ``access_token`` is never one."""

    vendor = "OAuth"

    def message(self, payload: t.Any) -> str | None:
        if (not isinstance(payload, dict) or not isinstance(payload.get("error"), str)
                or "access_token" in payload):
            return None
        description = payload.get("error_description")
        if isinstance(description, str) and description:
            return f"{description} ({payload['error']})"
        return payload["error"]

    def is_transient(self, payload: t.Any, message: str) -> bool:
        return payload.get("error") == "temporarily_unavailable" or super().is_transient(
            payload, message)


class FirstOfEnvelopes(ErrorEnvelope):
    """A host that answers errors in more than one shape: the first that reads the body."""

    def __init__(self, *envelopes: ErrorEnvelope) -> None:
        self.envelopes = envelopes
        self.vendor = " or ".join(e.vendor for e in envelopes)

    def _reading(self, payload: t.Any) -> tuple[ErrorEnvelope, str] | None:
        for envelope in self.envelopes:
            message = envelope.message(payload)
            if message is not None:
                return envelope, message
        return None

    def message(self, payload: t.Any) -> str | None:
        found = self._reading(payload)
        return found[1] if found else None

    def is_transient(self, payload: t.Any, message: str) -> bool:
        found = self._reading(payload)
        return found[0].is_transient(payload, message) if found else False


# -- where the records are ------------------------------------------------------------------

_PATH_RE = re.compile(r"^\$((?:\.[A-Za-z_][\w-]*)*)(\[\*\])?$")


class Expected(t.NamedTuple):
    """A simple JSONPath (``$``, ``$[*]``, ``$.data``, ``$.data[*]``) as a shape to check."""

    keys: tuple[str, ...]
    many: bool

    @classmethod
    def parse(cls, jsonpath: str) -> Expected:
        match = _PATH_RE.match(jsonpath)
        if not match:
            msg = f"only $, $[*], $.key… and $.key…[*] can be checked, not {jsonpath!r}"
            raise ValueError(msg)
        keys = tuple(k for k in match.group(1).split(".") if k)
        return cls(keys, bool(match.group(2)))

    def describe(self) -> str:
        what = "a JSON array" if self.many else "a JSON object"
        return f"{what} under {'.'.join(self.keys)!r}" if self.keys else f"{what} as the body"


def locate(payload: t.Any, jsonpath: str, *, where: str, fields: t.Iterable[str] = (),
           one_as_many: bool = False) -> t.Any:
    """The value at ``jsonpath`` in ``payload``, or a ``PayloadError`` saying what was
    expected and what came instead (names of keys only: values may be secret).

    For ``[*]`` paths the value is a list of objects (one object counts as a list of one
    with ``one_as_many``); ``fields`` must be present in the object, or in each element.
    """
    expected = Expected.parse(jsonpath)
    value = payload
    for depth, key in enumerate(expected.keys):
        if not isinstance(value, dict) or key not in value:
            found = describe_value(value)
            if isinstance(value, dict):
                found = f"{found} without {key!r}"
            msg = f"{where}: expected {expected.describe()}, got {found}"
            if depth:
                msg += f" at {'.'.join(expected.keys[:depth])!r}"
            raise PayloadError(msg)
        value = value[key]
    if expected.many:
        if one_as_many and isinstance(value, dict):
            value = [value]
        if not isinstance(value, list):
            raise PayloadError(f"{where}: expected {expected.describe()}, got {describe_value(value)}")
        for index, element in enumerate(value):
            if not isinstance(element, dict):
                msg = (f"{where}: expected {expected.describe()} of objects, but element "
                       f"{index} is {describe_value(element)}")
                raise PayloadError(msg)
        required = tuple(fields)
        if required:
            for index, element in enumerate(value):
                _require(element, required, f"{where}: element {index} of {expected.describe()}")
        return value
    if not isinstance(value, dict):
        raise PayloadError(f"{where}: expected {expected.describe()}, got {describe_value(value)}")
    _require(value, tuple(fields), f"{where}: {expected.describe()}")
    return value


def _require(value: dict, fields: tuple[str, ...], what: str) -> None:
    missing = [name for name in fields if value.get(name) in (None, "")]
    if missing:
        msg = f"{what} has no {', '.join(repr(m) for m in missing)} ({describe_value(value)})"
        raise PayloadError(msg)


def describe_value(value: t.Any) -> str:
    """What a JSON value is, by type and key names (never its values)."""
    if isinstance(value, dict):
        keys = sorted(map(str, value))
        shown = ", ".join(keys[:8]) + (", …" if len(keys) > 8 else "")
        return f"a JSON object (keys: {shown})" if keys else "an empty JSON object"
    if isinstance(value, list):
        return f"a JSON array of {len(value)}"
    if value is None:
        return "null"
    kind = {bool: "boolean", str: "string", int: "number", float: "number"}.get(type(value))
    return f"a JSON {kind or type(value).__name__}"
