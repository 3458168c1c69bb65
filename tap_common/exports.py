"""Asynchronous exports: start, wait for the vendor to finish, stream the file row by row.

``ExportStream`` is the declaration: a vendor says how to start an export, how to poll
it and how to read its file; the waiting, the download retries, the typing of the rows
and resuming an export an interrupted run left (kept in the stream's state) live here.

Nothing here holds a file in memory: bodies are read in 1 MiB blocks, decompressed on
the fly when they are gzip, and parsed one line (NDJSON, CSV) or one array element
(JSON) at a time.
"""

from __future__ import annotations

import csv
import datetime
import gzip
import hashlib
import io
import itertools
import logging
import time
import typing as t
import zlib
from dataclasses import dataclass

import ijson
import orjson
import requests
import urllib3

from tap_common._sdk import write_state_now
from tap_common.coercion import TypedRows
from tap_common.errors import ExportFailedError, PayloadError, VendorAPIError

if t.TYPE_CHECKING:
    from singer_sdk.helpers.types import Context

logger = logging.getLogger(__name__)

_BLOCK = 1 << 20
_GZIP_MAGIC = b"\x1f\x8b"

PENDING, COMPLETED, FAILED, UNKNOWN = "pending", "completed", "failed", "unknown"
#: Bodies up to this size that start like a JSON object are read whole before a
#: download is handed on, to recognise the vendor's error envelope.
SNIFF_BYTES = 64 * 1024


@dataclass
class ExportStatus:
    """One poll of an export, in the tap's terms plus the vendor's own status word."""

    state: str  # PENDING, COMPLETED, FAILED or UNKNOWN
    vendor_status: str
    message: str | None = None
    #: The vendor statuses the tap knows, for the message about one it does not.
    known: tuple[str, ...] = ()
    #: Where the file is, once the vendor says (None: where the start said).
    download_url: str | None = None
    #: When the vendor deletes the export (ISO timestamp), once it says.
    expires_at: str | None = None
    #: The vendor says the export has expired (its file is gone).
    expired: bool = False

    @classmethod
    def of(cls, vendor_status: t.Any, states: t.Mapping[str, str],
           message: str | None = None, **details: t.Any) -> ExportStatus:
        """The status word mapped by ``states`` (vendor status -> state); any other
        word (or none) is UNKNOWN, which ``wait_for_export`` fails on at once.
        ``details``: ``download_url``, ``expires_at``, ``expired``."""
        word = str(vendor_status) if vendor_status not in (None, "") else "(none)"
        return cls(states.get(word, UNKNOWN), word, message, tuple(states), **details)


def wait_for_export(
    *,
    stream: str,
    export_id: str,
    poll: t.Callable[[], ExportStatus],
    interval_seconds: float,
    timeout_seconds: float,
    sleep: t.Callable[[float], None] = time.sleep,
    clock: t.Callable[[], float] = time.monotonic,
) -> ExportStatus:
    """Poll until the export completes; fail loudly if it fails or takes too long."""
    deadline = clock() + timeout_seconds
    polls = 0
    while True:
        status = poll()
        polls += 1
        if status.state == COMPLETED:
            logger.info("%s: export %s completed after %d poll%s", stream, export_id, polls,
                        "" if polls == 1 else "s")
            return status
        if status.state == UNKNOWN:
            msg = (
                f"{stream}: export {export_id} has status {status.vendor_status!r}, which the "
                f"tap does not know (known: {', '.join(status.known) or 'none'}); failing now "
                "rather than waiting for it to change"
            )
            if status.message:
                msg += f"; the vendor says: {status.message}"
            raise ExportFailedError(msg)
        if status.state == FAILED:
            msg = (
                f"{stream}: export {export_id} ended with status {status.vendor_status}: "
                f"{status.message or '(the vendor gave no message)'}"
            )
            raise ExportFailedError(msg)
        remaining = deadline - clock()
        if remaining <= 0:
            msg = (
                f"{stream}: export {export_id} did not complete within {timeout_seconds:g} s "
                f"(still {status.vendor_status} after {polls} polls)"
            )
            raise ExportFailedError(msg)
        logger.info("%s: export %s is %s; next poll in %.1f s",
                    stream, export_id, status.vendor_status, min(interval_seconds, remaining))
        sleep(min(interval_seconds, remaining))


