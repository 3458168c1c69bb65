"""The base REST stream every tap builds on: auth, pacing, retries, errors, decoding,
and the checks every answer goes through before a record is taken from it."""

from __future__ import annotations

import hashlib
import logging
import random
import re
import typing as t
from email.utils import parsedate_to_datetime
from datetime import datetime, timezone
from urllib.parse import ParseResult, parse_qsl, urlencode, urlsplit

import backoff
import orjson
import requests
import urllib3
from singer_sdk import RESTStream
from singer_sdk.exceptions import FatalAPIError, RetriableAPIError, SingerSDKError
from singer_sdk.helpers.conform import TypeConformanceLevel
from singer_sdk.helpers._util import utc_now
from singer_sdk.mapper import SameRecordTransform
from singer_sdk.pagination import SinglePagePaginator

from tap_common.auth import HostBoundAuth, origin
from tap_common.errors import (
    AuthenticationError,
    NetworkError,
    PaginationError,
    PayloadError,
    UnexpectedError,
    VendorAPIError,
    VendorRetriableError,
    vendor_message,
)
from tap_common.exports import sniff_small_json
from tap_common.redact import redact
from tap_common.responses import ErrorEnvelope, locate
from tap_common.writer import write_record

if t.TYPE_CHECKING:
    from backoff.types import Details
    from singer_sdk.helpers.types import Context
    from singer_sdk.streams.rest import HTTPRequest, PageContext

    from tap_common.tap import VendorTap

RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
_MAX_BACKOFF_SECONDS = 120.0
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


