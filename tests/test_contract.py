"""The behaviour every tap inherits from tap_common, asserted once for the three taps.

Each test is parametrized over the taps and runs the INSTALLED console script at DEBUG
(``run_at_debug``) against the tap's sandbox, with one fault injected through the
sandbox's own mechanism (``SandboxServer.add_fault``). What is asserted is the observable
contract: the exit code, exactly one ERROR line naming the stream, the request and the
vendor's message, no secret anywhere in stdout or stderr, Retry-After obeyed, retries
counted, a STATE that never covers a record that was not emitted, and no credential sent
to a host other than the API's.

``CONTRACTS`` below is the only per-tap part: which stream and endpoint take the fault,
how many rows a clean run has, which settings are secret, what a rejected credential
looks like, which setting names the error line must give as a hint, and which cases do
not apply to the tap (left out; the table gives the reason). Its rows are the three taps, plus
ISVapp's API-key mode for the credential cases and Heroku's partner mode. Per-tap test
modules keep only what is specific to their vendor; the fault matrix
(tests/test_fault_matrix.py) applies every kind of fault to every endpoint with a
coarser invariant.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import signal
import subprocess
import tempfile
import time
import typing as t
from dataclasses import dataclass, field, replace
from pathlib import Path

import pytest

from isv_sandbox import faults
from tap_heroku_vendor.tap import TapHerokuVendor
from tap_isvapp.tap import TapIsvapp
from tap_marketplace.tap import TapMarketplace
from helpers import (
    BIN,
    SyncOutput,
    basic_auth_value,
    catalog_selecting,
    config_for,
    error_lines,
    log_records,
    run_at_debug,
    tracebacks_shown,
)

TODAY = dt.datetime.now(dt.timezone.utc).date()
YESTERDAY = TODAY - dt.timedelta(days=1)


@dataclass(frozen=True)
class Contract:
    """What a contract test needs to know about one tap."""

    executable: str
    tap_class: type
    vendor: str
    #: Sandbox settings: a small data set on which the faulted endpoint is called at
    #: least three times (pages or date windows), so a fault can hit a later call.
    sandbox: dict[str, t.Any]
    #: Tap settings beyond ``helpers.config_for``.
    config: dict[str, t.Any]
    #: The stream selected, and the endpoint that takes the fault (a regex of its path).
    stream: str
    path: str
    #: How an error line names that request's path (a regex).
    named_path: str
    #: The rows of the stream in a clean run, their key and the replication key.
    rows: int
    key: str
    replication_key: str | None
    #: Configured settings that are secret; the (user, password) pair sent as Basic auth.
    secret_settings: tuple[str, ...]
    basic_auth: tuple[str, str] | None
    #: A setting the vendor rejects (HTTP 401), the request that is rejected (a regex of
    #: how the line names it) and the words of the hint the line must carry.
    bad_credential: dict[str, str]
    rejected_request: str
    rejected_message: str
    hint_401: tuple[str, ...]
    #: Words the line of an HTTP 403 at ``path`` must carry.
    hint_403: tuple[str, ...]
    #: The records key of a page (None: the body is the array) and the rows of a full
    #: page, when the endpoint is paged.
    paged_records_key: str | None = None
    page_rows: int = 0
    #: The stream that downloads from a host of its own (presigned URLs), and that host.
    download_stream: str | None = None
    download_host: t.Callable[[t.Any], t.Any] | None = None
    download_config: dict[str, t.Any] = field(default_factory=dict)
    #: Credentials the vendor holds or issued during a run (tokens): never printed either.
    vendor_secrets: t.Callable[[t.Any], list[str]] = lambda server: []
    #: Sandbox settings of the whole run at DEBUG (answers that are logged differently).
    whole_run_sandbox: dict[str, t.Any] = field(default_factory=dict)
    #: The vendor's hosts besides the API (an OAuth host, a listing host).
    other_hosts: t.Callable[[t.Any], list[t.Any]] = lambda server: []
    #: Cases (test names without ``test_``) that do not apply to this tap, and why.
    not_applicable: dict[str, str] = field(default_factory=dict)
    #: The only cases this row runs (None: all): an auth mode of a tap already listed.
    only: frozenset[str] | None = None


CONTRACTS: dict[str, Contract] = {
    "tap-isvapp": Contract(
        executable="tap-isvapp", tap_class=TapIsvapp, vendor="isvapp",
        # 40 days of one request file each: a 31-day window, then one of 9 days.
        sandbox={"request_history_days": 40, "csv_rows_per_file": 1},
        config={"start_date": str(YESTERDAY - dt.timedelta(days=39))},
        stream="package_usage_requests", path=r"^/api/v1/requests$",
        named_path="/api/v1/requests", rows=40, key="id",
        replication_key="sf_end_time", secret_settings=("client_secret", "api_key"),
        basic_auth=("client_id", "client_secret"),
        bad_credential={"client_secret": "not-the-secret-1f2e3d"},
        rejected_request="POST /api/oauth2/token", rejected_message="invalid_client",
        hint_401=("`client_id` and `client_secret`",),
        hint_403=("`client_id`", "scope `requests`"),
        download_stream="package_usage_logs",
        download_host=lambda server: server.app.storage,
        download_config={"start_date": str(YESTERDAY - dt.timedelta(days=2))},
        vendor_secrets=lambda server: [server.app.settings.api_key,
                                       server.app.settings.client_secret, *server.app.tokens,
                                       *(e["_token"] for e in server.app.exports.values())],
    ),
    "tap-marketplace": Contract(
        executable="tap-marketplace", tap_class=TapMarketplace, vendor="marketplace",
        sandbox={"transactions": 120}, config={"use_async_exports": False},
        stream="transactions", path=r"/sales/transactions$",
        named_path="/marketplace/rest/3/reporting/developer-space/[^/ ]+/sales/transactions",
        rows=120, key="transactionLineItemId", replication_key="lastUpdated",
        secret_settings=("api_token",), basic_auth=("username", "api_token"),
        bad_credential={"api_token": "ATATT-wrong-token-9c1f"},
        rejected_request="GET /marketplace/rest/3/reporting/developer-space/[^/ ]+/sales/transactions",
        rejected_message="Client must be authenticated to access this resource.",
        hint_401=("`username`", "`api_token`"),
        hint_403=("`username`", "`api_token`", "`developer_id`"),
        paged_records_key="transactions", page_rows=50,
        download_stream="product_catalog",
        download_host=lambda server: server.app.reports.storage_server(),
    ),
    "tap-heroku-vendor": Contract(
        executable="tap-heroku-vendor", tap_class=TapHerokuVendor, vendor="heroku",
        sandbox={"apps": 10, "page_size": 4}, config={},
        stream="apps", path=r"^/vendor/apps$", named_path="/vendor/apps", rows=10,
        key="resource_uuid", replication_key=None,
        secret_settings=("manifest_password",), basic_auth=("manifest_id", "manifest_password"),
        bad_credential={"manifest_password": "wrong-password-ZX81"},
        rejected_request="GET /vendor/apps", rejected_message="Invalid credentials provided.",
        page_rows=4,
        hint_401=("`manifest_id`", "`manifest_password`"),
        hint_403=("`manifest_id`", "`manifest_password`"),
        # Deprovisioned apps answer 404, a warning that names the request.
        whole_run_sandbox={"deprovisioned_every": 2},
        not_applicable={"credentials_are_never_sent_to_the_download_host":
                        "legacy mode reads one host only"},
    ),
}
#: ISVapp's other credential, an API key: the tests about credentials run with it too.
CONTRACTS["tap-isvapp[api_key]"] = replace(
    CONTRACTS["tap-isvapp"], sandbox={**CONTRACTS["tap-isvapp"].sandbox, "auth_mode": "api_key"},
    bad_credential={"api_key": "wrong-key-88"}, rejected_request="GET /api/v1/requests",
    rejected_message="Invalid access token", hint_401=("`api_key`",), hint_403=("`api_key`",),
    only=frozenset({"a_rejected_credential_names_the_settings_never_the_secret",
                    "a_refusal_names_the_credential_settings",
                    "no_secret_in_a_whole_run_at_debug"}))
CONTRACTS["tap-isvapp"].not_applicable.update(dict.fromkeys(
    ("an_empty_page_mid_sequence_is_an_error_not_the_end",
     "a_next_page_pointing_at_itself_stops_before_a_record_twice"),
    "package_usage_requests is read in date windows, not pages"))
#: Heroku's partner mode: the Platform API with a token per install (from Heroku's OAuth
#: host), the install listing on addons.heroku.com.
CONTRACTS["tap-heroku-vendor[partner]"] = Contract(
    executable="tap-heroku-vendor", tap_class=TapHerokuVendor, vendor="heroku_partner",
    sandbox={"installs": 3}, config={}, stream="addons", path=r"^/addons/[^/]+$",
    named_path="/addons/[^/ ]+", rows=3, key="id", replication_key=None,
    secret_settings=("oauth_client_secret", "manifest_password"),
    basic_auth=("manifest_id", "manifest_password"),
    bad_credential={"oauth_client_secret": "wrong-client-secret-QX17"},
    rejected_request=r"POST \S+/oauth/token", rejected_message="invalid_client",
    hint_401=("`oauth_client_secret`",), hint_403=(),
    vendor_secrets=lambda server: [*(i["refresh_token"] for i in server.app.install_list),
                                   *server.app.access_tokens],
    other_hosts=lambda server: [server.app.oauth, server.app.addons_host],
    not_applicable={
        "a_refusal_names_the_credential_settings":
            "a 403 ends one install's stream with a warning (the fault matrix checks it)",
        "credentials_are_never_sent_to_the_download_host":
            "each host's own credential: test_heroku_partner.py checks it",
        "an_empty_page_mid_sequence_is_an_error_not_the_end": "addons is one object per install",
        "a_next_page_pointing_at_itself_stops_before_a_record_twice":
            "addons is one object per install",
    },
)


def taps(case: str) -> list[t.Any]:
    """The rows a contract test runs for. A row whose table says the case does not apply
    is left out (the table gives the reason), so a green run has no skipped contract."""
    return [pytest.param(name, id=name) for name, contract in CONTRACTS.items()
            if (contract.only is None or case in contract.only)
            and case not in contract.not_applicable]


def for_each_tap(test: t.Callable) -> t.Callable:
    """Parametrize ``tap`` over ``taps`` of the test's name (less ``test_``)."""
    return pytest.mark.parametrize("tap", taps(test.__name__.removeprefix("test_")))(test)