def body_reader(response: requests.Response) -> io.BufferedReader:
    """The raw body as one buffered byte stream per response (what was peeked stays)."""
    reader = getattr(response, "_body_reader", None)
    if reader is None:
        response.raw.decode_content = True
        # urllib3 closes the raw stream at EOF, which io.BufferedReader treats as an error.
        response.raw.auto_close = False
        reader = io.BufferedReader(response.raw, buffer_size=_BLOCK)  # type: ignore[arg-type]
        response._body_reader = reader  # type: ignore[attr-defined]  # noqa: SLF001
    return reader


def sniff_small_json(response: requests.Response) -> t.Any:
    """A streamed body that is one small JSON value (an error envelope where a file was
    expected), decoded; None for anything else. The body stays readable from its start.
    """
    reader = body_reader(response)
    if reader.peek(1).lstrip()[:1] != b"{":
        return None
    head = reader.read(SNIFF_BYTES + 1)
    replay = io.BufferedReader(_Replay(head, reader), buffer_size=_BLOCK)  # type: ignore[arg-type]
    response._body_reader = replay  # type: ignore[attr-defined]  # noqa: SLF001
    if len(head) > SNIFF_BYTES:
        return None
    try:
        return orjson.loads(head)
    except orjson.JSONDecodeError:
        return None


class _Replay(io.RawIOBase):
    """Bytes already read, then the rest of the stream they came from."""

    def __init__(self, head: bytes, rest: io.BufferedReader) -> None:
        self._head = memoryview(head)
        self._rest = rest

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: t.Any) -> int:
        if self._head:
            count = min(len(buffer), len(self._head))
            buffer[:count] = self._head[:count]
            self._head = self._head[count:]
            return count
        data = self._rest.read1(len(buffer))
        buffer[: len(data)] = data
        return len(data)


def open_body(response: requests.Response) -> io.BufferedReader:
    """The response body as a buffered byte stream, gunzipped if it is a gzip file.

    ``Content-Encoding: gzip`` is undone by urllib3; a body that is itself a ``.gz``
    file is recognised by its magic bytes.
    """
    raw = body_reader(response)
    if raw.peek(2)[:2] == _GZIP_MAGIC:
        return io.BufferedReader(gzip.GzipFile(fileobj=raw, mode="rb"), buffer_size=_BLOCK)  # type: ignore[arg-type]
    return raw


