"""tap-heroku-vendor in partner mode (``api: partner``) against the partner sandbox:
the Platform API, Heroku's OAuth host and addons.heroku.com, each its own server."""

from __future__ import annotations

import functools
import json
import logging
import math

import pytest
from singer_sdk.testing import SuiteConfig, get_tap_test_class

import isv_sandbox
from tap_heroku_vendor.tap import TapHerokuVendor
from helpers import (
    FAST_RETRIES,
    basic_auth_value,
    catalog_selecting,
    config_for,
    last_error_line,
    run_at_debug,
    run_cli,
    sync,
)
from test_meltano_e2e import meltano, meltano_env, postgres_connection
from test_resume import run_tap

STREAMS = ("addons", "addon_config", "addon_attachments", "partner_apps", "app_domains",
           "app_collaborators")
KEYS = {"addons": ("id",), "addon_config": ("addon_id", "name"), "addon_attachments": ("id",),
        "partner_apps": ("id",), "app_domains": ("id",), "app_collaborators": ("id",)}

# The SDK's standard tests sync once per class against this module-level sandbox.
# Every stream selected, addon_config (not selected by default) included.
_STANDARD_SANDBOX = isv_sandbox.start("heroku_partner", installs=6, default_page_size=2)
_STANDARD_CONFIG = {**_STANDARD_SANDBOX.app.tap_config(), **FAST_RETRIES, "page_size": 2}

TestHerokuPartnerStandard = get_tap_test_class(
    TapHerokuVendor,
    config=_STANDARD_CONFIG,
    catalog=catalog_selecting(TapHerokuVendor, _STANDARD_CONFIG, STREAMS),
    suite_config=SuiteConfig(max_records_limit=200),
)


@pytest.fixture
def partner(sandboxes):
    return functools.partial(sandboxes, "heroku_partner")


def keys_of(rows: list[dict], stream: str) -> set[tuple]:
    return {tuple(r[k] for k in KEYS[stream]) for r in rows}


def warnings_in(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]


# -- what is read -------------------------------------------------------------------------


def test_every_install_is_read_into_every_stream(partner):
    server = partner(installs=12, shared_app_every=4)
    out = sync(TapHerokuVendor, config_for(server), streams=set(STREAMS))

    for stream in STREAMS:
        expected = server.app.rows(stream)
        assert expected, stream
        assert keys_of(out.records[stream], stream) == keys_of(expected, stream), stream
        assert len(out.records[stream]) == len(expected), f"{stream}: a row twice"
    first = next(a for a in server.app.rows("addons"))
    record = next(r for r in out.records["addons"] if r["id"] == first["id"])
    for field in ("name", "addon_service", "app", "billing_entity", "billed_price", "plan",
                  "provider_id", "state", "created_at", "updated_at", "web_url", "config_vars"):
        assert record[field] == first[field], field
    # Two resources on one app: the app (and its domains, collaborators) is read once.
    assert len(server.app.rows("partner_apps")) < 12
    assert server.count(r"^/apps/[^/]+$") == len(server.app.rows("partner_apps"))
    owners = [c for c in out.records["app_collaborators"] if c["role"] == "owner"]
    assert len(owners) == len(out.records["partner_apps"])
    assert all(c["app_id"] == c["app"]["id"] for c in out.records["app_collaborators"])
    assert all(r["addon_id"] for r in out.records["addon_config"])


def test_addon_config_holds_customer_secrets_and_is_not_selected_by_default(partner):
    server = partner(installs=3)
    out = sync(TapHerokuVendor, config_for(server))

    assert "addon_config" not in out.records
    assert server.count(r"/config$") == 0
    assert set(out.records) == set(STREAMS) - {"addon_config"}