#: Signed-URL signatures in URLs, whatever their value.
SIGNATURES = (re.compile(r"signature=[0-9a-f]{8}", re.IGNORECASE),
              re.compile(r"X-Amz-Signature=[0-9a-f]{8}", re.IGNORECASE))


# -- running a tap against its sandbox --------------------------------------------------------


@dataclass
class Run:
    """One tap run against its sandbox: the output, and what the vendor saw."""

    contract: Contract
    server: t.Any
    config: dict
    out: SyncOutput
    seconds: float

    def calls(self) -> list[t.Any]:
        """The requests of the faulted endpoint, in order."""
        return [r for r in self.server.requests if re.search(self.contract.path, r.path)]

    def keys(self) -> list[t.Any]:
        return [r[self.contract.key] for r in self.out.records.get(self.contract.stream, [])]

    def the_error_line(self) -> str:
        """The run failed with exit 1, one error line and no traceback: that line."""
        out = self.out
        assert out.returncode == 1, out.stderr[-3000:]
        errors = error_lines(out.stderr)
        assert len(errors) == 1, errors
        return errors[0]

    def retry_warnings(self) -> list[str]:
        return [text for level, text in log_records(self.out.stderr)
                if level == "WARNING" and "; retrying in " in text]


def secrets_of(contract: Contract, server: t.Any, config: dict) -> list[str]:
    """Everything that must never be printed: secret settings, their Basic encoding, and
    the tokens the vendor issued during the run."""
    found = [str(config[name]) for name in contract.secret_settings if config.get(name)]
    if contract.basic_auth:
        user, password = (config.get(name) for name in contract.basic_auth)
        if user and password:
            found.append(basic_auth_value(user, password))
    return found + [secret for secret in contract.vendor_secrets(server) if secret]


