"""What a new user meets in the first hour, on every tap: `--test` as a connection check with
config errors as one line per setting, `--help` saying what `--test` reads, a typo'd setting
named with its closest known one, and a log a person can read (one summary line per stream
and one per run; METRIC lines only when asked for)."""

from __future__ import annotations

import re
import subprocess

import pytest

from helpers import BIN, config_for, error_lines, log_records, run_cli, tracebacks_shown

TAPS = ("tap-isvapp", "tap-marketplace", "tap-heroku-vendor")
SANDBOX = {"tap-isvapp": "isvapp", "tap-marketplace": "marketplace",
           "tap-heroku-vendor": "heroku"}


@pytest.mark.parametrize("tap", TAPS)
def test_test_with_an_empty_config_is_one_line_per_setting_and_no_traceback(tap):
    out = run_cli(tap, {}, "--test")

    assert out.returncode == 1
    assert not tracebacks_shown(out.stderr), out.stderr[-2000:]
    errors = error_lines(out.stderr)
    assert errors[-1].endswith("Config validation failed")
    assert len(errors) >= 2  # the settings' own lines come first
    assert all(re.search(r"`?'?[a-z_]+`?'?", line) for line in errors[:-1])
    assert "ConfigValidationError" not in out.stderr


def test_test_reports_a_bad_setting_as_a_sync_does(marketplace):
    config = {**config_for(marketplace()), "aggregation": "quarter"}
    with_test, without = run_cli("tap-marketplace", config, "--test"), run_cli("tap-marketplace", config)

    expected = "`aggregation` must be one of ['week', 'month'], not 'quarter'."
    for out in (with_test, without):
        assert out.returncode == 1
        assert any(line.endswith(expected) for line in error_lines(out.stderr)), out.stderr[-2000:]
        assert not tracebacks_shown(out.stderr)


@pytest.mark.parametrize(("tap", "reads"), [
    ("tap-isvapp", "reads the account (GET /api/v1/account"),
    ("tap-marketplace", "reads the developer space"),
    ("tap-heroku-vendor", "api: legacy reads the first page of /vendor/apps"),
])
def test_help_says_what_test_reads(tap, reads):
    out = subprocess.run([str(BIN / tap), "--help"], capture_output=True, text=True,  # noqa: S603
                         check=True).stdout
    text = " ".join(out.split())
    assert f"--test TEXT Check the connection and exit: {reads}" in text
    assert "sync a single record" not in text


@pytest.mark.parametrize("tap", TAPS)
def test_test_is_a_connection_check_that_syncs_nothing(sandboxes, tap):
    server = sandboxes(SANDBOX[tap])
    out = run_cli(tap, config_for(server), "--test")

    assert out.returncode == 0, out.stderr[-2000:]
    assert not out.messages  # no SCHEMA, RECORD or STATE: nothing synced
    assert "Connection test: " in out.stderr and "Connection test passed" in out.stderr
    assert len(server.requests) <= 3, [r.path for r in server.requests]


def test_heroku_partner_test_issues_one_token_and_reads_its_addon(sandboxes):
    server = sandboxes("heroku_partner")
    config = config_for(server)
    out = run_cli("tap-heroku-vendor", config, "--test")

    assert out.returncode == 0, out.stderr[-2000:]
    assert not out.messages
    tested = re.findall(r"Heroku issued an access token for add-on resource ([0-9a-f-]{36}) ",
                        out.stderr)
    assert len(tested) == 1 and tested[0] in {i["resource_uuid"] for i in config["installs"]}
    assert [r.path for r in server.requests] == [f"/addons/{tested[0]}"]
    assert "addons.heroku.com accepted the manifest credentials" in out.stderr
    assert not any(i["refresh_token"] in out.stderr for i in config["installs"])


def test_heroku_legacy_test_with_a_wrong_password_names_the_settings(heroku):
    server = heroku()
    out = run_cli("tap-heroku-vendor", config_for(server, manifest_password="wrong-one"), "--test")

    assert out.returncode == 1
    line = error_lines(out.stderr)[-1]
    assert "connection test: HTTP 401" in line and "`manifest_password`" in line
    assert ".." not in line
    assert "wrong-one" not in out.stderr


@pytest.mark.parametrize(("typo", "meant"), [("strat_date", "start_date"),
                                              ("max_retry", "max_retries")])
def test_an_unknown_setting_is_one_warning_naming_the_closest(marketplace, typo, meant):
    out = run_cli("tap-marketplace", {**config_for(marketplace()), typo: "2024-01-01"}, "--test")

    warnings = [text for level, text in log_records(out.stderr)
                if level == "WARNING" and "Unknown setting" in text]
    assert len(warnings) == 1
    assert warnings[0].endswith(f"Unknown setting `{typo}` is ignored; did you mean {meant}?")


