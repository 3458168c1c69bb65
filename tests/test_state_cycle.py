"""What one night's STATE and keys do to the next night (issue 18, items 1-5).

Each test reproduces one case against the installed wheel and the sandboxes over
loopback: a vendor value in the future never becomes a bookmark (dates, date-times,
months, the last window of a windowed stream, a saved bookmark), a bookmark in any ISO
form is read at its stream's granularity (also the STATE release 61fd9fa wrote), a row
read again on the next offset page keeps its key, and a field the vendor adds changes
no key.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import subprocess
import tempfile
from collections import Counter
from pathlib import Path

import pytest

from tap_isvapp.streams import month_before
from tap_isvapp.tap import TapIsvapp
from tap_marketplace.tap import TapMarketplace
from helpers import REPO, catalog_selecting, config_for, last_error_line, run_in_process, sync
from test_meltano_e2e import PG, postgres_connection

TODAY = dt.datetime.now(dt.timezone.utc).date()
YESTERDAY = TODAY - dt.timedelta(days=1)
THIS_MONTH = TODAY.strftime("%Y-%m")
LAST_MONTH = month_before(THIS_MONTH, 1)
FUTURE_DAY = "2099-12-31"
#: What tap-isvapp and tap-marketplace at 61fd9fa (the previous release) left in their
#: STATE after a full first run against that release's sandboxes.
STATE_61FD9FA = json.loads(Path(__file__).with_name("data").joinpath(
    "state_61fd9fa.json").read_text())

#: Streams whose replication key is a month (the rest of ISVapp's: date-times).
MONTH_STREAMS = {"taxonomy_item_usage"}
DATE_TIME_STREAMS = {"package_usage_requests", "package_usage_logs", "marketing_attribution"}
#: Streams that bookmark each window as it finishes.
WINDOWED_STREAMS = {"package_usage_requests", "package_usage_logs"}


def run(tap_class, config, streams, state=None):
    """The tap's command line in this process, with only ``streams`` selected."""
    catalog = catalog_selecting(tap_class, config, streams)
    return run_in_process(tap_class, config, catalog=catalog, state=state)


def bookmark(out, stream: str) -> str:
    return out.final_state["bookmarks"][stream]["replication_key_value"]


def warnings(out) -> list[str]:
    return [line for line in out.stderr.splitlines() if "WARNING" in line]


def upserted(*runs, stream: str, key: str) -> dict[str, dict]:
    """A warehouse that upserts ``stream`` on ``key``, after ``runs`` in order."""
    table: dict[str, dict] = {}
    for out in runs:
        for record in out.records.get(stream, []):
            table[record[key]] = record
    return table


# -- A. no bookmark beyond the run's start ---------------------------------------------


@pytest.mark.parametrize(("stream", "key"), [("licenses", "license_key"),
                                             ("transactions", "transactionLineItemId")])
def test_a_row_updated_in_the_future_is_emitted_but_never_the_bookmark(marketplace, stream,
                                                                       key):
    server = marketplace(licenses=60, transactions=40)
    server.app.data.update(stream, [3], lastUpdated=FUTURE_DAY)
    config = config_for(server, start_date="2018-07-01")
    first = run(TapMarketplace, config, [stream])

    assert first.returncode == 0, last_error_line(first.stderr)
    (future,) = [r for r in first.records[stream] if r["lastUpdated"] == FUTURE_DAY]
    assert bookmark(first, stream) <= TODAY.isoformat()
    assert any(f"{stream}: the row {key}={future[key]} has lastUpdated {FUTURE_DAY}" in line
               for line in warnings(first)), warnings(first)

    # Rows updated today arrive the next night, and every night after.
    server.app.data.update(stream, range(5, 40), lastUpdated=TODAY.isoformat())
    second = run(TapMarketplace, config, [stream], state=first.final_state)
    assert second.returncode == 0, last_error_line(second.stderr)
    assert TODAY.isoformat() in {r["lastUpdated"] for r in second.records[stream]}
    assert bookmark(second, stream) == TODAY.isoformat()