def assert_no_secret(run: Run) -> None:
    """No secret, no signed URL, no traceback outside DEBUG records."""
    out = run.out
    everything = out.stdout + out.stderr  # type: ignore[attr-defined]
    secrets = secrets_of(run.contract, run.server, run.config)
    assert secrets, "no secret to look for"
    for secret in secrets:
        assert secret not in everything, f"a secret in the output: {secret[:4]}…"
    assert "signature=" not in everything
    for pattern in SIGNATURES:
        assert not pattern.search(everything), pattern.pattern
    assert not tracebacks_shown(out.stderr), tracebacks_shown(out.stderr)[0][-2000:]


def run_tap(contract: Contract, server: t.Any, *, streams: t.Iterable[str] | None = None,
            **config: t.Any) -> Run:
    """The installed console script at DEBUG, with only ``streams`` selected (default: the
    contract's stream). Every run is checked for secrets in its output."""
    settings = config_for(server, **{**contract.config, **config})
    settings = {k: v for k, v in settings.items() if v is not None}
    names = [contract.stream] if streams is None else list(streams)
    catalog = catalog_selecting(contract.tap_class, settings, names)
    started = time.monotonic()
    out = run_at_debug(contract.executable, settings, catalog=catalog)
    run = Run(contract, server, settings, out, time.monotonic() - started)
    assert_no_secret(run)
    assert "DEBUG" in out.stderr, "the run was not at DEBUG"
    return run


