"""tap-heroku-vendor against the Heroku sandbox."""

from __future__ import annotations

import json
import logging

from singer_sdk.testing import SuiteConfig, get_tap_test_class

import isv_sandbox
from tap_heroku_vendor.tap import TapHerokuVendor
from helpers import (
    FAST_RETRIES,
    catalog_selecting,
    config_for,
    run_cli,
    sync,
)

# The SDK's standard tests sync once per class against this module-level sandbox.
_STANDARD_SANDBOX = isv_sandbox.start("heroku", apps=30, page_size=12)

TestHerokuStandard = get_tap_test_class(
    TapHerokuVendor,
    config={**_STANDARD_SANDBOX.app.tap_config(), **FAST_RETRIES},
    suite_config=SuiteConfig(max_records_limit=100),
)


def test_apps_follow_link_header_across_pages(heroku):
    server = heroku(apps=25, page_size=10)
    out = sync(TapHerokuVendor, config_for(server), streams={"apps"})

    keys = [r["resource_uuid"] for r in out.records["apps"]]
    assert len(keys) == 25
    assert len(set(keys)) == 25
    assert keys == [a["resource"]["uuid"] for a in server.app.apps]
    list_calls = [r for r in server.requests if r.path == "/vendor/apps"]
    assert [r.query.get("offset") for r in list_calls] == [None, ["10"], ["20"]]
    # `name` is kept where the listing has it, null elsewhere.
    named = [r for r in out.records["apps"] if r.get("name")]
    assert 0 < len(named) < 25


def test_app_info_for_every_app_with_documented_fields(heroku):
    server = heroku(apps=12, page_size=5)
    out = sync(TapHerokuVendor, config_for(server))

    infos = out.records["app_info"]
    assert len(infos) == 12
    first = next(i for i in infos if i["provider_id"] == "1")
    source = server.app.apps[0]
    for field in ("domains", "owner", "owner_email", "region", "plan", "resource", "name",
                  "callback_url"):
        assert first[field] == source[field], field
    assert first["id"] == source["heroku_id"]
    assert first["resource_uuid"] == source["resource"]["uuid"]
    # Customers' connection strings stay out unless selected.
    assert "config" not in first and "log_input_url" not in first
    assert "logplex" not in json.dumps(out.messages)


def test_connection_strings_are_not_selected_by_default_but_can_be_opted_in(heroku):
    server = heroku(apps=3)
    config = config_for(server)
    discovered = json.loads(run_cli("tap-heroku-vendor", config, "--discover").stdout)
    app_info = next(s for s in discovered["streams"] if s["tap_stream_id"] == "app_info")
    by_field = {tuple(m["breadcrumb"]): m["metadata"] for m in app_info["metadata"]}
    for field in ("config", "log_input_url"):
        assert by_field[("properties", field)]["selected-by-default"] is False
    assert by_field[("properties", "region")].get("selected-by-default") is None

    opted_in = catalog_selecting(TapHerokuVendor, config,
                                 fields={"app_info": ["config", "log_input_url"]})
    out = sync(TapHerokuVendor, config, catalog=opted_in)
    first = next(i for i in out.records["app_info"] if i["provider_id"] == "1")
    assert first["config"] == server.app.apps[0]["config"]
    assert first["log_input_url"] == server.app.apps[0]["log_input_url"]


def test_deprovisioned_app_is_skipped_with_a_warning(heroku, caplog):
    server = heroku(apps=20, page_size=50, deprovisioned_every=6)
    with caplog.at_level(logging.WARNING):
        out = sync(TapHerokuVendor, config_for(server))

    gone = {a["provider_id"] for a in server.app.apps if a["_deprovisioned"]}
    assert gone == {"6", "12", "18"}
    assert len(out.records["apps"]) == 20
    assert {r["provider_id"] for r in out.records["app_info"]} == {
        a["provider_id"] for a in server.app.apps} - gone
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    for provider_id in gone:
        assert any(f"app '{provider_id}' answered 404" in w for w in warnings)


def test_child_state_stays_small_and_linear(heroku):
    server = heroku(apps=300, page_size=100)
    out = sync(TapHerokuVendor, config_for(server))

    assert len(out.records["app_info"]) == 300
    final = json.dumps(out.final_state)
    assert len(final) < 1000, final
    assert "partitions" not in final


def test_low_request_pool_slows_down_instead_of_hitting_429(heroku):
    # A pool of 15 requests refilled at 20/s; 40 requests are needed.
    server = heroku(apps=39, page_size=100, pool_capacity=15, pool_refill_per_second=20)
    out = sync(TapHerokuVendor, config_for(
        server, rate_limit_reserve=5, rate_limit_refill_per_second=20))

    assert len(out.records["app_info"]) == 39
    assert server.count("", status=429) == 0


def test_without_pacing_the_same_pool_answers_429_and_the_tap_retries(heroku):
    server = heroku(apps=39, page_size=100, pool_capacity=15, pool_refill_per_second=20)
    out = sync(TapHerokuVendor, config_for(
        server, rate_limit_refill_per_second=0, retry_backoff_seconds=0.05, max_retries=8))

    assert len(out.records["app_info"]) == 39
    assert server.count("", status=429) > 0


def test_about_and_discover_from_the_console_script(heroku):
    about = run_cli("tap-heroku-vendor", {}, "--about", "--format=json")
    info = json.loads(about.stdout)
    assert info["name"] == "tap-heroku-vendor"
    assert info["settings"]["properties"]["manifest_password"]["secret"] is True

    discover = run_cli("tap-heroku-vendor", {"manifest_id": "x", "manifest_password": "y"},
                       "--discover")
    catalog = json.loads(discover.stdout)
    entries = {s["tap_stream_id"]: s for s in catalog["streams"]}
    assert set(entries) == {"apps", "app_info"}
    assert entries["apps"]["key_properties"] == ["resource_uuid"]


def test_sync_through_the_console_script(heroku):
    server = heroku(apps=15, page_size=4)
    out = run_cli("tap-heroku-vendor", config_for(server))
    assert out.returncode == 0, out.stderr[-2000:]
    assert len(out.records["apps"]) == 15
    assert len(out.records["app_info"]) == 15


def test_missing_manifest_password_is_a_config_error():
    out = run_cli("tap-heroku-vendor", {"manifest_id": "x"})
    assert out.returncode == 1
    assert "manifest_password" in out.stderr


def test_a_secret_of_the_wrong_type_is_named_but_not_shown():
    out = run_cli("tap-heroku-vendor", {"manifest_id": "x", "manifest_password": 918273645})
    assert out.returncode == 1
    assert "setting 'manifest_password' is invalid" in out.stderr
    assert "918273645" not in out.stderr + out.stdout


def test_a_field_the_schema_does_not_declare_is_not_emitted(heroku):
    server = heroku(apps=1)
    listing = [{"provider_id": "9", "plan": "test", "heroku_id": "app9@heroku.com",
                "resource": {"uuid": "u-9", "name": "addon-9"}, "added_by_heroku_later": 1}]
    server.add_fault(r"^/vendor/apps$", status=200, body=json.dumps(listing).encode(),
                     headers={"Content-Type": "application/json"})
    out = sync(TapHerokuVendor, config_for(server), streams={"apps"})

    (record,) = out.records["apps"]
    assert record["resource_uuid"] == "u-9"
    assert "added_by_heroku_later" not in record
    assert set(record) <= set(out.schemas["apps"]["properties"])