class ExportFile:
    """Rows of one downloaded export file, with errors that say where they broke."""

    def __init__(self, response: requests.Response, *, stream: str, export: str) -> None:
        self.response = response
        self.where = f"{stream}: export {export}"

    def ndjson_rows(self) -> t.Iterator[dict]:
        line_number = 0
        with self._read_errors(lambda: f"after line {line_number}"):
            loads = orjson.loads
            for line_number, line in enumerate(open_body(self.response), 1):  # noqa: B007
                try:
                    row = loads(line)
                except orjson.JSONDecodeError as exc:
                    if not line.strip():
                        continue  # a blank line (checked only here: it costs on every line)
                    msg = f"{self.where}: line {line_number} is not valid JSON ({exc}): {line[:120]!r}"
                    raise PayloadError(msg) from None
                yield row

    def json_array_rows(self, wrapper_key: str | None = None) -> t.Iterator[dict]:
        """Elements of a top-level JSON array, or of ``{wrapper_key: [...]}``.

        Anything else (an object where the array should be, an object without the
        wrapper key, text) is an error naming what was expected, never zero rows.
        """
        count = 0
        # Opening reads the first block, so a connection that drops there is caught too.
        with self._read_errors(lambda: f"after element {count}"):
            body = open_body(self.response)
            start = body.peek(64).lstrip()
            head = start[:1]
            wrapped = None
            if head == b"{" and wrapper_key:
                wrapped = _WrappedArray(body, wrapper_key)
                elements = ijson.items(wrapped.events(), f"{wrapper_key}.item")
            elif head == b"[":
                elements = ijson.items(body, "item", use_float=True)
            else:
                found = "a JSON object" if head == b"{" else f"a body starting {start[:24]!r}"
                raise PayloadError(f"{self.where}: expected a JSON array, got {found}")
            try:
                for count, row in enumerate(elements, 1):  # noqa: B007
                    yield row
            except ijson.common.IncompleteJSONError as exc:
                msg = (f"{self.where}: the JSON array is cut short or malformed after "
                       f"element {count} (byte {body.tell() if body.seekable() else '?'}): {exc}")
                raise PayloadError(msg) from None
            if wrapped is not None and not wrapped.found:
                keys = ", ".join(wrapped.keys[:8]) or "none"
                msg = (f"{self.where}: expected a JSON array under {wrapper_key!r}, got a JSON "
                       f"object without it (keys: {keys})")
                raise PayloadError(msg)

    def csv_rows(self, required_columns: t.Sequence[str] = ()) -> t.Iterator[dict[str, str]]:
        """Rows of a CSV file with a header row, read by column name.

        A file cut short fails instead of giving its rows up to the cut and a corrupt
        last one: every row must have as many fields as the header, and a plain (not
        gzip) file must end with a line end (a gzip file's own trailer already shows
        whether it is whole). A row is only given out once the next one (or the end)
        was read, so a cut row is never emitted. ``required_columns`` must be in the
        header.
        """
        line_number = 1
        with self._read_errors(lambda: f"after line {line_number}"):
            body = open_body(self.response)
            compressed = isinstance(getattr(body, "raw", None), gzip.GzipFile)
            # utf-8-sig: a byte order mark (Excel, some Salesforce exports) must not
            # become part of the first column's name.
            text = io.TextIOWrapper(body, encoding="utf-8-sig", newline="")
            # Only a plain file needs its last line end watched (a line at a time).
            lines = text if compressed else _LastLine(text)
            reader = csv.reader(lines)
            try:
                header = next(reader, None)
                if header is None:
                    return
                missing = [name for name in required_columns if name not in header]
                if missing:
                    msg = (f"{self.where}: the CSV header lacks the column(s) {missing}; it "
                           f"has {header[:30]}")
                    raise PayloadError(msg)
                pending: dict[str, str] | None = None
                for values in reader:
                    if not values:
                        continue  # a blank line
                    if pending is not None:
                        yield pending
                    line_number = reader.line_num
                    if len(values) != len(header):
                        msg = (f"{self.where}: CSV line {line_number} has {len(values)} "
                               f"fields where the header has {len(header)}: the file is cut "
                               "short or malformed")
                        raise PayloadError(msg)
                    pending = dict(zip(header, values))
            except csv.Error as exc:
                msg = f"{self.where}: CSV line {reader.line_num} is malformed: {exc}"
                raise PayloadError(msg) from None
            if isinstance(lines, _LastLine) and not lines.ended:
                msg = (f"{self.where}: the file ends inside line {reader.line_num} (no line "
                       "end after it): it is cut short")
                raise PayloadError(msg)
            if pending is not None:
                yield pending

    def _read_errors(self, position: t.Callable[[], str]) -> _ReadErrors:
        return _ReadErrors(self.where, position)


class _LastLine:
    """Lines of a text stream, remembering whether the last one ended with a line end."""

    def __init__(self, lines: t.Iterable[str]) -> None:
        self._lines = lines
        self.ended = True

    def __iter__(self) -> t.Iterator[str]:
        for line in self._lines:
            self.ended = line.endswith(("\n", "\r"))
            yield line


class _WrappedArray:
    """Parse events of ``{key: [...], …}``, noting whether ``key`` held an array."""

    def __init__(self, body: t.Any, key: str) -> None:
        self.body = body
        self.key = key
        self.found = False
        self.keys: list[str] = []

    def events(self) -> t.Iterator[tuple]:
        parsed = ijson.parse(self.body, use_float=True)
        for prefix, event, value in parsed:
            if prefix == "" and event == "map_key":
                self.keys.append(str(value))
            yield prefix, event, value
            if prefix == self.key and event == "start_array":
                self.found = True
                yield from parsed  # the rest passes straight through
                return


class _ReadErrors:
    def __init__(self, where: str, position: t.Callable[[], str]) -> None:
        self.where = where
        self.position = position

    def __enter__(self) -> None:
        return None

    def __exit__(self, exc_type: t.Any, exc: BaseException | None, tb: t.Any) -> bool:
        if exc is None or isinstance(exc, (PayloadError, GeneratorExit)):
            return False
        if isinstance(exc, (EOFError, gzip.BadGzipFile, zlib.error)):
            msg = f"{self.where}: the gzip file is truncated or corrupt {self.position()}: {exc}"
            raise PayloadError(msg) from None
        if isinstance(exc, (requests.exceptions.RequestException,
                            urllib3.exceptions.HTTPError, ConnectionError)):
            msg = f"{self.where}: the download broke off {self.position()}: {exc}"
            raise DownloadInterrupted(msg) from exc
        return False


class DownloadInterrupted(PayloadError):
    """The connection dropped mid-file; the download may be retried."""