def start(sandboxes: t.Callable, contract: Contract, **settings: t.Any) -> t.Any:
    return sandboxes(contract.vendor, **{**contract.sandbox, **settings})


def envelope(server: t.Any, message: str, status: int) -> dict[str, t.Any]:
    """``add_fault`` arguments: the vendor's own error body with ``status``."""
    return {"status": status, "headers": {"Content-Type": "application/json"},
            "body": server.app.error_envelope(message, status)}


def assert_every_row_once(run: Run) -> None:
    out = run.out
    assert out.returncode == 0, out.stderr[-3000:]
    assert not error_lines(out.stderr), error_lines(out.stderr)
    keys = run.keys()
    assert len(keys) == run.contract.rows == len(set(keys))


def assert_state_covers_only_emitted_rows(run: Run) -> None:
    """The last STATE's bookmark is at most the newest replication value emitted."""
    rk = run.contract.replication_key
    if rk is None or not run.out.states:
        return
    entry = (run.out.final_state.get("bookmarks") or {}).get(run.contract.stream) or {}
    mark = entry.get("replication_key_value")
    if mark is None:
        return
    emitted = [r[rk] for r in run.out.records.get(run.contract.stream, [])]
    assert emitted, f"a bookmark ({mark}) without any record emitted"
    assert str(mark) <= str(max(emitted)), f"bookmark {mark} past the rows emitted"


def line_names(line: str, contract: Contract, *, status: str, request: str | None = None) -> None:
    """The line names the stream, the status and the request (method optional)."""
    where = request or f"(GET )?{contract.named_path}"
    assert re.search(rf"\| {contract.stream}: HTTP {status}\b.* from {where}( |: |$)", line), line


# -- rate limits -------------------------------------------------------------------------------


