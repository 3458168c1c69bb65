"""The fault matrix: every (endpoint x fault kind) pair that applies, one invariant.

For each endpoint the taps call (tests/fault_matrix.py) and each kind of misbehaviour the
sandbox can apply to it (isv_sandbox.faults), the tap runs at DEBUG, in this process,
through its command line, against a sandbox that misbehaves once (at the endpoint's
second call when it has several, so rows were already emitted) or, for ``unreachable``,
from then on. Whatever happens, the run must keep the contract:

- either every row of a clean run is emitted and the exit code is 0 with no error line,
- or the exit code is non-zero with exactly one error line, naming the stream;
- never a row a clean run does not have; the last STATE never covers a row that was not
  emitted;
- no secret (credentials, tokens, signatures, download keys) in stdout or stderr;
- no traceback (except in DEBUG records, where it is redacted).

A refusal of one item that the tap documents as tolerated (``Endpoint.tolerated``: Heroku
partner mode's 403/404 for one install, ``invalid_grant`` for one install's refresh
token) has its own, explicit invariant: exit 0, no error line, a warning, and the only
rows missing are those of the refused item (``check_tolerated_refusal``).

The header of the test run prints the matrix size; the summary prints its run time.
"""

from __future__ import annotations

import base64
import re
import typing as t
from dataclasses import dataclass

import pytest

import isv_sandbox
from isv_sandbox import faults
from fault_matrix import (
    COMMON_TAP,
    ENDPOINTS,
    PAIRS,
    SANDBOX,
    SLOW_TIMEOUT_SECONDS,
    TAP,
    TAPS,
    Endpoint,
    discovery_tap,
)
from helpers import (
    SyncOutput,
    catalog_selecting,
    error_lines,
    log_records,
    run_in_process,
    tracebacks_shown,
)


@dataclass
class Baseline:
    config: dict
    catalog: dict
    keys: dict[str, set[tuple]]
    rows: dict[str, list[dict]]
    key_properties: dict[str, list[str]]
    replication_keys: dict[str, str | None]
    requests: list[tuple[str, str]]  # (method, path), API and storage hosts


_BASELINES: dict[tuple, Baseline] = {}
_CATALOGS: dict[tuple, dict] = {}


def start_sandbox(endpoint: Endpoint) -> t.Any:
    settings = {**SANDBOX[endpoint.vendor], **endpoint.sandbox}
    server = isv_sandbox.start(endpoint.vendor, **settings)
    if endpoint.vendor == "marketplace":
        server.app.reports.storage_server()  # started on first use otherwise
    return server


def storage_of(server: t.Any) -> t.Any:
    if server.vendor == "isvapp":
        return server.app.storage
    if server.vendor == "marketplace":
        return server.app.reports.storage_server()
    return None


def host_for(endpoint: Endpoint, server: t.Any) -> t.Any:
    """The server that answers the endpoint: the API, its storage, or another vendor host."""
    if endpoint.storage:
        return storage_of(server)
    if endpoint.companion:
        return getattr(server.app, endpoint.companion)
    return server


def vendor_hosts(server: t.Any) -> list[t.Any]:
    """The vendor's other hosts (Heroku partner mode: the OAuth host, addons.heroku.com)."""
    if server.vendor == "heroku_partner":
        return [server.app.oauth, server.app.addons_host]
    return []


def config_for(endpoint: Endpoint, server: t.Any) -> dict:
    config = {**server.app.tap_config(), **COMMON_TAP, **TAP[endpoint.vendor],
              **endpoint.config}
    return {k: v for k, v in config.items() if v is not None}


def catalog_for(endpoint: Endpoint, config: dict) -> dict:
    """Only the selected streams and their parents: a tap reads its catalog on every run,
    and the whole Marketplace catalog costs more than most runs here."""
    key = (endpoint.vendor, endpoint.streams)
    if key not in _CATALOGS:
        catalog = catalog_selecting(TAPS[endpoint.vendor], config, endpoint.streams)
        needed = lineage(endpoint)
        catalog["streams"] = [s for s in catalog["streams"] if s["tap_stream_id"] in needed]
        _CATALOGS[key] = catalog
    return _CATALOGS[key]