def rows_with_resume(
    open_rows: t.Callable[[], t.Iterable[dict]], *, attempts: int = 3
) -> t.Iterator[dict]:
    """Rows of a download that is started again if the connection drops mid-file.

    ``open_rows`` downloads from the start (fetching a fresh URL if it must); rows
    already emitted are skipped, so a drop costs time but never a row.
    """
    emitted = 0
    for attempt in range(1, attempts + 1):
        try:
            rows = iter(open_rows())
            for _ in itertools.islice(rows, emitted):
                pass
            for row in rows:
                emitted += 1
                yield row
        except DownloadInterrupted as exc:
            if attempt == attempts:
                raise
            logger.warning("%s; downloading again (attempt %d of %d), skipping the %d rows "
                           "already emitted", exc, attempt + 1, attempts, emitted)
        else:
            return


# -- the export stream declaration -----------------------------------------------------

#: Stream-state key of the export being waited for or downloaded.
IN_FLIGHT_EXPORT = "in_flight_export"


@dataclass
class Export:
    """One export at the vendor: its id, the URL its status is polled at, where its file
    is (when the start already says) and when the vendor deletes it (once known)."""

    id: str
    url: str
    #: A download link the start gives (kept in the state; one from a poll is not).
    download_url: str | None = None
    expires_at: str | None = None

    def saved(self, request: str) -> dict[str, t.Any]:
        """The state entry that lets a later run resume this export (``request``: the
        fingerprint of what was asked)."""
        entry = {"id": self.id, "url": self.url, "request": request,
                 "expires_at": self.expires_at}
        if self.download_url:
            entry["download_url"] = self.download_url
        return entry

    @classmethod
    def from_saved(cls, entry: t.Mapping[str, t.Any]) -> Export:
        return cls(entry["id"], entry["url"], entry.get("download_url"),
                   entry.get("expires_at"))

    def expired_by(self, now: datetime.datetime) -> bool:
        if not self.expires_at:
            return False
        return datetime.datetime.fromisoformat(self.expires_at.replace("Z", "+00:00")) <= now


def request_fingerprint(request: t.Mapping[str, t.Any]) -> str:
    """What an export asks for, as a short stable hash: a saved export is only resumed
    for the same request."""
    return hashlib.sha256(orjson.dumps(request, option=orjson.OPT_SORT_KEYS)).hexdigest()[:16]


