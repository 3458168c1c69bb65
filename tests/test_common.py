"""The shared machinery in tap_common, over real loopback HTTP where it talks HTTP."""

from __future__ import annotations

import gzip
import io
import json
import sys
import zlib
from contextlib import redirect_stdout

import pytest
import requests
from singer_sdk import typing as th
from singer_sdk.exceptions import ConfigValidationError

from isv_sandbox.core import Response, SandboxServer, VendorApp, public
from tap_common.auth import HostBoundAuth
from tap_common.errors import ExportFailedError, PayloadError
from tap_common.exports import (
    COMPLETED,
    FAILED,
    PENDING,
    DownloadInterrupted,
    ExportFile,
    ExportStatus,
    rows_with_resume,
    wait_for_export,
)
from tap_common import settings
from tap_common.ratelimit import RequestThrottle
from tap_common.tap import VendorTap
from tap_common.writer import OrjsonSingerWriter


class FileHost(VendorApp):
    """Serves whatever bytes a test puts under a name, recording auth headers."""

    def __init__(self) -> None:
        super().__init__()
        self.files: dict[str, bytes] = {}
        self.route("GET", r"/files/(?P<name>[^/]+)", self.serve)

    @public
    def serve(self, request, name):
        return Response(200, self.files[name], {"Content-Type": "application/octet-stream"})


@pytest.fixture
def host():
    server = SandboxServer(FileHost()).start()
    yield server
    server.stop()


def fetch(server: SandboxServer, name: str, body: bytes) -> requests.Response:
    server.app.files[name] = body
    return requests.get(f"{server.url}/files/{name}", stream=True, timeout=10)


def ndjson(rows: int) -> bytes:
    return b"".join(json.dumps({"n": i, "label": f"row {i}"}).encode() + b"\n" for i in range(rows))


# -- wait_for_export ------------------------------------------------------------------


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def test_wait_for_export_polls_until_completed():
    clock = FakeClock()
    answers = iter([ExportStatus(PENDING, "QUEUED"), ExportStatus(PENDING, "IN_PROGRESS"),
                    ExportStatus(COMPLETED, "COMPLETED")])
    status = wait_for_export(stream="s", export_id="e1", poll=lambda: next(answers),
                             interval_seconds=5, timeout_seconds=60,
                             sleep=clock.sleep, clock=lambda: clock.now)
    assert status.vendor_status == "COMPLETED"
    assert clock.sleeps == [5, 5]


def test_wait_for_export_fails_with_the_vendor_message():
    with pytest.raises(ExportFailedError, match="s: export e2 ended with status ERRORED: quota exceeded"):
        wait_for_export(stream="s", export_id="e2",
                        poll=lambda: ExportStatus(FAILED, "ERRORED", "quota exceeded"),
                        interval_seconds=1, timeout_seconds=10)


def test_wait_for_export_times_out_naming_the_export():
    clock = FakeClock()
    with pytest.raises(ExportFailedError, match=r"export e3 did not complete within 12 s \(still PENDING"):
        wait_for_export(stream="s", export_id="e3", poll=lambda: ExportStatus(PENDING, "PENDING"),
                        interval_seconds=5, timeout_seconds=12,
                        sleep=clock.sleep, clock=lambda: clock.now)
    assert sum(clock.sleeps) == 12


# -- streaming export files -------------------------------------------------------------


def test_gzip_ndjson_streams_every_row(host):
    response = fetch(host, "a.ndjson.gz", gzip.compress(ndjson(5000)))
    rows = list(ExportFile(response, stream="s", export="x").ndjson_rows())
    assert [r["n"] for r in rows] == list(range(5000))


def test_plain_ndjson_is_read_too(host):
    response = fetch(host, "a.ndjson", ndjson(3))
    assert len(list(ExportFile(response, stream="s", export="x").ndjson_rows())) == 3


