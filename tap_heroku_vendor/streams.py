"""Streams of the Heroku App Info API."""

from __future__ import annotations

import typing as t
from urllib.parse import unquote, urlsplit

from singer_sdk import SchemaDirectory, StreamSchema
from singer_sdk.pagination import HeaderLinkPaginator

from tap_common.client import VendorRESTStream
from tap_common.errors import VendorAPIError, sentence
from tap_heroku_vendor import schemas

if t.TYPE_CHECKING:
    import requests
    from singer_sdk.helpers.types import Context

SCHEMAS = SchemaDirectory(schemas)


class AppsStream(VendorRESTStream):
    """Every app with the add-on installed; pages follow the `Link: rel="next"` header."""

    name = "apps"
    path = "/vendor/apps"
    primary_keys = ("resource_uuid",)
    schema = StreamSchema(SCHEMAS)

    def get_new_paginator(self) -> HeaderLinkPaginator:
        return HeaderLinkPaginator()

    def validate_response(self, response: requests.Response) -> None:
        if response.status_code in (404, 410):
            # Heroku announced the end of life of this API for 3 July 2023.
            msg = (
                f"{sentence(self.error_line(response))} Heroku no longer answers the Legacy App Info "
                "API for this add-on: use the Platform API for Partners instead, with "
                "`api: partner`, `oauth_client_secret` and `installs` or `installs_file` "
                "(each install's resource_uuid and refresh_token); see docs/tap-heroku-vendor.md, "
                "section Partner mode."
            )
            raise VendorAPIError(msg)
        super().validate_response(response)

    def post_process(self, row: dict, context: Context | None = None) -> dict:
        row["resource_uuid"] = (row.get("resource") or {}).get("uuid")
        return row

    def get_child_context(self, record: dict, context: Context | None) -> dict:
        # Heroku's order of preference for the app identifier.
        identifier = record.get("provider_id") or record["resource_uuid"] or record.get("heroku_id")
        return {
            "app_identifier": identifier,
            "provider_id": record.get("provider_id"),
            "resource_uuid": record["resource_uuid"],
        }


class AppInfoStream(VendorRESTStream):
    """Details of each installed app: one `GET /vendor/apps/<provider_id>` per app."""

    name = "app_info"
    path = "/vendor/apps/{app_identifier}"
    records_jsonpath = "$"
    parent_stream_type = AppsStream
    primary_keys = ("resource_uuid",)
    schema = StreamSchema(SCHEMAS)
    # An app deprovisioned between the listing and this call answers 404.
    tolerated_statuses = frozenset({404})
    # Customers' connection strings (config vars, the log drain URL with its token).
    unselected_by_default = ("config", "log_input_url")

    def get_new_paginator(self) -> None:
        return None

    def validate_response(self, response: requests.Response) -> None:
        if response.status_code == 404:
            app = unquote(urlsplit(response.url).path.rsplit("/", 1)[-1])
            self.logger.warning(
                "app_info: app %r answered 404 (deprovisioned since it was listed, or still "
                "provisioning); skipped",
                app,
            )
        super().validate_response(response)

    def post_process(self, row: dict, context: Context | None = None) -> dict:
        assert context is not None
        row["resource_uuid"] = (row.get("resource") or {}).get("uuid") or context["resource_uuid"]
        row["provider_id"] = context["provider_id"]
        return row
