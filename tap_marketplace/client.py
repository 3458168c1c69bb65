"""The Marketplace base stream: Basic auth, the developer space, filters, pagination shapes.

Every Marketplace stream (this package's and the aggregated reports') derives from
``MarketplaceStream``. A ``path`` may use ``{developerId}``; it is filled with the
configured developer id, or the one resolved once per run from ``vendor_id``.
"""

from __future__ import annotations

import hashlib
import typing as t
from collections import Counter

import orjson
from singer_sdk.pagination import BaseAPIPaginator, BaseHATEOASPaginator

from tap_common.client import VendorRESTStream
from tap_common.errors import PaginationError, PayloadError
from tap_common.exports import COMPLETED, FAILED, PENDING
from tap_common.exports import Export, ExportFile, ExportStatus, ExportStream
from tap_common.windows import WindowedStream

if t.TYPE_CHECKING:
    import requests
    from singer_sdk.helpers.types import Context

    from tap_marketplace.tap import TapMarketplace

REPORTING = "/rest/3/reporting/developer-space/{developerId}"
#: Largest page the offset endpoints serve.
OFFSET_PAGE_SIZE = 50
#: Passes over one offset query before a collection that keeps changing while it is
#: paged fails the run (``ReportingStream.query_rows``).
MAX_PASSES_OVER_A_CHANGING_COLLECTION = 3
#: Export statuses Atlassian documents (reference §6); any other fails the run at once.
EXPORT_STATES = {"QUEUED": PENDING, "IN_PROGRESS": PENDING, "COMPLETED": COMPLETED,
                 "FAILED": FAILED}


def api_href(href: str) -> str:
    """A link from a body, made usable: v3 hrefs omit scheme and host, a few `/rest/3`."""
    if href.startswith(("http://", "https://")):
        return href
    if not href.startswith("/"):
        href = "/" + href
    if not href.startswith("/rest/"):
        href = "/rest/3" + href
    return href


def url_encode(value: t.Any) -> str:
    """A value as a path segment: a slash in a string escaped (as the SDK's own paths)."""
    return value.replace("/", "%2F") if isinstance(value, str) else str(value)


def link_href(links: t.Any, name: str) -> str | None:
    """``links[name]`` as a href, whether it is a string, ``{href}`` or ``[{href}]``."""
    if not isinstance(links, dict):
        return None
    link = links.get(name)
    if isinstance(link, list):
        link = link[0] if link else None
    if isinstance(link, dict):
        link = link.get("href")
    return link if isinstance(link, str) and link else None


def content_key(fields: dict) -> str:
    """A stable id for rows the API gives none (feedback, attribution): their content.

    ``fields`` are what the tap emits of the row (``ReportingStream.keyed_content``: the
    declared fields, never one the vendor adds later); a field that is null counts as
    absent, so a vendor that starts or stops sending nulls changes no key either.
    """
    present = {name: value for name, value in fields.items() if value is not None}
    return hashlib.sha256(orjson.dumps(present, option=orjson.OPT_SORT_KEYS)).hexdigest()[:32]


class OccurrenceKeys:
    """Content keys that never merge two rows, and never give one row two keys.

    Two rows identical in every emitted field would share a content key, and the
    warehouse would keep one: the n-th identical row gets ``<hash>-n`` (the first keeps
    the bare hash). Identical rows are identical in their date too, and every read
    covers whole days, so a re-read numbers them the same way: keys are stable across
    runs.

    One page is one answer of the vendor, so identical rows on it are distinct rows.
    Offset pages are not a snapshot: a row inserted (newest first) between two requests
    pushes the last row of a page onto the next one, where it is read again. So a row
    identical to one keyed on an earlier page is either that row again or a genuine
    copy, which nothing in the row tells apart. ``count`` settles it: it asks the
    vendor how many such rows there are (one request for that row's day alone, a
    single answer), and occurrences beyond that count are the rows read again: they
    are not emitted twice (``key`` gives None). Rows read from one export file are one
    answer, so ``count`` is never needed there.
    """

    def __init__(self, count: t.Callable[[dict], int] | None = None) -> None:
        self._count = count
        self._seen: Counter[str] = Counter()
        self._first_page: dict[str, int] = {}
        self._limit: dict[str, int] = {}

    def key(self, fields: dict, page: int = 1) -> str | None:
        """The key of the row with these emitted ``fields``, read on ``page`` (None: the
        same row as one already keyed, read again)."""
        content = content_key(fields)
        seen = self._seen[content]
        if seen and self._count is not None and (
                content in self._limit or self._first_page[content] != page):
            if content not in self._limit:
                self._limit[content] = self._count(fields)
            if seen >= self._limit[content]:
                return None
        self._first_page.setdefault(content, page)
        self._seen[content] = seen + 1
        return content if seen == 0 else f"{content}-{seen + 1}"