def test_a_setting_like_no_other_is_named_without_a_guess(marketplace):
    out = run_cli("tap-marketplace", {**config_for(marketplace()), "zzz": 1}, "--test")
    assert re.search(r"Unknown setting `zzz` is ignored$", out.stderr, re.MULTILINE)


def test_developer_id_must_be_a_uuid(marketplace):
    out = run_cli("tap-marketplace", {**config_for(marketplace()), "developer_id": "12345"})

    assert out.returncode == 1
    assert any(line.endswith("`developer_id` must be a UUID (like "
                             "6f0e9a3c-1c2b-4d5e-9f00-5a1b2c3d4e5f), not '12345'.")
               for line in error_lines(out.stderr))


def test_salesforce_account_ids_must_be_salesforce_ids(isvapp):
    config = {**config_for(isvapp()), "export_salesforce_account_ids": ["0014x00000AAAAAAAA",
                                                                        "acme"]}
    out = run_cli("tap-isvapp", config, "--test")

    assert out.returncode == 1
    assert any(line.endswith("`export_salesforce_account_ids[1]` must be a Salesforce id (15 or "
                             "18 letters and digits), not 'acme'.")
               for line in error_lines(out.stderr)), out.stderr[-2000:]


def test_numbers_given_as_strings_are_read_as_numbers(isvapp):
    # As Meltano passes a `string`-kind setting from an environment variable.
    config = {**config_for(isvapp()), "requests_per_second": "400.5", "max_retries": "2",
              "retry_backoff_seconds": "0.01"}
    out = run_cli("tap-isvapp", config, "--test")
    assert out.returncode == 0, out.stderr[-2000:]

    out = run_cli("tap-isvapp", {**config, "requests_per_second": "fast"}, "--test")
    assert out.returncode == 1
    assert any("'fast' is not of type 'number'" in line for line in error_lines(out.stderr))


# -- the log --------------------------------------------------------------------------------------

SUMMARY = re.compile(r"\| (?P<stream>[a-z_]+): (?P<records>[\d,]+) records?, (?P<requests>[\d,]+) "
                     r"requests?( \((?P<retries>[\d,]+) retried\))?, [\d.]+ s$")


def test_the_log_has_one_summary_per_stream_and_one_per_run_and_no_metric(marketplace):
    server = marketplace(licenses=40, transactions=30)
    out = run_cli("tap-marketplace", config_for(server))

    assert out.returncode == 0, out.stderr[-2000:]
    lines = out.stderr.splitlines()
    assert not [line for line in lines if "METRIC" in line]
    summaries = {m["stream"]: m for line in lines if (m := SUMMARY.search(line))}
    assert set(summaries) == set(out.records)  # one per stream that wrote records...
    for stream, rows in out.records.items():  # ...with its count
        assert int(summaries[stream]["records"].replace(",", "")) == len(rows), stream
    run = [line for line in lines if "tap-marketplace: run complete:" in line]
    assert len(run) == 1
    total = sum(len(rows) for rows in out.records.values())
    assert f"{total:,} records, {len(server.requests):,} requests" in run[0]
    # No drift warning: the SDK's partition keys on a row are not fields the API sent.
    assert "the schema does not declare" not in out.stderr
    for notice in ("Skipping parse of env var settings", "Stream is assumed to be unsorted",
                   "as child stream to"):
        assert notice not in out.stderr
    # A child stream begins once per parent record: said once.
    begun = [line for line in lines if "Beginning sync of 'app_software_versions'" in line]
    assert len(begun) == 1
    assert len(lines) < 150, len(lines)


def test_retries_are_counted_in_the_summary(marketplace):
    server = marketplace(rate_limit_every=3, retry_after_seconds=0.01)
    out = run_cli("tap-marketplace", config_for(server))

    assert out.returncode == 0, out.stderr[-2000:]
    retried = [m for line in out.stderr.splitlines() if (m := SUMMARY.search(line))
               and m["retries"]]
    assert retried
    retry_lines = [line for line in out.stderr.splitlines() if "retrying in" in line]
    assert sum(int(m["retries"]) for m in retried) <= len(retry_lines)


@pytest.mark.parametrize(("config", "env"), [({"log_metrics": True}, {}),
                                             ({}, {"TAP_MARKETPLACE_LOGLEVEL": "DEBUG"})])
def test_metric_lines_when_asked_for(marketplace, config, env):
    out = run_cli("tap-marketplace", {**config_for(marketplace()), **config}, env=env)

    assert out.returncode == 0, out.stderr[-2000:]
    assert any('"metric":"http_request_duration"' in line for line in out.stderr.splitlines())