def test_discovery_in_partner_mode_lists_the_partner_streams_only(partner):
    server = partner(installs=1)
    catalog = json.loads(run_cli("tap-heroku-vendor", config_for(server), "--discover").stdout)
    entries = {s["tap_stream_id"]: s for s in catalog["streams"]}
    assert set(entries) == set(STREAMS)
    for stream, keys in KEYS.items():
        assert entries[stream]["key_properties"] == list(keys)
    root = {s: next(m["metadata"] for m in e["metadata"] if m["breadcrumb"] == [])
            for s, e in entries.items()}
    assert root["addon_config"]["selected-by-default"] is False
    assert root["addons"]["selected-by-default"] is True
    assert server.count("") == 0, "discovery sends no request"


def test_every_request_carries_the_v3_accept_header_and_its_own_install_token(partner):
    server = partner(installs=4)
    sync(TapHerokuVendor, config_for(server), streams=set(STREAMS))

    assert server.count("", status=406) == 0
    tokens = {token: resource for token, (resource, _) in server.app.access_tokens.items()}
    for request in server.requests:
        assert request.authorization.startswith("Bearer ")
        resource = tokens[request.authorization[7:]]
        if request.path.startswith("/addons/"):
            assert request.path.split("/")[2] == resource
        else:  # /apps/<id>...: the app of that install
            assert request.path.split("/")[2] == server.app.addons[resource]["app"]["id"]


# -- Range pagination -----------------------------------------------------------------


def test_list_endpoints_follow_range_pages(partner):
    server = partner(installs=5, max_domains=9, max_collaborators=7)
    out = sync(TapHerokuVendor, config_for(server, page_size=2), streams=set(STREAMS))

    domains = server.app.rows("app_domains")
    assert keys_of(out.records["app_domains"], "app_domains") == keys_of(domains, "app_domains")
    by_app: dict[str, list] = {}
    for path, range_header, status, next_range in server.app.range_log:
        by_app.setdefault(path, []).append((range_header, status, next_range))
    multi_page = 0
    for path, calls in by_app.items():
        assert calls[0][0] == "id ..; max=2", path
        for (_, status, next_range), (following, _, _) in zip(calls, calls[1:]):
            assert status == 206
            assert following == next_range, "the next request repeats Next-Range as Range"
        assert calls[-1][1] == 200
        multi_page += len(calls) > 1
        if path.endswith("/domains"):
            app_id = path.split("/")[2]
            assert len(calls) == max(1, math.ceil(len(server.app.apps[app_id]["_domains"]) / 2))
    assert multi_page >= 3


def test_default_page_size_is_heroku_maximum_and_a_server_cap_is_followed(partner):
    server = partner(installs=3, max_domains=9, page_cap=3)
    out = sync(TapHerokuVendor, config_for(server), streams={"app_domains"})

    assert keys_of(out.records["app_domains"], "app_domains") == keys_of(
        server.app.rows("app_domains"), "app_domains")
    first_calls = [r for _, r, _, _ in server.app.range_log if r and "]" not in r]
    assert first_calls and set(first_calls) == {"id ..; max=1000"}
    assert any(status == 206 for _, _, status, _ in server.app.range_log)


# -- tokens ---------------------------------------------------------------------------


def test_access_token_is_renewed_before_it_expires_mid_run(partner):
    # Tokens live 1 s; each install takes well over a second at 12 requests per second.
    server = partner(installs=2, access_token_expires_in=1.0, max_domains=10,
                     max_collaborators=6)
    out = sync(TapHerokuVendor, config_for(server, page_size=1, requests_per_second=12),
               streams=set(STREAMS))

    assert keys_of(out.records["app_domains"], "app_domains") == keys_of(
        server.app.rows("app_domains"), "app_domains")
    assert server.count("", status=401) == 0, "no request went out with an expired token"
    assert server.app.expired_token_requests == 0
    assert max(server.app.grants.values()) >= 2, server.app.grants


def test_a_token_rejected_early_is_renewed_once_and_the_request_retried(partner, caplog):
    server = partner(installs=2)
    server.add_fault(r"^/apps/[^/]+$", status=401,
                     body=b'{"id":"unauthorized","message":"Invalid credentials provided."}')
    with caplog.at_level(logging.WARNING):
        out = sync(TapHerokuVendor, config_for(server), streams=set(STREAMS))

    assert len(out.records["partner_apps"]) == 2
    assert sorted(server.app.grants.values()) == [1, 2]
    assert any("renewing the access token" in w for w in warnings_in(caplog))