def _sen(row: dict) -> str | None:
    if row.get("licenseId"):
        return str(row["licenseId"])
    if row.get("addonLicenseId"):
        return f"SEN-{row['addonLicenseId']}"
    return None


def license_key(row: dict, hosting: t.Any = None) -> str | None:
    """One id per license across hosting types, that stays when Atlassian adds ids later.

    Each hosting type is keyed on the identifier it has always had: a Cloud license on
    its entitlement number, a Server or Data Center license on its SEN (``licenseId``,
    else ``SEN-`` + ``addonLicenseId``). The other identifier is only used when that one
    is missing, so a Data Center license that Atlassian gives an entitlement number later
    (2025) keeps the key it was first loaded under. ``hosting`` defaults to the row's.
    """
    hosting = str(hosting if hosting is not None else row.get("hosting") or "")
    entitlement = row.get("appEntitlementNumber") or None
    order = ((entitlement, _sen(row)) if hosting.strip().lower() == "cloud"
             else (_sen(row), entitlement))
    found = next((value for value in order if value), None) or row.get("appEntitlementId")
    return str(found) if found else None


# -- the four pagination shapes (reference §3.1, §3.2) -------------------------------


def _body(decode: t.Callable[[requests.Response], t.Any], response: requests.Response) -> dict:
    # ``decode`` is the stream's cached decoder: a page is parsed once, not twice.
    payload = decode(response)
    return payload if isinstance(payload, dict) else {}


class HalNextPaginator(BaseHATEOASPaginator):
    """Offset collections: follow ``_links.next.href`` (it carries offset, limit, filters).

    Some details endpoints put their links at the top level instead of in ``_links``.
    """

    def __init__(self, decode: t.Callable[[requests.Response], t.Any]) -> None:
        super().__init__()
        self._decode = decode

    def get_next_url(self, response: requests.Response) -> str | None:
        body = _body(self._decode, response)
        href = link_href(body.get("_links"), "next") or link_href(body, "next")
        return api_href(href) if href else None


class LinksNextPaginator(BaseHATEOASPaginator):
    """Cursor pages with ``links.next`` (no underscore): a URL string holding the cursor."""

    def __init__(self, decode: t.Callable[[requests.Response], t.Any]) -> None:
        super().__init__()
        self._decode = decode

    def get_next_url(self, response: requests.Response) -> str | None:
        href = link_href(_body(self._decode, response).get("links"), "next")
        return api_href(href) if href else None


class BodyTokenPaginator(BaseAPIPaginator[t.Optional[str]]):
    """Cursor pages with an opaque token in a top-level field, sent back as ``?cursor=``.

    Reviews name the field ``cursor``; developer-space members name it ``next``.
    """

    def __init__(self, decode: t.Callable[[requests.Response], t.Any], field: str) -> None:
        super().__init__(None)
        self._decode = decode
        self.field = field

    def get_next(self, response: requests.Response) -> str | None:
        token = _body(self._decode, response).get(self.field)
        return token if isinstance(token, str) and token else None


# -- streams --------------------------------------------------------------------------


