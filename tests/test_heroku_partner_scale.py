"""Partner mode at scale: the request budget, the rotation over nights, changed installs
first, conditional requests, concurrent installs, and a state that does not grow.

A "night" is one run; the state of one is given to the next, as Meltano does."""

from __future__ import annotations

import functools
import json
import logging

import pytest
import requests

from tap_heroku_vendor.tap import TapHerokuVendor
from helpers import config_for, run_cli, sync

#: Every stream but addon_config (not selected by default): 5 Platform API requests an
#: install when each list fits one page.
STREAMS = {"addons", "addon_attachments", "partner_apps", "app_domains", "app_collaborators"}
ALL_STREAMS = STREAMS | {"addon_config"}
KEYS = {"addons": ("id",), "addon_config": ("addon_id", "name"), "addon_attachments": ("id",),
        "partner_apps": ("id",), "app_domains": ("id",), "app_collaborators": ("id",)}
API_PATHS = r"^/(addons|apps)/"


@pytest.fixture
def partner(sandboxes):
    return functools.partial(sandboxes, "heroku_partner")


def keys_of(rows: list[dict], stream: str) -> set[tuple]:
    return {tuple(r[k] for k in KEYS[stream]) for r in rows}


def nights(server, config: dict, count: int, *, state: dict | None = None,
           streams: set[str] = STREAMS) -> tuple[list, dict]:
    """``count`` runs one after the other, each given the state of the one before; the
    Platform API requests of each run, with its records."""
    runs = []
    for _ in range(count):
        before = server.count(API_PATHS)
        out = sync(TapHerokuVendor, config, state=state, streams=streams)
        state = out.final_state
        runs.append((server.count(API_PATHS) - before, out))
    return runs, state


def addon_ids(out) -> set[str]:
    return {r["id"] for r in out.records.get("addons", [])}


# -- the budget ---------------------------------------------------------------------------


def test_a_run_never_sends_more_requests_than_its_budget_and_the_rest_follows(partner):
    server = partner(installs=30, shared_app_every=5)
    # Two nights for 30 installs would need about 70 requests a night: it says so.
    config = config_for(server, request_budget=37, full_refresh_nights=2)
    state = None
    seen: dict[str, set] = {stream: set() for stream in STREAMS}
    for night in range(1, 8):
        before = server.count(API_PATHS)
        # The installed console script, as Meltano runs it.
        out = run_cli("tap-heroku-vendor", config, state=state)
        assert out.returncode == 0, out.stderr[-2000:]
        sent = server.count(API_PATHS) - before
        assert sent <= 37, f"night {night}: {sent} Platform API requests for a budget of 37"
        state = out.final_state
        for stream in STREAMS:
            seen[stream] |= keys_of(out.records.get(stream, []), stream)
        if night == 1:
            assert sent >= 30, "the budget is used, not left idle"
            assert "request_budget (37 Platform API requests) spent" in out.stderr
            assert "request_budget of about" in out.stderr, "the run says what budget would do"
    # Over the nights, every row of every install.
    for stream in STREAMS:
        assert seen[stream] == keys_of(server.app.rows(stream), stream), stream


def test_an_install_cut_short_by_the_budget_is_read_again_in_full(partner):
    server = partner(installs=2)
    # 3 requests: the first install's addon, attachments and app; its domains and
    # collaborators are cut, and the second install is not started.
    runs, state = nights(server, config_for(server, request_budget=3, full_refresh_nights=7), 1)
    sent, first = runs[0]
    assert sent == 3
    assert len(addon_ids(first)) == 1 and not first.records.get("app_domains")
    # Next night both are still due as new (a week's rotation alone would read one):
    # the cut install was not counted as read.
    runs, _ = nights(server, config_for(server, request_budget=100, full_refresh_nights=7), 1,
                     state=state)
    second = runs[0][1]
    assert addon_ids(second) == {a["id"] for a in server.app.rows("addons")}
    for stream in STREAMS:
        assert keys_of(second.records[stream], stream) == keys_of(
            server.app.rows(stream), stream), stream


# -- the rotation -------------------------------------------------------------------------


def test_every_install_is_reread_within_full_refresh_nights_and_no_more_than_needed(partner):
    server = partner(installs=40)
    config = config_for(server, request_budget=10_000, full_refresh_nights=3)
    every = {a["id"] for a in server.app.rows("addons")}
    runs, state = nights(server, config, 1)
    assert addon_ids(runs[0][1]) == every, "the first night reads every install (all new)"
    app_id = server.app.rows("addons")[0]["app"]["id"]
    domain = server.app.add_domain(app_id)  # not in addons.heroku.com's list
    later, state = nights(server, config, 6, state=state)
    per_night = [addon_ids(out) for _, out in later]
    assert all(len(ids) < len(every) for ids in per_night), "the rotation spreads the installs"
    for start in range(len(per_night) - 2):
        window = set().union(*per_night[start:start + 3])
        assert window == every, f"nights {start + 2}-{start + 4} miss installs"
    found = [n for n, (_, out) in enumerate(later[:3])
             if any(d["id"] == domain["id"] for d in out.records.get("app_domains", []))]
    assert found, "a change the listing does not show is read within full_refresh_nights"
    assert state["bookmarks"]["addons"]["schedule"]["night"] == 7


