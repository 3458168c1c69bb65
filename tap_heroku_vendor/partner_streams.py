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
that completes leaves no marker.
"""

from __future__ import annotations

import typing as t

from singer_sdk import SchemaDirectory, StreamSchema

from tap_common._sdk import write_state_now
from tap_common.client import VendorRESTStream
from tap_common.errors import CredentialRejectedError
from tap_heroku_vendor import schemas
from tap_heroku_vendor.partner import (
    ACCEPT_V3,
    InstallSkipped,
    PartnerSession,
    RangePaginator,
    first_range,
)

if t.TYPE_CHECKING:
    import requests
    from singer_sdk.helpers.types import Context
    from singer_sdk.streams.rest import HTTPRequest, PageContext

    from tap_heroku_vendor.tap import TapHerokuVendor

SCHEMAS = SchemaDirectory(schemas)
RESUME_KEY = "resume_after"


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
        return request

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
                msg = (f"{self.error_line(response)}. Heroku rejected a freshly issued access "
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
        resume_after = self.stream_state.get(RESUME_KEY)
        pending = session.pending(resume_after)
        if resume_after and pending and session.installs:
            self.logger.info("addons: resuming after add-on resource %s (%d of %d installs left)",
                             resume_after, len(pending), len(session.installs))
        self.__dict__["_last_pending"] = pending[-1] if pending else None
        return [{"resource_uuid": resource} for resource in pending]

    def get_records(self, context: Context | None) -> t.Iterable[dict]:
        assert context is not None
        resource = context["resource_uuid"]
        yield from super().get_records(context)
        # Reached once every child stream of this install is done.
        self.session.finished(resource)
        state = self.stream_state
        if resource == self.__dict__.get("_last_pending"):
            state.pop(RESUME_KEY, None)
        else:
            state[RESUME_KEY] = resource
        self.session.remember(state)
        write_state_now(self)

    def get_child_context(self, record: dict, context: Context | None) -> dict:
        assert context is not None
        return {"resource_uuid": context["resource_uuid"],
                "app_id": (record.get("app") or {}).get("id")}


class AddonConfigStream(PartnerStream):
    """Config vars of each add-on resource: your customers' secrets (opt in)."""

    name = "addon_config"
    path = "/addons/{resource_uuid}/config"
    parent_stream_type = AddonsStream
    primary_keys = ("addon_id", "name")
    schema = StreamSchema(SCHEMAS)
    selected_by_default = False
    parent_id_fields = {"addon_id": "resource_uuid"}


class AddonAttachmentsStream(PartnerStream):
    """Where each add-on resource is attached (apps, names, log input URL)."""

    name = "addon_attachments"
    path = "/addons/{resource_uuid}/addon-attachments"
    parent_stream_type = AddonsStream
    primary_keys = ("id",)
    schema = StreamSchema(SCHEMAS)
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
    ranged = True
    parent_id_fields = {"app_id": "app_id"}


class AppCollaboratorsStream(PartnerStream):
    """Collaborators of each app; the owner's email is the row with ``role`` owner."""

    name = "app_collaborators"
    path = "/apps/{app_id}/collaborators"
    parent_stream_type = PartnerAppsStream
    primary_keys = ("id",)
    schema = StreamSchema(SCHEMAS)
    ranged = True
    parent_id_fields = {"app_id": "app_id"}


PARTNER_STREAMS = (AddonsStream, AddonConfigStream, AddonAttachmentsStream, PartnerAppsStream,
                   AppDomainsStream, AppCollaboratorsStream)