def test_a_fresh_token_rejected_too_fails_the_run(partner):
    server = partner(installs=2)
    server.add_fault(r"^/addons/[^/]+$", status=401, times=2,
                     body=b'{"id":"unauthorized","message":"Invalid credentials provided."}')
    out = run_cli("tap-heroku-vendor", config_for(server))

    assert out.returncode == 1
    line = last_error_line(out.stderr)
    assert "HTTP 401" in line and "freshly issued access token" in line
    assert "oauth_client_secret" in line


@pytest.mark.parametrize("style", ["rfc6749", "heroku"])
def test_a_revoked_install_is_skipped_with_a_warning_and_counted(partner, caplog, style):
    server = partner(installs=9, revoked_every=3, oauth_error_style=style)
    with caplog.at_level(logging.INFO):
        out = sync(TapHerokuVendor, config_for(server), streams=set(STREAMS))

    revoked = server.app.revoked
    assert len(revoked) == 3
    assert {r["id"] for r in out.records["addons"]} == {
        i["resource_uuid"] for i in server.app.install_list} - revoked
    for stream in STREAMS:
        assert keys_of(out.records[stream], stream) == keys_of(server.app.rows(stream), stream)
    warnings = warnings_in(caplog)
    for resource in revoked:
        assert any(resource in w and "skipped" in w and "invalid_grant" in w for w in warnings)
    summary = next(r.getMessage() for r in caplog.records if "install(s), " in r.getMessage())
    assert "9 install(s), 6 read, 3 skipped" in summary
    # One token request per install: a refused grant is not retried.
    assert server.app.oauth.count("^/oauth/token$") == 9


def test_refusals_without_an_oauth_error_code_fail_after_three_without_any_token(partner):
    server = partner(installs=6)
    server.app.oauth.add_fault("^/oauth/token$", status=401, times=99,
                               body=b'{"id":"unauthorized","message":"Invalid credentials provided."}')
    out = run_cli("tap-heroku-vendor", config_for(server))

    assert out.returncode == 1
    assert "oauth_client_secret" in last_error_line(out.stderr)
    assert server.app.oauth.count("^/oauth/token$") == 3


def test_a_token_endpoint_outage_is_retried(partner):
    server = partner(installs=2)
    server.app.oauth.add_fault("^/oauth/token$", status=503, times=2,
                               body=b'{"id":"unavailable","message":"Service Unavailable"}')
    out = sync(TapHerokuVendor, config_for(server), streams={"addons"})
    assert len(out.records["addons"]) == 2


def test_a_token_request_refused_as_a_request_fails_the_run(partner):
    """invalid_request is about the request, not one install's grant: no install is
    skipped quietly (every install would be)."""
    server = partner(installs=3)
    server.app.oauth.add_fault("^/oauth/token$", status=400, skip=1, body=(
        b'{"error":"invalid_request","error_description":"Missing parameter"}'))
    out = run_cli("tap-heroku-vendor", config_for(server))

    assert out.returncode == 1
    line = last_error_line(out.stderr)
    assert "addons: HTTP 400" in line and "invalid_request" in line
    assert "oauth_token_url" in line


def test_a_transient_oauth_error_with_200_is_retried(partner):
    server = partner(installs=2)
    server.app.oauth.add_fault("^/oauth/token$", status=200, body=(
        b'{"error":"temporarily_unavailable","error_description":"Try again later"}'))
    out = sync(TapHerokuVendor, config_for(server), streams={"addons"})

    assert len(out.records["addons"]) == 2
    assert server.app.oauth.count("^/oauth/token$") == 3


