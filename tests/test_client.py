"""The tap's client (tap_common.http.VendorClient) on synthetic answers from a loopback server.

Base behaviour tested once, here, for every tap: statuses, retries and Retry-After,
error envelopes with a 200, bodies that are not JSON, what a line may show of a URL,
where credentials go, and that every request (token requests included) is paced.
"""

from __future__ import annotations

import json
import logging
import threading
import time
import typing as t
from collections import deque
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from requests.auth import HTTPBasicAuth

from tap_common.errors import (
    CredentialRejectedError,
    NetworkError,
    PayloadError,
    VendorAPIError,
)
from tap_common.http import VendorClient
from tap_common.ratelimit import RequestThrottle
from tap_common.responses import SuccessFlagEnvelope
from tap_isvapp.client import TOKEN_PATH, ClientCredentialsToken

FAST = {"max_retries": 2, "retry_backoff_seconds": 0.01}
JSON = {"Content-Type": "application/json"}


class Seen(t.NamedTuple):
    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    at: float


class ScriptedServer:
    """Answers each path from a script (status, headers, body), the last answer repeating."""

    def __init__(self) -> None:
        self.scripts: dict[str, deque] = {}
        self.seen: list[Seen] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: t.Any) -> None:
                pass

            def answer(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                path = self.path.split("?", 1)[0]
                server.seen.append(Seen(self.command, self.path, dict(self.headers), body,
                                        time.monotonic()))
                script = server.scripts.get(path) or deque([(404, {}, b"no such path")])
                status, headers, payload = script[0] if len(script) == 1 else script.popleft()
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            do_GET = do_POST = answer  # noqa: N815

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05},
                         daemon=True).start()

    def script(self, path: str, *answers: tuple[int, dict, t.Any]) -> None:
        self.scripts[path] = deque(
            (status, headers, body if isinstance(body, bytes) else json.dumps(body).encode())
            for status, headers, body in answers)

    def count(self, path: str) -> int:
        return sum(1 for s in self.seen if s.path.split("?", 1)[0] == path)

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def api():
    server = ScriptedServer()
    yield server
    server.stop()


@pytest.fixture
def storage():
    """Another origin: a presigned-download host."""
    server = ScriptedServer()
    yield server
    server.stop()


class CountingThrottle(RequestThrottle):
    def __init__(self) -> None:
        super().__init__(None)
        self.acquired = 0
        self.remaining: list[str] = []

    def acquire(self) -> None:
        self.acquired += 1

    def observe(self, headers: t.Mapping[str, str]) -> None:
        if "RateLimit-Remaining" in headers:
            self.remaining.append(headers["RateLimit-Remaining"])


def make_client(server: ScriptedServer, *, throttle: RequestThrottle | None = None,
                credentials: t.Any = None, **settings: t.Any) -> VendorClient:
    return VendorClient(
        server.url,
        throttle=throttle or CountingThrottle(),
        settings={**FAST, **settings},
        credentials=(lambda: credentials) if credentials is not None else None,
        error_envelope=SuccessFlagEnvelope(),
        credential_hint=lambda status: f"Check the `api_key` setting ({status}).",
    )


# -- statuses -----------------------------------------------------------------------------


@pytest.mark.parametrize("status", [401, 403])
def test_rejected_credentials_are_one_line_with_the_hint_and_not_retried(api, status):
    api.script("/api/v1/licenses", (status, JSON, {"error": "Bad token", "success": False}))
    client = make_client(api)
    with pytest.raises(CredentialRejectedError) as failure:
        client.send("GET", "/api/v1/licenses", caller="licenses")
    reason = "Unauthorized" if status == 401 else "Forbidden"
    assert str(failure.value) == (f"licenses: HTTP {status} {reason} from GET /api/v1/licenses: "
                                  f"Bad token. Check the `api_key` setting ({status}).")
    assert api.count("/api/v1/licenses") == 1


def test_a_4xx_is_one_line_and_not_retried(api):
    api.script("/api/v1/licenses", (404, JSON, {"error": "No such thing", "success": False}))
    with pytest.raises(VendorAPIError, match=r"^licenses: HTTP 404 Not Found from GET "
                                             r"/api/v1/licenses: No such thing$"):
        make_client(api).send("GET", "/api/v1/licenses", caller="licenses")
    assert api.count("/api/v1/licenses") == 1


