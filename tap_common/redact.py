"""Secrets never reach a log line, an error line or a traceback.

Our own lines name paths, not URLs; but the libraries underneath (backoff, urllib3,
requests, the SDK) put whole URLs, headers and exception texts into theirs. So every
handler the tap logs through gets ``RedactingFilter``, which rewrites each record's
message and exception text before any handler formats it:

- query strings (``?expires=…&signature=…``) and ``query='…'`` in a parsed URL's repr;
- signed path segments the tap declares (ISVapp's ``/download/<token>``);
- user:password in a URL, ``Authorization`` header values, ``Bearer``/``Basic`` tokens,
  and ``token=``/``"access_token": …``-style pairs;
- every literal secret the tap registers (each secret setting, each element of a secret
  list, their Basic-auth encodings, OAuth access and refresh tokens as they are read or
  issued), also in the forms a vendor's echo may quote it: URL-encoded (a form body or a
  query string quoted back) and JSON-escaped.
"""

from __future__ import annotations

import json
import logging
import re
import threading
import typing as t
from urllib.parse import parse_qsl, quote, quote_plus, unquote, urlsplit

REDACTED = "<redacted>"
#: What a literal secret becomes until the patterns have run: without ``<>``, so a query
#: string whose values were secrets is still seen, and hidden, whole (its keys too).
_LITERAL_MARK = "\x00redacted\x00"
_MIN_SECRET_LENGTH = 6
_PREFIX_LENGTH = 16
_REGEX_UP_TO = 300

_GENERIC_PATTERNS: tuple[tuple[re.Pattern[str], str], ...] = (
    # A query string: "?" then anything up to whitespace or a quote, if it holds a "=".
    (re.compile(r"\?(?=[^\s'\"<>]*=)[^\s'\"<>)\]}]+"), f"?{REDACTED}"),
    # The query of a urllib.parse.ParseResult repr (the SDK's pagination tokens).
    (re.compile(r"(query=)(['\"]).*?\2"), rf"\1\2{REDACTED}\2"),
    # user:password@ in a URL.
    (re.compile(r"(?<=//)[^/\s:@'\"]+:[^/\s@'\"]+@"), f"{REDACTED}@"),
    # An Authorization header, in a dict repr or as a header line.
    (re.compile(r"(Authorization['\"]?\s*[:=]\s*['\"]?)[^'\"\n,}]+", re.IGNORECASE),
     rf"\1{REDACTED}"),
    (re.compile(r"\b(Bearer|Basic)\s+[A-Za-z0-9._~+/=\-]{8,}"), rf"\1 {REDACTED}"),
    # token=…, "access_token": "…", signature=… and friends; not a path's last segment
    # followed by a colon ("POST /oauth/token: invalid_client" is a message, not a secret).
    (re.compile(r"(\b(?<!/)(?:access_token|refresh_token|id_token|client_secret|password|api_key|"
                r"api_token|token|signature|x-amz-signature|sig)['\"]?\s*[:=]\s*['\"]?)"
                r"[^'\"&\s,;)}\]]+", re.IGNORECASE), rf"\1{REDACTED}"),
)