def test_new_and_changed_installs_are_read_first(partner):
    server = partner(installs=40)
    config = config_for(server, request_budget=10_000, full_refresh_nights=7)
    _, state = nights(server, config, 1)
    changed = [a["id"] for a in server.app.rows("addons")[5:7]]
    for resource in changed:
        server.app.change_plan(resource)
    new = server.app.add_install()
    # A budget for three installs: exactly the two changed and the new one.
    config = config_for(server, request_budget=15, full_refresh_nights=7)
    runs, _ = nights(server, config, 1, state=state)
    sent, out = runs[0]
    assert sent <= 15
    assert addon_ids(out) == {*changed, new}
    plans = {r["id"]: r["plan"]["name"] for r in out.records["addons"]}
    for resource in changed:
        assert plans[resource] == server.app.addons[resource]["plan"]["name"]
    attachments = {r["id"] for r in out.records["addon_attachments"]}
    assert {x["id"] for x in server.app.addons[new]["_attachments"]} <= attachments


def test_without_the_listing_new_installs_are_still_read_first(partner):
    server = partner(installs=20)
    config = config_for(server, request_budget=10_000, manifest_id=None, manifest_password=None)
    _, state = nights(server, config, 1)
    new = server.app.add_install()
    config = config_for(server, request_budget=5, manifest_id=None, manifest_password=None)
    runs, _ = nights(server, config, 1, state=state)
    assert addon_ids(runs[0][1]) == {new}


# -- the state ----------------------------------------------------------------------------


@pytest.mark.parametrize("installs", [5, 300])
def test_the_state_stays_small_and_holds_no_install(partner, installs):
    server = partner(installs=installs, max_domains=1, max_collaborators=1)
    config = config_for(server, request_budget=400, full_refresh_nights=2)
    runs, state = nights(server, config, 2)
    text = json.dumps(state)
    assert len(text) < 48_000, f"{len(text)} characters of state for {installs} installs"
    for install in server.app.install_list:
        assert install["resource_uuid"] not in text
        assert install["refresh_token"] not in text
    assert "access-" not in text
    assert set(state["bookmarks"]["addons"]) == {"schedule"}, "no per-install marker"
    for stream, bookmark in state["bookmarks"].items():
        assert "partitions" not in bookmark, f"{stream}: a state entry per install"


# -- conditional requests -----------------------------------------------------------------


def test_unchanged_lists_answer_304_and_emit_no_rows_changed_ones_are_read(partner, tmp_path):
    server = partner(installs=8)
    config = config_for(server, etag_cache_file=str(tmp_path / "etags.sqlite"))
    first, state = nights(server, config, 1, streams=ALL_STREAMS)
    assert server.app.not_modified == 0
    app_id = server.app.rows("addons")[0]["app"]["id"]
    domain = server.app.add_domain(app_id)
    second, state = nights(server, config, 1, state=state, streams=ALL_STREAMS)
    out = second[0][1]
    # Each install's config and attachments, each app's domains and collaborators were
    # asked with their ETag; all but the changed list answered 304.
    assert server.app.not_modified == 8 * 4 - 1
    assert {r["id"] for r in out.records.get("app_domains", [])} == {
        d["id"] for d in server.app.apps[app_id]["_domains"]}, "the changed list, in full"
    assert domain["id"] in {r["id"] for r in out.records["app_domains"]}
    for stream in ("addon_config", "addon_attachments", "app_collaborators"):
        assert not out.records.get(stream), f"{stream}: rows of an unchanged list"
    assert addon_ids(out) == {a["id"] for a in server.app.rows("addons")}, "parents always read"
    assert state["bookmarks"]["addons"]["etag_generation"] == 2


def test_etags_of_a_run_whose_state_was_not_kept_are_not_used(partner, tmp_path):
    server = partner(installs=4)
    config = config_for(server, etag_cache_file=str(tmp_path / "etags.sqlite"))
    _, loaded = nights(server, config, 1)
    app_id = server.app.rows("addons")[0]["app"]["id"]
    domain = server.app.add_domain(app_id)
    # This run reads the new domain, but its loader fails: its state is never saved.
    nights(server, config, 1, state=loaded)
    # The next run starts from the last saved state: the new domain must come again.
    runs, state = nights(server, config, 1, state=loaded)
    assert domain["id"] in {r["id"] for r in runs[0][1].records.get("app_domains", [])}
    # A full refresh (no state) starts the ETags anew: every row again.
    runs, _ = nights(server, config, 1)
    for stream in STREAMS:
        assert keys_of(runs[0][1].records[stream], stream) == keys_of(
            server.app.rows(stream), stream), stream