def requests_of(server: t.Any) -> list[tuple[str, str]]:
    logged = [(r.method, r.path) for r in server.requests]
    storage = storage_of(server)
    if storage is not None:
        logged += [(r.method, r.path) for r in storage.requests]
    for host in vendor_hosts(server):
        logged += [(r.method, r.path) for r in host.requests]
    return logged


def baseline(endpoint: Endpoint) -> Baseline:
    """A clean run of the endpoint's selection (cached): what every run must emit."""
    key = (endpoint.vendor, endpoint.streams, tuple(sorted(endpoint.config.items(), key=str)),
           tuple(sorted(endpoint.sandbox.items(), key=str)))
    if key in _BASELINES:
        return _BASELINES[key]
    server = start_sandbox(endpoint)
    try:
        config = config_for(endpoint, server)
        catalog = catalog_for(endpoint, config)
        out = run_in_process(TAPS[endpoint.vendor], config, catalog=catalog, debug=True)
        requests = requests_of(server)
    finally:
        server.stop()
    assert out.returncode == 0, f"the clean run fails: {error_lines(out.stderr)}"
    assert not error_lines(out.stderr) and not tracebacks_shown(out.stderr)
    key_properties = {s["stream"]: s.get("key_properties") or []
                      for s in out.messages if s["type"] == "SCHEMA"}
    replication_keys = {name: stream.replication_key
                        for name, stream in discovery_tap(endpoint.vendor).streams.items()}
    rows = {stream: records for stream, records in out.records.items()}
    keys = {stream: {_key(r, key_properties[stream]) for r in records}
            for stream, records in rows.items()}
    for stream in endpoint.streams:
        assert keys.get(stream), f"the clean run of {stream} emits no rows: the matrix " \
                                 "could not tell a lost row from none"
    _BASELINES[key] = Baseline(config, catalog, keys, rows, key_properties, replication_keys,
                               requests)
    return _BASELINES[key]


def _key(record: dict, properties: list[str]) -> tuple:
    return tuple(repr(record.get(p)) for p in properties)


def calls(requests: list[tuple[str, str]], endpoint: Endpoint) -> int:
    return sum(1 for method, path in requests
               if method == endpoint.method and re.search(endpoint.path, path))


def lineage(endpoint: Endpoint) -> set[str]:
    """The selected streams and their parents: one of them is named by a failure."""
    tap = discovery_tap(endpoint.vendor)
    names = set()
    for name in endpoint.streams:
        stream = tap.streams[name]
        while stream is not None:
            names.add(stream.name)
            parent = stream.parent_stream_type
            stream = next((s for s in tap.streams.values() if type(s) is parent), None) \
                if parent else None
    return names


def secrets_in(server: t.Any, config: dict) -> list[str]:
    """Everything that must never be printed, for this run."""
    found = [str(config[k]) for k in ("api_token", "manifest_password", "client_secret",
                                      "api_key", "oauth_client_secret") if config.get(k)]
    found += [i["refresh_token"] for i in config.get("installs") or []]
    for user, password in (("username", "api_token"), ("manifest_id", "manifest_password"),
                           ("client_id", "client_secret")):
        if config.get(user) and config.get(password):
            found.append(base64.b64encode(f"{config[user]}:{config[password]}".encode()).decode())
    app = server.app
    if server.vendor == "isvapp":
        found += list(app.tokens)                                   # OAuth access tokens
        found += [e["_token"] for e in app.exports.values()]        # export download keys
    if server.vendor == "heroku_partner":
        found += list(app.access_tokens)                            # per-install tokens
    storage = storage_of(server)
    for request in storage.requests if storage is not None else []:  # presigned URLs
        found += [value for name, values in request.query.items()
                  if SIGNED_QUERY.search(name) for value in values]
    return found


#: Query parameters of a presigned URL that work as a credential.
SIGNED_QUERY = re.compile(r"signature|sig$|token|credential", re.IGNORECASE)


#: Signed-URL signatures and tokens in URLs, whatever their value.
SECRET_PATTERNS = (
    re.compile(r"signature=[0-9a-f]{8}", re.IGNORECASE),
    re.compile(r"X-Amz-Signature=[0-9a-f]{8}", re.IGNORECASE),
    re.compile(r"expires=\d{6}"),
    re.compile(r"token:t\.[0-9a-f-]{8}"),                           # Heroku log drain URLs
)