def test_the_listing_stops_on_a_page_that_points_at_itself(partner):
    server = partner(installs=3, listing_page_size=2)
    url = f"{server.app.addons_host.url}/api/v3/apps"
    server.app.addons_host.add_fault("^/api/v3/apps$", times=99, kind="transform",
                                     transform=lambda request, response: type(response)(
                                         response.status, response.body,
                                         {**response.headers, "Link": f'<{url}>; rel="next"'}))
    out = run_cli("tap-heroku-vendor", config_for(server))

    assert out.returncode == 1
    assert "the pagination loops" in last_error_line(out.stderr)
    assert server.app.addons_host.count("^/api/v3/apps$") == 1, "the page is not read again"


# -- hosts and secrets ------------------------------------------------------------------


def test_the_log_drain_url_with_its_token_is_not_selected_by_default(partner):
    server = partner(installs=2)
    out = sync(TapHerokuVendor, config_for(server), streams={"addon_attachments"})

    assert out.records["addon_attachments"]
    assert all("log_input_url" not in r for r in out.records["addon_attachments"])
    assert "logplex" not in json.dumps(out.records)


def test_each_credential_goes_to_its_own_host_only(partner):
    server = partner(installs=3, tokenless_installs=1)
    config = config_for(server)
    sync(TapHerokuVendor, config, streams=set(STREAMS))

    basic = "Basic " + basic_auth_value(config["manifest_id"], config["manifest_password"])
    assert server.requests and all(r.authorization.startswith("Bearer ") for r in server.requests)
    oauth = server.app.oauth
    assert oauth.requests and all(r.authorization is None for r in oauth.requests)
    addons = server.app.addons_host
    assert addons.requests and all(r.authorization == basic for r in addons.requests)
    secrets = [config["oauth_client_secret"]] + [i["refresh_token"] for i in config["installs"]]
    for host in (server, oauth, addons):
        for request in host.requests:
            assert not any(s in json.dumps(request.query) for s in secrets), "secret in a URL"


def test_no_secret_or_token_in_logs_output_or_state_at_debug(partner):
    server = partner(installs=5, revoked_every=4, tokenless_installs=1, forbidden=["domains"])
    server.add_fault(r"^/apps/[^/]+$", status=401, times=1,
                     body=b'{"id":"unauthorized","message":"Invalid credentials provided."}')
    server.add_fault(r"/addon-attachments$", status=503, times=1, body=b"{}")
    server.app.oauth.add_fault("^/oauth/token$", status=503, times=1, body=b"{}")
    config = config_for(server)
    catalog = catalog_selecting(TapHerokuVendor, config, STREAMS)
    out = run_at_debug("tap-heroku-vendor", config, catalog=catalog)

    assert out.returncode == 0, out.stderr[-3000:]
    assert "DEBUG" in out.stderr
    everything = out.stderr + out.stdout
    secrets = [config["oauth_client_secret"], config["manifest_password"],
               basic_auth_value(config["manifest_id"], config["manifest_password"])]
    secrets += [i["refresh_token"] for i in config["installs"]]
    secrets += list(server.app.access_tokens)
    assert len(server.app.access_tokens) >= 5
    for secret in secrets:
        assert secret not in everything
    assert "addon_config" in out.records  # the customers' config values are data, by choice
    assert "refresh" not in json.dumps(out.final_state) and "access" not in json.dumps(out.final_state)


# -- refusals, listing, installs -----------------------------------------------------------


def test_a_403_stream_is_warned_once_and_counted_not_a_failed_run(partner, caplog):
    server = partner(installs=6, forbidden=["collaborators"])
    with caplog.at_level(logging.INFO):
        out = sync(TapHerokuVendor, config_for(server), streams=set(STREAMS))

    assert "app_collaborators" not in out.records
    assert len(out.records["app_domains"]) == len(server.app.rows("app_domains"))
    refused = [w for w in warnings_in(caplog) if w.startswith("app_collaborators: HTTP 403")]
    assert len(refused) == 1
    summary = next(r.getMessage() for r in caplog.records if "install(s), " in r.getMessage())
    assert "app_collaborators: HTTP 403 for 6 install(s)" in summary