class MarketplaceStream(WindowedStream, VendorRESTStream):
    """A Marketplace API v3 endpoint.

    Records are shaped to their schema here, once: ``adapt`` (per stream) fixes the
    vendor's variations and ``context_fields`` copies the parent's keys into a child's
    rows (the shared base leaves out fields the schema does not declare).
    """

    tap: TapMarketplace
    #: Send the configured ``product_ids`` as repeated ``productId`` parameters.
    filters_by_product: t.ClassVar[bool] = False
    #: Context keys (the parent's ids) copied into each record.
    context_fields: t.ClassVar[tuple[str, ...]] = ()

    def adapt(self, row: dict, context: Context | None) -> dict | None:
        """The vendor's row in this stream's terms; None drops it."""
        return row

    def post_process(self, row: dict, context: Context | None = None) -> dict | None:
        adapted = self.adapt(row, context)
        if adapted is None:
            return None
        for name in self.context_fields:
            adapted.setdefault(name, (context or {}).get(name))
        return adapted

    def validate_response(self, response: requests.Response) -> None:
        if response.status_code in self.tolerated_statuses:
            self.logger.info("%s; skipped", self.error_line(response))
        super().validate_response(response)

    @property
    def developer_id(self) -> str:
        with self.client.acting_for(self.name):
            return self.tap.developer_id()

    def get_new_paginator(self) -> t.Any:
        return None  # one request; paged streams say how they page

    def get_url(self, context: Context | None) -> str:
        return self.url_for(self.path or "", context)

    def url_for(self, path: str, context: Context | None = None) -> str:
        """A path of this API (with ``{developerId}`` and context keys) as a URL."""
        url = self.url_base + path
        values = {**(context or {})}
        if "{developerId}" in path:
            values["developerId"] = self.developer_id
        for key, value in values.items():
            url = url.replace(f"{{{key}}}", url_encode(value))
        return url

    def get_url_params(self, context: Context | None, next_page_token: t.Any) -> dict:
        params: dict[str, t.Any] = {}
        product_ids = self.config.get("product_ids")
        if self.filters_by_product and product_ids:
            # Repeated, never comma-joined: the API silently misreads "a,b" as "all apps".
            params["productId"] = list(product_ids)
        return params

    def starting_date(self, context: Context | None) -> str | None:
        """``first_day`` as the API's ``YYYY-MM-DD``; None for a full pull."""
        first = self.first_day(context)
        return first.isoformat() if first else None


class CursorStream(MarketplaceStream):
    """Catalog endpoints paged by ``links.next`` URLs."""

    page_size: t.ClassVar[int | None] = 50

    def get_new_paginator(self) -> LinksNextPaginator:
        return LinksNextPaginator(self.decode_json)

    def get_url_params(self, context: Context | None, next_page_token: t.Any) -> dict:
        params = super().get_url_params(context, next_page_token)
        if self.page_size:
            params["limit"] = self.page_size
        return params


class TokenCursorStream(MarketplaceStream):
    """Endpoints that hand back a bare cursor token in a top-level field."""

    cursor_field: t.ClassVar[str] = "cursor"
    page_size: t.ClassVar[int] = 50

    def get_new_paginator(self) -> BodyTokenPaginator:
        return BodyTokenPaginator(self.decode_json, self.cursor_field)

    def get_url_params(self, context: Context | None, next_page_token: t.Any) -> dict:
        params = super().get_url_params(context, next_page_token)
        params["limit"] = self.page_size
        if next_page_token:
            params["cursor"] = next_page_token
        return params


class CollectionChanged(Exception):  # noqa: N818 - a signal, caught in query_rows
    """The collection's ``totalCount`` changed between two pages of one query."""