def test_feedback_dated_in_the_future_is_emitted_but_never_the_bookmark(marketplace):
    server = marketplace(feedback=30)
    server.app.data.add("feedback", [server.app.data.feedback_row(900, FUTURE_DAY)])
    first = run(TapMarketplace, config_for(server), ["feedback"])

    assert first.returncode == 0, last_error_line(first.stderr)
    assert FUTURE_DAY in {r["date"] for r in first.records["feedback"]}
    assert bookmark(first, "feedback") < FUTURE_DAY
    assert any("feedback: the row feedback_id=" in line and FUTURE_DAY in line
               for line in warnings(first))


def test_a_request_ending_in_the_future_in_the_last_window_is_never_the_bookmark(isvapp):
    server = isvapp(request_history_days=6, csv_rows_per_file=2)
    future_end = f"{TODAY + dt.timedelta(days=10)}T23:59:59Z"
    ahead = server.app.add_request(YESTERDAY, sf_end_time=future_end)
    config = config_for(server, start_date=str(YESTERDAY - dt.timedelta(days=5)),
                        lookback_days=3)
    streams = ["package_usage_requests", "package_usage_logs"]
    first = run(TapIsvapp, config, streams)

    assert first.returncode == 0, last_error_line(first.stderr)
    assert ahead["id"] in {r["id"] for r in first.records["package_usage_requests"]}
    for stream in streams:
        assert bookmark(first, stream) == f"{YESTERDAY}T23:59:59Z", stream
    assert any(f"package_usage_requests: the row id={ahead['id']} has sf_end_time "
               f"{future_end}" in line for line in warnings(first))

    # The next night reads the look-back days up to yesterday, for both streams.
    late = server.app.add_request(YESTERDAY - dt.timedelta(days=1))
    second = run(TapIsvapp, config, streams, state=first.final_state)
    assert second.returncode == 0, last_error_line(second.stderr)
    assert late["id"] in {r["id"] for r in second.records["package_usage_requests"]}
    assert late["id"] in {r["isvapp_request_id"] for r in second.records["package_usage_logs"]}


@pytest.mark.parametrize(("tap_class", "stream", "saved"), [
    (TapMarketplace, "licenses", FUTURE_DAY),
    (TapMarketplace, "feedback", FUTURE_DAY),
    (TapIsvapp, "package_usage_requests", f"{FUTURE_DAY}T00:00:00Z"),
    (TapIsvapp, "taxonomy_item_usage", "2099-12"),
])
def test_a_saved_bookmark_in_the_future_is_read_as_the_run_start(marketplace, isvapp,
                                                                 tap_class, stream, saved):
    server = (marketplace if tap_class is TapMarketplace else isvapp)()
    key = {"licenses": "lastUpdated", "feedback": "date", "taxonomy_item_usage":
           "reference_date", "package_usage_requests": "sf_end_time"}[stream]
    state = {"bookmarks": {stream: {"replication_key": key, "replication_key_value": saved}}}
    out = run(tap_class, config_for(server), [stream], state=state)

    assert out.returncode == 0, last_error_line(out.stderr)
    assert any(f"{stream}: the saved bookmark {saved} is after the run's start" in line
               for line in warnings(out))
    assert bookmark(out, stream) < saved
    assert bookmark(out, stream)[:10] <= TODAY.isoformat()
    asked = [r for r in server.requests if r.method in ("GET", "POST")]
    if stream == "licenses":  # asks for what changed from today on, not from 2099
        assert any(r.query.get("lastUpdated") == [TODAY.isoformat()] for r in asked)
    elif stream == "feedback":  # today less the look-back
        assert any(r.query.get("startDate") == [str(TODAY - dt.timedelta(days=35))]
                   for r in asked)
    elif stream == "package_usage_requests":  # the look-back days up to yesterday
        assert [r.query["to"] for r in asked if r.path == "/api/v1/requests"] == [
            [str(YESTERDAY)]]
    else:  # the latest completed month, exported again
        assert [b["timeframe"] for b in server.app.export_requests] == [
            "LATEST_COMPLETED_MONTH"]
        assert {r["reference_date"] for r in out.records[stream]} == {LAST_MONTH}


# -- B. bookmarks in any ISO form ------------------------------------------------------


TWO_BACK = month_before(THIS_MONTH, 2)