def covered_rows(base: Baseline, state: dict, stream: str) -> list[dict]:
    """The clean run's rows of ``stream`` that the state's bookmark(s) say are done."""
    rk = base.replication_keys.get(stream)
    entry = (state.get("bookmarks") or {}).get(stream) or {}
    if not rk:
        return []
    marks = []
    if entry.get("replication_key_value") is not None:
        marks.append(({}, entry["replication_key_value"]))
    for partition in entry.get("partitions") or []:
        if partition.get("replication_key_value") is not None:
            marks.append((partition.get("context") or {}, partition["replication_key_value"]))
    covered = []
    for row in base.rows.get(stream, []):
        value = row.get(rk)
        for context, mark in marks:
            if value is not None and str(value) <= str(mark) and all(
                    row.get(k) == v for k, v in context.items() if k in row):
                covered.append(row)
                break
    return covered


def _param(endpoint: Endpoint, kind: str) -> t.Any:
    return pytest.param(endpoint, kind, id=f"{endpoint.id}|{kind}")


@pytest.mark.parametrize(("endpoint", "kind"), [_param(e, k) for e, k in PAIRS])
def test_fault_matrix(endpoint: Endpoint, kind: str) -> None:
    base = baseline(endpoint)
    # A host quoting the request's credentials is checked at the default level too: the
    # one error line every user sees, not only the DEBUG records and traceback.
    for debug in (False, True) if kind in faults.ECHO_KINDS else (True,):
        run_with_fault(endpoint, kind, base, debug=debug)


def run_with_fault(endpoint: Endpoint, kind: str, base: Baseline, *, debug: bool) -> None:
    server = start_sandbox(endpoint)
    try:
        host = host_for(endpoint, server)
        config = config_for(endpoint, server)
        if kind == "slow":
            config["request_timeout_seconds"] = SLOW_TIMEOUT_SECONDS
        spec = faults.fault(kind, host.app, key=endpoint.records_key,
                            stall_seconds=SLOW_TIMEOUT_SECONDS * 2.5)
        refused: list[t.Any] = []
        if kind in endpoint.tolerated:
            spec["transform"] = recording(spec["transform"], refused)
        several = calls(base.requests, endpoint) >= 2
        skip = 1 if several and kind not in faults.PAGING_KINDS | {"unknown_status"} else 0
        fault = host.add_fault(endpoint.path, method=endpoint.method, skip=skip, **spec)
        out = run_in_process(TAPS[endpoint.vendor], config, catalog=base.catalog, debug=debug)
        secrets = secrets_in(server, config)
    finally:
        server.stop()
    if kind in endpoint.tolerated:
        check_tolerated_refusal(endpoint, kind, base, out, secrets,
                                refused_item(server, refused))
    else:
        check_invariant(endpoint, kind, base, out, secrets)
    if kind in faults.ECHO_KINDS:
        check_echo_refused(out)
    assert fault.applied > 0, (
        f"the {kind} fault never happened at {endpoint.id}: the matrix entry does not "
        "describe what the tap calls")


def recording(transform: t.Callable, requests: list) -> t.Callable:
    """The transform, keeping each request it changed (which item was refused)."""
    def record(request: t.Any, response: t.Any) -> t.Any:
        changed = transform(request, response)
        if changed is not None:
            requests.append(request)
        return changed
    return record


def refused_item(server: t.Any, refused: list) -> str:
    """The id of what the refusal was about: the path's id, or the refresh token's install."""
    assert len(refused) == 1, f"{len(refused)} requests refused"
    request = refused[0]
    if request.path == "/oauth/token":
        return server.app.refresh_tokens[request.form()["refresh_token"]]
    return request.path.split("/")[2]


#: Fields by which a partner row names its install or app.
ITEM_FIELDS = ("id", "addon_id", "app_id")