@for_each_tap
def test_429_with_retry_after_is_waited_out_as_told(sandboxes, tap):
    contract = CONTRACTS[tap]
    server = start(sandboxes, contract)
    server.add_fault(contract.path, times=3, **envelope(server, "Rate limit exceeded", 429)
                     | {"headers": {"Content-Type": "application/json", "Retry-After": "0.2"}})
    run = run_tap(contract, server, retry_backoff_seconds=5)

    assert_every_row_once(run)
    calls = run.calls()
    assert [c.status for c in calls[:4]] == [429, 429, 429, 200]
    gaps = [b.at - a.at for a, b in zip(calls, calls[1:4])]
    assert all(gap >= 0.2 for gap in gaps), gaps
    assert all(gap < 2.5 for gap in gaps), f"the backoff (5 s), not Retry-After: {gaps}"
    assert len(run.retry_warnings()) == 3


@for_each_tap
def test_429_without_retry_after_backs_off_exponentially(sandboxes, tap):
    contract = CONTRACTS[tap]
    server = start(sandboxes, contract)
    server.add_fault(contract.path, times=4, **envelope(server, "Too many requests", 429))
    run = run_tap(contract, server, retry_backoff_seconds=0.1, max_retries=5)

    assert_every_row_once(run)
    at = [c.at for c in run.calls()]
    gaps = [b - a for a, b in zip(at, at[1:5])]
    # At least 0.1, 0.2, 0.4, 0.8 s (a loaded machine only adds to a wait); the first
    # wait is short, so the waits grow rather than being long all along.
    assert all(gap >= 0.1 * 2**n for n, gap in enumerate(gaps)), gaps
    assert gaps[0] < 0.4, gaps


@for_each_tap
def test_retry_after_beyond_the_limit_fails_at_once_naming_the_wait(sandboxes, tap):
    contract = CONTRACTS[tap]
    server = start(sandboxes, contract)
    server.add_fault(contract.path, times=9, **envelope(server, "Rate limit exceeded", 429)
                     | {"headers": {"Content-Type": "application/json", "Retry-After": "3600"}})
    run = run_tap(contract, server)

    assert run.seconds < 30
    line = run.the_error_line()
    line_names(line, contract, status="429")
    assert "Rate limit exceeded" in line
    assert ("it asks to wait 3600 s (Retry-After) before trying again, more than "
            "`max_retry_after_seconds` (300 s)") in line
    assert len(run.calls()) == 1


# -- 5xx and the retry budget ------------------------------------------------------------------


@for_each_tap
def test_5xx_burst_within_the_retry_budget_recovers(sandboxes, tap):
    contract = CONTRACTS[tap]
    server = start(sandboxes, contract)
    # The endpoint's second call answers 500, then 502, then 503, then normally (the
    # sandbox takes the first fault that matches; only the first one skips a call).
    server.add_fault(contract.path, skip=1, **envelope(server, "Internal error", 500))
    server.add_fault(contract.path, **envelope(server, "Bad gateway", 502))
    server.add_fault(contract.path, **envelope(server, "Service unavailable", 503))
    run = run_tap(contract, server, max_retries=4)

    assert_every_row_once(run)
    assert [c.status for c in run.calls()[:5]] == [200, 500, 502, 503, 200]
    assert len(run.retry_warnings()) == 3


@for_each_tap
def test_5xx_beyond_the_retry_budget_is_one_line_with_the_vendors_message(sandboxes, tap):
    contract = CONTRACTS[tap]
    server = start(sandboxes, contract)
    server.add_fault(contract.path, skip=1, **envelope(server, "Internal error", 500))
    server.add_fault(contract.path, **envelope(server, "Bad gateway", 502))
    server.add_fault(contract.path, times=99,
                     **envelope(server, "Temporarily unable to retrieve data", 503))
    run = run_tap(contract, server, max_retries=2)

    line = run.the_error_line()
    line_names(line, contract, status="503 Service Unavailable")
    assert "Temporarily unable to retrieve data" in line
    assert [c.status for c in run.calls()] == [200, 500, 502, 503], "three attempts, counted"
    assert len(run.retry_warnings()) == 2
    assert 0 < len(run.keys()) < contract.rows, "the rows of the first call, then the failure"
    assert_state_covers_only_emitted_rows(run)