@pytest.mark.parametrize("saved", [
    TWO_BACK, f"{TWO_BACK}-01", f"{TWO_BACK}-17", f"{TWO_BACK}-01T00:00:00Z",
    f"{TWO_BACK}-01T00:00:00", f"{TWO_BACK}-15 08:30:00", f"{TWO_BACK}-01T00:00:00+02:00"])
def test_a_month_bookmark_in_any_form_is_its_month(isvapp, saved):
    server = isvapp(export_rows_per_month=4)
    state = {"bookmarks": {"taxonomy_item_usage": {"replication_key": "reference_date",
                                                   "replication_key_value": saved}}}
    config = config_for(server, start_date=f"{month_before(THIS_MONTH, 5)}-01")
    out = run(TapIsvapp, config, ["taxonomy_item_usage"], state=state)

    assert out.returncode == 0, last_error_line(out.stderr)
    # The bookmarked month is recalculated by ISVapp, so it is exported again.
    assert [b["timeframe"] for b in server.app.export_requests] == [
        TWO_BACK, "LATEST_COMPLETED_MONTH"]
    assert sorted({r["reference_date"] for r in out.records["taxonomy_item_usage"]}) == [
        TWO_BACK, LAST_MONTH]
    assert bookmark(out, "taxonomy_item_usage") == LAST_MONTH


@pytest.mark.parametrize(("tap_class", "stream", "key", "form"), [
    (TapIsvapp, "taxonomy_item_usage", "reference_date", "a month (YYYY-MM)"),
    (TapIsvapp, "package_usage_requests", "sf_end_time", "a date-time"),
    (TapMarketplace, "licenses", "lastUpdated", "a date (YYYY-MM-DD)"),
])
def test_a_bookmark_in_no_iso_form_fails_naming_stream_value_and_form(
        marketplace, isvapp, tap_class, stream, key, form):
    server = (marketplace if tap_class is TapMarketplace else isvapp)()
    state = {"bookmarks": {stream: {"replication_key": key,
                                    "replication_key_value": "last tuesday"}}}
    out = run(tap_class, config_for(server), [stream], state=state)

    assert out.returncode == 1
    line = last_error_line(out.stderr)
    assert f"{stream}: the bookmark 'last tuesday' is not an ISO date" in line
    assert form in line


#: Each form a user might type into ``meltano state set`` for a bookmark of ``DAY``,
#: and what a date, a date-time and a month stream read it as.
def forms_of(day: dt.date) -> list[tuple[str, str, str, str]]:
    d, month = day.isoformat(), day.strftime("%Y-%m")
    first = f"{month}-01"
    midnight = f"{d}T00:00:00+00:00"
    return [
        # (written, as a date, as a date-time, as a month)
        (d, d, midnight, month),
        (f"{d}T00:00:00Z", d, midnight, month),
        (f"{d}T00:00:00", d, midnight, month),
        (f"{d}T00:00:00.000Z", d, midnight, month),
        (f"{d} 00:00:00", d, midnight, month),
        (f"{d}T00:00:00+00:00", d, midnight, month),
        (month, first, f"{first}T00:00:00+00:00", month),
    ]


def with_every_bookmark(state: dict, value: str) -> dict:
    """``state`` with every bookmark (of a stream or a partition) set to ``value``."""
    state = json.loads(json.dumps(state))
    for entry in state.get("bookmarks", {}).values():
        for holder in [entry, *entry.get("partitions", [])]:
            if "replication_key_value" in holder:
                holder["replication_key_value"] = value
    return state


def starting_values(stderr: str) -> dict[str, list[str]]:
    """What each stream (each context) started from, in order: the SDK's "Starting
    incremental sync" lines. A windowed stream bookmarks each finished window, so only
    its first window starts from the saved bookmark."""
    found: dict[str, list[str]] = {}
    for name, value in re.findall(
            r"Starting incremental sync of '(\w+)' with bookmark value: (.+)$", stderr, re.M):
        found.setdefault(name, []).append(value.strip())
    return found


def first_of(values: list[str]) -> str | None:
    return next((v for v in values if v != "None"), None)