def test_installs_without_a_token_are_named_and_counted(partner, caplog):
    server = partner(installs=4, tokenless_installs=3)
    with caplog.at_level(logging.WARNING):
        out = sync(TapHerokuVendor, config_for(server), streams={"addons"})

    assert len(out.records["addons"]) == 4
    with_token = {i["resource_uuid"] for i in server.app.install_list}
    tokenless = set(server.app.addons) - with_token
    warnings = warnings_in(caplog)
    for resource in tokenless:
        assert any(resource in w and "no refresh token" in w for w in warnings)
    assert any("3 of 7 installed add-on resource(s) have no refresh token" in w for w in warnings)


@pytest.mark.parametrize(("field", "envelope"), [
    ("resource.uuid", ""), ("addon_id", ""), ("uuid", "apps"), ("addon.id", "data")])
def test_the_install_listing_is_read_loosely(partner, caplog, field, envelope):
    server = partner(installs=3, tokenless_installs=2, listing_uuid_field=field,
                     listing_envelope=envelope, listing_page_size=2)
    with caplog.at_level(logging.WARNING):
        sync(TapHerokuVendor, config_for(server), streams={"addons"})
    assert any("2 of 5 installed" in w for w in warnings_in(caplog))
    assert server.app.addons_host.count("^/api/v3/apps$") == 3  # Link rel=next pages


def test_a_listing_without_any_uuid_fails_clearly(partner):
    server = partner(installs=2, listing_uuid_field="")
    out = run_cli("tap-heroku-vendor", config_for(server))
    assert out.returncode == 1
    line = last_error_line(out.stderr)
    assert "none of its 2 entries carries a resource uuid" in line
    assert "app, plan, provider_id" in line.replace("addon, ", "")
    assert "unset manifest_id/manifest_password" in line


def test_without_manifest_credentials_the_listing_is_not_called(partner):
    server = partner(installs=2, tokenless_installs=1)
    config = config_for(server)
    del config["manifest_id"], config["manifest_password"]
    out = sync(TapHerokuVendor, config, streams={"addons"})
    assert len(out.records["addons"]) == 2
    assert server.app.addons_host.count("") == 0


def test_wrong_manifest_credentials_for_the_listing_fail_naming_them(partner):
    server = partner(installs=2)
    out = run_cli("tap-heroku-vendor", config_for(server, manifest_password="nope-8812"))
    assert out.returncode == 1
    line = last_error_line(out.stderr)
    assert "HTTP 401" in line and "manifest_id" in line and "manifest_password" in line
    assert "nope-8812" not in out.stderr


def test_installs_from_a_json_lines_file(partner, tmp_path):
    server = partner(installs=5)
    path = tmp_path / "installs.jsonl"
    lines = [json.dumps(i) for i in server.app.install_list]
    path.write_text(lines[0] + "\n\n" + "\n".join(lines[1:]) + "\n")
    config = config_for(server, installs_file=str(path))
    del config["installs"]
    out = sync(TapHerokuVendor, config, streams={"addons"})
    assert {r["id"] for r in out.records["addons"]} == {
        i["resource_uuid"] for i in server.app.install_list}


def test_a_bad_installs_file_names_the_line_but_never_shows_it(partner, tmp_path):
    server = partner(installs=2)
    path = tmp_path / "installs.jsonl"
    secret_line = '{"resource_uuid": "u-1", "refresh_token": "rt-SECRET-93"'  # truncated JSON
    path.write_text(json.dumps(server.app.install_list[0]) + "\n" + secret_line + "\n")
    config = config_for(server, installs_file=str(path))
    del config["installs"]
    out = run_cli("tap-heroku-vendor", config)
    assert out.returncode == 1
    assert f"installs_file '{path}' line 2 is not a JSON object" in last_error_line(out.stderr)
    assert "rt-SECRET-93" not in out.stderr

    path.write_text('{"resource_uuid": "u-2"}\n')
    out = run_cli("tap-heroku-vendor", config)
    assert "line 1 has no refresh_token" in last_error_line(out.stderr)


