"""The base REST stream every tap builds on: auth, pacing, retries, errors, decoding."""

from __future__ import annotations

import logging
import random
import typing as t
from email.utils import parsedate_to_datetime
from datetime import datetime, timezone
from urllib.parse import ParseResult, urlsplit

import orjson
import requests
from singer_sdk import RESTStream
from singer_sdk.helpers.conform import TypeConformanceLevel
from singer_sdk.helpers.jsonpath import extract_jsonpath
from singer_sdk.helpers._util import utc_now
from singer_sdk.mapper import SameRecordTransform

from tap_common.auth import HostBoundAuth, origin
from tap_common.errors import (
    AuthenticationError,
    PayloadError,
    VendorAPIError,
    VendorRetriableError,
    vendor_message,
)
from tap_common.writer import write_record

if t.TYPE_CHECKING:
    from backoff.types import Details
    from singer_sdk.helpers.types import Context
    from singer_sdk.streams.rest import HTTPRequest, PageContext

    from tap_common.tap import VendorTap

RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
_MAX_BACKOFF_SECONDS = 120.0


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

    _tap: VendorTap

    # -- the per-record hot path --------------------------------------------------
    # The SDK copies every record to drop deselected properties, runs it through the
    # stream map, wraps it in a message object, offers it to child streams and
    # recomputes the bookmark, even when every property is selected, no map is
    # configured, there are no children and the replication value has not changed.
    # On a million-row export that costs more than reading the file, so each step is
    # skipped exactly when it cannot change the output.

    def _write_record_message(self, record: dict) -> None:
        # With type conformance off, a field the vendor added since the schema was
        # written would otherwise reach the target undeclared.
        declared = self._declared_fields
        if not declared.issuperset(record):
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
        throttle = self._tap.throttle

        def paced(*args: t.Any, **kwargs: t.Any) -> requests.Response:
            throttle.acquire()
            return func(*args, **kwargs)

        return super().request_decorator(paced)

    def backoff_max_tries(self) -> int:
        return int(self.config.get("max_retries", 8)) + 1

    def backoff_wait_generator(self) -> t.Generator[float, t.Any, None]:
        """Exponential backoff, except that a ``Retry-After`` header is obeyed."""
        base = float(self.config.get("retry_backoff_seconds", 2))
        attempt = 0
        exception = yield  # type: ignore[misc]
        while True:
            retry_after = _retry_after_seconds(exception)
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
        self.logger.warning(
            "%s; retrying in %.2f s (attempt %d of %d)",
            exception if isinstance(exception, VendorRetriableError)
            else f"{self.name}: {type(exception).__name__}: {exception}",
            details.get("wait", 0),
            details.get("tries", 0),
            self.backoff_max_tries(),
        )

    # -- responses ------------------------------------------------------------------

    def validate_response(self, response: requests.Response) -> None:
        self._tap.throttle.observe(response.headers)
        status = response.status_code
        if status < 400 or status in self.tolerated_statuses:
            return
        line = self.error_line(response)
        if status in (401, 403):
            raise AuthenticationError(f"{line}. {self._tap.credential_hint(status)}")
        if status in RETRY_STATUSES or status in self.extra_retry_statuses:
            raise VendorRetriableError(line, response)
        raise VendorAPIError(line)

    def response_error_message(self, response: requests.Response) -> str:
        return self.error_line(response)

    def error_line(self, response: requests.Response) -> str:
        """``stream: HTTP 503 Service Unavailable from GET /path: <vendor's message>``."""
        request = response.request
        return (
            f"{self.name}: HTTP {response.status_code} {response.reason} from "
            f"{request.method if request else 'GET'} {self.describe_url(response.url)}: "
            f"{vendor_message(response)}"
        )

    def describe_url(self, url: str) -> str:
        """A URL fit for logs: the API path, or only the host of a foreign URL.

        Query strings and presigned URLs carry signatures, so they never appear.
        """
        if origin(url) == origin(self.url_base):
            return urlsplit(url).path
        return f"{urlsplit(url).hostname} (download URL)"

    def decode_json(self, response: requests.Response) -> t.Any:
        """The body as JSON, or a clear error for an empty body or an HTML page."""
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
            return
        yield from extract_jsonpath(self.records_jsonpath, self.decode_json(response))

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
    ) -> requests.Response:
        """One request with the same pacing, retries, auth guard and error lines.

        ``url`` may be relative to the API or absolute; an absolute URL on another
        host (a presigned download) is sent without credentials. ``retry_statuses``
        are retried like a 503 for this one call (a download that answers 404 until
        the file is ready). ``data`` is a form body; ``auth`` replaces the tap's
        authenticator for this call (a token endpoint's client credentials), and is
        still only applied to the API's own host.
        """
        if not url.startswith(("http://", "https://")):
            url = f"{self.url_base}/{url.lstrip('/')}"
        prepared = self.build_prepared_request(
            method=method, url=url, params=params or {}, json=json, data=data
        )
        authenticator = self.authenticator if auth is None else HostBoundAuth(auth, self.url_base)

        def attempt(prepared_request: requests.PreparedRequest) -> requests.Response:
            authed = authenticator(prepared_request.copy())
            response = self.requests_session.send(
                authed, timeout=self.timeout, stream=stream, allow_redirects=True
            )
            if response.status_code in retry_statuses:
                raise VendorRetriableError(self.error_line(response), response)
            self.validate_response(response)
            return response

        return self.request_decorator(attempt)(prepared)


_MISSING = object()


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