INCREMENTAL = {
    "tap-isvapp": ("taxonomy_item_usage", "package_usage_requests", "package_usage_logs"),
    "tap-marketplace": (
        "licenses", "transactions", "marketing_attribution", "feedback",
        "license_churn_events", "license_conversion_events", "license_renewal_events",
        "evaluation_metrics", "feedback_metrics", "sales_metrics", "license_event_metrics",
        "churn_benchmarks", "evaluation_benchmarks", "sales_benchmarks",
        "app_requests_and_approvals", "customer_insights", "search_keywords",
        "zero_result_search_keywords", "free_starter_tier_entitlements"),
}


def small_sandbox(tap_class, marketplace, isvapp) -> dict:
    """The config of a small sandbox; a start_date (ISVapp's) before every bookmark."""
    if tap_class is TapIsvapp:
        server = isvapp(accounts=3, export_rows_per_month=2, request_history_days=20,
                        csv_rows_per_file=1)
        return config_for(server, start_date=str(TODAY - dt.timedelta(days=150)))
    return config_for(marketplace(apps=2, licenses=20, transactions=20, feedback=10,
                                  events_per_kind=10, attributions=10))


@pytest.mark.parametrize("tap_class", [TapIsvapp, TapMarketplace])
def test_every_incremental_stream_reads_its_bookmark_in_every_form(marketplace, isvapp,
                                                                   tap_class):
    config = small_sandbox(tap_class, marketplace, isvapp)
    streams = INCREMENTAL[tap_class.name]
    first = run(tap_class, config, streams)
    assert first.returncode == 0, last_error_line(first.stderr)
    day = TODAY - dt.timedelta(days=40)

    for written, as_date, as_date_time, as_month in forms_of(day):
        state = with_every_bookmark(first.final_state, written)
        out = run(tap_class, config, streams, state=state)
        assert out.returncode == 0, (written, last_error_line(out.stderr))
        started = starting_values(out.stderr)
        for stream in streams:
            expected = (as_month if stream in MONTH_STREAMS else
                        as_date_time if stream in DATE_TIME_STREAMS else as_date)
            # (a partition the first run found no rows for starts without a bookmark)
            found = started.get(stream, [])
            assert first_of(found) == expected, (written, stream, found)
            if stream not in WINDOWED_STREAMS:
                assert set(found) - {"None"} == {expected}, (written, stream, found)


@pytest.mark.parametrize("tap_class", [TapIsvapp, TapMarketplace])
def test_the_state_release_61fd9fa_wrote_is_read(marketplace, isvapp, tap_class):
    config = small_sandbox(tap_class, marketplace, isvapp)
    streams = INCREMENTAL[tap_class.name]
    old = STATE_61FD9FA[tap_class.name]
    out = run(tap_class, config, streams, state=old)

    assert out.returncode == 0, last_error_line(out.stderr)
    started = starting_values(out.stderr)
    for stream in streams:
        entry = old["bookmarks"].get(stream, {})
        values = {h["replication_key_value"] for h in [entry, *entry.get("partitions", [])]
                  if "replication_key_value" in h}
        if stream in DATE_TIME_STREAMS:  # read as instants, UTC when no zone is given
            values = {utc_text(v) for v in values}
        # Each stream starts from what the old release left it; partitions the old
        # release did not have (search sources, apps) start without a bookmark.
        found = started.get(stream, [])
        if stream in WINDOWED_STREAMS:
            assert first_of(found) in values, (stream, values, found)
            continue
        assert set(found) - {"None"} <= values, (stream, values, found)
        if "replication_key_value" in entry:
            assert values <= set(found), (stream, values, found)
    for stream, entry in out.final_state["bookmarks"].items():
        for holder in [entry, *entry.get("partitions", [])]:
            value = holder.get("replication_key_value")
            if value:
                assert str(value)[:10] <= TODAY.isoformat(), (stream, value)


def utc_text(value: str) -> str:
    moment = dt.datetime.fromisoformat(value)
    return (moment if moment.tzinfo else moment.replace(tzinfo=dt.timezone.utc)).isoformat()


# -- C. content keys -----------------------------------------------------------------


