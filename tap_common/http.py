"""The one HTTP client of a tap process: every request the tap sends goes through it.

One ``requests.Session`` per tap, with the tap's pacing mounted at the transport
(``PacedAdapter``): stream pages, token requests, export polls, downloads, ``--test``
and id lookups are all paced, without anyone having to remember to. The client owns
what every request shares: retries with backoff that obey ``Retry-After``, the
one-line error messages (``stream: HTTP 503 Service Unavailable from GET /path:
<vendor message>``), the vendor's error envelope on any status, decoding, credentials
that only ever reach the host they belong to, and URLs in log lines without their
query strings.

Whoever sends a request names itself (``caller``, a stream name): that is how a line
says which stream failed. A request sent while another one is being made on a
caller's behalf (the token an authenticator fetches for it) inherits that caller, and
a response remembers whom it was received for (lines about its body name them too).
"""

from __future__ import annotations

import contextlib
import contextvars
import logging
import random
import re
import typing as t
from datetime import datetime, timezone
from email.utils import parsedate_to_datetime
from urllib.parse import urlsplit

import backoff
import orjson
import requests
import urllib3
from requests.adapters import HTTPAdapter
from singer_sdk.exceptions import FatalAPIError, RetriableAPIError

from tap_common.auth import HostBoundAuth, origin
from tap_common.errors import (
    CredentialRejectedError,
    NetworkError,
    PayloadError,
    VendorAPIError,
    VendorRetriableError,
    vendor_message,
)
from tap_common.exports import sniff_small_json
from tap_common.redact import REDACTOR, redact
from tap_common.responses import ErrorEnvelope, locate

if t.TYPE_CHECKING:
    from backoff.types import Details

    from tap_common.ratelimit import RequestThrottle

RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
MAX_BACKOFF_SECONDS = 120.0
DEFAULT_MAX_RETRY_AFTER_SECONDS = 300.0
#: What is retried: transient answers and the network failing in any way.
RETRIED_EXCEPTIONS = (
    ConnectionResetError,
    RetriableAPIError,
    requests.exceptions.Timeout,
    requests.exceptions.ConnectionError,
    requests.exceptions.ChunkedEncodingError,
    requests.exceptions.ContentDecodingError,
)
#: Network failures that end a request (after its retries) and get one line of their own.
NETWORK_EXCEPTIONS = (requests.exceptions.RequestException, ConnectionError,
                      urllib3.exceptions.HTTPError)

Auth = t.Callable[[requests.PreparedRequest], requests.PreparedRequest]
Validator = t.Callable[[requests.Response], None]

#: The stream (or tap-level call) on whose behalf the current request is sent.
_CALLER: contextvars.ContextVar[str] = contextvars.ContextVar("caller", default="request")


class PacedAdapter(HTTPAdapter):
    """The transport of the tap's session: each request waits for the tap's throttle,
    and each answer's ``RateLimit-Remaining`` is reported back to it."""

    def __init__(self, throttle: RequestThrottle, **kwargs: t.Any) -> None:
        super().__init__(**kwargs)
        self.throttle = throttle

    def send(self, request: requests.PreparedRequest, *args: t.Any,  # type: ignore[override]
             **kwargs: t.Any) -> requests.Response:
        self.throttle.acquire()
        response = super().send(request, *args, **kwargs)
        self.throttle.observe(response.headers)
        return response


class RenewedOnceOn401(requests.auth.AuthBase):
    """A credential that a 401 renews once, as ``requests``' digest auth answers its
    challenge: the request goes out again on the same transport (so paced), signed with
    the new credential, and the answer to that one is final (its ``history`` holds the
    401). Subclasses say how to sign and how to renew."""

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        self.sign(request)
        # Copies of a prepared request share its hooks: once, whatever the attempts.
        if self.after_response not in request.hooks["response"]:
            request.register_hook("response", self.after_response)
        return request

    def sign(self, request: requests.PreparedRequest) -> None:
        """Put a valid credential on ``request`` (fetching one if needed)."""
        raise NotImplementedError

    def renew(self, rejected: requests.Response) -> bool:
        """Drop the credential the API rejected; False leaves the 401 as it is."""
        raise NotImplementedError

    def after_response(self, response: requests.Response,
                       **send_kwargs: t.Any) -> requests.Response:
        if response.status_code != 401 or not self.renew(response):  # noqa: PLR2004
            return response
        response.close()
        again = response.request.copy()
        self.sign(again)
        renewed = response.connection.send(again, **send_kwargs)
        renewed.history.append(response)
        renewed.request = again
        return renewed