@pytest.mark.parametrize("charged", [True, False])
def test_the_sandbox_answers_304_and_charges_it_to_the_pool_as_set(partner, charged):
    server = partner(installs=1, pool_charges_not_modified=charged)
    install = server.app.install_list[0]
    token = requests.post(f"{server.app.oauth.url}/oauth/token", timeout=10, data={
        "grant_type": "refresh_token", "refresh_token": install["refresh_token"],
        "client_secret": server.app.settings.oauth_client_secret}).json()["access_token"]
    headers = {"Authorization": f"Bearer {token}",
               "Accept": "application/vnd.heroku+json; version=3"}
    url = f"{server.url}/addons/{install['resource_uuid']}"
    full = requests.get(url, headers=headers, timeout=10)
    assert full.status_code == 200 and full.headers["ETag"]
    again = requests.get(url, headers={**headers, "If-None-Match": full.headers["ETag"]},
                         timeout=10)
    assert again.status_code == 304 and again.content == b""
    drop = int(full.headers["RateLimit-Remaining"]) - int(again.headers["RateLimit-Remaining"])
    assert drop == (1 if charged else 0)


# -- concurrent installs ------------------------------------------------------------------


def test_per_install_scope_reads_installs_at_once_with_the_same_records(partner):
    server = partner(installs=16, pool_per_token=True, latency_seconds=0.02,
                     shared_app_every=4, revoked_every=7)
    outputs = {}
    for workers in (1, 6):
        server.app.max_in_flight = 0
        config = config_for(server, rate_limit_scope="per_install", concurrent_installs=workers)
        outputs[workers] = sync(TapHerokuVendor, config, streams=ALL_STREAMS)
        if workers == 1:
            assert server.app.max_in_flight == 1
    assert server.app.max_in_flight >= 2, "no two installs were read at once"
    # The same records, in the same order.
    def records(out):
        return [(m["stream"], m["record"]) for m in out.messages if m["type"] == "RECORD"]
    assert records(outputs[6]) == records(outputs[1])
    for stream in ALL_STREAMS:
        assert keys_of(outputs[6].records[stream], stream) == keys_of(
            server.app.rows(stream), stream), stream


def test_shared_scope_reads_one_install_at_a_time(partner):
    server = partner(installs=6, latency_seconds=0.01)
    sync(TapHerokuVendor, config_for(server, concurrent_installs=8), streams=STREAMS)
    assert server.app.max_in_flight == 1


def test_concurrent_installs_with_a_budget_never_exceed_it(partner, caplog):
    server = partner(installs=30, pool_per_token=True, latency_seconds=0.005)
    config = config_for(server, rate_limit_scope="per_install", concurrent_installs=6,
                        request_budget=42, full_refresh_nights=7)
    state = None
    seen: set[tuple] = set()
    with caplog.at_level(logging.INFO):
        for _ in range(6):
            runs, state = nights(server, config, 1, state=state, streams={"addons", "app_domains"})
            assert runs[0][0] <= 42
            seen |= keys_of(runs[0][1].records.get("app_domains", []), "app_domains")
    assert seen == keys_of(server.app.rows("app_domains"), "app_domains")


def test_during_a_first_pass_of_many_nights_a_change_is_read_the_next_night(partner):
    # 60 installs, 10 a night: a first pass of 6 nights.
    server = partner(installs=60)
    config = config_for(server, request_budget=50, full_refresh_nights=7)
    runs, state = nights(server, config, 1)
    read_first = addon_ids(runs[0][1])
    assert len(read_first) < 60
    changed = sorted(read_first)[0]
    server.app.change_plan(changed)
    runs, _ = nights(server, config, 1, state=state)
    out = runs[0][1]
    assert changed in addon_ids(out), "a change waited behind installs never read"
    assert not (addon_ids(out) & (read_first - {changed})), "only the change is read again"


def test_budget_rotation_etags_and_concurrency_together_miss_no_row(partner, tmp_path):
    server = partner(installs=20, pool_per_token=True, shared_app_every=3)
    config = config_for(server, rate_limit_scope="per_install", concurrent_installs=4,
                        request_budget=45, full_refresh_nights=3,
                        etag_cache_file=str(tmp_path / "etags.sqlite"))
    seen: dict[str, set] = {stream: set() for stream in ALL_STREAMS}
    state = None
    domain = None
    for night in range(1, 7):
        runs, state = nights(server, config, 1, state=state, streams=ALL_STREAMS)
        sent, out = runs[0]
        assert sent <= 45, f"night {night}: {sent}"
        for stream in ALL_STREAMS:
            seen[stream] |= keys_of(out.records.get(stream, []), stream)
        if night == 3:
            domain = server.app.add_domain(server.app.rows("addons")[0]["app"]["id"])
            seen["app_domains"] = set()  # from here on, the app's list must come again
            seen["app_domains"] |= keys_of(server.app.rows("app_domains"), "app_domains") - {
                (d["id"],) for d in server.app.apps[domain["app"]["id"]]["_domains"]}
    for stream in ALL_STREAMS:
        assert seen[stream] == keys_of(server.app.rows(stream), stream), stream
    assert server.app.not_modified > 0