class Redactor:
    """Rewrites text so no secret in it survives. One per process, shared by all taps."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._secrets: set[str] = set()
        #: key length -> the secrets' first characters -> the secrets, longest first.
        #: Finding them costs the length of the text, not the number of secrets (partner
        #: mode registers two tokens per install, thousands of installs: one regex of
        #: them all, recompiled per token, would cost their square). Up to 16 characters
        #: tell tokens with a common prefix (``refresh-…``) apart.
        self._by_prefix: dict[int, dict[str, tuple[str, ...]]] = {}
        #: Up to a few hundred secrets (every run but a large partner one), one regex of
        #: them all is faster; compiled when first needed after a change.
        self._secrets_re: re.Pattern[str] | None = None
        self._paths: list[re.Pattern[str]] = []

    def add_secret(self, value: t.Any) -> None:
        """A literal value that must never be shown (a password, a token), in each form
        an echo of a request may quote it."""
        text = str(value) if value is not None else ""
        if len(text) < _MIN_SECRET_LENGTH:
            return
        escaped = json.dumps(text)[1:-1]
        forms = {text, quote(text, safe=""), quote_plus(text), escaped,
                 escaped.replace("/", "\\/")}
        with self._lock:
            for form in forms - self._secrets:
                self._secrets.add(form)
                size = min(len(form), _PREFIX_LENGTH)
                table = self._by_prefix.setdefault(size, {})
                known = table.get(form[:size], ())
                table[form[:size]] = tuple(sorted((*known, form), key=len, reverse=True))
            self._secrets_re = None

    def add_secrets_in(self, value: t.Any, schema: t.Mapping[str, t.Any] | None = None, *,
                       secret: bool = True) -> None:
        """Each string in a setting's value, one by one: a list of installs is not one
        secret but many. In an object whose schema marks some properties ``secret``, only
        those are (a resource id next to its refresh token stays readable)."""
        schema = schema or {}
        if isinstance(value, dict):
            properties = schema.get("properties") or {}
            marked = any(p.get("secret") for p in properties.values())
            for key, item in value.items():
                child = properties.get(key) or {}
                self.add_secrets_in(item, child,
                                    secret=bool(child.get("secret")) if marked else secret)
        elif isinstance(value, (list, tuple)):
            for item in value:
                self.add_secrets_in(item, schema.get("items") or {}, secret=secret)
        elif secret and value is not None and not isinstance(value, bool):
            self.add_secret(value)

    def add_signed_path(self, pattern: str) -> None:
        """A regex whose group ``secret`` is a path segment that works as a credential."""
        compiled = re.compile(pattern)
        if "secret" not in compiled.groupindex:
            msg = f"signed path pattern {pattern!r} needs a (?P<secret>…) group"
            raise ValueError(msg)
        with self._lock:
            if all(p.pattern != pattern for p in self._paths):
                self._paths.append(compiled)

    def add_secrets_of_url(self, url: str, *, query: bool) -> None:
        """The credentials a URL carries: its signed path segments, and with ``query``
        (a presigned download URL, not an API call's paging) each query value."""
        for pattern in self._paths:
            for match in pattern.finditer(url):
                self.add_secret(unquote(match.group("secret")))
                self.add_secret(match.group("secret"))
        if query:
            for _, value in parse_qsl(urlsplit(url).query, keep_blank_values=False):
                self.add_secret(value)

    def _redact_literals(self, text: str) -> str:
        if len(self._secrets) <= _REGEX_UP_TO:
            with self._lock:
                if self._secrets_re is None:
                    ordered = sorted(self._secrets, key=len, reverse=True)
                    self._secrets_re = re.compile("|".join(map(re.escape, ordered)))
                secrets_re = self._secrets_re
            return secrets_re.sub(_LITERAL_MARK, text)
        with self._lock:
            tables = list(self._by_prefix.items())
        # Which keys occur at all: a set of the text's windows against each table (no
        # Python step per secret); then the secrets at those places, leftmost first,
        # the longest where several start at one place.
        found: list[tuple[int, int]] = []
        for size, table in tables:
            windows = {text[i:i + size] for i in range(len(text) - size + 1)}
            for key in [window for window in windows if window in table]:
                position = text.find(key)
                while position >= 0:
                    for secret in table[key]:
                        if text.startswith(secret, position):
                            found.append((position, -len(secret)))
                            break
                    position = text.find(key, position + 1)
        if not found:
            return text
        parts: list[str] = []
        start = 0
        for position, negative_length in sorted(found):
            if position < start:
                continue  # inside a secret already redacted
            parts += (text[start:position], _LITERAL_MARK)
            start = position - negative_length
        parts.append(text[start:])
        return "".join(parts)

    def redact(self, text: str) -> str:
        if not text:
            return text
        if self._secrets:
            text = self._redact_literals(text)
        for pattern in self._paths:
            text = pattern.sub(_replace_secret_group, text)
        for pattern, replacement in _GENERIC_PATTERNS:
            text = pattern.sub(replacement, text)
        return text.replace(_LITERAL_MARK, REDACTED)


def _replace_secret_group(match: re.Match[str]) -> str:
    start, end = match.span("secret")
    whole = match.group(0)
    offset = match.start(0)
    return whole[: start - offset] + REDACTED + whole[end - offset:]


REDACTOR = Redactor()


def redact(text: str) -> str:
    return REDACTOR.redact(text)


class RedactingFilter(logging.Filter):
    """Redacts a record's message, exception and stack text in place, before formatting."""

    _formatter = logging.Formatter()

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # noqa: BLE001  (a bad format string must not hide the record)
            message = f"{record.msg} {record.args}"
        record.msg, record.args = REDACTOR.redact(message), None
        if record.exc_info:
            if not record.exc_text:
                record.exc_text = self._formatter.formatException(record.exc_info)
            # Formatters use exc_text when it is set; a formatter that renders exc_info
            # itself (structured logging) must not see the unredacted exception.
            record.exc_info = None
        if record.exc_text:
            record.exc_text = REDACTOR.redact(record.exc_text)
        if record.stack_info:
            record.stack_info = REDACTOR.redact(record.stack_info)
        return True


FILTER = RedactingFilter()


def install() -> None:
    """Put the filter on every handler there is: the root's, named loggers', last resort."""
    handlers: set[logging.Handler] = set(logging.root.handlers)
    for logger in list(logging.Logger.manager.loggerDict.values()):
        if isinstance(logger, logging.Logger):
            handlers.update(logger.handlers)
    if logging.lastResort is not None:
        handlers.add(logging.lastResort)
    for handler in handlers:
        if not any(isinstance(f, RedactingFilter) for f in handler.filters):
            handler.addFilter(FILTER)