@for_each_tap
def test_a_proxy_error_page_gives_its_text_not_its_markup(sandboxes, tap):
    contract = CONTRACTS[tap]
    server = start(sandboxes, contract)
    server.add_fault(contract.path, status=502, times=99, headers={"Content-Type": "text/html"},
                     body=b"<!DOCTYPE html><html><head><title>502 Bad Gateway</title></head>"
                          b"<body><h1>Bad Gateway</h1><p>The proxy could not reach the API."
                          b"</p></body></html>")
    run = run_tap(contract, server, max_retries=1)

    line = run.the_error_line()
    line_names(line, contract, status="502 Bad Gateway")
    assert "The proxy could not reach the API." in line
    assert "<html" not in line and "<p>" not in line


# -- the network -------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["reset", "drop"])
@for_each_tap
def test_a_broken_connection_is_retried(sandboxes, tap, kind):
    contract = CONTRACTS[tap]
    server = start(sandboxes, contract)
    server.add_fault(contract.path, kind=kind, fraction=0.4, skip=1)
    run = run_tap(contract, server)

    assert_every_row_once(run)
    assert len(run.retry_warnings()) == 1


@for_each_tap
def test_an_answer_slower_than_the_timeout_is_retried(sandboxes, tap):
    contract = CONTRACTS[tap]
    server = start(sandboxes, contract)
    server.add_fault(contract.path, kind="delay", seconds=1.0, skip=1)
    run = run_tap(contract, server, request_timeout_seconds=0.3)

    assert_every_row_once(run)
    # (A loaded machine may let another request overrun 0.3 s too: at least this one.)
    assert any("no answer within the request timeout (`request_timeout_seconds`)" in warning
               for warning in run.retry_warnings())


@for_each_tap
def test_a_host_that_never_answers_is_one_line_after_the_retries(sandboxes, tap):
    contract = CONTRACTS[tap]
    server = start(sandboxes, contract)
    server.add_fault(contract.path, kind="drop", skip=1, times=99)
    run = run_tap(contract, server, max_retries=1)

    line = run.the_error_line()
    assert re.search(rf"\| {contract.stream}: GET {contract.named_path}: the server closed the "
                     r"connection without answering \(\w+\) \(gave up after 2 attempts\)$",
                     line), line
    assert len(run.calls()) == 3
    assert_state_covers_only_emitted_rows(run)


# -- credentials -------------------------------------------------------------------------------


@for_each_tap
def test_a_rejected_credential_names_the_settings_never_the_secret(sandboxes, tap):
    contract = CONTRACTS[tap]
    server = start(sandboxes, contract)
    run = run_tap(contract, server, **contract.bad_credential)

    line = run.the_error_line()
    line_names(line, contract, status="401", request=contract.rejected_request)
    assert contract.rejected_message in line
    for words in contract.hint_401:
        assert words in line, (words, line)
    for wrong in contract.bad_credential.values():
        assert wrong not in run.out.stdout + run.out.stderr  # type: ignore[attr-defined]
    hosts = [server, *contract.other_hosts(server)]
    rejected = [r for host in hosts for r in host.requests if r.status == 401]
    assert len(rejected) == 1, "a rejected credential is not retried"
    assert all(r.status == 401 for r in server.requests), "the API is not called after it"
    assert not run.out.records


@for_each_tap
def test_a_refusal_names_the_credential_settings(sandboxes, tap):
    contract = CONTRACTS[tap]
    server = start(sandboxes, contract)
    server.add_fault(contract.path, times=99,
                     **envelope(server, "You do not have access to this resource.", 403))
    run = run_tap(contract, server)

    line = run.the_error_line()
    line_names(line, contract, status="403")
    assert "You do not have access to this resource." in line
    for words in contract.hint_403:
        assert words in line, (words, line)
    assert len(run.calls()) == 1, "a 403 is not retried"


