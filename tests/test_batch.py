"""BATCH messages (``batch_config``): declared by every tap, written by the taps' own
writer, and loaded by the real `meltano run` into PostgreSQL (docs/loading.md)."""

from __future__ import annotations

import json
import subprocess
import typing as t
from pathlib import Path
from urllib.parse import urlparse

import pytest
import yaml

import isv_sandbox
from tap_common.batch import loads_lines
from helpers import BIN, FAST_RETRIES, REPO, SyncOutput, run_cli
from test_isvapp import ALL_STREAMS
from test_isvapp_e2e import SANDBOX, emitted_keys
from test_meltano_e2e import meltano, meltano_env, postgres_connection

TAPS = ("tap-heroku-vendor", "tap-isvapp", "tap-marketplace")


def batch_config(root: Path, compression: str, batch_size: int = 10) -> dict:
    return {"batch_config": {"encoding": {"format": "jsonl", "compression": compression},
                             "storage": {"root": root.as_uri()}, "batch_size": batch_size}}


@pytest.mark.parametrize("tap", TAPS)
def test_every_tap_declares_batch(tap: str) -> None:
    about = subprocess.run([str(BIN / tap), "--about", "--format=json"],  # noqa: S603
                           capture_output=True, text=True, check=True)
    info = json.loads(about.stdout)
    assert "batch" in info["capabilities"]
    assert "batch_config" in info["settings"]["properties"]
    definition = yaml.safe_load((REPO / "plugins" / "extractors" / f"{tap}.yml").read_text())
    assert "batch" in definition["capabilities"]
    assert "batch_config" in {setting["name"] for setting in definition["settings"]}


def batches(out: SyncOutput) -> dict[str, list[dict]]:
    """The records of every BATCH message's files, per stream, in message order."""
    found: dict[str, list[dict]] = {}
    for message in out.messages:
        if message["type"] == "BATCH":
            for url in message["manifest"]:
                found.setdefault(message["stream"], []).extend(
                    loads_lines(Path(urlparse(url).path).read_bytes()))
    return found


@pytest.mark.parametrize("compression", ["none", "gzip"])
def test_batch_files_hold_what_the_records_would(tmp_path: Path, compression: str) -> None:
    # Two sandboxes with the same data (a run's own export would show up in the next
    # run's `exports`); their URLs differ by port only.
    runs = []
    for extra in ({}, batch_config(tmp_path, compression)):
        with isv_sandbox.start("isvapp", **SANDBOX) as server:
            out = run_cli("tap-isvapp", {**server.app.tap_config(), **FAST_RETRIES, **extra})
            runs.append((out, server.url))
    (plain, plain_url), (batched, batched_url) = runs
    assert plain.returncode == 0 and batched.returncode == 0, batched.stderr[-3000:]
    assert not batched.records, "batch mode writes no RECORD messages"
    got = batches(batched)
    assert set(got) == set(plain.records)

    def same_urls(value: t.Any, url: str) -> t.Any:
        return json.loads(json.dumps(value).replace(url, "SANDBOX"))

    for stream, records in plain.records.items():
        if stream == "exports":  # timestamps relative to the sandbox's start: the ids
            assert [r["id"] for r in got[stream]] == [r["id"] for r in records]
            continue
        # Same fields, same values, same order.
        assert same_urls(got[stream], batched_url) == same_urls(records, plain_url), stream
    assert same_urls(batched.final_state, batched_url) == same_urls(plain.final_state, plain_url)
    messages = [m for m in batched.messages if m["type"] == "BATCH"]
    assert {m["encoding"]["compression"] for m in messages} == {compression}
    suffix = ".jsonl.gz" if compression == "gzip" else ".jsonl"
    assert all(url.endswith(suffix) for m in messages for url in m["manifest"])
    # At most 10 records per file (batch_size); a file is also closed early when a STATE
    # is due (a finished window, an export started), so that the STATE follows its BATCH.
    sizes = [len(loads_lines(Path(urlparse(url).path).read_bytes()))
             for m in messages for url in m["manifest"]]
    assert all(0 < size <= 10 for size in sizes) and 10 in sizes