@pytest.mark.parametrize("status", [429, 500, 502, 503, 504])
def test_transient_statuses_are_retried_obeying_retry_after(api, status, caplog):
    api.script("/api/v1/x", (status, {"Retry-After": "0.3", **JSON}, {"error": "busy"}),
               (200, JSON, {"data": [], "success": True}))
    with caplog.at_level(logging.WARNING):
        response = make_client(api, retry_backoff_seconds=5).send("GET", "/api/v1/x", caller="x")

    assert response.status_code == 200
    first, second = (s.at for s in api.seen)
    assert second - first >= 0.3, "Retry-After is a floor, not the (longer) backoff"
    assert second - first < 2
    assert any(f"x: HTTP {status} " in r.getMessage() and "retrying in" in r.getMessage()
               for r in caplog.records)


def test_a_retry_after_beyond_the_cap_fails_at_once(api):
    api.script("/api/v1/x", (429, {"Retry-After": "900"}, b"slow down"))
    client = make_client(api, max_retry_after_seconds=60)
    with pytest.raises(VendorAPIError, match=r"asks to wait 900 s \(Retry-After\).*more than "
                                             r"`max_retry_after_seconds` \(60 s\)"):
        client.send("GET", "/api/v1/x", caller="x")
    assert api.count("/api/v1/x") == 1


def test_retries_run_out_into_one_final_line(api):
    api.script("/api/v1/x", (503, JSON, {"error": "down", "success": False}))
    with pytest.raises(VendorAPIError, match=r"^x: HTTP 503 Service Unavailable from GET "
                                             r"/api/v1/x: down$"):
        make_client(api).send("GET", "/api/v1/x", caller="x")
    assert api.count("/api/v1/x") == FAST["max_retries"] + 1


def test_network_failure_is_one_line_without_the_url_query():
    closed = VendorClient("http://127.0.0.1:9", throttle=CountingThrottle(), settings=FAST)
    with pytest.raises(NetworkError) as failure:
        closed.send("GET", "/api/v1/x", params={"signature": "s3cr3t"}, caller="x")
    line = str(failure.value)
    assert line.startswith("x: GET /api/v1/x on 127.0.0.1: cannot connect")
    assert "check the `api_url` setting and the network" in line
    assert line.endswith("(gave up after 3 attempts)")
    assert "s3cr3t" not in line


@pytest.mark.parametrize("url", ["http://127.0.0.1:9", "http://no-such-host.invalid"])
def test_an_unreachable_host_fails_within_connect_retry_seconds_naming_it(url):
    # Many retries allowed for 5xx, a short budget for a host that cannot be reached.
    settings = {"max_retries": 50, "retry_backoff_seconds": 0.2, "connect_retry_seconds": 1}
    client = VendorClient(url, throttle=CountingThrottle(), settings=settings)
    started = time.monotonic()
    with pytest.raises(NetworkError) as failure:
        client.send("GET", "/api/v1/x", caller="x")
    elapsed = time.monotonic() - started
    line = str(failure.value)
    host = url.split("//")[1].split(":")[0]
    assert line.startswith(f"x: GET /api/v1/x on {host}: cannot connect")
    assert "check the `api_url` setting and the network" in line
    assert "in 1 s, `connect_retry_seconds`)" in line
    assert 0.9 <= elapsed < 5, elapsed


def test_tls_to_a_host_without_tls_fails_fast_saying_so(api):
    settings = {"max_retries": 50, "retry_backoff_seconds": 0.1, "connect_retry_seconds": 0.5}
    client = VendorClient(api.url.replace("http://", "https://"), throttle=CountingThrottle(),
                          settings=settings)
    started = time.monotonic()
    with pytest.raises(NetworkError) as failure:
        client.send("GET", "/api/v1/x", caller="x")
    assert time.monotonic() - started < 5
    line = str(failure.value)
    assert "x: GET /api/v1/x on 127.0.0.1: TLS failed" in line
    assert "check the `api_url` setting and the network" in line


def test_a_5xx_keeps_its_longer_budget_beyond_connect_retry_seconds(api):
    api.script("/api/v1/x", *[(503, JSON, {"error": "down", "success": False})] * 4,
               (200, JSON, {"success": True, "data": []}))
    response = make_client(api, max_retries=4, retry_backoff_seconds=0.05,
                           connect_retry_seconds=0).send("GET", "/api/v1/x", caller="x")
    assert response.status_code == 200
    assert api.count("/api/v1/x") == 5


# -- bodies -------------------------------------------------------------------------------