class VendorRESTStream(RESTStream):
    """A stream of one vendor endpoint.

    Subclasses declare ``name``, ``path``, ``records_jsonpath``, keys, replication and
    paginator; everything about talking to the vendor safely lives here.
    """

    records_jsonpath = "$[*]"
    # Records are built to match their schema (see the schemas/ files and the
    # standard tests that check it), so the SDK's per-field conformance is skipped.
    TYPE_CONFORMANCE_LEVEL = TypeConformanceLevel.NONE
    # One bookmark per stream, also for child streams and windowed partitions: the SDK's
    # default of one per parent record makes state O(N) in size and its rewriting after
    # every child sync O(N^2) in time (5,000 parents: 162 s against 2 s). A stream whose
    # partitions need bookmarks of their own names its keys.
    state_partitioning_keys: t.ClassVar[list[str] | None] = []
    #: Statuses that mean "nothing here" for this endpoint rather than a failure.
    tolerated_statuses: t.ClassVar[frozenset[int]] = frozenset()
    #: A single object where the records array is documented counts as one record.
    records_may_be_one_object: t.ClassVar[bool] = False
    #: Fields left out unless a catalog selects them: customers' credentials, URLs that
    #: carry a token. Discovery marks them ``selected-by-default: false``.
    unselected_by_default: t.ClassVar[tuple[str, ...]] = ()

    _tap: VendorTap

    # -- the per-record hot path --------------------------------------------------
    # The SDK copies every record to drop deselected properties, runs it through the
    # stream map, wraps it in a message object, offers it to child streams and
    # recomputes the bookmark, even when every property is selected, no map is
    # configured, there are no children and the replication value has not changed.
    # On a million-row export that costs more than reading the file, so each step is
    # skipped exactly when it cannot change the output.

    def _write_record_message(self, record: dict) -> None:
        replication_key = self.replication_key
        if replication_key and record.get(replication_key) is None:
            # Every replication key is a documented, required field: a record without one
            # means the answer is not what the endpoint returns (nor can it be bookmarked).
            msg = (f"{self.name}: a record has no {replication_key!r}: the answer does not "
                   f"have the documented shape (fields: {', '.join(sorted(map(str, record))[:12])})")
            raise PayloadError(msg)
        # With type conformance off, a field the vendor added since the schema was
        # written would otherwise reach the target undeclared.
        declared = self._declared_fields
        if not declared.issuperset(record):
            self._report_drift(record)
            record = {name: value for name, value in record.items() if name in declared}
        if self._passes_records_through:
            write_record(self.name, record, self._stream_version, utc_now())
            self.state_manager.is_flushed = False
            return
        super()._write_record_message(record)

    def generate_child_contexts(self, record: dict, context: Context | None) -> t.Iterable:
        if not self.child_streams:
            return ()
        return super().generate_child_contexts(record, context)

    def _increment_stream_state(self, latest_record: dict, *, context: Context | None = None) -> None:
        if self.replication_key:
            value = latest_record.get(self.replication_key)
            if value is not None and (value, context) == self.__dict__.get("_last_increment"):
                return
            self.__dict__["_last_increment"] = (value, context)
        super()._increment_stream_state(latest_record, context=context)

    def _report_drift(self, record: dict) -> None:
        """Name each undeclared field once per stream and run: schema drift is visible."""
        reported = self.__dict__.setdefault("_drift_reported", set())
        new = sorted(n for n in record if n not in self._declared_fields and n not in reported)
        if new:
            reported.update(new)
            self.logger.warning(
                "%s: the API sent field%s the schema does not declare, left out of the "
                "records: %s", self.name, "s" if len(new) > 1 else "", ", ".join(new))

    @property
    def _declared_fields(self) -> frozenset[str]:
        cached = self.__dict__.get("_declared")
        if cached is None:
            cached = self.__dict__["_declared"] = frozenset(self.schema["properties"])
        return cached

    @property
    def _passes_records_through(self) -> bool:
        cached = self.__dict__.get("_pass_through")
        if cached is None:
            maps = self.stream_maps
            cached = (
                self.TYPE_CONFORMANCE_LEVEL == TypeConformanceLevel.NONE
                and len(maps) == 1
                and type(maps[0]) is SameRecordTransform
                # flattening_enabled: the "same record" map flattens it.
                and not maps[0].flattening_enabled
                and all(self.mask.values())
            )
            self.__dict__["_pass_through"] = cached
        return cached

    @property
    def metadata(self) -> t.Any:
        metadata = super().metadata
        if self.unselected_by_default and self.__dict__.get("_unselected_for") is not metadata:
            for name in self.unselected_by_default:
                entry = metadata.get(("properties", name))
                if entry is not None and entry.selected_by_default is None:
                    entry.selected_by_default = False
            self.__dict__["_unselected_for"] = metadata
        return metadata

    # -- failures: one line each -------------------------------------------------------

    def sync(self, context: Context | None = None) -> None:
        try:
            super().sync(context)
        except SingerSDKError:  # ours (one line already) and the SDK's control flow
            raise
        except Exception as exc:
            # A failure without a message of its own still gets one line naming the
            # stream; the traceback goes to DEBUG (tap_common.tap.VendorTap.invoke).
            raise UnexpectedError(f"{self.name}: {type(exc).__name__}: {exc}") from exc

    def log(self, message: str, *args: t.Any, level: int = logging.INFO, **kwargs: t.Any) -> None:
        if isinstance(message, str) and message.startswith(
                "An unhandled error occurred while syncing"):
            level = logging.DEBUG  # the failure is reported once, by the tap, as one line
        super().log(message, *args, level=level, **kwargs)

    # -- where and how --------------------------------------------------------------

    @property
    def url_base(self) -> str:
        return str(self.config["api_url"]).rstrip("/")

    @property
    def timeout(self) -> float:  # type: ignore[override]
        return float(self.config.get("request_timeout_seconds") or 300)

    @property
    def authenticator(self) -> t.Callable:  # type: ignore[override]
        return self._tap.authenticator

    def get_http_request(self, *, page: PageContext) -> HTTPRequest:
        request = super().get_http_request(page=page)
        if isinstance(page.next_page_token, ParseResult):
            # A HATEOAS paginator's next-page URL already carries every parameter.
            next_url = page.next_page_token.geturl()
            if not page.next_page_token.scheme:
                next_url = self.url_base + next_url
            request.url = next_url
            request.params = {}
        return request

    # -- pacing and retries ------------------------------------------------------------

    def request_decorator(self, func: t.Callable) -> t.Callable:
        """Pacing, then retries; a request that fails on every attempt becomes one line.

        backoff's own "Backing off"/"Giving up" lines go to DEBUG: ``backoff_handler``
        says the same in the tap's words, and the final failure is the run's one error.
        """
        throttle = self._tap.throttle

        def paced(*args: t.Any, **kwargs: t.Any) -> requests.Response:
            throttle.acquire()
            return func(*args, **kwargs)

        retried = backoff.on_exception(
            self.backoff_wait_generator,
            RETRIED_EXCEPTIONS,
            max_tries=self.backoff_max_tries,
            on_backoff=self.backoff_handler,
            jitter=self.backoff_jitter,
            logger=self.logger,
            backoff_log_level=logging.DEBUG,
            giveup_log_level=logging.DEBUG,
        )(paced)

        def request(*args: t.Any, **kwargs: t.Any) -> requests.Response:
            try:
                return retried(*args, **kwargs)
            except (FatalAPIError, RetriableAPIError):
                raise
            except NETWORK_EXCEPTIONS as exc:
                prepared = args[0] if args else None
                msg = (f"{self.network_error_line(prepared, exc)} (gave up after "
                       f"{self.backoff_max_tries()} attempts)")
                raise NetworkError(msg) from exc

        return request

    def backoff_max_tries(self) -> int:
        return int(self.config.get("max_retries", 8)) + 1

    def backoff_wait_generator(self) -> t.Generator[float, t.Any, None]:
        """Exponential backoff, except that a ``Retry-After`` header is obeyed."""
        base = float(self.config.get("retry_backoff_seconds", 2))
        attempt = 0
        exception = yield  # type: ignore[misc]
        limit = float(self.config.get("max_retry_after_seconds",
                                      DEFAULT_MAX_RETRY_AFTER_SECONDS))
        while True:
            retry_after = _retry_after_seconds(exception)
            if retry_after is not None and retry_after > limit:
                msg = (f"{exception}; it asks to wait {retry_after:.0f} s (Retry-After) before "
                       f"trying again, more than `max_retry_after_seconds` ({limit:g} s): "
                       "failing now instead of sleeping that long")
                raise VendorAPIError(msg)
            if retry_after is not None:
                wait = retry_after
            else:
                wait = min(base * 2**attempt, _MAX_BACKOFF_SECONDS)
            attempt += 1
            exception = yield wait

    def backoff_jitter(self, value: float) -> float:
        # Up to 10 % extra, never less than asked: a Retry-After is a floor.
        return value * (1 + random.random() / 10)  # noqa: S311

    def backoff_handler(self, details: Details) -> None:
        exception = details.get("exception")
        args = details.get("args") or ()
        self.logger.warning(
            "%s; retrying in %.2f s (attempt %d of %d)",
            exception if isinstance(exception, RetriableAPIError)
            else self.network_error_line(args[0] if args else None, exception),
            details.get("wait", 0),
            details.get("tries", 0),
            self.backoff_max_tries(),
        )

    def network_error_line(self, prepared: t.Any, exception: BaseException | None) -> str:
        """``stream: GET /path: the connection was refused`` (never the URL's query)."""
        request = prepared if isinstance(prepared, requests.PreparedRequest) else None
        where = (f"{request.method} {self.describe_url(request.url or '')}" if request
                 else "a request")
        return f"{self.name}: {where}: {network_reason(exception)}"

    # -- responses ------------------------------------------------------------------

    def validate_response(self, response: requests.Response) -> None:
        """Statuses first; then, on any status below 400, the vendor's error envelope.

        A vendor may say "error" with a 200 (ISVapp's ``success: false``, Atlassian's
        ``errors``): that is retried when its own words say it is transient, and fails
        the run otherwise, exactly like an error status.
        """
        self._tap.throttle.observe(response.headers)
        status = response.status_code
        if status in self.tolerated_statuses:
            return
        if status >= 400:
            line = self.error_line(response)
            if status in (401, 403):
                raise AuthenticationError(f"{line}. {self._tap.credential_hint(status)}")
            if status in RETRY_STATUSES or status in self.extra_retry_statuses:
                raise VendorRetriableError(line, response)
            raise VendorAPIError(line)
        # A streamed body (a download) is not read here; send() looks at its start.
        if getattr(response, "_content_consumed", True):
            self.raise_for_envelope(response, _json_or_missing(response))

    def raise_for_envelope(self, response: requests.Response, payload: t.Any) -> None:
        """Raise if ``payload`` is the vendor's error envelope."""
        if payload is _MISSING:
            return
        envelope = self.error_envelope_for(response)
        message = envelope.message(payload)
        if message is None:
            return
        line = self.error_line(response, message)
        if envelope.is_transient(payload, message):
            raise VendorRetriableError(line, response)
        raise VendorAPIError(line)

    def error_envelope_for(self, response: requests.Response) -> ErrorEnvelope:
        """The error envelope of the host that answered (the tap's vendor by default; a
        stream reading several hosts, e.g. an OAuth token endpoint, says which is which)."""
        return self._tap.error_envelope

    def response_error_message(self, response: requests.Response) -> str:
        return self.error_line(response)

    def error_line(self, response: requests.Response, message: str | None = None) -> str:
        """``stream: HTTP 503 Service Unavailable from GET /path: <vendor's message>``."""
        request = response.request
        return (
            f"{self.name}: HTTP {response.status_code} {response.reason} from "
            f"{request.method if request else 'GET'} {self.describe_url(response.url)}: "
            f"{message if message is not None else vendor_message(response)}"
        )

    def where(self, response: requests.Response) -> str:
        """``stream: HTTP 200 from GET /path``: the start of a line about a body."""
        request = response.request
        return (f"{self.name}: HTTP {response.status_code} from "
                f"{request.method if request else 'GET'} {self.describe_url(response.url)}")

    def describe_url(self, url: str) -> str:
        """A URL fit for logs: the API path, or only the host of a foreign URL.

        Query strings and presigned URLs carry signatures, so they never appear.
        """
        if origin(url) == origin(self.url_base):
            return redact(urlsplit(url).path)  # a signed path segment included
        return f"{urlsplit(url).hostname} (download URL)"

    def decode_json(self, response: requests.Response, expect: str | None = None, *,
                    fields: t.Iterable[str] = (), one_as_many: bool = False) -> t.Any:
        """The body as JSON, or a clear error for an empty body or an HTML page.

        With ``expect`` (``$.data``, ``$.data[*]``, ``$``, ``$[*]``), the value there,
        or an error naming the stream, the request and what was expected; ``fields``
        must be in that object (or in each element).
        """
        payload = self._decode(response)
        if expect is None:
            return payload
        return locate(payload, expect, where=self.where(response), fields=fields,
                      one_as_many=one_as_many)

    def _decode(self, response: requests.Response) -> t.Any:
        cached = getattr(response, "_decoded_json", _MISSING)
        if cached is not _MISSING:
            return cached
        body = response.content
        where = f"{self.name}: HTTP {response.status_code} from {self.describe_url(response.url)}"
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

    def parse_response(self, response: requests.Response) -> t.Iterable[dict]:
        if response.status_code in self.tolerated_statuses:
            return []
        return self.records_in(response)

    def records_in(self, response: requests.Response) -> list[dict]:
        """The records at ``records_jsonpath``, checked: an object where an array is
        documented, or a missing records key, is an error, never "no records"."""
        found = self.decode_json(response, self.records_jsonpath,
                                 one_as_many=self.records_may_be_one_object)
        return found if isinstance(found, list) else [found]

    # -- pages ------------------------------------------------------------------------

    def request_records(self, context: Context | None) -> t.Iterable[dict]:
        """Every page's records, each page checked before any of its records is emitted.

        Unlike the SDK's loop, this one knows the next request before it yields a page,
        so a next page that was already read (a ``next`` link to the same page, or to an
        earlier one, or a page with the very same records again) stops the run before
        anything is emitted twice; and an empty page that announces more pages is an
        error, not the end. Paginators that compute their pages (periods) rather than
        follow the vendor's pointers say so with ``continue_if_empty``; their empty
        pages are normal.
        """
        paginator = self.get_new_paginator() or SinglePagePaginator()
        decorated_request = self.request_decorator(self._request)
        requested: set[bytes] = set()
        pages: set[bytes] = set()
        with self.get_http_request_counter() as request_counter:
            request_counter.with_context(context)
            prepared = self._prepare_request(context=context, page=paginator)
            requested.add(_request_key(prepared))
            number = 0
            while True:
                number += 1
                response = decorated_request(prepared, context)
                request_counter.increment()
                self.update_sync_costs(prepared, response, context)
                records = list(self.parse_response(response))
                computed_pages = paginator.continue_if_empty(response)
                try:
                    paginator.advance(response)
                except RuntimeError as exc:  # the SDK's "Loop detected in pagination"
                    raise PaginationError(self._loop_line(response, "points to itself as the "
                                                          "next page")) from exc
                more = not paginator.finished
                if records and not computed_pages and (more or number > 1):
                    fingerprint = _fingerprint(records)
                    if fingerprint in pages:
                        raise PaginationError(self._loop_line(
                            response, f"returned page {number} with the same records as an "
                            "earlier page"))
                    pages.add(fingerprint)
                following = None
                if more:
                    if not records and not computed_pages:
                        msg = (f"{self.where(response)}: page {number} is empty but the API "
                               "announces more pages; an empty page in the middle is an "
                               "error, not the end")
                        raise PaginationError(msg)
                    following = self._prepare_request(context=context, page=paginator)
                    key = _request_key(following)
                    if key in requested:
                        raise PaginationError(self._loop_line(
                            response, f"points to a page already read "
                            f"({self.describe_url(following.url or '')}) as page {number + 1}"))
                    requested.add(key)
                yield from records
                if following is None:
                    return
                prepared = following

    def _loop_line(self, response: requests.Response, what: str) -> str:
        return (f"{self.where(response)} {what}: the pagination loops; stopped before "
                "emitting any record twice")

    # -- requests outside the paginated flow (exports, downloads, lookups) ----------

    def send(
        self,
        method: str,
        url: str,
        *,
        params: dict | None = None,
        json: t.Any = None,
        stream: bool = False,
        retry_statuses: t.Collection[int] = (),
        data: dict | None = None,
        auth: t.Callable | None = None,
        headers: dict[str, str] | None = None,
        follow_redirects: bool = True,
    ) -> requests.Response:
        """One request with the same pacing, retries, auth guard and error lines.

        ``url`` may be relative to the API or absolute; an absolute URL on another
        host (a presigned download) is sent without credentials. ``retry_statuses``
        are retried like a 503 for this one call (a download that answers 404 until
        the file is ready). ``data`` is a form body; ``auth`` replaces the tap's
        authenticator for this call (a token endpoint's client credentials), and is
        still only applied to the API's own host. ``headers`` are added to the stream's;
        ``follow_redirects=False`` keeps a credentialed call on the host it was sent to.
        """
        if not url.startswith(("http://", "https://")):
            url = f"{self.url_base}/{url.lstrip('/')}"
        prepared = self.build_prepared_request(
            method=method, url=url, params=params or {}, json=json, data=data,
            headers=headers or {},
        )
        authenticator = self.authenticator if auth is None else HostBoundAuth(auth, self.url_base)

        def attempt(prepared_request: requests.PreparedRequest) -> requests.Response:
            authed = authenticator(prepared_request.copy())
            response = self.requests_session.send(
                authed, timeout=self.timeout, stream=stream, allow_redirects=follow_redirects
            )
            if response.status_code in retry_statuses:
                raise VendorRetriableError(self.error_line(response), response)
            self.validate_response(response)
            if stream and response.status_code < 300:
                # A download that is really the vendor's error envelope (a small JSON
                # object where a file was expected) is an error like any other.
                try:
                    head = sniff_small_json(response)
                except (urllib3.exceptions.HTTPError, OSError) as exc:
                    raise requests.exceptions.ConnectionError(str(exc)) from exc
                self.raise_for_envelope(response, _MISSING if head is None else head)
            return response

        return self.request_decorator(attempt)(prepared)


_MISSING = object()


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


def _request_key(prepared: requests.PreparedRequest) -> bytes:
    """Method, URL with its parameters in order, ``Range`` and body: the identity of a page
    request (Heroku pages with the ``Range`` header, the URL staying the same)."""
    parts = urlsplit(prepared.url or "")
    query = urlencode(sorted(parse_qsl(parts.query, keep_blank_values=True)))
    body = prepared.body or b""
    if isinstance(body, str):
        body = body.encode()
    text = (f"{prepared.method} {parts.scheme}://{parts.netloc}{parts.path}?{query} "
            f"Range: {prepared.headers.get('Range', '')}").encode()
    return hashlib.blake2b(text + b"\0" + body, digest_size=16).digest()


def _fingerprint(records: list[dict]) -> bytes:
    payload = orjson.dumps(records, default=str, option=orjson.OPT_NON_STR_KEYS)
    return hashlib.blake2b(payload, digest_size=16).digest()


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


def _retry_after_seconds(exception: t.Any) -> float | None:
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
