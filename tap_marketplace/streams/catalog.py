"""Catalog streams: the developer space's apps, their software and versions, reviews."""

from __future__ import annotations

import typing as t

from singer_sdk import SchemaDirectory, StreamSchema

from tap_marketplace import schemas
from tap_marketplace.client import CursorStream, MarketplaceStream, TokenCursorStream

if t.TYPE_CHECKING:
    from singer_sdk.helpers.types import Context

SCHEMAS = SchemaDirectory(schemas)


class AppListingsStream(CursorStream):
    """The developer space's apps, private ones included."""

    name = "app_listings"
    path = "/rest/3/product-listing/developer-space/{developerId}"
    records_jsonpath = "$.items[*]"
    primary_keys = ("productId",)
    schema = StreamSchema(SCHEMAS)

    def get_url_params(self, context: Context | None, next_page_token: t.Any) -> dict:
        return {**super().get_url_params(context, next_page_token), "includePrivate": "true"}

    def get_child_context(self, record: dict, context: Context | None) -> dict:
        return {"productId": record["productId"], "appKey": record.get("appKey")}


class AppSoftwareStream(MarketplaceStream):
    """The app software (one per hosting) of each app: a bare array."""

    name = "app_software"
    path = "/rest/3/app-software/app-key/{appKey}"
    parent_stream_type = AppListingsStream
    context_fields = ("appKey", "productId")
    primary_keys = ("appSoftwareId",)
    schema = StreamSchema(SCHEMAS)
    # An app listed before any software was uploaded has none.
    tolerated_statuses = frozenset({404})

    def get_child_context(self, record: dict, context: Context | None) -> dict:
        return {"appSoftwareId": record["appSoftwareId"]}


class AppSoftwareVersionsStream(CursorStream):
    name = "app_software_versions"
    path = "/rest/3/app-software/{appSoftwareId}/versions"
    records_jsonpath = "$.versions[*]"
    parent_stream_type = AppSoftwareStream
    context_fields = ("appSoftwareId",)
    primary_keys = ("appSoftwareId", "buildNumber")
    schema = StreamSchema(SCHEMAS)


class AppVersionListingsStream(CursorStream):
    """The listing (screenshots, highlights, links) of every version of an app software."""

    name = "app_version_listings"
    path = "/rest/3/app-software/{appSoftwareId}/listings/all"
    records_jsonpath = "$.versions[*]"  # reference §11: `versions`, not `listings`
    parent_stream_type = AppSoftwareStream
    context_fields = ("appSoftwareId",)
    primary_keys = ("appSoftwareId", "buildNumber")
    schema = StreamSchema(SCHEMAS)


class ParentSoftwareStream(CursorStream):
    """Atlassian's host products (Jira, Confluence …)."""

    name = "parent_software"
    path = "/rest/3/parent-software"
    records_jsonpath = "$.parentSoftware[*]"
    primary_keys = ("id",)
    schema = StreamSchema(SCHEMAS)

    def get_child_context(self, record: dict, context: Context | None) -> dict:
        return {"parentSoftwareId": record["id"]}


class ParentSoftwareVersionsStream(CursorStream):
    name = "parent_software_versions"
    path = "/rest/3/parent-software/{parentSoftwareId}/versions"
    records_jsonpath = "$.versions[*]"
    parent_stream_type = ParentSoftwareStream
    context_fields = ("parentSoftwareId",)
    primary_keys = ("parentSoftwareId", "buildNumber")
    schema = StreamSchema(SCHEMAS)


class ReviewsStream(TokenCursorStream):
    """Customer reviews of each app; the next page comes from the top-level ``cursor``."""

    name = "reviews"
    path = "/rest/3/products/{productId}/reviews"
    records_jsonpath = "$.reviews[*]"
    cursor_field = "cursor"
    parent_stream_type = AppListingsStream
    context_fields = ("productId",)
    primary_keys = ("id",)
    schema = StreamSchema(SCHEMAS)


class CloudMigrationCompatibilityStream(MarketplaceStream):
    """Each app's Server/DC → Cloud migration information (404 when never filled in)."""

    name = "cloud_migration_compatibility"
    path = "/rest/3/cloud-migration-compatibility/products/{productId}"
    records_jsonpath = "$"
    parent_stream_type = AppListingsStream
    context_fields = ("productId",)
    primary_keys = ("productId",)
    schema = StreamSchema(SCHEMAS)
    tolerated_statuses = frozenset({404})


class PrivacyAndSecurityStream(MarketplaceStream):
    """Each app's published privacy and security answers (404 when there are none)."""

    name = "privacy_and_security"
    path = "/rest/3/privacy-and-security/products/{productId}"
    records_jsonpath = "$"
    parent_stream_type = AppListingsStream
    context_fields = ("productId",)
    primary_keys = ("productId",)
    schema = StreamSchema(SCHEMAS)
    tolerated_statuses = frozenset({404})

    def get_url_params(self, context: Context | None, next_page_token: t.Any) -> dict:
        # Partners who may edit the app would get the unpublished draft by default.
        return {"state": "live"}


class DeveloperSpaceStream(MarketplaceStream):
    """The developer space itself: one record."""

    name = "developer_space"
    path = "/rest/3/developer-space/{developerId}"
    records_jsonpath = "$"
    primary_keys = ("id",)
    schema = StreamSchema(SCHEMAS)


class DeveloperSpaceMembersStream(TokenCursorStream):
    """Team members; the next page comes from a bare token in the top-level ``next``."""

    name = "developer_space_members"
    path = "/rest/3/developer-space/{developerId}/members"
    records_jsonpath = "$.members[*]"
    cursor_field = "next"
    page_size = 10  # the documented maximum
    primary_keys = ("aaid",)
    schema = StreamSchema(SCHEMAS)


class DeveloperSpaceListingsStream(MarketplaceStream):
    """The developer's public profile listing(s): a bare array."""

    name = "developer_space_listings"
    path = "/rest/3/developer-space/{developerId}/listings"
    primary_keys = ("developerId",)
    schema = StreamSchema(SCHEMAS)
