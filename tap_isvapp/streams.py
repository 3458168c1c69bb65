"""Streams of the ISVapp REST API."""

from __future__ import annotations

import datetime as dt
import time
import typing as t

from singer_sdk import SchemaDirectory, StreamSchema

from tap_common._sdk import finalize_state, write_state_now
from tap_common.auth import origin
from tap_common.errors import PayloadError, VendorAPIError
from tap_common.exports import COMPLETED, FAILED, PENDING
from tap_common.exports import Export, ExportFile, ExportStatus, ExportStream, rows_with_resume
from tap_common import bookmarks
from tap_common.windows import WindowedStream, utc_today
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
TAXONOMY_SELECTORS = {"export_taxonomy_ids": "taxonomy_ids",
                      "export_taxonomy_level_ids": "taxonomy_level_ids",
                      "export_taxonomy_item_ids": "taxonomy_item_ids"}


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


class TaxonomyItemUsageStream(ExportStream, IsvappStream):
    """Monthly usage per account and taxonomy item, from asynchronous TAXONOMY_ITEM
    exports: requested, polled until COMPLETED, then read row by row from the gzip
    NDJSON file. The six metrics arrive as numeric strings and are emitted as integers.
    """

    name = "taxonomy_item_usage"
    path = "/api/v1/exports"
    oauth_scope = "exports"
    primary_keys = ("reference_date", "salesforce_account_id", "taxonomy_item_id")
    replication_key = "reference_date"
    replication_key_form = bookmarks.MONTH
    schema = StreamSchema(SCHEMAS)
    export_states = EXPORT_STATES
    default_poll_interval_seconds = 10
    download_retry_statuses = DOWNLOAD_NOT_READY_STATUSES
    typed_export_rows = True

    def get_records(self, context: Context | None) -> t.Iterable[dict]:
        first_month = self.first_month(utc_today())
        for timeframe in timeframes_to_export(first_month, utc_today()):
            for row in self.export_rows(self.export_request(timeframe), context):
                # Months are compared in one form, YYYY-MM (a row's is documented so).
                if first_month is None or row["reference_date"][:7] >= first_month:
                    yield row

    def first_month(self, today: dt.date) -> str | None:
        """The first month to export (``YYYY-MM``): the bookmark's month (ISVapp
        recalculates it), or ``start_date``'s if later; never after last month, the
        latest one an export can hold (as ``date_range`` clamps a first day)."""
        starts = [self.saved_bookmark()]
        if self.config.get("start_date"):
            starts.append(bookmarks.read(self.config["start_date"], bookmarks.MONTH,
                                         stream=self.name, what="start_date"))
        first = max(filter(None, starts), default=None)
        if first is None:
            return None
        first_month = bookmarks.as_text(first, bookmarks.MONTH)
        this_month = f"{today.year:04d}-{today.month:02d}"
        return min(first_month, month_before(this_month, 1))

    def export_request(self, timeframe: str) -> dict:
        body: dict[str, t.Any] = {"type": "TAXONOMY_ITEM", "aggregation": "MONTHLY",
                                  "timeframe": timeframe}
        for setting, field in TAXONOMY_SELECTORS.items():
            if self.config.get(setting):
                body[field] = list(self.config[setting])
        if self.config.get("export_salesforce_account_ids"):
            body["salesforce_account_ids"] = list(self.config["export_salesforce_account_ids"])
        return body

    def describe_export_request(self, request: dict[str, t.Any]) -> str:
        return f" (timeframe {request['timeframe']})"

    def start_export(self, request: dict[str, t.Any], context: Context | None) -> Export:
        data = self.decode_json(self.send("POST", self.path, json=request), "$.data",
                                fields=("id", "url"))
        return Export(data["id"], data["url"], expires_at=data.get("expires_at"))

    def poll_export(self, export: Export) -> ExportStatus:
        data = self.decode_json(self.send("GET", export.url), "$.data")
        return self.export_status(data.get("status"), data.get("error_message"),
                                  download_url=data.get("download_url"),
                                  expires_at=data.get("expires_at"),
                                  expired=bool(data.get("is_expired")))

    def read_export_file(self, file: ExportFile) -> t.Iterator[dict]:
        return file.ndjson_rows()


# -- raw package usage log files ----------------------------------------------------


class UsageLogWindows(WindowedStream):
    """Where the package usage log streams start: ``lookback_days`` before the bookmark
    (Salesforce delivers usage logs days late), else ``start_date``, else the last 45
    days (their retention); windows of at most 31 days up to yesterday."""

    lookback_days = 3
    lookback_setting = "lookback_days"
    history_days = DEFAULT_REQUEST_HISTORY_DAYS - 1  # today is the 45th day
    window_days = MAX_REQUEST_WINDOW_DAYS
    last_day_offset = 1


class PackageUsageRequestsStream(UsageLogWindows, IsvappStream):
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
        """One ``from``..``to`` window (both days included) per 31 days, from where the
        stream or its selected log files start."""
        readers = [s for s in (self, *self.child_streams) if s.selected] or [self]
        first = min(s.first_day() for s in readers)
        return [{"from": first_day.isoformat(), "to": last_day.isoformat()}
                for first_day, last_day in self.date_windows(first)]

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
                finalize_state(stream)
        write_state_now(self)

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


class PackageUsageLogsStream(UsageLogWindows, IsvappStream):
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
        self._first_day: dt.date | None = None

    def wants(self, request: dict) -> bool:
        """Whether this stream still needs the file of ``request`` (not before its own
        bookmark less the look-back; the parent may read further back for itself)."""
        if self._first_day is None:
            self._first_day = self.first_day()
        end = request.get("sf_end_time") or request.get("request_sf_end_time") or ""
        return not end or dt.date.fromisoformat(end[:10]) >= self._first_day

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
