"""The base REST stream every tap builds on: the page loop and its guards, the record
hot path, one line per failure. Every request goes through the tap's client
(``tap_common.http.VendorClient``: pacing, retries, checks, error lines, decoding)."""

from __future__ import annotations

import hashlib
import logging
import time
import typing as t
from urllib.parse import ParseResult, parse_qsl, urlencode, urlsplit

import orjson
import requests
from singer_sdk.exceptions import ConfigValidationError, SingerSDKError
from singer_sdk.helpers.conform import TypeConformanceLevel
from singer_sdk.mapper import SameRecordTransform
from singer_sdk.pagination import SinglePagePaginator
from singer_sdk.streams.rest import PageContext

from tap_common import bookmarks, runlog
from tap_common._sdk import StreamInternals, record_writer, records_without_messages
from tap_common.batch import BatchFiles
from tap_common.errors import PaginationError, PayloadError, UnexpectedError
from tap_common.http import RETRY_STATUSES, VendorClient
from tap_common.windows import saved_bookmark
from tap_common.writer import write_record

if t.TYPE_CHECKING:
    from tap_common._sdk import BaseBatchFileEncoding, BatchConfig
    from singer_sdk.helpers.types import Context
    from singer_sdk.pagination import BaseAPIPaginator
    from singer_sdk.streams.rest import HTTPRequest

    from tap_common.tap import VendorTap

__all__ = ["RETRY_STATUSES", "VendorRESTStream"]

#: Rows beyond the run's start named per stream and run; more are counted, not named.
FUTURE_ROWS_NAMED = 10


