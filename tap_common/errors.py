"""One clear error line per failure: stream, HTTP status, and what the vendor said."""

from __future__ import annotations

import re
import typing as t

import orjson
from singer_sdk.exceptions import FatalAPIError, RetriableAPIError

from tap_common.redact import redact

if t.TYPE_CHECKING:
    import requests

_MAX_MESSAGE_CHARS = 300
_TAG_RE = re.compile(r"<[^>]+>")
_SPACE_RE = re.compile(r"\s+")


class VendorAPIError(FatalAPIError):
    """The vendor answered in a way the tap cannot continue from."""


class CredentialRejectedError(FatalAPIError):
    """A 401/403: the configured credential or its scope was rejected.

    Not named ``AuthenticationError``: singer-sdk 0.55 adds one in
    ``singer_sdk.exceptions``, and an import should never leave a doubt which is meant.
    """


class ExportFailedError(FatalAPIError):
    """An asynchronous export ended in the vendor's error state, or never finished."""


class PayloadError(FatalAPIError):
    """A body that cannot be parsed: HTML instead of JSON, a truncated file, a bad line."""


class VendorRetriableError(RetriableAPIError):
    """A transient failure (429, 5xx) that is retried before it becomes fatal."""


class PaginationError(FatalAPIError):
    """Pages that cannot all be read: a next page already read, or an empty page with
    more announced after it."""


class NetworkError(FatalAPIError):
    """The host could not be reached, or the connection broke, on every attempt."""


class UnexpectedError(FatalAPIError):
    """A failure the tap has no specific message for; the traceback is logged at DEBUG."""


def vendor_message(response: requests.Response) -> str:
    """The vendor's own words from an error body, whatever envelope it uses.

    Understood shapes: ISVapp ``{"error": "...", "success": false}``, Heroku
    ``{"id": "...", "message": "..."}``, Atlassian ``{"errors": [{"message"}]}`` and
    ``{"errors": [{"code", "title", "detail"}]}``; anything else is shown as short text.
    """
    body = response.content or b""
    if not body.strip():
        return "(empty body)"
    try:
        payload = orjson.loads(body)
    except orjson.JSONDecodeError:
        return _short_text(body.decode("utf-8", "replace"))
    return _short_text(_message_from_payload(payload))


def _message_from_payload(payload: t.Any) -> str:
    if isinstance(payload, dict):
        errors = payload.get("errors")
        if isinstance(errors, list) and errors:
            return "; ".join(describe_error(e) for e in errors)
        for key in ("error_message", "message", "error", "detail", "title"):
            value = payload.get(key)
            if isinstance(value, str) and value:
                return value
            if isinstance(value, dict):
                return _message_from_payload(value)
    if isinstance(payload, str):
        return payload
    return orjson.dumps(payload).decode()


def describe_error(error: t.Any) -> str:
    """One entry of an ``errors`` list in words: its message, else code: title: detail."""
    if not isinstance(error, dict):
        return str(error)
    if error.get("message"):
        return str(error["message"])
    parts = [str(error[k]) for k in ("code", "title", "detail") if error.get(k)]
    return ": ".join(parts) if parts else orjson.dumps(error).decode()


def _short_text(text: str) -> str:
    # Redacted before it is cut: a secret the vendor echoes across the cut would leave
    # its first characters, which no longer match the registered value.
    text = redact(_SPACE_RE.sub(" ", _TAG_RE.sub(" ", text)).strip())
    if len(text) > _MAX_MESSAGE_CHARS:
        text = text[:_MAX_MESSAGE_CHARS] + "…"
    return text or "(no message)"
