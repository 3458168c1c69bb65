"""Streams of partner mode: Heroku's Platform API v3, one access token per install.

Every stream is a child of ``addons``, whose partitions are the installs (resource
uuids, in order): all requests of one install run together, with that install's token.

    addons                GET /addons/{uuid}
    ├── addon_config      GET /addons/{uuid}/config            (not selected by default)
    ├── addon_attachments GET /addons/{uuid}/addon-attachments (Range pages)
    └── partner_apps      GET /apps/{app_id}                   (the add-on's app)
        ├── app_domains       GET /apps/{app_id}/domains       (Range pages)
        └── app_collaborators GET /apps/{app_id}/collaborators (Range pages)

A 403 or 404 for one install ends that stream for that install only (a warning the
first time, a count in the end-of-run summary). After each install the state records
it (``resume_after``): a run that is killed resumes with the next install, and a run
that completes leaves no marker. With ``request_budget``, the night's plan and its
fixed-size state come from ``partner_schedule`` instead; ``partner_etags`` (conditional
requests) and ``partner_concurrency`` (installs read ahead) plug in here too.
"""

from __future__ import annotations

import math
import typing as t

from singer_sdk import SchemaDirectory, StreamSchema

from tap_common._sdk import write_state_now
from tap_common.client import VendorRESTStream
from tap_common.errors import CredentialRejectedError, sentence
from tap_heroku_vendor import schemas
from tap_heroku_vendor.partner import (
    ACCEPT_V3,
    InstallSkipped,
    PartnerSession,
    RangePaginator,
    first_range,
)
from tap_heroku_vendor.partner_etags import GENERATION_KEY, EtagCache
from tap_heroku_vendor.partner_schedule import BudgetSpent, Schedule

if t.TYPE_CHECKING:
    import requests
    from singer_sdk.helpers.types import Context
    from singer_sdk.streams.rest import HTTPRequest, PageContext

    from tap_heroku_vendor.tap import TapHerokuVendor

SCHEMAS = SchemaDirectory(schemas)
RESUME_KEY = "resume_after"
#: With ``request_budget``: the rotation's state (fixed size; see partner_schedule).
SCHEDULE_KEY = "schedule"


