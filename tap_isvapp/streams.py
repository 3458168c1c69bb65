"""Streams of the ISVapp REST API."""

from __future__ import annotations

import datetime as dt
import hashlib
import time
import typing as t

import orjson
from singer_sdk import SchemaDirectory, StreamSchema

from tap_common.auth import origin
from tap_common.errors import PayloadError, VendorAPIError
from tap_common.exports import (
    COMPLETED,
    FAILED,
    PENDING,
    ExportFile,
    ExportStatus,
    rows_with_resume,
    wait_for_export,
)
from tap_isvapp import schemas
from tap_isvapp.client import IsvappStream

if t.TYPE_CHECKING:
    import requests
    from singer_sdk.helpers.types import Context

SCHEMAS = SchemaDirectory(schemas)

#: Without a start_date or bookmark, raw request files are read this far back (the
#: retention of Salesforce package usage logs).
DEFAULT_REQUEST_HISTORY_DAYS = 45
#: ``/requests`` refuses a from..to range of more than 31 days (both days included).
MAX_REQUEST_WINDOW_DAYS = 31
#: ``/requests/downloads`` takes at most this many ids per call.
MAX_IDS_PER_DOWNLOAD_CALL = 1000
#: Signed download URLs live 15 minutes; one older than this is fetched again.
SIGNED_URL_USABLE_SECONDS = 15 * 60 - 90
#: A download that answers 404 right after its export COMPLETED is retried.
DOWNLOAD_NOT_READY_STATUSES = frozenset({404})
EXPORT_STATES = {"PENDING": PENDING, "COMPLETED": COMPLETED, "ERRORED": FAILED}
METRICS = ("unique_users", "unique_users_external", "unique_users_internal",
           "operations", "operations_external", "operations_internal")
TAXONOMY_SELECTORS = {"export_taxonomy_ids": "taxonomy_ids",
                      "export_taxonomy_level_ids": "taxonomy_level_ids",
                      "export_taxonomy_item_ids": "taxonomy_item_ids"}


def utc_today() -> dt.date:
    return dt.datetime.now(dt.timezone.utc).date()


def saved_bookmark(stream: IsvappStream) -> str | None:
    """The bookmark this stream finished its last run with (None on a first run)."""
    state = stream.stream_state
    if state.get("replication_key") == stream.replication_key:
        return state.get("replication_key_value")
    return None


# -- Salesforce accounts --------------------------------------------------------------


class SalesforceAccountsStream(IsvappStream):
    """Active Salesforce accounts of the partner business org, with health scores and
    subscriber orgs (per the include_* settings)."""

    name = "salesforce_accounts"
    path = "/api/v1/salesforce_accounts"
    oauth_scope = "salesforce_accounts"
    primary_keys = ("salesforce_id",)
    schema = StreamSchema(SCHEMAS)

    def get_url_params(self, context: Context | None, next_page_token: t.Any) -> dict:
        params = {}
        if self.config.get("include_health_scores", True):
            params["includeHealthScores"] = 1
        if self.config.get("include_subscriber_orgs", True):
            params["includeSubscriberOrgs"] = 1
        return params

    def get_child_context(self, record: dict, context: Context | None) -> dict:
        return {"salesforce_account_id": record["salesforce_id"]}


class SalesforceAccountSummariesStream(IsvappStream):
    """Summary metrics of each account: one request per account (seed 000)."""

    name = "salesforce_account_summaries"
    path = "/api/v1/salesforce_account_summary"
    records_jsonpath = "$.data"
    oauth_scope = "salesforce_accounts"
    parent_stream_type = SalesforceAccountsStream
    selected_by_default = False
    primary_keys = ("salesforce_id",)
    schema = StreamSchema(SCHEMAS)

    def get_url_params(self, context: Context | None, next_page_token: t.Any) -> dict:
        assert context is not None
        return {"salesforce_account_id": context["salesforce_account_id"]}

    def post_process(self, row: dict, context: Context | None = None) -> dict:
        assert context is not None
        row["salesforce_id"] = row.get("salesforce_id") or context["salesforce_account_id"]
        return row


# -- exports -----------------------------------------------------------------------