def test_partner_mode_config_errors_name_the_settings():
    out = run_cli("tap-heroku-vendor", {"api": "partner"})
    assert out.returncode == 1
    assert "oauth_client_secret is required" in out.stderr
    assert "installs or installs_file is required" in out.stderr

    out = run_cli("tap-heroku-vendor", {"api": "partner", "oauth_client_secret": "s",
                                        "installs": [{"resource_uuid": 5, "refresh_token": "rt-SHOWN-NOT"}]})
    assert out.returncode == 1
    assert "setting 'installs' is invalid" in out.stderr
    assert "rt-SHOWN-NOT" not in out.stderr

    out = run_cli("tap-heroku-vendor", {"api": "partner", "oauth_client_secret": "s",
                                        "installs_file": "x", "addons_api_url": "https://api.heroku.com"})
    assert "three different hosts" in out.stderr


def test_about_declares_the_partner_settings_with_secrets_marked():
    info = json.loads(run_cli("tap-heroku-vendor", {}, "--about", "--format=json").stdout)
    settings = info["settings"]["properties"]
    for name in ("oauth_client_secret", "installs", "manifest_password"):
        assert settings[name]["secret"] is True, name
    for name in ("api", "installs_file", "oauth_token_url", "addons_api_url", "page_size",
                 "rate_limit_scope"):
        assert settings[name].get("description"), name
        assert not settings[name].get("secret"), name
    assert settings["api"]["default"] == "legacy"
    assert settings["rate_limit_scope"]["default"] == "shared"


# -- pacing -----------------------------------------------------------------------------


def test_a_shared_pool_paces_every_install_instead_of_hitting_429(partner):
    # 6 installs x 6 requests from a pool of 12 refilled at 30/s.
    server = partner(installs=6, pool_capacity=12, pool_refill_per_second=30, max_domains=3,
                     max_attachments=1, max_collaborators=1)
    out = sync(TapHerokuVendor, config_for(server, rate_limit_reserve=4,
                                           rate_limit_refill_per_second=30),
               streams=set(STREAMS))
    assert len(out.records["addons"]) == 6
    assert server.count("", status=429) == 0


def test_per_install_scope_paces_each_token_against_its_own_pool(partner):
    # Heroku metering per token: each install's own pool of 4, refilled at 20/s.
    server = partner(installs=3, pool_per_token=True, pool_capacity=4,
                     pool_refill_per_second=20, max_domains=6)
    config = config_for(server, page_size=1, rate_limit_reserve=2,
                        rate_limit_refill_per_second=20, rate_limit_scope="per_install")
    out = sync(TapHerokuVendor, config, streams=set(STREAMS))
    assert len(out.records["addons"]) == 3
    assert server.count("", status=429) == 0


# -- the legacy mode points to the partner mode -------------------------------------------


@pytest.mark.parametrize("status", [404, 410])
def test_legacy_mode_on_a_retired_api_names_the_partner_mode(heroku, status):
    server = heroku(apps=3)
    server.add_fault(r"^/vendor/apps$", status=status,
                     body=b'{"id":"not_found","message":"This API has been retired."}')
    out = run_cli("tap-heroku-vendor", config_for(server))
    assert out.returncode == 1
    line = last_error_line(out.stderr)
    assert f"apps: HTTP {status}" in line and "This API has been retired." in line
    for words in ("api: partner", "oauth_client_secret", "installs_file"):
        assert words in line


# -- SIGKILL and resume -----------------------------------------------------------------


def resume_marker(state: dict) -> str | None:
    return state.get("bookmarks", {}).get("addons", {}).get("resume_after")