class PartnerStream(VendorRESTStream):
    """A Platform API endpoint read with the token of the install in the context."""

    records_jsonpath = "$[*]"
    #: Per install: the token may not call it (403), or the resource is gone (404).
    tolerated_statuses = frozenset({403, 404})
    #: A list endpoint, paged with ``Range`` / ``Next-Range``.
    ranged: t.ClassVar[bool] = False
    #: Record field -> context key: the parent's id stamped on each row, where the
    #: endpoint's own rows do not name it.
    parent_id_fields: t.ClassVar[dict[str, str]] = {}
    #: A list without child streams, asked with ``If-None-Match`` when the tap keeps
    #: ETags (``etag_cache_file``; see partner_etags).
    conditional: t.ClassVar[bool] = False

    tap: TapHerokuVendor

    @property
    def session(self) -> PartnerSession:
        return self.tap.partner

    @property
    def authenticator(self) -> t.Callable:  # type: ignore[override]
        # The install's token to api_url, the manifest to addons_api_url, nothing elsewhere.
        return self.session.authenticator

    @property
    def http_headers(self) -> dict:
        return {**super().http_headers, "Accept": ACCEPT_V3}

    def get_new_paginator(self) -> RangePaginator | None:
        return RangePaginator() if self.ranged else None

    def post_process(self, row: dict, context: Context | None = None) -> dict:
        for field, key in self.parent_id_fields.items():
            row[field] = context[key] if context else None
        return row

    def get_http_request(self, *, page: PageContext) -> HTTPRequest:
        request = super().get_http_request(page=page)
        if self.ranged:
            request.headers["Range"] = page.next_page_token or first_range(self.session.page_size)
        cache = self.etags
        if cache is not None and page.next_page_token is None:
            etag = cache.get(self.etag_key(request.url))
            if etag:
                request.headers["If-None-Match"] = etag
                cache.sent += 1
        return request

    # -- conditional requests (see partner_etags) ----------------------------------

    @property
    def etags(self) -> EtagCache | None:
        return self.tap.etag_cache if self.conditional else None

    def etag_key(self, url: str) -> str:
        selected = self.__dict__.get("_selected_fields")
        if selected is None:
            selected = self.__dict__["_selected_fields"] = [
                ".".join(map(str, crumb)) for crumb, on in self.mask.items() if on]
        return EtagCache.key(self.name, selected, url)

    def parse_response(self, response: requests.Response) -> t.Iterable[dict]:
        cache = self.etags
        if cache is not None and response.status_code == 304:  # noqa: PLR2004
            cache.not_modified += 1
            return []  # unchanged since the rows the warehouse holds
        records = super().parse_response(response)
        request = response.request
        first_page = not self.ranged or request.headers.get("Range") == first_range(
            self.session.page_size)
        if cache is not None and first_page and request.url:
            key = self.etag_key(request.url)
            etag = response.headers.get("ETag")
            if response.status_code == 200 and etag:  # noqa: PLR2004  (the whole list)
                cache.defer(key, etag)  # kept once the rows are emitted
            else:
                cache.drop(key)
        return records

    def commit_etags(self) -> None:
        """The run's last install is done: its STATE vouches for this run's ETags."""
        cache = self.tap.etag_cache
        if cache is not None:
            cache.flush()
            self.stream_state[GENERATION_KEY] = cache.generation

    # -- one install at a time ------------------------------------------------------

    def get_records(self, context: Context | None) -> t.Iterable[dict]:
        assert context is not None
        install = self.session.use(context["resource_uuid"])
        if install is None or install.skipped:
            return
        try:
            yield from super().get_records(context)
        except InstallSkipped:
            return
        except BudgetSpent:
            # The install stays due: AddonsStream does not count it read.
            self.tap.partner_budget.cut_short.add(context["resource_uuid"])

    def request_records(self, context: Context | None) -> t.Iterable[dict]:
        prefetcher = self.tap.prefetcher
        found = prefetcher.take(self.name, context) if prefetcher and context else None
        if isinstance(found, BaseException):
            raise found
        if found is None:
            yield from self.live_records(context)
            etags = self.etags.take_deferred() if self.etags else []
        else:
            records, etags = found
            yield from records
        if etags:
            self.etags.keep(etags)  # its rows are emitted now

    def live_records(self, context: Context | None) -> t.Iterable[dict]:
        """The records as the API answers them now (a worker's, or the stream's own);
        their ETags wait in ``etags.take_deferred()``."""
        if self.etags:
            self.etags.take_deferred()  # left by a read that failed half-way
        return super().request_records(context)

    # -- responses ------------------------------------------------------------------

    def validate_response(self, response: requests.Response) -> None:
        session = self.session
        host = session.host_of(response.url)
        status = response.status_code
        session.requests[host or "other"] += 1
        if host == "api":
            install = session.current
            if status == 401 and install is not None:  # noqa: PLR2004
                # Its token already renewed once, by the authenticator (InstallToken).
                msg = (f"{sentence(self.error_line(response))} Heroku rejected a freshly issued access "
                       f"token for add-on resource {install.uuid}: the OAuth client "
                       "(`oauth_client_secret`) may not belong to this add-on, or `api_url` is "
                       "not the Platform API.")
                raise CredentialRejectedError(msg)
            if status in self.tolerated_statuses:
                session.api_refused(self.name, status)
        super().validate_response(response)