class ExportsStream(IsvappStream):
    """The 1000 most recent data exports, with every documented field."""

    name = "exports"
    path = "/api/v1/exports"
    oauth_scope = "exports"
    primary_keys = ("id",)
    schema = StreamSchema(SCHEMAS)
    # A completed export's URL with its download key in the path.
    unselected_by_default = ("download_url",)

    def parse_response(self, response: requests.Response) -> t.Iterable[dict]:
        rows = list(super().parse_response(response))
        if len(rows) >= 1000:
            self.logger.warning("exports: ISVapp lists only the 1000 most recent exports; "
                                "older ones are not in this stream")
        return rows


def timeframes_to_export(first_month: str | None, today: dt.date) -> list[str]:
    """The export ``timeframe`` values that cover ``first_month`` up to the latest
    completed month, which the tap cannot know: ISVapp completes a month around the 5th
    of the next, so the month before last is complete and last month may not be.

    A first run without start_date takes ISVapp's LATEST_12_COMPLETED_MONTHS; so does
    any range that starts three or more months back (months older than that window
    are exported one by one). A recent start, such as the bookmark of a daily run,
    exports the month before last by name and then LATEST_COMPLETED_MONTH. Rows before
    ``first_month`` are filtered out by the caller.
    """
    this_month = f"{today.year:04d}-{today.month:02d}"
    if first_month is None:
        return ["LATEST_12_COMPLETED_MONTHS"]
    if first_month >= this_month:
        return []
    if first_month <= month_before(this_month, 3):
        return [*months_between(first_month, month_before(this_month, 13)),
                "LATEST_12_COMPLETED_MONTHS"]
    return [*months_between(first_month, month_before(this_month, 2)), "LATEST_COMPLETED_MONTH"]


def month_before(month: str, count: int) -> str:
    index = int(month[:4]) * 12 + int(month[5:7]) - 1 - count
    return f"{index // 12:04d}-{index % 12 + 1:02d}"


def months_between(first: str, last: str) -> list[str]:
    months = []
    while first <= last:
        months.append(first)
        first = month_before(first, -1)
    return months