#: tap -> (sandbox vendor, small sandbox): every stream with rows, Heroku's app_info a
#: child stream (one file across its parents).
SANDBOXES = {"tap-isvapp": ("isvapp", SANDBOX),
             "tap-heroku-vendor": ("heroku", {"apps": 30, "page_size": 10}),
             "tap-marketplace": ("marketplace", {"licenses": 60, "transactions": 30})}


@pytest.mark.parametrize("tap", TAPS)
def test_every_tap_batches_every_record(tap: str, tmp_path: Path) -> None:
    vendor, settings = SANDBOXES[tap]
    runs = []
    server = isv_sandbox.start(vendor, **settings)
    try:
        for extra in ({}, batch_config(tmp_path, "gzip", 25)):
            if tap == "tap-isvapp" and runs:
                # A sandbox per run: a run's own export shows in the next run's `exports`.
                server.stop()
                server = isv_sandbox.start(vendor, **settings)
            config = {**server.app.tap_config(), **FAST_RETRIES}
            discovered = json.loads(run_cli(tap, config, "--discover").stdout)
            runs.append(run_cli(tap, {**config, **extra}))
    finally:
        server.stop()
    plain, batched = runs
    assert plain.returncode == 0 and batched.returncode == 0, batched.stderr[-3000:]
    keys = {s["tap_stream_id"]: s["key_properties"] for s in discovered["streams"]}

    def keyed(records: dict[str, list[dict]]) -> dict[str, list[tuple]]:
        return {stream: sorted(json.dumps([r.get(k) for k in keys[stream]]) for r in rows)
                for stream, rows in records.items()}

    assert not batched.records
    assert keyed(batches(batched)) == keyed(plain.records)
    assert set(batched.final_state.get("bookmarks", {})) == set(
        plain.final_state.get("bookmarks", {}))


def test_no_state_covers_a_record_before_its_batch_is_announced(tmp_path: Path) -> None:
    """Every STATE comes after the BATCH messages of every record it covers: a
    taxonomy month's bookmark only once that month's rows are in an announced file."""
    with isv_sandbox.start("isvapp", **SANDBOX) as server:
        config = {**server.app.tap_config(), **FAST_RETRIES}
        out = run_cli("tap-isvapp", {**config, **batch_config(tmp_path, "none", 7)})
    assert out.returncode == 0, out.stderr[-3000:]
    announced: list[dict] = []
    checked = 0
    for message in out.messages:
        if message["type"] == "BATCH" and message["stream"] == "taxonomy_item_usage":
            announced.extend(loads_lines(Path(urlparse(message["manifest"][0]).path).read_bytes()))
        elif message["type"] == "STATE":
            bookmark = (message["value"]["bookmarks"].get("taxonomy_item_usage") or {}).get(
                "replication_key_value")
            if bookmark:
                assert any(row["reference_date"] >= bookmark for row in announced)
                checked += 1
    assert checked


def test_a_run_deletes_the_files_of_earlier_runs(tmp_path: Path) -> None:
    with isv_sandbox.start("isvapp", **SANDBOX) as server:
        config = {**server.app.tap_config(), **FAST_RETRIES, **batch_config(tmp_path, "none")}
        first = run_cli("tap-isvapp", config)
        second = run_cli("tap-isvapp", config)
    assert first.returncode == 0 and second.returncode == 0, second.stderr[-3000:]
    (tmp_path / "someone-elses.jsonl").write_text("{}\n")

    def files(out: SyncOutput) -> set[str]:
        return {Path(urlparse(url).path).name for m in out.messages if m["type"] == "BATCH"
                for url in m["manifest"]}

    left = {path.name for path in tmp_path.iterdir()} - {"someone-elses.jsonl"}
    assert left == files(second)
    assert not left & files(first)