def test_the_error_envelope_on_a_200_fails_and_a_transient_one_is_retried(api):
    api.script("/api/v1/a", (200, JSON, {"error": "Export configuration is invalid",
                                         "success": False}))
    api.script("/api/v1/b", (200, JSON, {"error": "Database temporarily unavailable, please "
                                         "retry", "success": False}),
               (200, JSON, {"data": {"n": 1}, "success": True}))
    client = make_client(api)
    with pytest.raises(VendorAPIError, match="^a: HTTP 200 OK from GET /api/v1/a: Export "
                                             "configuration is invalid$"):
        client.send("GET", "/api/v1/a", caller="a")
    assert client.decode_json(client.send("GET", "/api/v1/b", caller="b"), "$.data") == {"n": 1}
    assert api.count("/api/v1/b") == 2


def test_empty_and_html_bodies_are_named_not_taken_for_no_records(api):
    api.script("/empty", (200, {}, b""))
    api.script("/html", (200, {"Content-Type": "text/html"}, b"<html><body>Login</body></html>"))
    client = make_client(api)
    with pytest.raises(PayloadError, match="^e: HTTP 200 from /empty had an empty body where "
                                           "JSON was expected$"):
        client.decode_json(client.send("GET", "/empty", caller="e"))
    with pytest.raises(PayloadError, match=r"^h: HTTP 200 from /html is not JSON \(text/html\).*"
                                           "body starts 'Login'"):
        client.decode_json(client.send("GET", "/html", caller="h"))


def test_a_missing_records_key_is_an_error(api):
    api.script("/api/v1/x", (200, JSON, {"items": []}))
    client = make_client(api)
    with pytest.raises(PayloadError, match=r"^x: HTTP 200 from GET /api/v1/x: expected"):
        client.decode_json(client.send("GET", "/api/v1/x", caller="x"), "$.data[*]")


# -- what lines show of a URL, where credentials go ---------------------------------------


def test_lines_show_the_path_never_the_query_and_only_the_host_of_a_download(api, storage):
    api.script("/api/v1/x", (500, {}, b"oops"))
    storage.script("/bucket/file.gz", (403, {}, b"<Error>SignatureDoesNotMatch</Error>"))
    client = make_client(api, max_retries=0)
    with pytest.raises(VendorAPIError) as failure:
        client.send("GET", "/api/v1/x?signature=abc123", caller="x")
    assert "from GET /api/v1/x: oops" in str(failure.value)
    assert "abc123" not in str(failure.value)

    with pytest.raises(CredentialRejectedError) as failure:
        client.send("GET", f"{storage.url}/bucket/file.gz?X-Amz-Signature=abc123", caller="x")
    assert "from GET 127.0.0.1 (download URL): SignatureDoesNotMatch" in str(failure.value)
    assert "abc123" not in str(failure.value) and "/bucket" not in str(failure.value)


def test_credentials_go_to_the_api_origin_only(api, storage):
    api.script("/api/v1/x", (200, JSON, {"data": [], "success": True}))
    storage.script("/file", (200, {}, b"rows"))
    client = make_client(api, credentials=HTTPBasicAuth("user", "password"))

    client.send("GET", "/api/v1/x", caller="x")
    client.send("GET", f"{storage.url}/file", caller="x",
                headers={"Authorization": "Bearer set-by-mistake"})
    client.send("POST", "/api/v1/x", caller="x", auth=HTTPBasicAuth("id", "secret"))
    client.send("GET", f"{storage.url}/file", caller="x", auth=HTTPBasicAuth("id", "secret"))

    assert api.seen[0].headers["Authorization"].startswith("Basic ")
    assert api.seen[1].headers["Authorization"] != api.seen[0].headers["Authorization"]
    assert all("Authorization" not in s.headers for s in storage.seen)


# -- pacing -------------------------------------------------------------------------------


def test_every_request_is_paced_token_requests_included(api):
    api.script(TOKEN_PATH, (200, JSON, {"access_token": "tok-1", "expires_in": 3600}))
    api.script("/api/v1/account", (200, {"RateLimit-Remaining": "41", **JSON},
                                   {"data": {"id": "a"}, "success": True}))
    throttle = CountingThrottle()
    client = make_client(api, throttle=throttle)
    token = ClientCredentialsToken(scope="identity", client_id="id", client_secret="secret",
                                   client=client)

    client.send("GET", "/api/v1/account", caller="account", credentials=token)
    client.send("GET", "/api/v1/account", caller="account", credentials=token)

    assert [s.path for s in api.seen] == [TOKEN_PATH, "/api/v1/account", "/api/v1/account"]
    assert throttle.acquired == 3, "the token request takes a pacing slot like any request"
    assert throttle.remaining == ["41", "41"]
    assert api.seen[1].headers["Authorization"] == "Bearer tok-1"