@pytest.mark.parametrize("total_count", [True, False])
def test_a_row_read_again_on_the_next_page_keeps_its_key(marketplace, total_count):
    # 61 rows on two pages of 50; one row arrives (newest first) between the two
    # requests and pushes row 50 onto page 2, where it is read again. With a totalCount
    # the change is seen and the query read again; without, the row read again is.
    server = marketplace(feedback=61, feedback_rows_inserted_after_first_page=1,
                         feedback_total_count=total_count)
    config = config_for(server)
    first = run(TapMarketplace, config, ["feedback"])
    assert first.returncode == 0, last_error_line(first.stderr)

    keys = [r["feedback_id"] for r in first.records["feedback"]]
    assert len(set(keys)) == (62 if total_count else 61)
    assert not any("-" in key for key in keys), "no row got a second key"
    if total_count:
        assert any("the collection had 61 rows on the first page and 62 on page 2; "
                   "reading the query again" in line for line in warnings(first))

    second = run(TapMarketplace, config, ["feedback"], state=first.final_state)
    warehouse = upserted(first, second, stream="feedback", key="feedback_id")
    assert len(warehouse) == 61 + 1, "the vendor's 62 rows, each once"
    # Rows read again the next night (the look-back) keep the key of the first night.
    first_keys = {r["message"]: r["feedback_id"] for r in first.records["feedback"]}
    again = [r for r in second.records["feedback"] if r["message"] in first_keys]
    assert again and all(r["feedback_id"] == first_keys[r["message"]] for r in again)


def test_a_row_deleted_between_two_pages_leaves_no_row_unread(marketplace):
    # The first row is deleted after page 1 was served: every row moves up by one, and
    # row 51 would land on page 1, already read. The totalCount tells.
    server = marketplace(feedback=61, feedback_rows_deleted_after_first_page=1)
    out = run(TapMarketplace, config_for(server), ["feedback"])

    assert out.returncode == 0, last_error_line(out.stderr)
    emitted = {r["message"] for r in out.records["feedback"]}
    assert {f"feedback {n}" for n in range(1, 61)} <= emitted, "every row the vendor has"


@pytest.mark.parametrize(("inserted", "total_count"), [(0, True), (1, True), (1, False)])
def test_identical_rows_across_a_page_boundary_keep_distinct_keys(marketplace, inserted,
                                                                  total_count):
    # Rows 50 and 51 are identical (two uninstalls on one day): page 1 ends with one,
    # page 2 starts with the other; with a row inserted between the pages, page 2
    # starts with the first copy again (with a totalCount the query is read again).
    server = marketplace(feedback=49, feedback_rows_inserted_after_first_page=inserted,
                         feedback_total_count=total_count)
    row = server.app.data.feedback_row(700, "2025-06-20")
    server.app.data.add("feedback", [row, row])
    config = config_for(server)
    first = sync(TapMarketplace, config, streams={"feedback"})

    keys = Counter(r["feedback_id"] for r in first.records["feedback"])
    read_again = inserted and total_count
    assert len(keys) == 51 + read_again  # the row inserted, read on the second pass
    assert set(keys.values()) == ({1, 2} if read_again else {1})
    copies = sorted(k for k in keys if r_matches(first, k, row))
    assert len(copies) == 2 and copies[1] == f"{copies[0]}-2"
    second = sync(TapMarketplace, config, streams={"feedback"})  # everything again
    again = sorted({k["feedback_id"] for k in second.records["feedback"]
                    if r_matches(second, k["feedback_id"], row)})
    assert again == copies, "a re-read numbers them the same"


def r_matches(out, key: str, row: dict) -> bool:
    messages = {r["message"] for r in out.records["feedback"] if r["feedback_id"] == key}
    return messages == {row["message"]}


@pytest.mark.parametrize(("stream", "kind", "key"), [
    ("feedback", "feedback", "feedback_id"),
    ("marketing_attribution", "marketing_attribution", "attribution_id")])
def test_a_field_the_vendor_adds_changes_no_key(marketplace, stream, kind, key):
    server = marketplace(feedback=5, attributions=5)
    config = config_for(server)
    first = sync(TapMarketplace, config, streams={stream})
    server.app.settings.vendor_added_fields = {kind: {"sentiment": "neutral",
                                                      "surveyId": "s-1"}}
    second = sync(TapMarketplace, config, streams={stream})

    assert len(first.records[stream]) == 5
    assert sorted(r[key] for r in second.records[stream]) == sorted(
        r[key] for r in first.records[stream])
    assert len(upserted(first, second, stream=stream, key=key)) == 5