class ReportingStream(MarketplaceStream):
    """A reporting collection paged by ``offset``/``limit`` and ``_links.next``.

    ``query(context)`` gives the filters; a stream that must ask in several passes
    (licenses around the 2018 data-insights split) returns them from ``queries``.
    """

    filters_by_product = True
    #: The collection key in the page envelope.
    collection_key: t.ClassVar[str] = ""
    #: The query parameter the first day to read goes to (``lastUpdated``, ``startDate``).
    bookmark_param: t.ClassVar[str | None] = None
    #: For rows without an id: this field gets their content key (``OccurrenceKeys``).
    content_key_field: t.ClassVar[str | None] = None
    # The spec types some collections as one object (licenses): accept both.
    records_may_be_one_object = True

    def __init__(self, *args: t.Any, **kwargs: t.Any) -> None:
        super().__init__(*args, **kwargs)
        self._current_query: dict[str, t.Any] = {}
        self._content_keys = OccurrenceKeys()
        self._page_number = 0
        self._total_count: int | None = None
        if self.collection_key:
            self.records_jsonpath = f"$.{self.collection_key}[*]"

    def query(self, context: Context | None) -> dict[str, t.Any]:
        """Filters of this stream, also used to start its export: the first day to read
        (``starting_date``) as ``bookmark_param``; as ``lastUpdated``, with ``start_date``
        as ``startDate`` beside it."""
        if self.bookmark_param == "lastUpdated":
            return {"startDate": self.config.get("start_date"),
                    "lastUpdated": self.starting_date(context)}
        if self.bookmark_param:
            return {self.bookmark_param: self.starting_date(context)}
        return {}

    def queries(self, context: Context | None) -> list[dict[str, t.Any]]:
        return [self.query(context)]

    def get_new_paginator(self) -> HalNextPaginator:
        return HalNextPaginator(self.decode_json)

    def get_url_params(self, context: Context | None, next_page_token: t.Any) -> dict:
        params = super().get_url_params(context, next_page_token)
        params.update(self._current_query)
        params.update(offset=0, limit=OFFSET_PAGE_SIZE)
        return params

    def get_records(self, context: Context | None) -> t.Iterable[dict]:
        # Raw rows: the SDK applies ``post_process`` to each.
        self._content_keys = self.new_content_keys(context)
        for query in self.queries(context):
            yield from self.query_rows(query, context)

    def new_content_keys(self, context: Context | None) -> OccurrenceKeys:
        return OccurrenceKeys(lambda fields: self.count_on_its_day(fields, context))

    def parse_response(self, response: requests.Response) -> t.Iterable[dict]:
        # Rows are post-processed page by page: the page a row was read on (OccurrenceKeys).
        self._page_number += 1
        rows = super().parse_response(response)
        body = self.decode_json(response)
        total = body.get("totalCount") if isinstance(body, dict) else None
        if isinstance(total, int) and not isinstance(total, bool):
            if self._total_count is None:
                self._total_count = total
            elif total != self._total_count:
                msg = (f"{self.where(response)}: the collection had {self._total_count} "
                       f"rows on the first page and {total} on page {self._page_number}")
                raise CollectionChanged(msg)
        return rows

    def post_process(self, row: dict, context: Context | None = None) -> dict | None:
        row = super().post_process(row, context)
        if row is None or not self.content_key_field:
            return row
        key = self._content_keys.key(self.keyed_content(row), self._page_number)
        if key is None:
            self.logger.info("%s: a row read again on the next page (rows were added "
                             "between two pages) is emitted once", self.name)
            return None
        row[self.content_key_field] = key
        return row

    def keyed_content(self, row: dict) -> dict:
        """What a content key is made of: the fields the tap emits, adapted, without
        the key itself; a field the vendor adds later is not one of them."""
        return {name: row.get(name) for name in self._declared_fields
                if name != self.content_key_field}

    def count_on_its_day(self, fields: dict, context: Context | None) -> int:
        """How many rows with these emitted ``fields`` the vendor has: the rows of their
        day (the replication key's), asked for in one query of their own."""
        day = str(fields.get(self.replication_key) or "")[:10]
        query = {**self._current_query, "startDate": day, "endDate": day}
        query.pop("lastUpdated", None)
        outer = (self._current_query, self._page_number, self._total_count,
                 self._content_keys)
        try:
            rows = [self.keyed_content(adapted) for adapted in (
                MarketplaceStream.post_process(self, dict(row), context)
                for row in ReportingStream.query_rows(self, query, context))
                if adapted is not None]
        finally:
            (self._current_query, self._page_number, self._total_count,
             self._content_keys) = outer
        wanted = content_key(fields)
        return sum(content_key(row) == wanted for row in rows)

    def query_rows(self, query: dict[str, t.Any], context: Context | None) -> t.Iterable[dict]:
        """Raw rows of one query, page by page.

        Offset pages are not a snapshot. When the ``totalCount`` of a later page differs
        from the first page's, rows were added or deleted between the requests: an added
        row pushes one already read onto the next page, a deleted one pulls an unread row
        onto a page already read, which would be missed. The query is then read again
        from its first page (rows read twice keep their keys: their ids, or their content
        numbered afresh), at most ``MAX_PASSES_OVER_A_CHANGING_COLLECTION`` times. Without a
        ``totalCount`` only a row read twice can be seen (``OccurrenceKeys``).
        """
        for passes in range(1, MAX_PASSES_OVER_A_CHANGING_COLLECTION + 1):
            self._current_query, self._total_count = query, None
            try:
                yield from self.request_records(context)
                return
            except CollectionChanged as changed:
                if passes == MAX_PASSES_OVER_A_CHANGING_COLLECTION:
                    msg = (f"{changed}; it changed while being paged on {passes} passes "
                           "over the query, so some of its rows may be missing: run again")
                    raise PaginationError(msg) from None
                self.logger.warning("%s; reading the query again from its first page",
                                    changed)
                self._content_keys = self.new_content_keys(context)
            finally:
                self._current_query = {}


