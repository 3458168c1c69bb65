"""tap-isvapp when things go wrong: broken files, failed or stuck exports, expired URLs,
revoked tokens, non-JSON answers, bad config, and an interrupted export resumed."""

from __future__ import annotations

import datetime as dt
import json
import time

import pytest
from singer_sdk.exceptions import ConfigValidationError

from tap_isvapp.tap import TapIsvapp
from helpers import config_for, last_error_line, run_cli, sync
from test_isvapp import LAST_MONTH, YESTERDAY


def run_taxonomy(server, **overrides):
    """The installed tap with only taxonomy_item_usage selected."""
    config = config_for(server, **overrides)
    parsed = json.loads(run_cli("tap-isvapp", config, "--discover").stdout)
    for entry in parsed["streams"]:
        for item in entry["metadata"]:
            if item["breadcrumb"] == []:
                item["metadata"]["selected"] = entry["tap_stream_id"] == "taxonomy_item_usage"
    return run_cli("tap-isvapp", config, catalog=parsed)


def new_exports(server):
    return [e for e in server.app.exports.values() if e["_created"] > time.time() - 120]


# -- export files --------------------------------------------------------------------------


def test_truncated_gzip_fails_naming_the_export(isvapp):
    server = isvapp(export_rows_per_month=400)
    server.add_fault(r"/download/", kind="truncate", fraction=0.6)
    out = run_taxonomy(server)

    assert out.returncode == 1
    (export,) = new_exports(server)
    line = last_error_line(out.stderr)
    assert f"taxonomy_item_usage: export {export['id']}" in line
    assert "gzip file is truncated or corrupt" in line
    assert out.states[-1]["bookmarks"]["taxonomy_item_usage"].get("replication_key_value") is None


def test_malformed_ndjson_line_fails_naming_the_export_and_line(isvapp):
    server = isvapp(export_rows_per_month=40, export_malformed_line=17)
    out = run_taxonomy(server)

    assert out.returncode == 1
    (export,) = new_exports(server)
    line = last_error_line(out.stderr)
    assert f"export {export['id']}: line 17 is not valid JSON" in line
    assert "replication_key_value" not in str(out.states[-1])


def test_export_errored_fails_with_the_vendor_message(isvapp):
    server = isvapp(export_outcome="ERRORED",
                    export_error_message="Taxonomy 42 is being recalculated")
    out = run_taxonomy(server)

    assert out.returncode == 1
    (export,) = new_exports(server)
    line = last_error_line(out.stderr)
    assert (f"taxonomy_item_usage: export {export['id']} ended with status ERRORED: "
            "Taxonomy 42 is being recalculated") in line
    assert not out.records


def test_export_stuck_pending_fails_naming_the_export_id(isvapp):
    server = isvapp(export_pending_seconds=600)
    out = run_taxonomy(server, export_timeout_seconds=0.5, export_poll_interval_seconds=0.1)

    assert out.returncode == 1
    (export,) = new_exports(server)
    line = last_error_line(out.stderr)
    assert f"export {export['id']} did not complete within 0.5 s (still PENDING" in line


def test_download_answering_404_after_completed_is_retried(isvapp):
    server = isvapp(export_rows_per_month=30)
    server.add_fault(r"/download/", status=404, times=2,
                     body=b'{"error":"Export file not found","success":false}')
    out = sync(TapIsvapp, config_for(server), streams={"taxonomy_item_usage"})

    assert len(out.records["taxonomy_item_usage"]) == 30
    downloads = [r.status for r in server.requests if "/download/" in r.path]
    assert downloads == [404, 404, 200]


# -- signed URLs of raw request files ---------------------------------------------------------


def test_signed_url_refused_by_storage_fetches_fresh_urls(isvapp):
    server = isvapp(request_history_days=4, csv_rows_per_file=3)
    server.app.storage.add_fault(
        r"^/files/", status=403, headers={"Content-Type": "application/xml"},
        body=b"<Error><Code>AccessDenied</Code><Message>Request has expired</Message></Error>")
    out = sync(TapIsvapp, config_for(server, start_date=str(YESTERDAY - dt.timedelta(days=3))),
               streams={"package_usage_logs"})

    assert len(out.records["package_usage_logs"]) == 4 * 3
    assert server.count("/api/v1/requests/downloads") == 2
    assert [r.status for r in server.app.storage.requests][:2] == [403, 200]


def test_urls_that_expire_while_files_download_are_fetched_again(isvapp):
    # URLs live 1-2 s here; at 4 requests/second a batch of 10 goes stale half way.
    server = isvapp(request_history_days=10, csv_rows_per_file=2, signed_url_lifetime_seconds=1)
    out = sync(TapIsvapp, config_for(server, requests_per_second=4,
                                     start_date=str(YESTERDAY - dt.timedelta(days=9))),
               streams={"package_usage_logs"})

    assert len(out.records["package_usage_logs"]) == 10 * 2
    assert server.app.storage.count("/files/", status=403) >= 1
    assert server.app.storage.count("/files/", status=200) == 10
    assert server.count("/api/v1/requests/downloads") >= 2


# -- tokens --------------------------------------------------------------------------------------


def test_token_revoked_mid_run_is_renewed_once(isvapp):
    server = isvapp(accounts=20, revoke_tokens_after_requests=6)
    out = sync(TapIsvapp, config_for(server),
               streams={"salesforce_accounts", "salesforce_account_summaries"})

    assert len(out.records["salesforce_account_summaries"]) == 20
    assert server.count("", status=401) == 1
    assert [s for s, _ in server.app.tokens_issued] == ["salesforce_accounts"] * 2