class VendorClient:
    """The tap's client for its vendor's API (and the few other hosts it talks to).

    ``named_hosts`` maps the base URL of each other host the tap calls on purpose (an
    OAuth host, a listing host) to its error envelope (None: the vendor's own); log
    lines show their host and path. Any other host is a download URL, shown by host.
    """

    def __init__(
        self,
        api_url: str,
        *,
        throttle: RequestThrottle,
        settings: t.Mapping[str, t.Any],
        credentials: t.Callable[[], Auth] | None = None,
        error_envelope: ErrorEnvelope | None = None,
        credential_hint: t.Callable[[int], str] | None = None,
        named_hosts: t.Mapping[str, ErrorEnvelope | None] | None = None,
        user_agent: str | None = None,
        logger: logging.Logger | None = None,
    ) -> None:
        self.api_url = api_url.rstrip("/")
        self.api_origin = origin(self.api_url)
        self.throttle = throttle
        # Built on first use: an OAuth token's credentials need this client to fetch it.
        self._credentials = credentials
        self.error_envelope = error_envelope or ErrorEnvelope()
        self.credential_hint = credential_hint or (
            lambda status: "The API rejected the configured credentials.")
        self.named_hosts = {origin(url): envelope for url, envelope in (named_hosts or {}).items()}
        self.logger = logger or logging.getLogger(__name__)
        self.timeout = float(settings.get("request_timeout_seconds") or 300)
        self.max_tries = int(settings.get("max_retries", 8)) + 1
        self.backoff_base = float(settings.get("retry_backoff_seconds", 2))
        self.max_retry_after = float(settings.get("max_retry_after_seconds",
                                                  DEFAULT_MAX_RETRY_AFTER_SECONDS))
        self.session = requests.Session()
        adapter = PacedAdapter(throttle)
        self.session.mount("https://", adapter)
        self.session.mount("http://", adapter)
        if user_agent:
            self.session.headers["User-Agent"] = user_agent

    @property
    def credentials(self) -> Auth:
        """The tap's credentials, for the API's origin only (nothing elsewhere, not even
        an ``Authorization`` header a caller set by mistake)."""
        bound = self.__dict__.get("_bound_credentials")
        if bound is None:
            inner = self._credentials() if self._credentials is not None else _unsigned
            bound = self.__dict__["_bound_credentials"] = HostBoundAuth(inner, self.api_url)
        return bound

    # -- sending -----------------------------------------------------------------------

    def url_for(self, url: str) -> str:
        """An absolute URL: ``url`` as it is, or a path of the API."""
        if url.startswith(("http://", "https://")):
            return url
        return f"{self.api_url}/{url.lstrip('/')}"

    def prepare(self, method: str, url: str, **kwargs: t.Any) -> requests.PreparedRequest:
        """A request with the session's headers and no credentials (they are added to
        each attempt, by ``request``, for the host it goes to)."""
        return self.session.prepare_request(requests.Request(method, self.url_for(url), **kwargs))

    def send(
        self,
        method: str,
        url: str,
        *,
        caller: str | None = None,
        params: dict | None = None,
        json: t.Any = None,
        data: dict | None = None,
        headers: dict[str, str] | None = None,
        auth: Auth | None = None,
        credentials: Auth | None = None,
        validate: Validator | None = None,
        stream: bool = False,
        retry_statuses: t.Collection[int] = (),
        follow_redirects: bool = True,
    ) -> requests.Response:
        """One request, paced, retried, checked; its failure is one line naming ``caller``.

        ``url`` may be relative to the API or absolute; an absolute URL on another host
        (a presigned download) is sent without credentials. ``auth`` replaces the
        credentials for this call (a token endpoint's client id and secret) and is
        still only applied to the API's own host; ``credentials`` replaces them with an
        authenticator that already knows which host gets what (a stream's). ``validate``
        replaces ``check`` (a stream's ``validate_response``). ``retry_statuses`` are
        retried like a 503 for this one call (a download that answers 404 until the
        file is ready); ``follow_redirects=False`` keeps a credentialed call on the
        host it was sent to.
        """
        prepared = self.prepare(method, url, params=params or {}, json=json, data=data,
                                headers=headers or {})
        if auth is not None:
            credentials = HostBoundAuth(auth, self.api_url)
        return self.request(prepared, caller=caller, credentials=credentials,
                            validate=validate, stream=stream, retry_statuses=retry_statuses,
                            follow_redirects=follow_redirects)

    def request(
        self,
        prepared: requests.PreparedRequest,
        *,
        caller: str | None = None,
        credentials: Auth | None = None,
        validate: Validator | None = None,
        stream: bool = False,
        retry_statuses: t.Collection[int] = (),
        follow_redirects: bool = True,
    ) -> requests.Response:
        """Send a prepared request: credentials applied anew to every attempt (a renewed
        token reaches a retry), the answer checked before it is returned."""
        with self.acting_for(caller):
            signer = credentials if credentials is not None else self.credentials
            check = validate or self.check

            # A download URL's signature and a signed path are credentials the tap was
            # handed: kept out of logs even when a host quotes them back on their own.
            url = prepared.url or ""
            REDACTOR.add_secrets_of_url(url, query=self.is_download(url))

            def attempt(request: requests.PreparedRequest) -> requests.Response:
                signed = signer(request.copy())
                response = self.session.send(signed, timeout=self.timeout, stream=stream,
                                             allow_redirects=follow_redirects)
                response.sent_for = self.caller  # type: ignore[attr-defined]
                if response.status_code in retry_statuses:
                    raise VendorRetriableError(self.error_line(response), response)
                check(response)
                if stream and response.status_code < 300:  # noqa: PLR2004
                    self.check_download_start(response)
                return response

            return self.retrying(attempt)(prepared)

    @contextlib.contextmanager
    def acting_for(self, caller: str | None) -> t.Iterator[None]:
        """Requests sent inside are on behalf of ``caller`` (None: the enclosing one's)."""
        if caller is None:
            yield
            return
        token = _CALLER.set(caller)
        try:
            yield
        finally:
            _CALLER.reset(token)

    @property
    def caller(self) -> str:
        return _CALLER.get()

    # -- retries -----------------------------------------------------------------------

    def retrying(self, func: t.Callable[..., requests.Response]) -> t.Callable[..., requests.Response]:
        """``func`` (whose first argument is the prepared request) with retries; a request
        that fails on every attempt becomes one line, and is final: a request that
        encloses it (the one a token was fetched for) does not retry it again.

        backoff's own "Backing off"/"Giving up" lines go to DEBUG: ``log_retry`` says
        the same in the tap's words, and the final failure is the run's one error.
        """
        retried = backoff.on_exception(
            self.wait_generator,
            RETRIED_EXCEPTIONS,
            max_tries=self.max_tries,
            on_backoff=self.log_retry,
            jitter=self.jitter,
            logger=self.logger,
            backoff_log_level=logging.DEBUG,
            giveup_log_level=logging.DEBUG,
        )(func)

        def request(*args: t.Any, **kwargs: t.Any) -> requests.Response:
            try:
                return retried(*args, **kwargs)
            except FatalAPIError:
                raise
            except RetriableAPIError as exc:
                raise VendorAPIError(str(exc)) from exc
            except NETWORK_EXCEPTIONS as exc:
                prepared = args[0] if args else None
                msg = (f"{self.network_error_line(prepared, exc)} (gave up after "
                       f"{self.max_tries} attempts)")
                raise NetworkError(msg) from exc

        return request

    def wait_generator(self) -> t.Generator[float, t.Any, None]:
        """Exponential backoff, except that a ``Retry-After`` header is obeyed."""
        attempt = 0
        exception = yield  # type: ignore[misc]
        limit = self.max_retry_after
        while True:
            retry_after = retry_after_seconds(exception)
            if retry_after is not None and retry_after > limit:
                msg = (f"{exception}; it asks to wait {retry_after:.0f} s (Retry-After) before "
                       f"trying again, more than `max_retry_after_seconds` ({limit:g} s): "
                       "failing now instead of sleeping that long")
                raise VendorAPIError(msg)
            if retry_after is not None:
                wait = retry_after
            else:
                wait = min(self.backoff_base * 2**attempt, MAX_BACKOFF_SECONDS)
            attempt += 1
            exception = yield wait

    @staticmethod
    def jitter(value: float) -> float:
        # Up to 10 % extra, never less than asked: a Retry-After is a floor.
        return value * (1 + random.random() / 10)  # noqa: S311

    def log_retry(self, details: Details) -> None:
        exception = details.get("exception")
        args = details.get("args") or ()
        self.logger.warning(
            "%s; retrying in %.2f s (attempt %d of %d)",
            exception if isinstance(exception, RetriableAPIError)
            else self.network_error_line(args[0] if args else None, exception),
            details.get("wait", 0),
            details.get("tries", 0),
            self.max_tries,
        )

    # -- checks ------------------------------------------------------------------------

    def check(self, response: requests.Response, *, tolerated: t.Collection[int] = (),
              retry_statuses: t.Collection[int] = ()) -> None:
        """Statuses first; then, on any status below 400, the host's error envelope.

        A vendor may say "error" with a 200 (ISVapp's ``success: false``, Atlassian's
        ``errors``): that is retried when its own words say it is transient, and fails
        the run otherwise, exactly like an error status.
        """
        status = response.status_code
        if status in tolerated:
            return
        if status >= 400:  # noqa: PLR2004
            line = self.error_line(response)
            if status in (401, 403):  # noqa: PLR2004
                raise CredentialRejectedError(f"{line}. {self.credential_hint(status)}")
            if status in RETRY_STATUSES or status in retry_statuses:
                raise VendorRetriableError(line, response)
            raise VendorAPIError(line)
        # A streamed body (a download) is not read here; check_download_start looks at it.
        if getattr(response, "_content_consumed", True):
            self.raise_for_envelope(response, _json_or_missing(response))

    def check_download_start(self, response: requests.Response) -> None:
        """A download that is really the vendor's error envelope (a small JSON object
        where a file was expected) is an error like any other."""
        try:
            head = sniff_small_json(response)
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            raise requests.exceptions.ConnectionError(str(exc)) from exc
        self.raise_for_envelope(response, _MISSING if head is None else head)

    def raise_for_envelope(self, response: requests.Response, payload: t.Any) -> None:
        """Raise if ``payload`` is the error envelope of the host that answered."""
        if payload is _MISSING:
            return
        envelope = self.envelope_for(response.url)
        message = envelope.message(payload)
        if message is None:
            return
        line = self.error_line(response, message)
        if envelope.is_transient(payload, message):
            raise VendorRetriableError(line, response)
        raise VendorAPIError(line)

    def envelope_for(self, url: str) -> ErrorEnvelope:
        return self.named_hosts.get(origin(url)) or self.error_envelope

    def is_download(self, url: str) -> bool:
        """A URL on neither the API nor a named host: a presigned download."""
        found = origin(url)
        return found != self.api_origin and found not in self.named_hosts

    def is_api(self, url: str) -> bool:
        return origin(url) == self.api_origin

    # -- lines -------------------------------------------------------------------------

    def error_line(self, response: requests.Response, message: str | None = None, *,
                   caller: str | None = None) -> str:
        """``stream: HTTP 503 Service Unavailable from GET /path: <vendor's message>``."""
        request = response.request
        return (
            f"{caller or _sent_for(response)}: HTTP {response.status_code} {response.reason} from "
            f"{request.method if request else 'GET'} {self.describe_url(response.url)}: "
            f"{message if message is not None else vendor_message(response)}"
        )

    def where(self, response: requests.Response, *, caller: str | None = None) -> str:
        """``stream: HTTP 200 from GET /path``: the start of a line about a body."""
        request = response.request
        return (f"{caller or _sent_for(response)}: HTTP {response.status_code} from "
                f"{request.method if request else 'GET'} {self.describe_url(response.url)}")

    def describe_url(self, url: str) -> str:
        """A URL fit for logs: the API path, host and path of a named host, or only the
        host of any other (a presigned download). Query strings carry signatures, so
        they never appear."""
        found = origin(url)
        parts = urlsplit(url)
        if found == self.api_origin:
            return redact(parts.path)  # a signed path segment included
        if found in self.named_hosts:
            return f"{parts.hostname}{parts.path}"
        return f"{parts.hostname} (download URL)"

    def network_error_line(self, prepared: t.Any, exception: BaseException | None, *,
                           caller: str | None = None) -> str:
        """``stream: GET /path: the connection was refused`` (never the URL's query)."""
        request = prepared if isinstance(prepared, requests.PreparedRequest) else None
        where = (f"{request.method} {self.describe_url(request.url or '')}" if request
                 else "a request")
        return f"{caller or self.caller}: {where}: {network_reason(exception)}"

    # -- bodies ------------------------------------------------------------------------

    def decode_json(self, response: requests.Response, expect: str | None = None, *,
                    fields: t.Iterable[str] = (), one_as_many: bool = False,
                    caller: str | None = None) -> t.Any:
        """The body as JSON, or a clear error for an empty body or an HTML page.

        With ``expect`` (``$.data``, ``$.data[*]``, ``$``, ``$[*]``), the value there,
        or an error naming the caller, the request and what was expected; ``fields``
        must be in that object (or in each element).
        """
        payload = self._decode(response, caller or _sent_for(response))
        if expect is None:
            return payload
        return locate(payload, expect, where=self.where(response, caller=caller), fields=fields,
                      one_as_many=one_as_many)

    def _decode(self, response: requests.Response, caller: str) -> t.Any:
        cached = getattr(response, "_decoded_json", _MISSING)
        if cached is not _MISSING:
            return cached
        body = response.content
        where = f"{caller}: HTTP {response.status_code} from {self.describe_url(response.url)}"
        if not body or not body.strip():
            raise PayloadError(f"{where} had an empty body where JSON was expected")
        try:
            payload = orjson.loads(body)
        except orjson.JSONDecodeError as exc:
            kind = response.headers.get("Content-Type", "unknown content type")
            raise PayloadError(
                f"{where} is not JSON ({kind}): {exc}; body starts {vendor_message(response)!r}"
            ) from None
        response._decoded_json = payload  # type: ignore[attr-defined]  # noqa: SLF001
        return payload


