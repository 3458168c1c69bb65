"""The message stream a target reads: what each tap's installed console script writes.

Targets pay per message, not only per record: target-duckdb loads its buffered rows on
every SCHEMA message, so a SCHEMA per parent record meant one COPY per parent.
"""

from __future__ import annotations

import collections
import io
import json
from contextlib import redirect_stdout

import pytest

from singer_sdk.singerlib.encoding.simple import SchemaMessage, StateMessage
from tap_common.writer import OrjsonSingerWriter
from helpers import config_for, parse_messages, run_cli

#: tap -> (sandbox vendor, sandbox settings with many parents, {child stream: parent})
MANY_PARENTS = {
    "tap-heroku-vendor": ("heroku", {"apps": 150, "page_size": 40}, {"app_info": "apps"}),
    "tap-isvapp": ("isvapp", {"accounts": 60, "request_history_days": 40},
                   {"salesforce_account_summaries": "salesforce_accounts",
                    "package_usage_logs": "package_usage_requests"}),
    "tap-marketplace": ("marketplace", {"apps": 12, "parent_software": 9},
                        {"app_software": "app_listings", "reviews": "app_listings",
                         "cloud_migration_compatibility": "app_listings",
                         "privacy_and_security": "app_listings",
                         "app_software_versions": "app_software",
                         "app_version_listings": "app_software",
                         "parent_software_versions": "parent_software"}),
}


def every_stream_catalog(executable: str, config: dict) -> dict:
    """Discovery with every stream selected, the ones off by default included."""
    discovered = json.loads(run_cli(executable, config, "--discover").stdout)
    for entry in discovered["streams"]:
        for item in entry["metadata"]:
            if item["breadcrumb"] == []:
                item["metadata"]["selected"] = entry["tap_stream_id"] != "product_catalog"
    return discovered


@pytest.mark.parametrize("executable", sorted(MANY_PARENTS))
def test_one_schema_message_per_stream_however_many_parents(executable, sandboxes) -> None:
    vendor, settings, children = MANY_PARENTS[executable]
    server = sandboxes(vendor, **settings)
    config = config_for(server)
    out = run_cli(executable, config, catalog=every_stream_catalog(executable, config))
    assert out.returncode == 0, out.stderr[-3000:]

    schemas = collections.Counter(m["stream"] for m in out.messages if m["type"] == "SCHEMA")
    records = collections.Counter(m["stream"] for m in out.messages if m["type"] == "RECORD")
    for child, parent in children.items():
        assert records[child] > 0, f"{child}: no records"
        assert records[parent] >= 5, f"{child}: only {records[parent]} parent records"
    assert schemas == {stream: 1 for stream in schemas}, schemas
    assert set(records) <= set(schemas)

    # Each stream's one SCHEMA comes before its first RECORD.
    seen: set[str] = set()
    for message in out.messages:
        if message["type"] == "SCHEMA":
            seen.add(message["stream"])
        elif message["type"] == "RECORD":
            assert message["stream"] in seen


def test_a_changed_schema_is_sent_again() -> None:
    writer = OrjsonSingerWriter()
    first = {"type": "object", "properties": {"id": {"type": "string"}}}
    second = {"type": "object", "properties": {"id": {"type": "string"}, "n": {"type": "integer"}}}
    buffer = io.StringIO()
    with redirect_stdout(buffer):
        for schema in (first, first, second, second, first):
            writer.write_message(SchemaMessage("s", schema, ["id"]))
            writer.write_message(SchemaMessage("other", first, ["id"]))
        writer.write_message(SchemaMessage("s", first, ["n"]))  # other key properties
        writer.write_message(StateMessage({"bookmarks": {}}))
        writer.write_message(StateMessage({"bookmarks": {}}))
    messages = parse_messages(buffer.getvalue())
    sent = [(m["stream"], len(m["schema"]["properties"]), tuple(m["key_properties"]))
            for m in messages if m["type"] == "SCHEMA"]
    assert sent == [("s", 1, ("id",)), ("other", 1, ("id",)), ("s", 2, ("id",)),
                    ("s", 1, ("id",)), ("s", 1, ("n",))]
    assert [m["type"] for m in messages].count("STATE") == 2