class TaxonomyItemUsageStream(IsvappStream):
    """Monthly usage per account and taxonomy item, from asynchronous TAXONOMY_ITEM
    exports: requested, polled until COMPLETED, then read row by row from the gzip
    NDJSON file. The six metrics arrive as numeric strings and are emitted as integers.
    """

    name = "taxonomy_item_usage"
    path = "/api/v1/exports"
    oauth_scope = "exports"
    primary_keys = ("reference_date", "salesforce_account_id", "taxonomy_item_id")
    replication_key = "reference_date"
    schema = StreamSchema(SCHEMAS)
    #: Stream-state key of the export being waited for or downloaded.
    IN_FLIGHT = "in_flight_export"
    #: The ``IN_FLIGHT`` entry this run started with, left by an interrupted run.
    interrupted_export: dict | None = None

    def get_records(self, context: Context | None) -> t.Iterable[dict]:
        # A start_date moved past the bookmark wins, as it does for timestamp bookmarks.
        starts = [saved_bookmark(self), (self.config.get("start_date") or "")[:7]]
        first_month = max(filter(None, starts), default=None)
        # Read before this run's first export replaces it: a run killed during its
        # second export left that one, and it is resumed when its turn comes.
        self.interrupted_export = self.stream_state.get(self.IN_FLIGHT)
        for timeframe in timeframes_to_export(first_month, utc_today()):
            export = self.completed_export(self.export_request(timeframe))
            for row in self.export_rows(export):
                if first_month is None or row["reference_date"] >= first_month:
                    yield row
            self.stream_state.pop(self.IN_FLIGHT, None)

    def export_request(self, timeframe: str) -> dict:
        body: dict[str, t.Any] = {"type": "TAXONOMY_ITEM", "aggregation": "MONTHLY",
                                  "timeframe": timeframe}
        for setting, field in TAXONOMY_SELECTORS.items():
            if self.config.get(setting):
                body[field] = list(self.config[setting])
        if self.config.get("export_salesforce_account_ids"):
            body["salesforce_account_ids"] = list(self.config["export_salesforce_account_ids"])
        return body

    def completed_export(self, body: dict) -> dict:
        """The export for ``body``: the one an interrupted run left, or a new one."""
        fingerprint = hashlib.sha256(orjson.dumps(body, option=orjson.OPT_SORT_KEYS)).hexdigest()[:16]
        export = self.resumable_export(fingerprint)
        if export is None:
            export = self.decode_json(self.send("POST", self.path, json=body), "$.data",
                                      fields=("id", "url"))
            self.logger.info("%s: requested export %s (timeframe %s)",
                             self.name, export["id"], body["timeframe"])
            self.remember_in_flight(export, fingerprint)
        latest = export

        def poll() -> ExportStatus:
            nonlocal latest
            latest = self.decode_json(self.send("GET", export["url"]), "$.data")
            return ExportStatus.of(latest.get("status"), EXPORT_STATES,
                                   latest.get("error_message"))

        wait_for_export(stream=self.name, export_id=export["id"], poll=poll,
                        interval_seconds=float(self.config.get("export_poll_interval_seconds", 10)),
                        timeout_seconds=float(self.config.get("export_timeout_seconds", 1800)))
        self.remember_in_flight(latest, fingerprint)
        return latest

    def resumable_export(self, fingerprint: str) -> dict | None:
        saved = self.interrupted_export
        if not saved or saved.get("request") != fingerprint:
            return None
        expires_at = saved.get("expires_at")
        if expires_at and dt.datetime.fromisoformat(expires_at.replace("Z", "+00:00")) \
                <= dt.datetime.now(dt.timezone.utc):
            self.logger.info("%s: export %s from the interrupted run expired at %s; "
                             "requesting a new one", self.name, saved["id"], expires_at)
            return None
        try:
            export = self.decode_json(self.send("GET", saved["url"]), "$.data",
                                      fields=("id", "url"))
        except VendorAPIError as exc:
            self.logger.warning("%s: cannot resume export %s (%s); requesting a new one",
                                self.name, saved["id"], exc)
            return None
        if export.get("is_expired") or export.get("status") == "ERRORED":
            self.logger.info("%s: export %s from the interrupted run is %s; requesting a "
                             "new one", self.name, saved["id"],
                             "expired" if export.get("is_expired") else "ERRORED")
            return None
        self.logger.info("%s: resuming export %s (%s) from the interrupted run",
                         self.name, export["id"], export.get("status"))
        return export

    def remember_in_flight(self, export: dict, fingerprint: str) -> None:
        """Put the export in the state at once, so an interrupted run can resume it."""
        self.stream_state[self.IN_FLIGHT] = {
            "id": export["id"], "url": export["url"], "request": fingerprint,
            "expires_at": export.get("expires_at"),
        }
        self.state_manager.is_flushed = False
        self._write_state_message()

    def export_rows(self, export: dict) -> t.Iterator[dict]:
        if not export.get("download_url"):
            msg = f"{self.name}: export {export['id']} is COMPLETED but has no download_url"
            raise PayloadError(msg)

        def open_rows() -> t.Iterator[dict]:
            response = self.send("GET", export["download_url"], stream=True,
                                 retry_statuses=DOWNLOAD_NOT_READY_STATUSES)
            return ExportFile(response, stream=self.name, export=export["id"]).ndjson_rows()

        for number, row in enumerate(rows_with_resume(open_rows), 1):
            for metric in METRICS:
                value = row.get(metric)
                if value is not None:
                    try:
                        row[metric] = int(value)
                    except (TypeError, ValueError):
                        msg = (f"{self.name}: export {export['id']}: line {number} has "
                               f"{metric}={value!r}, not a whole number")
                        raise PayloadError(msg) from None
            yield row


# -- raw package usage log files ----------------------------------------------------


def resume_day(stream: IsvappStream) -> dt.date:
    """First day to read: the bookmark less ``lookback_days`` (Salesforce delivers usage
    logs days late), else ``start_date``, else the last 45 days."""
    start_date = stream.config.get("start_date")
    floor = dt.date.fromisoformat(start_date[:10]) if start_date else None
    bookmark = saved_bookmark(stream)
    if bookmark:
        day = dt.date.fromisoformat(bookmark[:10]) - dt.timedelta(
            days=int(stream.config.get("lookback_days", 3)))
        return max(day, floor) if floor else day
    return floor or utc_today() - dt.timedelta(days=DEFAULT_REQUEST_HISTORY_DAYS - 1)