def test_batch_mode_keeps_the_catalog_selection(tmp_path: Path) -> None:
    """A field left out of the catalog (exports.download_url carries a key) is not in
    the batch files either."""
    with isv_sandbox.start("isvapp", **SANDBOX) as server:
        config = {**server.app.tap_config(), **FAST_RETRIES}
        catalog = json.loads(run_cli("tap-isvapp", config, "--discover").stdout)
        out = run_cli("tap-isvapp", {**config, **batch_config(tmp_path, "none")}, catalog=catalog)
    assert out.returncode == 0, out.stderr[-3000:]
    exports = batches(out)["exports"]
    assert exports and not any("download_url" in row for row in exports)


@pytest.mark.e2e
@pytest.mark.postgres
def test_meltano_run_in_batch_mode_into_postgres() -> None:
    """meltano.yml's tap-isvapp-batch into target-postgres: every row, the STATE, and
    only the last run's files left."""
    connection = postgres_connection()
    schema = "e2e_tap_isvapp_batch"
    state_id = "dev:tap-isvapp-batch-to-target-postgres:e2e"
    with isv_sandbox.start("isvapp", **SANDBOX) as server:
        expected = emitted_keys({**server.app.tap_config(), **FAST_RETRIES})
    project = yaml.safe_load((REPO / "meltano.yml").read_text())
    batch = next(p for p in project["plugins"]["extractors"] if p["name"] == "tap-isvapp-batch")
    root = Path(batch["config"]["batch_config"]["storage"]["root"].replace(
        "file://$MELTANO_PROJECT_ROOT", str(REPO)))
    connection.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
    runs = []
    for _ in range(2):
        with isv_sandbox.start("isvapp", **SANDBOX) as server:
            env = meltano_env("tap-isvapp-batch", server.app.tap_config(), {
                "TARGET_POSTGRES_DEFAULT_TARGET_SCHEMA": schema,
                "TARGET_POSTGRES_PASSWORD": "postgres",
                "TAP_ISVAPP_BATCH__SELECT": json.dumps([f"{s}.*" for s in ALL_STREAMS])})
            run = meltano("run", "--full-refresh", "--state-id-suffix", "e2e",
                          "tap-isvapp-batch", "target-postgres", env=env)
        assert run.returncode == 0, run.stderr[-5000:]
        runs.append({path.name for path in root.glob("tap-isvapp--*")})

    for stream, keys in expected.items():
        count = connection.execute(f'SELECT count(*) FROM "{schema}"."{stream}"').fetchone()[0]
        assert count == len(keys), f"{stream}: {count} rows loaded, {len(keys)} distinct keys emitted"
    first, second = runs
    assert first and second and not first & second, "the first run's files are deleted"
    # Files of every stream (a stream may have several: a file is closed before a STATE).
    assert {name.split("--")[1].rsplit("-", 2)[0] for name in second} == set(expected)
    # Rows loaded from files have the _sdc_* columns NULL (docs/loading.md); dbt's
    # staging keeps a row whose _sdc_deleted_at is NULL.
    kept = connection.execute(f'SELECT count(*) FROM "{schema}".taxonomy_item_usage '
                              "WHERE _sdc_deleted_at IS NULL AND _sdc_extracted_at IS NULL"
                              ).fetchone()[0]
    assert kept == len(expected["taxonomy_item_usage"])

    got = meltano("state", "get", state_id, env=env)
    assert got.returncode == 0, got.stderr[-3000:]
    bookmarks = json.loads(got.stdout)["singer_state"]["bookmarks"]
    assert set(bookmarks) == set(ALL_STREAMS)
    # The bookmarks reach the last rows loaded, and no export is left in flight.
    assert bookmarks["taxonomy_item_usage"]["replication_key_value"] == max(
        json.loads(key[0]) for key in expected["taxonomy_item_usage"])
    last_request = connection.execute(
        f'SELECT max(sf_end_time) FROM "{schema}".package_usage_requests').fetchone()[0]
    assert bookmarks["package_usage_requests"]["replication_key_value"][:10] == str(last_request)[:10]
    assert "in_flight_export" not in json.dumps(bookmarks)
