"""Streams of the Atlassian Marketplace API v3: reporting and catalog."""

from __future__ import annotations

import typing as t

from singer_sdk import SchemaDirectory, StreamSchema

from tap_marketplace import schemas
from tap_marketplace.client import MarketplaceStream

SCHEMAS = SchemaDirectory(schemas)


class DeveloperSpaceStream(MarketplaceStream):
    """The developer space itself: one record."""

    name = "developer_space"
    path = "/rest/3/developer-space/{developerId}"
    records_jsonpath = "$"
    primary_keys = ("id",)
    schema = StreamSchema(SCHEMAS)

    def get_new_paginator(self) -> None:
        return None


STREAMS: list[type[MarketplaceStream]] = [
    DeveloperSpaceStream,
]