class ExportableReportingStream(ExportStream, ReportingStream):
    """A reporting collection that can also be read through Atlassian's async export.

    With ``use_async_exports`` (the default) the export is started with the filters
    as query params and ``accept=json``, polled through ``_links.status`` until
    ``export.status`` is COMPLETED, and its JSON array is streamed element by element
    from ``_links.download``. A run interrupted meanwhile leaves the export in the
    state; the next run with the same filters resumes it (``ExportStream``).
    """

    #: The POST that starts the export.
    export_path: t.ClassVar[str]
    #: The download may wrap its array (``{"marketingAttribution": [...]}``).
    export_wrapper_key: t.ClassVar[str | None] = None
    #: Streams without a list endpoint always export.
    export_only: t.ClassVar[bool] = False
    export_states = EXPORT_STATES
    # Right after COMPLETED the download may still answer 404 "Export is being
    # processed" for a moment: that 404 is retried like a 503.
    download_retry_statuses = frozenset({404})

    @property
    def uses_export(self) -> bool:
        return self.export_only or bool(self.config.get("use_async_exports", True))

    def query_rows(self, query: dict[str, t.Any], context: Context | None) -> t.Iterable[dict]:
        if not self.uses_export:
            return super().query_rows(query, context)
        params = self.get_url_params(context, None)
        params.pop("offset", None)
        params.pop("limit", None)
        params.update(query, accept="json")
        return self.export_rows(params, context)

    def start_export(self, request: dict[str, t.Any], context: Context | None) -> Export:
        started = self.send("POST", self.url_for(self.export_path, context), params=request,
                            json={})
        body = self.decode_json(started, "$")
        export_id = str((body.get("export") or {}).get("id") or "(no id)")
        links = body.get("_links") or {}
        status_href, download_href = link_href(links, "status"), link_href(links, "download")
        if not status_href or not download_href:
            msg = (f"{self.name}: export {export_id} was started but the answer has no "
                   f"status/download links: {str(body)[:200]}")
            raise PayloadError(msg)
        return Export(export_id, api_href(status_href), api_href(download_href))

    def poll_export(self, export: Export) -> ExportStatus:
        response = self.send("GET", export.url)
        status = self.decode_json(response, "$.export")
        message = next((str(status[k]) for k in ("message", "errorMessage", "error", "reason")
                        if status.get(k)), None)
        return self.export_status(status.get("status"), message)

    def read_export_file(self, file: ExportFile) -> t.Iterator[dict]:
        return file.json_array_rows(self.export_wrapper_key)