# -- what a warehouse sees once when keys change on upgrade (docs/tap-marketplace.md) ----


TARGET_POSTGRES = REPO / ".meltano" / "loaders" / "target-postgres" / "venv" / "bin" / (
    "target-postgres")


def cleanup_statements() -> dict[str, str]:
    """The SQL statements of docs/tap-marketplace.md's upgrade section, by table."""
    text = (REPO / "docs" / "tap-marketplace.md").read_text()
    section = text.split("### Keys after upgrading", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```sql\n(.*?)```", section, re.S)
    return {re.match(r"DELETE FROM (\w+)", block).group(1): block for block in blocks}


def load(messages: str, schema: str) -> None:
    """``messages`` through target-postgres (as this project's meltano.yml configures
    it: record metadata on) into ``schema``."""
    config = {"host": PG["host"], "port": PG["port"], "user": PG["user"],
              "password": "postgres", "database": PG["dbname"],
              "default_target_schema": schema, "add_record_metadata": True}
    with tempfile.TemporaryDirectory() as tmp:
        Path(tmp, "config.json").write_text(json.dumps(config))
        loaded = subprocess.run(  # noqa: S603
            [str(TARGET_POSTGRES), "--config", str(Path(tmp, "config.json"))],
            input=messages, capture_output=True, text=True, timeout=300, check=False)
    assert loaded.returncode == 0, loaded.stderr[-2000:]


def as_lines(messages: list[dict]) -> str:
    return "".join(json.dumps(m) + "\n" for m in messages)


@pytest.mark.postgres
@pytest.mark.parametrize(("stream", "kind", "key", "when"), [
    ("feedback", "feedback", "feedback_id", "date"),
    ("marketing_attribution", "marketing_attribution", "attribution_id", "eventTimestamp")])
def test_the_documented_cleanup_removes_the_old_keys_after_an_upgrade(marketplace, stream,
                                                                      kind, key, when):
    connection = postgres_connection()
    schema = f"i18_upgrade_{stream}"
    connection.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
    server = marketplace(feedback=20, attributions=20)
    builder = getattr(server.app.data, "feedback_row" if kind == "feedback"
                      else "attribution_row")
    # Rows in the last weeks of the data, so the next run's look-back re-reads some.
    server.app.data.add(kind, [builder(800 + i, f"2025-06-{30 - 4 * i:02d}")
                               for i in range(6)])
    config = config_for(server)
    first = run_in_process(TapMarketplace, config,
                           catalog=catalog_selecting(TapMarketplace, config, [stream]))
    assert first.returncode == 0
    # The night before the upgrade: every row under a key of the old rule.
    before = [dict(m, record={**m["record"], key: "old-" + m["record"][key]})
              if m.get("type") == "RECORD" else m for m in first.messages]
    load(as_lines(before), schema)
    # The first night of the new release: the look-back days again, under new keys.
    second = run_in_process(TapMarketplace, config, state=first.final_state,
                            catalog=catalog_selecting(TapMarketplace, config, [stream]))
    assert second.returncode == 0 and second.records[stream]
    load(second.stdout, schema)

    table = f'"{schema}".{stream}'
    vendor_rows = len(first.records[stream])
    (loaded,) = connection.execute(f"SELECT count(*) FROM {table}").fetchone()
    assert loaded == vendor_rows + len(second.records[stream]), "each re-read row twice"

    with connection.cursor() as cursor:
        cursor.execute(f'SET search_path TO "{schema}"')
        cursor.execute(cleanup_statements()[stream])
        cursor.execute("RESET search_path")
    rows = connection.execute(f'SELECT {key}, "{when}"::text FROM {table}').fetchall()
    assert len(rows) == vendor_rows, "the vendor's rows, each once"
    new_keys = {r[key] for r in second.records[stream]}
    first_reread = min(r[when] for r in second.records[stream])
    for row_key, moment in rows:
        assert (row_key in new_keys) == (moment >= first_reread[:len(moment)]), (row_key,
                                                                               moment)
    connection.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