@for_each_tap
def test_credentials_are_never_sent_to_the_download_host(sandboxes, tap):
    contract = CONTRACTS[tap]
    server = start(sandboxes, contract)
    assert contract.download_host is not None and contract.download_stream is not None, \
        "a row without a download host says so in its not_applicable"
    host = contract.download_host(server)
    run = run_tap(contract, server, streams=[contract.download_stream],
                  **contract.download_config)

    assert run.out.returncode == 0, run.out.stderr[-3000:]
    assert run.out.records.get(contract.download_stream)
    assert host.requests, "the stream did not download anything"
    assert all(r.authorization is None for r in host.requests)
    assert all(r.authorization for r in server.requests), "the API got its credentials"


@for_each_tap
def test_no_secret_in_a_whole_run_at_debug(sandboxes, tap):
    """Every stream selected by default and the one that downloads from another host, one
    retried 503 (its request logged at DEBUG): ``run_tap`` checks that no secret, Basic
    encoding, token or download key reaches stdout or stderr."""
    contract = CONTRACTS[tap]
    server = start(sandboxes, contract, **contract.whole_run_sandbox)
    server.add_fault(contract.path, **envelope(server, "busy", 503))
    streams = [*streams_selected_by_default(contract, server), contract.download_stream]
    run = run_tap(contract, server, streams=[s for s in streams if s])

    assert run.out.returncode == 0, run.out.stderr[-3000:]
    assert len(run.keys()) == contract.rows
    assert set(run.out.records) >= {contract.stream, contract.download_stream} - {None}
    assert len(run.out.records) >= 2


def streams_selected_by_default(contract: Contract, server: t.Any) -> list[str]:
    catalog = catalog_selecting(contract.tap_class, config_for(server))
    return [entry["tap_stream_id"] for entry in catalog["streams"]
            if next(m["metadata"] for m in entry["metadata"] if m["breadcrumb"] == [])
            .get("selected-by-default", True)]


# -- answers that are not what they should be --------------------------------------------------


@for_each_tap
def test_an_error_envelope_with_200_fails_with_the_vendors_message(sandboxes, tap):
    contract = CONTRACTS[tap]
    server = start(sandboxes, contract)
    server.add_fault(contract.path, skip=1,
                     **envelope(server, "Report generation failed: invalid state", 200))
    run = run_tap(contract, server)

    line = run.the_error_line()
    line_names(line, contract, status="200 OK")
    assert "Report generation failed: invalid state" in line
    assert 0 < len(run.keys()) < contract.rows
    assert_state_covers_only_emitted_rows(run)


@for_each_tap
def test_an_error_envelope_with_200_saying_try_again_is_retried(sandboxes, tap):
    contract = CONTRACTS[tap]
    server = start(sandboxes, contract)
    server.add_fault(contract.path, skip=1, **envelope(
        server, "Temporarily unable to retrieve data, please try again", 200))
    run = run_tap(contract, server)

    assert_every_row_once(run)
    assert [c.status for c in run.calls()[:3]] == [200, 200, 200]
    (warning,) = run.retry_warnings()
    assert "Temporarily unable to retrieve data, please try again" in warning


@pytest.mark.parametrize(("body", "content_type", "said"), [
    (b"<!DOCTYPE html><html><body><h1>Down for maintenance</h1></body></html>", "text/html",
     "is not JSON (text/html"),
    (b"", "application/json", "had an empty body where JSON was expected"),
], ids=["html", "empty"])
@for_each_tap
def test_a_200_that_is_not_json_fails_clearly(sandboxes, tap, body, content_type, said):
    contract = CONTRACTS[tap]
    server = start(sandboxes, contract)
    server.add_fault(contract.path, skip=1, status=200, body=body,
                     headers={"Content-Type": content_type})
    run = run_tap(contract, server)

    line = run.the_error_line()
    assert re.search(rf"\| {contract.stream}: HTTP 200 from (GET )?{contract.named_path} {re.escape(said)}",
                     line), line
    if body:
        assert "Down for maintenance" in line
    assert_state_covers_only_emitted_rows(run)