class ExportStream:
    """Mixin for a ``VendorRESTStream`` read through asynchronous exports.

    A vendor declares ``export_states`` (its status words), ``start_export`` (the
    request -> an ``Export``), ``poll_export`` (-> an ``ExportStatus``) and
    ``read_export_file`` (a downloaded ``ExportFile`` -> its rows); ``export_rows(request,
    context)`` does the rest: waits for the export (``export_poll_interval_seconds``,
    ``export_timeout_seconds``), downloads its file (again if the connection drops,
    skipping rows already emitted), types the rows by the schema (``typed_export_rows``)
    and keeps the export in the stream state while it is in flight. A run killed while
    waiting or downloading leaves it there; the next run with the same request resumes
    it unless the vendor has expired it or it failed.
    """

    name: str
    config: t.Mapping[str, t.Any]
    schema: dict
    logger: logging.Logger
    send: t.Callable[..., requests.Response]
    get_context_state: t.Callable[[Context | None], dict]

    #: The vendor's status words -> PENDING, COMPLETED or FAILED.
    export_states: t.ClassVar[t.Mapping[str, str]]
    #: Seconds between polls unless ``export_poll_interval_seconds`` is set.
    default_poll_interval_seconds: t.ClassVar[float] = 5
    #: Statuses the download may answer right after COMPLETED ("not ready yet"): retried.
    download_retry_statuses: t.ClassVar[frozenset[int]] = frozenset()
    #: Convert the rows' text values to the schema's integer/number/boolean types.
    typed_export_rows: t.ClassVar[bool] = False

    # -- what a vendor declares ------------------------------------------------------

    def start_export(self, request: dict[str, t.Any], context: Context | None) -> Export:
        raise NotImplementedError

    def poll_export(self, export: Export) -> ExportStatus:
        raise NotImplementedError

    def read_export_file(self, file: ExportFile) -> t.Iterator[dict]:
        raise NotImplementedError

    def describe_export_request(self, request: dict[str, t.Any]) -> str:
        """What the log line of a started export adds (e.g. `` (timeframe X)``)."""
        return ""

    def export_status(self, vendor_status: t.Any, message: str | None = None,
                      **details: t.Any) -> ExportStatus:
        """A poll's answer in the tap's terms, by ``export_states`` (for ``poll_export``)."""
        return ExportStatus.of(vendor_status, self.export_states, message, **details)

    # -- the rest, once --------------------------------------------------------------

    def export_rows(self, request: dict[str, t.Any], context: Context | None
                    ) -> t.Iterator[dict]:
        """The rows of the export for ``request``: resumed, or started, then waited for."""
        export, download_url = self.completed_export(request, context)

        def download() -> t.Iterator[dict]:
            response = self.send("GET", download_url, stream=True,
                                 retry_statuses=self.download_retry_statuses)
            return self.read_export_file(ExportFile(response, stream=self.name,
                                                    export=export.id))

        rows = rows_with_resume(download)
        if self.typed_export_rows:
            rows = self.typed_rows.rows(rows, where=f"{self.name}: export {export.id}")
        yield from rows
        self.get_context_state(context).pop(IN_FLIGHT_EXPORT, None)

    @property
    def typed_rows(self) -> TypedRows:
        """The schema's converters, compiled once per stream."""
        compiled = self.__dict__.get("_typed_rows")
        if compiled is None:
            compiled = self.__dict__["_typed_rows"] = TypedRows(self.schema)
        return compiled

    def completed_export(self, request: dict[str, t.Any], context: Context | None
                         ) -> tuple[Export, str]:
        """The completed export for ``request`` and the URL of its file."""
        fingerprint = request_fingerprint(request)
        export = self.resumable_export(fingerprint, context)
        if export is None:
            export = self.start_export(request, context)
            self.logger.info("%s: requested export %s%s", self.name, export.id,
                             self.describe_export_request(request))
            self.remember_in_flight(export, fingerprint, context)
        status = wait_for_export(
            stream=self.name, export_id=export.id, poll=lambda: self.poll_export(export),
            interval_seconds=float(self.config.get("export_poll_interval_seconds",
                                                   self.default_poll_interval_seconds)),
            timeout_seconds=float(self.config.get("export_timeout_seconds", 1800)))
        # A download URL the poll gives may carry a key: it is used, never saved.
        download_url = status.download_url or export.download_url
        if not download_url:
            msg = (f"{self.name}: export {export.id} is {status.vendor_status} but has no "
                   "download_url")
            raise PayloadError(msg)
        export.expires_at = status.expires_at or export.expires_at
        self.remember_in_flight(export, fingerprint, context)
        return export, download_url

    def interrupted_export(self, context: Context | None) -> dict | None:
        """The export an interrupted run left in this context's state, read before this
        run's first export replaces it: a run killed during its second export left that
        one, and it is resumed when its turn comes."""
        interrupted = self.__dict__.setdefault("_interrupted_exports", {})
        key = orjson.dumps(context or {}, option=orjson.OPT_SORT_KEYS)
        if key not in interrupted:
            interrupted[key] = self.get_context_state(context).get(IN_FLIGHT_EXPORT)
        return interrupted[key]

    def resumable_export(self, fingerprint: str, context: Context | None) -> Export | None:
        saved = self.interrupted_export(context)
        if not saved or saved.get("request") != fingerprint:
            return None
        export = Export.from_saved(saved)
        if export.expired_by(datetime.datetime.now(datetime.timezone.utc)):
            self.logger.info("%s: export %s from the interrupted run expired at %s; "
                             "requesting a new one", self.name, export.id, export.expires_at)
            return None
        try:
            status = self.poll_export(export)
        except VendorAPIError as exc:
            self.logger.warning("%s: cannot resume export %s (%s); requesting a new one",
                                self.name, export.id, exc)
            return None
        if status.expired or status.state == FAILED:
            self.logger.info("%s: export %s from the interrupted run is %s; requesting a "
                             "new one", self.name, export.id,
                             "expired" if status.expired else status.vendor_status)
            return None
        self.logger.info("%s: resuming export %s (%s) from the interrupted run",
                         self.name, export.id, status.vendor_status)
        return export

    def remember_in_flight(self, export: Export, fingerprint: str,
                           context: Context | None) -> None:
        """Put the export in the state at once, so an interrupted run can resume it."""
        self.get_context_state(context)[IN_FLIGHT_EXPORT] = export.saved(fingerprint)
        write_state_now(self)  # type: ignore[arg-type]