def test_truncated_gzip_fails_naming_export_and_position(host):
    whole = gzip.compress(ndjson(2000))
    response = fetch(host, "cut.gz", whole[: len(whole) // 2])
    rows = ExportFile(response, stream="usage", export="exp-9").ndjson_rows()
    with pytest.raises(PayloadError, match=r"usage: export exp-9: the gzip file is truncated .* after line \d+"):
        list(rows)


def test_malformed_ndjson_line_names_the_line(host):
    body = gzip.compress(ndjson(3) + b'{"n": 3, "label": \n' + ndjson(2))
    rows = ExportFile(fetch(host, "bad.gz", body), stream="usage", export="exp-1").ndjson_rows()
    with pytest.raises(PayloadError, match="usage: export exp-1: line 4 is not valid JSON"):
        list(rows)


def test_json_array_streams_elements_and_wrapped_arrays(host):
    items = [{"id": i, "price": i / 4} for i in range(1000)]
    plain = fetch(host, "plain.json", json.dumps(items).encode())
    assert list(ExportFile(plain, stream="s", export="x").json_array_rows()) == items
    wrapped = fetch(host, "wrapped.json", json.dumps({"things": items[:3]}).encode())
    assert list(ExportFile(wrapped, stream="s", export="x").json_array_rows("things")) == items[:3]


def test_json_array_cut_short_fails_naming_the_element(host):
    body = json.dumps([{"id": i} for i in range(100)]).encode()[:-40]
    rows = ExportFile(fetch(host, "cut.json", body), stream="licenses", export="e7").json_array_rows()
    with pytest.raises(PayloadError, match=r"licenses: export e7: the JSON array is cut short .* after element 9\d"):
        list(rows)


def test_csv_rows_by_header_name_keep_unknown_columns(host):
    text = "timestamp_derived,request_id,brand_new_column\n2024-01-01T00:00:00Z,r1,\"a,b\"\n"
    rows = list(ExportFile(fetch(host, "f.csv.gz", gzip.compress(text.encode())),
                           stream="s", export="x").csv_rows())
    assert rows == [{"timestamp_derived": "2024-01-01T00:00:00Z", "request_id": "r1",
                     "brand_new_column": "a,b"}]


def test_csv_cut_short_fails_before_the_cut_row_is_given_out(host):
    text = "a,b,c\n1,2,3\n4,5,6\n7,8"
    rows = ExportFile(fetch(host, "cut.csv", text.encode()), stream="s", export="x").csv_rows()
    assert next(rows) == {"a": "1", "b": "2", "c": "3"}
    assert next(rows) == {"a": "4", "b": "5", "c": "6"}
    with pytest.raises(PayloadError, match="s: export x: CSV line 4 has 2 fields where the "
                                           "header has 3: the file is cut short"):
        next(rows)
    # Cut inside the last field: the count is right, the line end is missing.
    rows = ExportFile(fetch(host, "cut2.csv", b"a,b\n1,2\n3,4"), stream="s", export="x")
    with pytest.raises(PayloadError, match="ends inside line 3 .* cut short"):
        list(rows.csv_rows())


def test_csv_whole_files_pass_blank_lines_and_gzip_without_a_final_line_end(host):
    plain = fetch(host, "ok.csv", b"a,b\r\n1,2\r\n\r\n3,\"x\r\ny\"\r\n")
    assert list(ExportFile(plain, stream="s", export="x").csv_rows()) == [
        {"a": "1", "b": "2"}, {"a": "3", "b": "x\r\ny"}]
    # A gzip file's trailer proves it whole: no final line end is needed.
    packed = fetch(host, "ok.csv.gz", gzip.compress(b"a,b\n1,2"))
    assert list(ExportFile(packed, stream="s", export="x").csv_rows()) == [{"a": "1", "b": "2"}]
    assert list(ExportFile(fetch(host, "empty.csv", b""), stream="s", export="x").csv_rows()) == []


def test_rows_with_resume_skips_rows_already_emitted():
    attempts = []

    def open_rows():
        attempts.append(1)
        yield from ({"n": i} for i in range(3))
        if len(attempts) == 1:
            raise DownloadInterrupted("s: export x: the download broke off after line 3")
        yield from ({"n": i} for i in range(3, 6))

    assert [r["n"] for r in rows_with_resume(open_rows)] == list(range(6))
    assert len(attempts) == 2


def test_connection_reset_mid_body_is_a_download_interruption(host):
    host.add_fault("/files/big.gz", kind="reset", fraction=0.5)
    response = fetch(host, "big.gz", gzip.compress(ndjson(20000), compresslevel=1))
    with pytest.raises(PayloadError, match="export x:"):
        list(ExportFile(response, stream="s", export="x").ndjson_rows())


# -- credentials, pacing, output -------------------------------------------------------------


def test_host_bound_auth_only_authenticates_the_api_origin():
    def add_secret(request):
        request.headers["Authorization"] = "Bearer s3cret"
        return request

    auth = HostBoundAuth(add_secret, "http://127.0.0.1:8080/api")
    same = requests.Request("GET", "http://127.0.0.1:8080/api/v1/x").prepare()
    other_port = requests.Request("GET", "http://127.0.0.1:9090/file").prepare()
    other_host = requests.Request("GET", "http://127.0.0.2:8080/file",
                                  headers={"Authorization": "Bearer leaked"}).prepare()
    assert auth(same).headers["Authorization"] == "Bearer s3cret"
    assert "Authorization" not in auth(other_port).headers
    assert "Authorization" not in auth(other_host).headers


def test_throttle_spaces_requests_at_the_configured_rate():
    import time

    throttle = RequestThrottle(20)
    started = time.monotonic()
    for _ in range(11):
        throttle.acquire()
    elapsed = time.monotonic() - started
    # Ten gaps of 50 ms; the upper bound only catches gross over-throttling (a loaded
    # machine adds scheduling delay, never less than the spacing).
    assert 0.48 <= elapsed <= 1.0, elapsed


def test_orjson_writer_writes_singer_lines_and_flushes_on_state():
    from decimal import Decimal

    from singer_sdk.singerlib.encoding.simple import RecordMessage, StateMessage

    writer = OrjsonSingerWriter()
    buffer = io.StringIO()
    with redirect_stdout(buffer):
        writer.write_message(RecordMessage(stream="s", record={"a": Decimal("1.5"), "b": Decimal(2)}))
        writer.write_message(StateMessage(value={"bookmarks": {}}))
    lines = [json.loads(line) for line in buffer.getvalue().splitlines()]
    assert lines[0]["type"] == "RECORD" and lines[0]["record"] == {"a": 1.5, "b": 2}
    assert lines[1] == {"type": "STATE", "value": {"bookmarks": {}}}
    assert sys.stdout is not buffer


def test_zlib_stream_gzip_is_recognised(host):
    compressor = zlib.compressobj(wbits=31)
    body = compressor.compress(ndjson(10)) + compressor.flush()
    assert len(list(ExportFile(fetch(host, "z.gz", body), stream="s", export="x").ndjson_rows())) == 10


# -- what answers must look like (tap_common.responses) ----------------------------------------


def test_error_envelopes_of_each_vendor_and_nothing_else():
    from tap_common.responses import ErrorsListEnvelope, IdMessageEnvelope, SuccessFlagEnvelope

    isvapp, atlassian, heroku = SuccessFlagEnvelope(), ErrorsListEnvelope(), IdMessageEnvelope()
    assert isvapp.message({"error": "Bad window", "success": False}) == "Bad window"
    assert isvapp.message({"data": [], "success": True}) is None
    assert atlassian.message({"errors": [{"message": "a"}, {"code": "X", "detail": "b"}]}) == "a; X: b"
    assert atlassian.message({"errors": [], "items": []}) is None
    assert heroku.message({"id": "not_found", "message": "App not found."}) == "App not found. (not_found)"
    # An app's own "id" comes with other fields: not an error.
    assert heroku.message({"id": "app1@heroku.com", "message": "hi", "name": "app"}) is None
    assert isvapp.is_transient({}, "Database temporarily unavailable")
    assert not isvapp.is_transient({}, "Export configuration is invalid")
    assert atlassian.is_transient({"errors": [{"status": "503", "title": "x"}]}, "x")


@pytest.mark.parametrize(("payload", "path", "message"), [
    ({"data": {"a": 1}}, "$.data[*]", "expected a JSON array under 'data', got a JSON object (keys: a)"),
    ({"result": []}, "$.data[*]", "got a JSON object (keys: result) without 'data'"),
    ([1], "$", "expected a JSON object as the body, got a JSON array of 1"),
    ({"items": [{}]}, "$[*]", "expected a JSON array as the body, got a JSON object (keys: items)"),
    ({"data": [{"id": 1}, "x"]}, "$.data[*]", "element 1 is a JSON string"),
    ({"data": {"url": "u"}}, "$.data", "has no 'id' (a JSON object (keys: url))"),
])
def test_locate_names_what_was_expected_and_what_came(payload, path, message):
    from tap_common.responses import locate

    with pytest.raises(PayloadError) as raised:
        locate(payload, path, where="s: HTTP 200 from GET /p", fields=("id",) if path == "$.data" else ())
    assert str(raised.value).startswith("s: HTTP 200 from GET /p: ")
    assert message in str(raised.value)


def test_locate_returns_the_records():
    from tap_common.responses import locate

    assert locate({"data": [{"a": 1}]}, "$.data[*]", where="w") == [{"a": 1}]
    assert locate({"licenses": {"a": 1}}, "$.licenses[*]", where="w", one_as_many=True) == [{"a": 1}]
    assert locate({"export": {"status": "X"}}, "$.export", where="w") == {"status": "X"}


def test_unknown_export_status_fails_at_once():
    status = ExportStatus.of("CANCELLED", {"PENDING": PENDING, "COMPLETED": COMPLETED}, "by admin")
    with pytest.raises(ExportFailedError, match=(
            r"s: export e4 has status 'CANCELLED', which the tap does not know \(known: "
            r"PENDING, COMPLETED\); failing now .*; the vendor says: by admin")):
        wait_for_export(stream="s", export_id="e4", poll=lambda: status, interval_seconds=60,
                        timeout_seconds=600, sleep=pytest.fail)
    assert ExportStatus.of(None, {"PENDING": PENDING}).vendor_status == "(none)"


def test_json_array_download_that_is_an_object_fails_instead_of_giving_no_rows(host):
    single = fetch(host, "object.json", b'{"items": [{"id": 1}]}')
    with pytest.raises(PayloadError, match="s: export x: expected a JSON array, got a JSON object"):
        list(ExportFile(single, stream="s", export="x").json_array_rows())
    renamed = fetch(host, "renamed.json", b'{"total": 1, "rows": [{"id": 1}]}')
    with pytest.raises(PayloadError, match=(r"expected a JSON array under 'things', got a JSON "
                                            r"object without it \(keys: total, rows\)")):
        list(ExportFile(renamed, stream="s", export="x").json_array_rows("things"))
    html = fetch(host, "page.html", b"<html>maintenance</html>")
    with pytest.raises(PayloadError, match="expected a JSON array, got a body starting b'<html>"):
        list(ExportFile(html, stream="s", export="x").json_array_rows())


def test_a_sniffed_download_is_still_read_from_its_start(host):
    from tap_common.exports import sniff_small_json

    wrapped = json.dumps({"things": [{"n": i} for i in range(10000)]}).encode()  # > 64 KiB
    response = fetch(host, "big-wrapped.json", wrapped)
    assert sniff_small_json(response) is None
    assert len(list(ExportFile(response, stream="s", export="x").json_array_rows("things"))) == 10000
    small = fetch(host, "envelope.json", b'{"errors": [{"message": "gone"}]}')
    assert sniff_small_json(small) == {"errors": [{"message": "gone"}]}


# -- secrets (tap_common.redact) ----------------------------------------------------------------


def test_redaction_of_urls_headers_tokens_and_registered_secrets():
    from tap_common.redact import Redactor

    redactor = Redactor()
    redactor.add_secret("hunter2-manifest-password")
    redactor.add_signed_path(r"/download/(?P<secret>[A-Za-z0-9_-]+)")
    cases = {
        "GET http://127.0.0.2:5/files/r.csv.gz?expires=17&signature=ab12 failed":
            "GET http://127.0.0.2:5/files/r.csv.gz?<redacted> failed",
        "Max retries exceeded with url: /files/r.csv.gz?expires=17&signature=ab12 (Caused by X)":
            "Max retries exceeded with url: /files/r.csv.gz?<redacted> (Caused by X)",
        "ParseResult(scheme='http', path='/x', query='cursor=abc&limit=5', fragment='')":
            "ParseResult(scheme='http', path='/x', query='<redacted>', fragment='')",
        "GET /api/v1/exports/e1/download/Zx_9-tok: refused": "GET /api/v1/exports/e1/download/<redacted>: refused",
        "{'Authorization': 'Basic dXNlcjpwYXNz', 'Accept': '*/*'}":
            "{'Authorization': '<redacted>', 'Accept': '*/*'}",
        "sent Bearer abcdefghijklmnop": "sent Bearer <redacted>",
        "https://token:t.0f1e2d@1.us.logplex.io/logs": "https://<redacted>@1.us.logplex.io/logs",
        '{"access_token": "tok-123456", "expires_in": 3600}': '{"access_token": "<redacted>", "expires_in": 3600}',
        "password was hunter2-manifest-password": "password was <redacted>",
        "what? nothing=here": "what? nothing=here",
        "token: abc123 leaked": "token: <redacted> leaked",
        # A path ending in /token, then the vendor's message: nothing secret.
        "HTTP 401 from POST 127.0.0.3/oauth/token: invalid_client":
            "HTTP 401 from POST 127.0.0.3/oauth/token: invalid_client",
    }
    for text, expected in cases.items():
        assert redactor.redact(text) == expected, text


def test_redacting_filter_rewrites_message_arguments_and_traceback():
    import logging

    from tap_common.redact import REDACTOR, RedactingFilter

    REDACTOR.add_secret("filter-test-secret-value")
    try:
        raise ConnectionError("GET /files/a?signature=deadbeef: filter-test-secret-value")
    except ConnectionError:
        record = logging.LogRecord("x", logging.ERROR, __file__, 1, "failed: %s", (
            "url?expires=1&signature=feed",), exc_info=sys.exc_info())
    RedactingFilter().filter(record)
    text = logging.Formatter().format(record)
    assert "signature=" not in text and "filter-test-secret-value" not in text
    assert "failed: url?<redacted>" in text and "Traceback (most recent call last)" in text


# -- settings: a constraint of the JSON Schema is one line naming the setting ------------------


class SettingsTap(VendorTap):
    """Settings only: the shared groups and one setting per kind of constraint."""

    name = "tap-settings"
    config_jsonschema = th.PropertiesList(
        settings.start_date("test."),
        settings.lookback_days("lookback_days", 3, "`things`", "test."),
        *settings.export_polling(poll_interval_default=1),
        th.Property("page_size", th.IntegerType(minimum=1, maximum=10)),
        th.Property("mode", th.StringType, allowed_values=["a", "b"]),
        th.Property("sources", th.ArrayType(th.StringType(allowed_values=["x", "y"]))),
        th.Property("vendor_id", th.StringType(pattern="^[0-9]+$")),
        th.Property("token", th.StringType(pattern="^tok-"), secret=True),
    ).to_dict()

    def discover_streams(self) -> list:
        return []


@pytest.mark.parametrize(("change", "line"), [
    ({"lookback_days": -1}, "`lookback_days` must be 0 or more, not -1."),
    ({"export_timeout_seconds": 0}, "`export_timeout_seconds` must be greater than 0, not 0."),
    ({"page_size": 11}, "`page_size` must be between 1 and 10, not 11."),
    ({"mode": "c"}, "`mode` must be one of ['a', 'b'], not 'c'."),
    ({"sources": ["x", "z"]}, "`sources[1]` must be one of ['x', 'y'], not 'z'."),
    ({"vendor_id": "acme"}, "`vendor_id` must match ^[0-9]+$, not 'acme'."),
    ({"start_date": "soon"}, "`start_date` must be a date (YYYY-MM-DD), not 'soon'."),
    ({"page_size": "ten"}, "'ten' is not of type 'integer', 'null' in config['page_size']"),
    ({"token": "secret-9"}, "setting 'token' is invalid (must match ^tok-); its value is secret and not shown"),
])
def test_a_schema_constraint_fails_in_one_line_naming_the_setting(change, line):
    with pytest.raises(ConfigValidationError) as raised:
        SettingsTap(config=change, parse_env_config=False)
    assert raised.value.errors == [line]
    assert "secret-9" not in " ".join(raised.value.errors)


def test_start_date_may_be_a_timestamp_as_the_streams_read_its_date():
    SettingsTap(config={"start_date": "2024-01-31T00:00:00Z"}, parse_env_config=False)