class AddonsStream(PartnerStream):
    """The add-on resource of each install: plan, state, app, billing."""

    name = "addons"
    path = "/addons/{resource_uuid}"
    records_jsonpath = "$"
    primary_keys = ("id",)
    schema = StreamSchema(SCHEMAS)

    @property
    def partitions(self) -> list[dict]:
        session = self.session
        session.prepare(self.name)
        session.recall(self.stream_state)
        if self.tap.partner_budget is not None:
            self.__dict__["_order"] = self.schedule.order()
            return [{"resource_uuid": resource} for resource in self.__dict__["_order"]]
        resume_after = self.stream_state.get(RESUME_KEY)
        pending = session.pending(resume_after)
        if resume_after and pending and session.installs:
            self.logger.info("addons: resuming after add-on resource %s (%d of %d installs left)",
                             resume_after, len(pending), len(session.installs))
        self.__dict__["_last_pending"] = pending[-1] if pending else None
        self.__dict__["_order"] = pending
        return [{"resource_uuid": resource} for resource in pending]

    def get_records(self, context: Context | None) -> t.Iterable[dict]:
        assert context is not None
        self.read_ahead()
        if self.tap.partner_budget is not None:
            yield from self.scheduled_records(context)
            return
        resource = context["resource_uuid"]
        yield from super().get_records(context)
        self.read_done(resource)
        # Reached once every child stream of this install is done.
        self.session.finished(resource)
        state = self.stream_state
        if resource == self.__dict__.get("_last_pending"):
            state.pop(RESUME_KEY, None)
            self.commit_etags()
        else:
            state[RESUME_KEY] = resource
        self.session.remember(state)
        write_state_now(self)

    def get_child_context(self, record: dict, context: Context | None) -> dict:
        assert context is not None
        return {"resource_uuid": context["resource_uuid"],
                "app_id": (record.get("app") or {}).get("id")}

    # -- concurrent installs (see partner_concurrency) ---------------------------------

    def read_ahead(self) -> None:
        """Workers read the next installs while this one is emitted."""
        prefetcher = self.tap.prefetcher
        position = self.__dict__.get("_position", 0)
        self.__dict__["_position"] = position + 1
        if prefetcher is None:
            return
        budget = self.tap.partner_budget

        def may_submit() -> bool:
            # Room in the budget for every install in flight and one more: an install
            # cut short by the budget is read again next night, its requests wasted.
            if budget is None:
                return True
            if budget.exhausted:
                return False
            schedule = self.schedule
            per_install = (math.ceil(budget.spent / schedule.installs_read)
                           if schedule.installs_read else len(requesting_streams(self)))
            return budget.remaining >= per_install * (prefetcher.in_flight() + 1)

        prefetcher.ahead(self.__dict__.get("_order") or [], position, may_submit)

    def read_done(self, resource: str) -> None:
        prefetcher = self.tap.prefetcher
        if prefetcher is not None:
            prefetcher.done(resource)

    # -- with a request budget (see partner_schedule) ---------------------------------

    @property
    def schedule(self) -> Schedule:
        schedule = self.__dict__.get("_schedule")
        if schedule is None:
            session = self.session
            schedule = self.__dict__["_schedule"] = Schedule(
                self.stream_state.get(SCHEDULE_KEY), session.installs,
                session.listing_fingerprints,
                full_refresh_nights=int(self.config.get("full_refresh_nights") or 7))
            self.stream_state.pop(RESUME_KEY, None)  # the schedule's state says what is left
            self.__dict__["_left"] = len(schedule.order())
            self.__dict__["_install_cost"] = 1
        return schedule

    def scheduled_records(self, context: Context) -> t.Iterable[dict]:
        """One install of the night's plan, if the budget still holds one; its bucket
        counts as read only once every install in it was read to the end."""
        budget = self.tap.partner_budget
        assert budget is not None
        resource = context["resource_uuid"]
        schedule = self.schedule
        self.__dict__["_left"] -= 1
        prefetcher = self.tap.prefetcher
        if (prefetcher is not None and prefetcher.submitted(resource)) or (
                not budget.exhausted and budget.remaining >= self.__dict__["_install_cost"]):
            spent_before = budget.spent
            yield from PartnerStream.get_records(self, context)
            self.session.finished(resource)
            self.read_done(resource)
            cost = budget.spent - spent_before
            self.__dict__["_install_cost"] = max(self.__dict__["_install_cost"], cost)
            complete = resource not in budget.cut_short
            if complete:
                schedule.installs_read += 1
            if complete and schedule.finished(resource) and schedule.due_write():
                self.stream_state[SCHEDULE_KEY] = schedule.dump()
                write_state_now(self)
        elif not self.__dict__.get("_budget_warned"):
            self.__dict__["_budget_warned"] = True
            self.logger.warning(
                "partner mode: request_budget (%d Platform API requests) spent; %d planned "
                "install(s) are left for the next runs (their rows from earlier runs stay)",
                budget.limit, self.__dict__["_left"] + 1)
        if self.__dict__["_left"] == 0:
            self.stream_state[SCHEDULE_KEY] = schedule.dump()
            self.commit_etags()
            write_state_now(self)