def test_token_rejected_again_after_renewal_fails_naming_client_and_scope(isvapp):
    server = isvapp()
    server.add_fault(r"^/api/v1/exports$", status=401, times=99, method="GET",
                     body=b'{"error":"Access token revoked","success":false}')
    out = run_cli("tap-isvapp", config_for(server))

    assert out.returncode == 1
    line = last_error_line(out.stderr)
    assert "exports: HTTP 401" in line and "Access token revoked" in line
    assert "scope `exports`" in line and "`client_id`, `client_secret`" in line
    assert server.app.settings.client_secret not in out.stderr
    assert server.count(r"^/api/v1/exports$") == 2, "one renewal, one retry"
    assert [s for s, _ in server.app.tokens_issued] == ["exports", "exports"]


# -- answers that are not JSON ---------------------------------------------------------------


# -- configuration ------------------------------------------------------------------------------


@pytest.mark.parametrize(("change", "named"), [
    ({"api_key": None, "client_id": None, "client_secret": None}, "`api_key`, or `client_id` and `client_secret`"),
    ({"api_key": "k"}, "either `api_key` or `client_id` + `client_secret`"),
    ({"client_secret": None}, "`client_id` is set but `client_secret` is missing"),
    ({"client_id": None}, "`client_secret` is set but `client_id` is missing"),
    ({"start_date": "2999-01-01"}, "`start_date` 2999-01-01 is in the future"),
    ({"start_date": "last tuesday"}, "`start_date` must be a date"),
    ({"requests_per_second": "fast"}, "config['requests_per_second']"),
    ({"requests_per_second": 0}, "`requests_per_second` must be greater than 0"),
    ({"lookback_days": "three"}, "config['lookback_days']"),
    ({"include_health_scores": "yes"}, "config['include_health_scores']"),
    ({"export_taxonomy_ids": "abc"}, "config['export_taxonomy_ids']"),
    ({"export_taxonomy_item_ids": ["x"]}, "Set only one of `export_taxonomy_ids`"),
    ({"export_timeout_seconds": -1}, "`export_timeout_seconds` must be greater than 0"),
    ({"oauth_scopes": {"accounts": "x"}}, "`oauth_scopes` has an unknown key 'accounts'"),
])
def test_bad_config_names_the_setting(change, named):
    config = {"api_url": "http://127.0.0.1:9", "client_id": "id", "client_secret": "s3cr3t-value",
              "export_taxonomy_ids": ["t"]}
    for key, value in change.items():
        if value is None:
            config.pop(key, None)
        else:
            config[key] = value
    with pytest.raises(ConfigValidationError) as raised:
        TapIsvapp(config=config, parse_env_config=False)
    assert any(named in error for error in raised.value.errors), raised.value.errors
    assert "s3cr3t-value" not in " ".join(raised.value.errors)


def test_bad_config_fails_before_any_request(isvapp):
    server = isvapp()
    out = run_cli("tap-isvapp", config_for(server, start_date="2999-01-01", api_key="k"))

    assert out.returncode == 1
    assert "`start_date` 2999-01-01 is in the future" in out.stderr
    assert "not both" in out.stderr
    assert server.count("") == 0


# -- an interrupted taxonomy export ------------------------------------------------------------


def test_interrupted_export_is_resumed_not_requested_again(isvapp):
    server = isvapp(export_pending_seconds=600, export_rows_per_month=12)
    first = run_taxonomy(server, export_timeout_seconds=0.3, export_poll_interval_seconds=0.1)
    assert first.returncode == 1
    (export,) = new_exports(server)
    saved = first.states[-1]["bookmarks"]["taxonomy_item_usage"]["in_flight_export"]
    assert saved["id"] == export["id"]

    server.app.settings.export_pending_seconds = 0.2  # ISVapp finishes it meanwhile
    second = sync(TapIsvapp, config_for(server), streams={"taxonomy_item_usage"},
                  state=first.states[-1])

    assert len(server.app.export_requests) == 1, "no second export requested"
    assert len(second.records["taxonomy_item_usage"]) == 12
    assert any(f"/api/v1/exports/{export['id']}/download/" in r.path for r in server.requests)
    final = second.final_state["bookmarks"]["taxonomy_item_usage"]
    assert "in_flight_export" not in final
    assert final["replication_key_value"] == LAST_MONTH


def test_expired_or_unknown_export_in_state_is_requested_anew(isvapp):
    server = isvapp(export_rows_per_month=5)
    config = config_for(server)
    body_run = sync(TapIsvapp, config, streams={"taxonomy_item_usage"})
    assert len(body_run.records["taxonomy_item_usage"]) == 5
    fingerprint = body_run.states[0]["bookmarks"]["taxonomy_item_usage"]["in_flight_export"]["request"]

    expired = {"bookmarks": {"taxonomy_item_usage": {"in_flight_export": {
        "id": "gone", "url": f"{server.url}/api/v1/exports/gone", "request": fingerprint,
        "expires_at": "2020-01-01T00:00:00.000000Z"}}}}
    unknown = {"bookmarks": {"taxonomy_item_usage": {"in_flight_export": {
        "id": "gone", "url": f"{server.url}/api/v1/exports/gone", "request": fingerprint,
        "expires_at": None}}}}
    for state in (expired, unknown):
        out = sync(TapIsvapp, config, streams={"taxonomy_item_usage"}, state=state)
        assert len(out.records["taxonomy_item_usage"]) == 5
    assert len(server.app.export_requests) == 3
    assert server.count("/api/v1/exports/gone") == 1, "only the unexpired one is looked up"