def check_tolerated_refusal(endpoint: Endpoint, kind: str, base: Baseline, out: SyncOutput,
                            secrets: list[str], item: str) -> None:
    """A refusal the tap documents as tolerated: exit 0, a warning, and the only rows
    missing are those of the refused item (an install's resource, or its app)."""
    assert out.returncode == 0, f"exit {out.returncode}: {error_lines(out.stderr)}"
    check_output_hygiene(out, secrets)
    assert not error_lines(out.stderr), error_lines(out.stderr)
    status = faults.REFUSAL_STATUSES[kind]
    warnings = [text for level, text in log_records(out.stderr) if level == "WARNING"]
    said = (f"{endpoint.streams[0]}: HTTP {status} " if kind != "invalid_grant"
            else "invalid_grant")
    assert any(said in text for text in warnings), f"no warning saying {said!r}"
    emitted = {stream: {_key(r, base.key_properties.get(stream, [])) for r in records}
               for stream, records in out.records.items()}
    for stream in endpoint.streams:
        keys = base.key_properties[stream]
        extra = emitted.get(stream, set()) - base.keys[stream]
        assert not extra, f"{stream}: {len(extra)} rows a clean run does not have"
        missing = [r for r in base.rows[stream] if _key(r, keys) not in emitted.get(stream, set())]
        assert missing, f"{stream}: no row missing, though {item} was refused"
        others = [r for r in missing if item not in (r.get(f) for f in ITEM_FIELDS)]
        assert not others, f"{stream}: {len(others)} rows of items that were not refused missing"


def check_output_hygiene(out: SyncOutput, secrets: list[str]) -> None:
    """No secret, no signed URL, no traceback."""
    stdout = out.stdout  # type: ignore[attr-defined]
    for secret in secrets:
        assert secret not in stdout, "a secret in stdout"
        assert secret not in out.stderr, f"a secret in stderr: {secret[:4]}…"
    for pattern in SECRET_PATTERNS:
        assert not pattern.search(stdout), f"{pattern.pattern} in stdout"
        assert not pattern.search(out.stderr), f"{pattern.pattern} in stderr"
    assert not tracebacks_shown(out.stderr), tracebacks_shown(out.stderr)[0][-2000:]


def check_echo_refused(out: SyncOutput) -> None:
    """A 400 quoting the credentials is final: the run fails with one line (the secrets
    are checked by ``check_output_hygiene``)."""
    assert out.returncode != 0, "a 400 that no retry changes, and the run is green"
    errors = error_lines(out.stderr)
    assert len(errors) == 1, errors


def check_invariant(endpoint: Endpoint, kind: str, base: Baseline, out: SyncOutput,
                    secrets: list[str]) -> None:
    check_output_hygiene(out, secrets)

    errors = error_lines(out.stderr)
    emitted = {stream: {_key(r, base.key_properties.get(stream, [])) for r in records}
               for stream, records in out.records.items()}
    for stream in endpoint.streams:
        extra = emitted.get(stream, set()) - base.keys.get(stream, set())
        assert not extra, f"{stream}: {len(extra)} rows a clean run does not have"
    if out.returncode == 0:
        assert not errors, errors
        for stream in endpoint.streams:
            missing = base.keys[stream] - emitted.get(stream, set())
            assert not missing, (f"exit 0 but {len(missing)} of {len(base.keys[stream])} "
                                 f"{stream} rows missing")
    else:
        assert len(errors) == 1, f"{len(errors)} error lines: {errors}"
        named = lineage(endpoint)
        assert any(re.search(rf"\| {re.escape(name)}: ", errors[0]) for name in named), (
            f"the error line names none of {sorted(named)}: {errors[0]}")
    if out.states:
        last = out.states[-1]
        for stream in endpoint.streams:
            lost = [r for r in covered_rows(base, last, stream)
                    if _key(r, base.key_properties[stream]) not in emitted.get(stream, set())]
            assert not lost, (f"the last STATE covers {len(lost)} {stream} rows that were "
                              "not emitted")
    if kind == "same_page_next":
        for stream, records in out.records.items():
            keys = [_key(r, base.key_properties.get(stream, [])) for r in records]
            assert len(keys) == len(set(keys)), f"{stream}: a page was emitted twice"


def test_every_sandbox_route_the_taps_call_is_in_the_matrix() -> None:
    """Each route a clean run of an endpoint's selection calls is a matrix endpoint."""
    listed = [(e.vendor, e.method, re.compile(e.path)) for e in ENDPOINTS]
    unlisted = set()
    for endpoint in ENDPOINTS:
        for method, path in baseline(endpoint).requests:
            if not any(v == endpoint.vendor and m == method and p.search(path)
                       for v, m, p in listed):
                unlisted.add((endpoint.vendor, method, path))
    assert not unlisted, f"called by the taps but not in the fault matrix: {sorted(unlisted)}"
    for endpoint in ENDPOINTS:
        assert calls(baseline(endpoint).requests, endpoint), (
            f"{endpoint.id} is never called by a run of {endpoint.streams}")