def test_the_throttle_spaces_requests_on_the_session(api):
    api.script("/api/v1/x", (200, JSON, {"data": [], "success": True}))
    client = make_client(api, throttle=RequestThrottle(10))
    for _ in range(4):
        client.send("GET", "/api/v1/x", caller="x")
    arrivals = [s.at for s in api.seen]
    assert arrivals[-1] - arrivals[0] >= 0.28


# -- an OAuth2 token: renewed once after a 401 ----------------------------------------------


def test_a_401_renews_the_token_once_then_a_second_401_is_final(api):
    api.script(TOKEN_PATH, (200, JSON, {"access_token": "tok-1", "expires_in": 3600}),
               (200, JSON, {"access_token": "tok-2", "expires_in": 3600}),
               (200, JSON, {"access_token": "tok-3", "expires_in": 3600}))
    api.script("/api/v1/x", (401, JSON, {"error": "Token revoked", "success": False}),
               (200, JSON, {"data": [], "success": True}),
               (401, JSON, {"error": "Token revoked", "success": False}))
    client = make_client(api)
    token = ClientCredentialsToken(scope="exports", client_id="id", client_secret="secret",
                                   client=client)

    assert client.send("GET", "/api/v1/x", caller="x", credentials=token).status_code == 200
    assert [s.headers["Authorization"] for s in api.seen if s.path == "/api/v1/x"] == [
        "Bearer tok-1", "Bearer tok-2"]

    with pytest.raises(CredentialRejectedError, match="^x: HTTP 401 Unauthorized from GET "
                                                  "/api/v1/x: Token revoked"):
        client.send("GET", "/api/v1/x", caller="x", credentials=token)
    assert api.count(TOKEN_PATH) == 3


def test_a_401_after_a_retry_still_renews_only_once(api):
    api.script(TOKEN_PATH, (200, JSON, {"access_token": "tok-1", "expires_in": 3600}))
    api.script("/api/v1/x", (503, JSON, {"error": "busy", "success": False}),
               (401, JSON, {"error": "Token revoked", "success": False}))
    client = make_client(api)
    token = ClientCredentialsToken(scope="exports", client_id="id", client_secret="secret",
                                   client=client)
    with pytest.raises(CredentialRejectedError):
        client.send("GET", "/api/v1/x", caller="x", credentials=token)
    assert api.count(TOKEN_PATH) == 2, "one token, one renewal: not one per attempt"
    assert api.count("/api/v1/x") == 3


def test_a_rejected_client_names_its_settings_and_the_scope(api):
    api.script(TOKEN_PATH, (401, JSON, {"error": "invalid_client", "success": False}))
    client = make_client(api)
    token = ClientCredentialsToken(scope="exports", client_id="id", client_secret="wrong",
                                   client=client)
    with pytest.raises(CredentialRejectedError) as failure:
        client.send("GET", "/api/v1/x", caller="exports", credentials=token)
    line = str(failure.value)
    assert line.startswith("exports: HTTP 401 Unauthorized from POST /api/oauth2/token")
    assert "`client_id` and `client_secret`" in line and "scope `exports`" in line
    assert api.count("/api/v1/x") == 0


# -- one client per tap ---------------------------------------------------------------------


def test_a_tap_has_one_client_whose_session_every_stream_uses():
    from tap_heroku_vendor.tap import TapHerokuVendor
    from tap_isvapp.tap import TapIsvapp
    from tap_marketplace.tap import TapMarketplace

    configs = {
        TapIsvapp: {"api_key": "k", "api_url": "http://127.0.0.1:9"},
        TapMarketplace: {"username": "u", "api_token": "t", "developer_id": "6f0e9a3c-1c2b-4d5e-9f00-5a1b2c3d4e5f",
                         "api_url": "http://127.0.0.1:9"},
        TapHerokuVendor: {"manifest_id": "m", "manifest_password": "p",
                          "api_url": "http://127.0.0.1:9"},
    }
    for tap_class, config in configs.items():
        tap = tap_class(config=config, validate_config=True)
        assert tap.client is tap.client
        assert {id(s.requests_session) for s in tap.streams.values()} == {id(tap.client.session)}
        adapter = tap.client.session.get_adapter("https://api.example.com")
        assert adapter.throttle is tap.throttle, f"{tap.name}: pacing is at the transport"