class PackageUsageRequestsStream(IsvappStream):
    """Raw package usage log requests, listed in windows of at most 31 days up to
    yesterday; each run re-reads ``lookback_days`` before its bookmark."""

    name = "package_usage_requests"
    path = "/api/v1/requests"
    oauth_scope = "requests"
    primary_keys = ("id",)
    replication_key = "sf_end_time"
    schema = StreamSchema(SCHEMAS)

    @property
    def partitions(self) -> list[dict]:
        """One ``from``..``to`` window (both days included) per 31 days."""
        readers = [s for s in (self, *self.child_streams) if s.selected] or [self]
        day = min(resume_day(s) for s in readers)
        last = utc_today() - dt.timedelta(days=1)
        windows = []
        while day <= last:
            end = min(day + dt.timedelta(days=MAX_REQUEST_WINDOW_DAYS - 1), last)
            windows.append({"from": day.isoformat(), "to": end.isoformat()})
            day = end + dt.timedelta(days=1)
        return windows

    def get_records(self, context: Context | None) -> t.Iterable[dict]:
        if not context:  # nothing to read: the range ends before it starts
            return
        yield from super().get_records(context)
        self.bookmark_finished_window()

    def bookmark_finished_window(self) -> None:
        """Write a resumable bookmark after each window, not only at the end of the run.

        Rows within a window come in no promised order, so the SDK keeps their maximum
        as a progress marker that a killed run cannot resume from. Windows run oldest
        first and every request of this one has been emitted (its log rows too), so the
        maximum is a safe bookmark now: a rerun starts at this window less the look-back.
        """
        for stream in (self, *self.child_streams):
            if stream.selected:
                stream._finalize_state(stream.stream_state)  # noqa: SLF001
        self.state_manager.is_flushed = False
        self._write_state_message()

    def get_url_params(self, context: Context | None, next_page_token: t.Any) -> dict:
        assert context is not None
        return {"from": context["from"], "to": context["to"]}

    def parse_response(self, response: requests.Response) -> t.Iterable[dict]:
        rows = list(super().parse_response(response))
        for child in self.child_streams:
            if isinstance(child, PackageUsageLogsStream) and child.selected:
                child.signed_urls.announce(r["id"] for r in rows if child.wants(r))
        return rows

    def get_child_context(self, record: dict, context: Context | None) -> dict:
        return {"isvapp_request_id": record["id"], "request_sf_end_time": record.get("sf_end_time")}


class SignedUrlRejected(VendorAPIError):
    """The storage host refused a signed URL (expired, or its signature is wrong)."""


class SignedUrls:
    """Download URLs of request files, fetched in batches just before they are used.

    The parent announces the requests of each window; a URL is fetched together with
    those of the next announced requests (up to 1000 per call) and reused while it is
    younger than 15 minutes less a margin.
    """

    path = "/api/v1/requests/downloads"

    def __init__(self, fetch: t.Callable[[list[str]], dict[str, str]],
                 clock: t.Callable[[], float] = time.monotonic) -> None:
        self._fetch = fetch
        self._clock = clock
        self._upcoming: list[str] = []
        self._urls: dict[str, tuple[str, float]] = {}

    def announce(self, request_ids: t.Iterable[str]) -> None:
        self._upcoming.extend(request_ids)

    def url_for(self, request_id: str) -> str:
        cached = self._urls.get(request_id)
        if cached and self._clock() - cached[1] < SIGNED_URL_USABLE_SECONDS:
            return cached[0]
        if request_id in self._upcoming:
            start = self._upcoming.index(request_id)
            batch = self._upcoming[start:start + MAX_IDS_PER_DOWNLOAD_CALL]
        else:
            batch = [request_id]
        fetched_at = self._clock()
        fetched = self._fetch(batch)
        for rid, url in fetched.items():
            self._urls[rid] = (url, fetched_at)
        if request_id not in fetched:
            msg = (f"package_usage_logs: POST {self.path} gave no download URL for request "
                   f"{request_id} (asked for {len(batch)}, got {len(fetched)})")
            raise PayloadError(msg)
        return self._urls[request_id][0]

    def forget(self, request_id: str) -> None:
        self._urls.pop(request_id, None)

    def done(self, request_id: str) -> None:
        self.forget(request_id)
        if request_id in self._upcoming:
            self._upcoming.remove(request_id)