@for_each_tap
def test_an_empty_page_mid_sequence_is_an_error_not_the_end(sandboxes, tap):
    contract = CONTRACTS[tap]
    server = start(sandboxes, contract)
    server.add_fault(contract.path, kind="transform", skip=1,
                     transform=lambda request, response: faults.empty_page(
                         server.app, request, response, contract.paged_records_key))
    run = run_tap(contract, server)

    line = run.the_error_line()
    line_names(line, contract, status="200")
    assert "page 2 is empty but the API announces more pages" in line
    assert 0 < len(run.keys()) < contract.rows
    assert_state_covers_only_emitted_rows(run)


@for_each_tap
def test_a_next_page_pointing_at_itself_stops_before_a_record_twice(sandboxes, tap):
    contract = CONTRACTS[tap]
    server = start(sandboxes, contract)
    server.add_fault(contract.path, kind="transform", skip=1, times=99,
                     transform=lambda request, response: faults.same_page_next(
                         server.app, request, response))
    run = run_tap(contract, server)

    line = run.the_error_line()
    line_names(line, contract, status="200")
    assert "the pagination loops; stopped before emitting any record twice" in line
    keys = run.keys()
    assert len(keys) == len(set(keys)) == contract.page_rows, "the first page once, no other"
    assert_state_covers_only_emitted_rows(run)


# -- SIGTERM -----------------------------------------------------------------------------------


@for_each_tap
def test_sigterm_exits_143_writing_the_last_state_again(sandboxes, tap):
    contract = CONTRACTS[tap]
    server = start(sandboxes, contract)
    # The endpoint's second call takes a while: the signal comes while the tap waits.
    stall = server.add_fault(contract.path, kind="delay", seconds=5, skip=1, times=9)
    config = {k: v for k, v in config_for(server, **contract.config).items() if v is not None}
    catalog = catalog_selecting(contract.tap_class, config, [contract.stream])
    with tempfile.TemporaryDirectory() as tmp:
        Path(tmp, "config.json").write_text(json.dumps(config))
        Path(tmp, "catalog.json").write_text(json.dumps(catalog))
        process = subprocess.Popen(  # noqa: S603
            [str(BIN / contract.executable), "--config", str(Path(tmp, "config.json")),
             "--catalog", str(Path(tmp, "catalog.json"))],
            # Unbuffered: communicate() reads the pipe itself, past any buffer of ours.
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, bufsize=0)
        assert process.stdout is not None
        before: list[dict] = []
        for raw in process.stdout:
            before.append(json.loads(raw))
            if before[-1]["type"] == "RECORD":
                break  # the first call's rows are being written
        while not stall.applied:
            time.sleep(0.02)  # the second call is under way (and takes 5 s)
        process.send_signal(signal.SIGTERM)
        rest, stderr = process.communicate(timeout=30)
    after = [json.loads(line) for line in rest.splitlines() if line.strip()]
    lines = before + after

    assert process.returncode == 128 + signal.SIGTERM == 143
    errors = error_lines(stderr.decode())
    assert len(errors) == 1, errors
    assert f"{contract.executable}: stopped by SIGTERM; " in errors[0]
    assert "Traceback" not in stderr.decode()
    records = [m for m in lines if m["type"] == "RECORD"]
    assert 0 < len(records) < contract.rows
    states = [m for m in before + after[:-1] if m["type"] == "STATE"]
    if states:
        assert lines[-1] == states[-1], "the last STATE, written again"
        assert errors[0].endswith("the last STATE (written again above) covers only records "
                                  "written before it")
    else:
        assert errors[0].endswith("no STATE had been written yet")