class VendorRESTStream(StreamInternals):
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

    tap: VendorTap

    @property
    def records_written(self) -> int:
        """Records this run has let out so far, for the stream's summary line (see
        ``VendorTap.log_stream_summaries``); counted by the compiled check."""
        return self.__dict__.get("_records_counted", (0,))[0]

    # -- the per-record hot path --------------------------------------------------
    # The SDK copies every record to drop deselected properties, runs it through the
    # stream map, wraps it in a message object, offers it to child streams and
    # recomputes the bookmark, even when every property is selected, no map is
    # configured, there are no children and the replication value has not changed.
    # On a million-row export that costs more than reading the file, so each step is
    # skipped exactly when it cannot change the output.

    def write_record_fast(self, record: dict) -> dict | None:
        # Compiled on the first record and put in the instance's place of this method
        # (an instance attribute shadows it): on a million rows, every attribute looked
        # up and every call made per record shows.
        write = self.__dict__["write_record_fast"] = self._compile_write_fast()
        return write(record)

    def _compile_write_fast(self) -> t.Callable[[dict], dict | None]:
        checked = self.__dict__.get("checked_record") or self._compile_check()
        self.__dict__["checked_record"] = checked
        if not self._passes_records_through:
            return checked
        return record_writer(self, checked, write_record)

    def checked_record(self, record: dict) -> dict:
        """The record as it may leave the tap: with its replication value, without fields
        the schema does not declare."""
        check = self.__dict__["checked_record"] = self._compile_check()  # as above
        return check(record)

    def _compile_check(self) -> t.Callable[[dict], dict]:
        replication_key = self.replication_key
        declared = self._declared_fields
        undeclared_dropped = self._undeclared_dropped
        name = self.name
        counted = self.__dict__.setdefault("_records_counted", [0])

        def checked(record: dict) -> dict:
            counted[0] += 1
            if replication_key and record.get(replication_key) is None:
                # Every replication key is a documented, required field: a record without
                # one means the answer is not what the endpoint returns (nor can it be
                # bookmarked).
                msg = (f"{name}: a record has no {replication_key!r}: the answer does not "
                       f"have the documented shape (fields: "
                       f"{', '.join(sorted(map(str, record))[:12])})")
                raise PayloadError(msg)
            # With type conformance off, a field the vendor added since the schema was
            # written would otherwise reach the target undeclared.
            if not declared.issuperset(record):
                record = undeclared_dropped(record)
            return record

        return checked

    def _undeclared_dropped(self, record: dict) -> dict:
        self._report_drift(record)
        declared = self._declared_fields
        return {name: value for name, value in record.items() if name in declared}

    # -- BATCH messages (batch_config set): the SDK's documented hook ------------------

    def get_batches(self, batch_config: BatchConfig, context: Context | None = None
                    ) -> t.Iterable[tuple[BaseBatchFileEncoding, list[str]]]:
        """This stream's records in JSON Lines files (``tap_common.batch``), checked,
        selected and mapped as its RECORD messages would be. One set of files per stream
        and run: a child stream's file stays open across parents, and any open file is
        closed and announced before the next STATE."""
        files = self.__dict__.get("_batch_files")
        if files is None:
            files = self.__dict__["_batch_files"] = BatchFiles(
                batch_config, tap_name=self.tap_name, stream=self.batch_stream_name)
        prepare = self.batch_record
        for record in records_without_messages(self, context):
            ready = prepare(record)
            if ready is not None:
                manifest = files.add(ready)
                if manifest:
                    yield batch_config.encoding, manifest
        if self.parent_stream_type is None:
            manifest = files.close()
            if manifest:
                yield batch_config.encoding, manifest

    @property
    def batch_stream_name(self) -> str:
        """The stream the BATCH messages name: this one (a map that copies or renames
        the stream is not supported with batch_config)."""
        maps = self.stream_maps
        if len(maps) != 1 or maps[0].stream_alias != self.name:
            msg = (f"{self.name}: batch_config cannot be used with a stream map that copies "
                   "or renames the stream")
            raise ConfigValidationError(msg)
        return self.name

    def batch_record(self, record: dict) -> dict | None:
        """What the RECORD message would carry: checked, selected, mapped (None if the
        map filters it out)."""
        record = self.checked_record(record)
        if self._passes_records_through:
            return record
        mask = self.mask
        record = {name: value for name, value in record.items()
                  if mask.get(("properties", name), True)}
        return self.stream_maps[0].transform(record)

    def generate_child_contexts(self, record: dict, context: Context | None) -> t.Iterable:
        if not self.child_streams:
            return ()
        return super().generate_child_contexts(record, context)

    def bookmark_may_advance(self, record: dict, context: Context | None) -> bool:
        """False for a record with the replication value of the one before it, and for
        one whose value is beyond the run's start (emitted, never the bookmark)."""
        compiled = self.__dict__["bookmark_may_advance"] = self._compile_bookmark_check()
        return compiled(record, context)

    def _compile_bookmark_check(self) -> t.Callable[[dict, Context | None], bool]:
        replication_key = self.replication_key
        if not replication_key:
            return lambda record, context: True
        # Made once per stream: the check runs on every new replication value.
        check = bookmarks.RunStartCheck(self.bookmark_form, self.run_started)
        is_after, name = check.is_after, self.name
        what = f"{replication_key} of a record"
        refuse_future_row = self._refuse_future_row
        last: list[t.Any] = [None]

        def may_advance(record: dict, context: Context | None) -> bool:
            value = record.get(replication_key)
            if value is not None and last[0] is not None and (value, context) == last[0][:2]:
                return False  # already the bookmark, or already refused
            advances = value is None or not (is_after(value, stream=name, what=what)
                                             and refuse_future_row(value, record))
            last[0] = (value, context, advances)
            return advances

        return may_advance

    # -- bookmarks: any ISO form, at the stream's granularity, never in the future -----

    #: The form of the replication key's values (``tap_common.bookmarks``: date,
    #: date-time, month); by default its schema ``format``. A key without one declares it.
    replication_key_form: t.ClassVar[str | None] = None

    @property
    def bookmark_form(self) -> str:
        if self.replication_key_form:
            return self.replication_key_form
        declared = self.schema["properties"].get(self.replication_key, {}).get("format")
        if declared not in bookmarks.SCHEMA_FORMATS:
            msg = (f"{self.name}: the replication key {self.replication_key!r} has no date "
                   "format in the schema; the stream must declare replication_key_form")
            raise TypeError(msg)
        return bookmarks.SCHEMA_FORMATS[declared]

    def _refuse_future_row(self, value: t.Any, record: dict) -> bool:
        """Name a row dated after the run's start (the first ``FUTURE_ROWS_NAMED`` of a
        stream); True: it does not become the bookmark."""
        form = self.bookmark_form
        named = self.__dict__["_future_rows"] = self.__dict__.get("_future_rows", 0) + 1
        if named <= FUTURE_ROWS_NAMED:
            key = {name: record.get(name) for name in self.primary_keys or ()}
            self.logger.warning(
                "%s: the row %s has %s %s, after the run's start (%s): it is emitted but "
                "does not become the bookmark%s", self.name,
                ", ".join(f"{k}={v}" for k, v in key.items()) or "(no key)",
                self.replication_key, value,
                bookmarks.as_text(bookmarks.run_start_in(form, self.run_started), form),
                "; further such rows are not named" if named == FUTURE_ROWS_NAMED else "")
        return True

    def saved_bookmark(self, context: Context | None = None) -> bookmarks.Point | None:
        """The bookmark the last finished run left for this context, at the stream's
        granularity and never after the run's start (None on a first run)."""
        if not self.replication_key:
            return None
        value = saved_bookmark(self.get_context_state(context), self.replication_key)
        if value in (None, ""):
            return None
        form = self.bookmark_form
        point = bookmarks.read(value, form, stream=self.name)
        clamped = bookmarks.clamp(point, form, self.run_started)
        if clamped != point:
            warned = self.__dict__.setdefault("_future_bookmarks_warned", set())
            if value not in warned:
                warned.add(value)
                self.logger.warning(
                    "%s: the saved bookmark %s is after the run's start; read as %s",
                    self.name, value, bookmarks.as_text(clamped, form))
        return clamped

    def normalise_saved_bookmark(self, context: Context | None) -> None:
        """Put the saved bookmark in the stream's form, clamped to the run's start, back
        into the state: a run that emits nothing leaves it so."""
        point = self.saved_bookmark(context)
        if point is not None:
            state = self.get_context_state(context)
            state["replication_key"] = self.replication_key
            state["replication_key_value"] = bookmarks.as_text(point, self.bookmark_form)

    def compare_start_date(self, value: str, start_date_value: str) -> str:
        # The later of bookmark and start_date, compared as points in the stream's form
        # (never as strings of two forms).
        form = self.bookmark_form
        later = max(bookmarks.read(value, form, stream=self.name),
                    bookmarks.read(start_date_value, form, stream=self.name,
                                   what="start_date"))
        return bookmarks.as_text(later, form)

    def _report_drift(self, record: dict) -> None:
        """Name each undeclared field once per stream and run: schema drift is visible."""
        reported = self.__dict__.setdefault("_drift_reported", set())
        # The SDK adds the state partition's keys to each record: not the API's fields.
        from_context = set(self.state_partitioning_keys or ())
        new = sorted(n for n in record if n not in self._declared_fields and n not in reported
                     and n not in from_context)
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
        runlog.quiet_sdk_notices(self.logger)
        started = time.monotonic()
        try:
            super().sync(context)
        except SingerSDKError:  # ours (one line already) and the SDK's control flow
            raise
        except Exception as exc:
            # A failure without a message of its own still gets one line naming the
            # stream; the traceback goes to DEBUG (tap_common.tap.VendorTap.invoke).
            raise UnexpectedError(f"{self.name}: {type(exc).__name__}: {exc}") from exc
        finally:  # a child stream is synced once per parent record: the sum of them
            self.__dict__["sync_seconds"] = (self.__dict__.get("sync_seconds", 0.0)
                                             + time.monotonic() - started)
        if self.parent_stream_type is None:
            self.tap.log_stream_summaries(self)

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
    def authenticator(self) -> t.Callable:  # type: ignore[override]
        return self.tap.authenticator

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

    # -- the tap's client: every request, its pacing, retries, checks and lines ---------

    @property
    def client(self) -> VendorClient:
        return self.tap.client

    @property
    def requests_session(self) -> requests.Session:
        return self.client.session

    def build_prepared_request(self, *args: t.Any, **kwargs: t.Any) -> requests.PreparedRequest:
        # As the SDK's, without storing the authenticator on the session the whole tap
        # shares: the client signs each attempt for the host it goes to.
        request = requests.Request(*args, **kwargs)
        request.headers.setdefault("User-Agent", self.user_agent)
        return self.requests_session.prepare_request(request)

    def validate_response(self, response: requests.Response) -> None:
        self.client.check(response, tolerated=self.tolerated_statuses,
                          retry_statuses=self.extra_retry_statuses)

    def response_error_message(self, response: requests.Response) -> str:
        return self.error_line(response)

    def error_line(self, response: requests.Response, message: str | None = None) -> str:
        return self.client.error_line(response, message, caller=self.name)

    def where(self, response: requests.Response) -> str:
        return self.client.where(response, caller=self.name)

    def describe_url(self, url: str) -> str:
        return self.client.describe_url(url)

    def decode_json(self, response: requests.Response, expect: str | None = None, *,
                    fields: t.Iterable[str] = (), one_as_many: bool = False) -> t.Any:
        return self.client.decode_json(response, expect, fields=fields,
                                       one_as_many=one_as_many, caller=self.name)

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
        requested: set[bytes] = set()
        pages: set[bytes] = set()
        with self.get_http_request_counter() as request_counter:
            request_counter.with_context(context)
            prepared = self.prepare_page(context, paginator)
            requested.add(_request_key(prepared))
            number = 0
            while True:
                number += 1
                response = self.client.request(
                    prepared, caller=self.name, credentials=self.authenticator,
                    validate=self.validate_response,
                    follow_redirects=self.allow_redirects)
                self.log_request_duration(response, context)
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
                    following = self.prepare_page(context, paginator)
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

    def prepare_page(self, context: Context | None,
                     paginator: BaseAPIPaginator) -> requests.PreparedRequest:
        """The request of the paginator's current page."""
        page = PageContext(stream_context=context, next_page_token=paginator.current_value)
        http_request = self.get_http_request(page=page)
        body = {"json" if self.payload_as_json else "data": http_request.data}
        return self.build_prepared_request(
            method=http_request.method, url=http_request.url,
            params=http_request.encode_params(), headers=http_request.headers, **body)

    def _loop_line(self, response: requests.Response, what: str) -> str:
        return (f"{self.where(response)} {what}: the pagination loops; stopped before "
                "emitting any record twice")

    # -- requests outside the paginated flow (exports, downloads, lookups) ----------

    def send(self, method: str, url: str, **kwargs: t.Any) -> requests.Response:
        """One request through the tap's client, signed and checked as this stream's
        (see ``VendorClient.send`` for the arguments)."""
        return self.client.send(method, url, caller=self.name, credentials=self.authenticator,
                                validate=self.validate_response, **kwargs)


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