class PackageUsageLogsStream(IsvappStream):
    """Rows of each request's gzip CSV file (Salesforce App Analytics package usage
    logs), read by header name; columns this schema does not know go to
    ``extra_columns``."""

    name = "package_usage_logs"
    path = "/api/v1/requests/downloads"
    oauth_scope = "requests"
    parent_stream_type = PackageUsageRequestsStream
    primary_keys = ("isvapp_request_id", "row_number")
    replication_key = "request_sf_end_time"
    schema = StreamSchema(SCHEMAS)
    OWN_FIELDS = frozenset({"isvapp_request_id", "row_number", "request_sf_end_time",
                            "extra_columns"})

    def __init__(self, *args: t.Any, **kwargs: t.Any) -> None:
        super().__init__(*args, **kwargs)
        self.signed_urls = SignedUrls(self.fetch_signed_urls)
        self.csv_columns = frozenset(self.schema["properties"]) - self.OWN_FIELDS
        self._resume_day: dt.date | None = None

    def wants(self, request: dict) -> bool:
        """Whether this stream still needs the file of ``request`` (not before its own
        bookmark less the look-back; the parent may read further back for itself)."""
        if self._resume_day is None:
            self._resume_day = resume_day(self)
        end = request.get("sf_end_time") or request.get("request_sf_end_time") or ""
        return not end or dt.date.fromisoformat(end[:10]) >= self._resume_day

    def fetch_signed_urls(self, request_ids: list[str]) -> dict[str, str]:
        response = self.send("POST", self.path, json={"request_ids": request_ids})
        data = self.decode_json(response, "$.data[*]",
                                fields=("request_id", "original_file_url"))
        return {item["request_id"]: item["original_file_url"] for item in data}

    def get_records(self, context: Context | None) -> t.Iterable[dict]:
        assert context is not None
        if not self.wants(context):
            return
        request_id = context["isvapp_request_id"]
        for number, row in enumerate(rows_with_resume(lambda: self.file_rows(request_id)), 1):
            record = {"isvapp_request_id": request_id, "row_number": number,
                      "request_sf_end_time": context.get("request_sf_end_time")}
            extra = {}
            # csv_rows has checked each row has as many values as the header has columns.
            for column, value in row.items():
                if column in self.csv_columns:
                    # An empty cell is left out rather than sent as null: most of a
                    # log row's 64 columns are empty, and targets pay per field
                    # (every SQL target loads an absent field as NULL).
                    if value:
                        record[column] = value
                else:
                    extra[column] = value or None
            record["extra_columns"] = extra or None
            yield record
        self.signed_urls.done(request_id)

    def file_rows(self, request_id: str) -> t.Iterator[dict]:
        """The CSV rows of one request's file; a refused signed URL is fetched again once."""
        try:
            response = self.send("GET", self.signed_urls.url_for(request_id), stream=True)
        except SignedUrlRejected as exc:
            self.logger.warning("%s; fetching fresh signed URLs", exc)
            self.signed_urls.forget(request_id)
            response = self.send("GET", self.signed_urls.url_for(request_id), stream=True)
        return ExportFile(response, stream=self.name, export=f"request {request_id}").csv_rows()

    def validate_response(self, response: requests.Response) -> None:
        if response.status_code == 403 and origin(response.url) != origin(self.url_base):
            raise SignedUrlRejected(self.error_line(response))
        super().validate_response(response)


STREAMS: tuple[type[IsvappStream], ...] = (
    SalesforceAccountsStream,
    SalesforceAccountSummariesStream,
    ExportsStream,
    TaxonomyItemUsageStream,
    PackageUsageRequestsStream,
    PackageUsageLogsStream,
)