_MISSING = object()


def _sent_for(response: requests.Response) -> str:
    """The caller a response was received for (else the current one)."""
    return getattr(response, "sent_for", None) or _CALLER.get()


def _unsigned(request: requests.PreparedRequest) -> requests.PreparedRequest:
    return request


def _json_or_missing(response: requests.Response) -> t.Any:
    """The body as JSON if it is JSON (cached for ``decode_json``), else ``_MISSING``."""
    cached = getattr(response, "_decoded_json", _MISSING)
    if cached is not _MISSING:
        return cached
    body = response.content
    if not body or body.lstrip()[:1] not in (b"{", b"["):
        return _MISSING
    try:
        payload = orjson.loads(body)
    except orjson.JSONDecodeError:
        return _MISSING
    response._decoded_json = payload  # type: ignore[attr-defined]  # noqa: SLF001
    return payload


_ERRNO_RE = re.compile(r"\[Errno -?\d+\] ([^'\")\]]+)")


def network_reason(exception: BaseException | None) -> str:
    """What went wrong on the wire, in words that carry no URL."""
    if exception is None:
        return "the request failed"
    text = str(exception)
    if isinstance(exception, requests.exceptions.ConnectTimeout):
        reason = "no connection within the request timeout"
    elif isinstance(exception, requests.exceptions.ReadTimeout) or "Read timed out" in text:
        reason = "no answer within the request timeout (`request_timeout_seconds`)"
    elif isinstance(exception, requests.exceptions.ChunkedEncodingError) or \
            "IncompleteRead" in text or "Connection broken" in text:
        reason = "the connection broke off in the middle of the answer"
    elif "RemoteDisconnected" in text or "without response" in text:
        reason = "the server closed the connection without answering"
    elif (match := _ERRNO_RE.search(text)) is not None:
        reason = f"cannot connect: {match.group(1).strip()}"
    else:
        reason = redact(text)[:200]
    return f"{reason} ({type(exception).__name__})"


def retry_after_seconds(exception: t.Any) -> float | None:
    response = getattr(exception, "response", None)
    if response is None:
        return None
    value = response.headers.get("Retry-After")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, (when - datetime.now(timezone.utc)).total_seconds())


# urllib3 logs every request line with its query string at DEBUG; presigned URLs carry
# their signature there, so it stays quiet whatever level the tap runs at.
logging.getLogger("urllib3").setLevel(logging.WARNING)