def test_killed_run_resumes_with_the_next_install(partner):
    server = partner(installs=30, max_domains=4)
    config = config_for(server)
    catalog = catalog_selecting(TapHerokuVendor, config, STREAMS)
    everything = {s: keys_of(server.app.rows(s), s) for s in STREAMS}

    def after_ten_installs(message: dict, records: int) -> bool:
        marker = message["type"] == "STATE" and resume_marker(message["value"])
        return bool(marker) and sum(u <= marker for u in server.app.addons) >= 10

    killed = run_tap("tap-heroku-vendor", config, catalog, kill_when=after_ten_installs)
    tokens_before = sum(server.app.grants.values())

    assert killed.killed
    marker = resume_marker(killed.final_state)
    done = {i["resource_uuid"] for i in server.app.install_list if i["resource_uuid"] <= marker}
    assert 10 <= len(done) < 30
    # Every row of a finished install is in the killed run's output.
    for stream in STREAMS:
        expected = keys_of([r for r in server.app.rows(stream)
                            if row_install(server, stream, r) in done], stream)
        assert expected <= killed.keys(stream, *KEYS[stream]), stream
    assert "refresh" not in json.dumps(killed.final_state)

    rerun = run_tap("tap-heroku-vendor", config, catalog, state=killed.final_state)

    assert rerun.returncode == 0, rerun.stderr[-2000:]
    for stream in STREAMS:
        assert killed.keys(stream, *KEYS[stream]) | rerun.keys(stream, *KEYS[stream]) == everything[stream]
    assert {r["id"] for r in rerun.records["addons"]}.isdisjoint(done)
    assert sum(server.app.grants.values()) - tokens_before == 30 - len(done)
    assert resume_marker(rerun.final_state) is None, "a completed run leaves no marker"


def row_install(server, stream: str, row: dict) -> str:
    """The install (resource uuid) whose token read ``row``."""
    if stream in ("addons",):
        return row["id"]
    if stream in ("addon_config", "addon_attachments"):
        return row.get("addon_id") or row["addon"]["id"]
    app_id = row["id"] if stream == "partner_apps" else row["app"]["id"]
    return next(u for u, a in sorted(server.app.addons.items()) if a["app"]["id"] == app_id)


# -- meltano run, end to end --------------------------------------------------------------


@pytest.mark.e2e
@pytest.mark.postgres
def test_meltano_run_partner_mode_into_postgres() -> None:
    connection = postgres_connection()
    schema = "e2e_tap_heroku_vendor_partner"
    with isv_sandbox.start("heroku_partner", installs=25, revoked_every=10, tokenless_installs=2,
                           forbidden=["collaborators"], default_page_size=3) as server:
        config = {**server.app.tap_config(), "page_size": 3}
        connection.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        env = meltano_env("tap-heroku-vendor", config, {
            "TARGET_POSTGRES_DEFAULT_TARGET_SCHEMA": schema,
            "TARGET_POSTGRES_PASSWORD": "postgres",
            "TAP_HEROKU_VENDOR__SELECT": json.dumps([f"{s}.*" for s in STREAMS])})
        run = meltano("run", "--full-refresh", "--state-id-suffix", "e2e-partner",
                      "tap-heroku-vendor", "target-postgres", env=env)
    assert run.returncode == 0, run.stderr[-5000:]

    assert len(server.app.revoked) == 2
    for stream in STREAMS:
        rows = server.app.rows(stream)
        table = connection.execute(
            "SELECT count(*) FROM information_schema.tables WHERE table_schema = %s AND table_name = %s",
            (schema, stream)).fetchone()[0]
        if stream == "app_collaborators":  # refused (403) for every install: no rows, no table
            assert not table or connection.execute(
                f'SELECT count(*) FROM "{schema}"."{stream}"').fetchone()[0] == 0
            continue
        loaded = {tuple(str(v) for v in row) for row in connection.execute(
            f'SELECT {", ".join(KEYS[stream])} FROM "{schema}"."{stream}"')}
        assert loaded == {tuple(str(v) for v in key) for key in keys_of(rows, stream)}, stream
    installs = {i["resource_uuid"] for i in server.app.install_list} - server.app.revoked
    loaded_addons = {row[0] for row in connection.execute(f'SELECT id FROM "{schema}".addons')}
    assert loaded_addons == installs
    for install in server.app.install_list:
        assert install["refresh_token"] not in run.stdout + run.stderr