class AddonConfigStream(PartnerStream):
    """Config vars of each add-on resource: your customers' secrets (opt in)."""

    name = "addon_config"
    path = "/addons/{resource_uuid}/config"
    parent_stream_type = AddonsStream
    primary_keys = ("addon_id", "name")
    schema = StreamSchema(SCHEMAS)
    conditional = True
    selected_by_default = False
    parent_id_fields = {"addon_id": "resource_uuid"}


class AddonAttachmentsStream(PartnerStream):
    """Where each add-on resource is attached (apps, names, log input URL)."""

    name = "addon_attachments"
    path = "/addons/{resource_uuid}/addon-attachments"
    parent_stream_type = AddonsStream
    primary_keys = ("id",)
    schema = StreamSchema(SCHEMAS)
    conditional = True
    ranged = True
    # The log drain URL carries its Logplex token (a customer credential): opt in, as
    # app_info's in legacy mode.
    unselected_by_default = ("log_input_url",)

    def post_process(self, row: dict, context: Context | None = None) -> dict:
        assert context is not None
        row["addon_id"] = (row.get("addon") or {}).get("id") or context["resource_uuid"]
        return row


class PartnerAppsStream(PartnerStream):
    """The app each add-on resource is provisioned to (owner, region, stack)."""

    # Not `apps`: that is the legacy stream (key resource_uuid, a /vendor/apps row); one
    # name for two different tables would clash in a warehouse that has loaded both.
    name = "partner_apps"
    path = "/apps/{app_id}"
    records_jsonpath = "$"
    parent_stream_type = AddonsStream
    primary_keys = ("id",)
    schema = StreamSchema(SCHEMAS)

    def get_records(self, context: Context | None) -> t.Iterable[dict]:
        assert context is not None
        app_id = context.get("app_id")
        if not app_id or app_id in self.session.synced_apps:
            return  # no app, or read already through another resource of the add-on
        for record in super().get_records(context):
            self.session.synced_apps.add(app_id)
            yield record

    def get_child_context(self, record: dict, context: Context | None) -> dict:
        assert context is not None
        return {"resource_uuid": context["resource_uuid"], "app_id": context["app_id"]}


class AppDomainsStream(PartnerStream):
    """Domains of each app (Heroku and custom hostnames)."""

    name = "app_domains"
    path = "/apps/{app_id}/domains"
    parent_stream_type = PartnerAppsStream
    primary_keys = ("id",)
    schema = StreamSchema(SCHEMAS)
    conditional = True
    ranged = True
    parent_id_fields = {"app_id": "app_id"}


class AppCollaboratorsStream(PartnerStream):
    """Collaborators of each app; the owner's email is the row with ``role`` owner."""

    name = "app_collaborators"
    path = "/apps/{app_id}/collaborators"
    parent_stream_type = PartnerAppsStream
    primary_keys = ("id",)
    schema = StreamSchema(SCHEMAS)
    conditional = True
    ranged = True
    parent_id_fields = {"app_id": "app_id"}


def requesting_streams(stream: PartnerStream) -> list[PartnerStream]:
    """``stream`` and its descendants that the run reads (a request each, at least)."""
    found = [stream]
    for child in stream.child_streams:
        if child.selected or child.has_selected_descendents:
            found += requesting_streams(child)
    return found


PARTNER_STREAMS = (AddonsStream, AddonConfigStream, AddonAttachmentsStream, PartnerAppsStream,
                   AppDomainsStream, AppCollaboratorsStream)
