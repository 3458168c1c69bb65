"""Every field a vendor documents for a stream's records is in the stream's schema (a field
missing there is dropped from every row). The documented fields are in
documented_fields.yml, which says where they come from."""

from __future__ import annotations

import json
import typing as t
from pathlib import Path

import pytest
import yaml

from helpers import run_cli

DOCUMENTED: dict[str, dict[str, list[str]]] = yaml.safe_load(
    (Path(__file__).parent / "documented_fields.yml").read_text())
#: Enough config for --discover.
DISCOVER_CONFIG = {
    "tap-isvapp": {"api_key": "k"},
    "tap-marketplace": {"username": "u", "api_token": "t",
                        "developer_id": "6f0e9a3c-1c2b-4d5e-9f00-5a1b2c3d4e5f"},
    "tap-heroku-vendor": {"manifest_id": "m", "manifest_password": "p"},
    "tap-heroku-vendor partner": {"api": "partner", "oauth_client_secret": "s",
                                  "installs": [{"resource_uuid": "u", "refresh_token": "r"}]},
}


def declares(schema: dict[str, t.Any], path: str) -> bool:
    """Whether ``schema`` has the field at the dotted ``path`` (through arrays' items)."""
    for part in path.split("."):
        while "items" in schema and "properties" not in schema:
            schema = schema["items"]
        properties = schema.get("properties") or {}
        if part not in properties:
            return False
        schema = properties[part]
    return True


@pytest.mark.parametrize("tap", sorted(DOCUMENTED))
def test_every_documented_field_is_in_the_schema(tap):
    executable = tap.split()[0]  # "tap-heroku-vendor partner": that tap in partner mode
    catalog = json.loads(run_cli(executable, DISCOVER_CONFIG[tap], "--discover").stdout)
    schemas = {entry["tap_stream_id"]: entry["schema"] for entry in catalog["streams"]}
    missing = {stream: [f for f in fields if not declares(schemas[stream], f)]
               for stream, fields in DOCUMENTED[tap].items()}
    assert not {stream: fields for stream, fields in missing.items() if fields}


def test_the_check_finds_a_missing_field():
    schema = {"properties": {"a": {"type": "object", "properties": {"b": {}}},
                             "c": {"type": "array", "items": {"properties": {"d": {}}}}}}
    assert declares(schema, "a.b") and declares(schema, "c.d")
    assert not declares(schema, "a.x") and not declares(schema, "approvalDetails")
