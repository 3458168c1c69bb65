"""tap-marketplace against the Marketplace sandbox: pagination shapes, exports, state."""

from __future__ import annotations

import datetime
import json
import re
from collections import Counter

import jsonschema
import pytest
from singer_sdk.testing import SuiteConfig, get_tap_test_class

import isv_sandbox
from tap_marketplace.streams import STREAMS, catalog, reporting
from tap_marketplace.tap import TapMarketplace
from helpers import (
    FAST_EXPORTS,
    FAST_RETRIES,
    catalog_selecting,
    config_for,
    last_error_line,
    run_cli,
    sync,
)

REPORTING = "/rest/3/reporting/developer-space/"
#: This module tests the reporting and catalog streams; the aggregated reports have their
#: own tests.
OWN_STREAM_CLASSES = [stream for stream in STREAMS
                      if stream.__module__ in (reporting.__name__, catalog.__name__)]
OWN_STREAMS = {stream.name for stream in OWN_STREAM_CLASSES}

# The SDK's standard tests sync once per class against this module-level sandbox.
_STANDARD_SANDBOX = isv_sandbox.start(
    "marketplace", licenses=60, transactions=40, feedback=20, events_per_kind=15,
    attributions=12, export_queued_seconds=0.02, export_in_progress_seconds=0.02)


class _TapWithOwnStreams(TapMarketplace):
    """The tap with this module's streams only (the report streams have their own tests)."""

    def discover_streams(self) -> list:
        return [stream_class(self) for stream_class in OWN_STREAM_CLASSES]


TestMarketplaceStandard = get_tap_test_class(
    _TapWithOwnStreams,
    config={**_STANDARD_SANDBOX.app.tap_config(), **FAST_RETRIES, **FAST_EXPORTS},
    suite_config=SuiteConfig(max_records_limit=200),
)


def calls(server, path_regex, method="GET"):
    return [r for r in server.requests if r.method == method and re.search(path_regex, r.path)]


def keys_of(records, *fields):
    return [tuple(r[f] for f in fields) for r in records]


# -- pagination shapes ------------------------------------------------------------------


@pytest.mark.parametrize(("stream", "path", "total"), [
    ("licenses", r"/licenses$", None),
    ("transactions", r"/sales/transactions$", 130),
    ("feedback", r"/feedback/details$", 120),
    ("license_churn_events", r"/churn/details$", 130),  # links at the top level
    ("license_renewal_events", r"/renewal/details$", 130),
])
def test_offset_pages_follow_links_next_with_limit_50(marketplace, stream, path, total):
    server = marketplace(transactions=130, feedback=120, events_per_kind=130, licenses=170)
    out = sync(TapMarketplace, config_for(server, use_async_exports=False), streams={stream})

    records = out.records[stream]
    key = TapMarketplace(config=config_for(server), parse_env_config=False) \
        .streams[stream].primary_keys
    assert len(set(keys_of(records, *key))) == len(records), "no row twice"
    if total is not None:
        assert len(records) == total
    pages = calls(server, path)
    assert len(pages) >= 3
    assert pages[0].query["offset"] == ["0"] and pages[0].query["limit"] == ["50"]
    # Later pages are the API's own next links: offsets advance by 50, filters kept.
    assert [p.query["offset"][0] for p in pages[:3]] == ["0", "50", "100"]
    assert all(p.query.get("limit") == ["50"] for p in pages)


def test_licenses_sync_path_pages_every_license_of_each_pass(marketplace):
    server = marketplace(licenses=170)
    out = sync(TapMarketplace, config_for(server, use_async_exports=False), streams={"licenses"})

    expected = {r["license_key"] for r in out.records["licenses"]}
    passes = Counter(tuple(p.query.get("withDataInsights", ["-"])) for p in calls(server, r"/licenses$")
                     if p.query["offset"] == ["0"])
    assert passes == {("true",): 1, ("-",): 1}
    assert len(expected) == len(out.records["licenses"]) > 100


@pytest.mark.parametrize(("stream", "path", "rows_per_parent", "parents"), [
    ("app_listings", r"^/rest/3/product-listing/developer-space/", None, 1),
    ("app_software_versions", r"/versions$", 60, 6),
    ("app_version_listings", r"/listings/all$", 55, 6),
    ("parent_software_versions", r"^/rest/3/parent-software/[^/]+/versions$", 70, 4),
])
def test_links_next_cursor_pages(marketplace, stream, path, rows_per_parent, parents):
    server = marketplace(apps=57 if stream == "app_listings" else 3, versions_per_software=60,
                         version_listings_per_software=55, versions_per_parent=70)
    out = sync(TapMarketplace, config_for(server), streams={stream})

    records = out.records[stream]
    if stream == "app_listings":
        assert [r["productId"] for r in records] == [a["productId"] for a in server.app.apps]
        assert any(r["state"] == "PRIVATE" for r in records), "includePrivate=true is sent"
        pages = calls(server, path)
    else:
        assert len(records) == rows_per_parent * parents
        pages = calls(server, path)
        assert len(pages) == 2 * parents
    key = TapMarketplace(config=config_for(server), parse_env_config=False) \
        .streams[stream].primary_keys
    assert len(set(keys_of(records, *key))) == len(records)
    assert pages[0].query.get("cursor") is None
    assert pages[1].query.get("cursor"), "the second page comes from links.next"


def test_parent_software_lists_every_parent(marketplace):
    server = marketplace(parent_software=7)
    tap_config = config_for(server)
    out = sync(TapMarketplace, tap_config, streams={"parent_software"})
    assert [r["id"] for r in out.records["parent_software"]] == [
        "jira", "confluence", "bitbucket", "bamboo", "crowd", "fisheye", "compass"]


def test_reviews_page_on_the_top_level_cursor(marketplace):
    server = marketplace(apps=2, reviews_per_app=123)
    out = sync(TapMarketplace, config_for(server), streams={"reviews"})

    reviews = out.records["reviews"]
    assert len(reviews) == 246 == len({r["id"] for r in reviews})
    by_app = Counter(r["productId"] for r in reviews)
    assert by_app == {a["productId"]: 123 for a in server.app.apps}
    pages = calls(server, r"/reviews$")
    assert len(pages) == 6  # 50 + 50 + 23 per app
    assert [bool(p.query.get("cursor")) for p in pages[:3]] == [False, True, True]


def test_members_page_on_the_bare_next_token_at_most_10(marketplace):
    server = marketplace(members=34)
    out = sync(TapMarketplace, config_for(server), streams={"developer_space_members"})

    members = out.records["developer_space_members"]
    assert [m["aaid"] for m in members] == [m["aaid"] for m in server.app.catalog.members]
    pages = calls(server, r"/members$")
    assert len(pages) == 4
    assert all(p.query["limit"] == ["10"] for p in pages)
    assert all(p.status == 201 for p in pages), "the spec's 201 for this GET is accepted"


# -- catalog details ------------------------------------------------------------------


def test_catalog_children_carry_their_parent_keys(marketplace):
    server = marketplace(apps=4, software_per_app=3, versions_per_software=3)
    streams = {"app_listings", "app_software", "app_software_versions", "reviews",
               "cloud_migration_compatibility", "privacy_and_security",
               "app_version_listings", "developer_space", "developer_space_listings"}
    out = sync(TapMarketplace, config_for(server), streams=streams)

    apps = server.app.apps
    software = out.records["app_software"]
    assert len(software) == 12
    assert {(s["appKey"], s["productId"]) for s in software} == {
        (a["appKey"], a["productId"]) for a in apps}
    assert {v["appSoftwareId"] for v in out.records["app_software_versions"]} == {
        s["appSoftwareId"] for s in software}
    # One record per product where the API has one; 404 (never filled in) is skipped.
    migration = out.records["cloud_migration_compatibility"]
    assert sorted(m["productId"] for m in migration) == sorted(server.app.catalog.migration)
    privacy = out.records["privacy_and_security"]
    assert sorted(p["productId"] for p in privacy) == sorted(server.app.catalog.privacy)
    assert all(isinstance(p["commonCloud"], dict) for p in privacy)
    assert all(r.query.get("state") == ["live"] for r in calls(server, r"privacy-and-security"))
    assert out.records["developer_space"][0]["id"] == server.app.developer_id
    assert out.records["developer_space_listings"][0]["developerId"] == server.app.developer_id
    # The tap never calls the access-token endpoint.
    assert not calls(server, r"/tokens")


# -- exports ----------------------------------------------------------------------------


def test_license_export_polls_until_completed_then_streams_the_array(marketplace):
    server = marketplace(licenses=150, export_queued_seconds=0.15,
                         export_in_progress_seconds=0.15, download_chunk_bytes=1024)
    out = sync(TapMarketplace, config_for(server, start_date="2019-01-01"),
               streams={"licenses"})

    assert len(out.records["licenses"]) > 50
    starts = calls(server, r"/licenses/async/export$", "POST")
    assert len(starts) == 1
    assert starts[0].query["accept"] == ["json"]
    assert starts[0].query["startDate"] == ["2019-01-01"]
    assert starts[0].query["withDataInsights"] == ["true"]
    statuses = calls(server, r"/licenses/async/export/[^/]+/status$")
    assert len(statuses) >= 3, "QUEUED and IN_PROGRESS polls before COMPLETED"
    assert len(calls(server, r"/licenses/async/export/[^/]+$")) == 1


def test_export_and_offset_paths_give_the_same_rows(marketplace):
    server = marketplace(licenses=140, transactions=130)
    streams = {"licenses", "transactions"}
    exported = sync(TapMarketplace, config_for(server), streams=streams)
    paged = sync(TapMarketplace, config_for(server, use_async_exports=False), streams=streams)

    assert calls(server, r"/async/export$", "POST"), "the first run exported"
    for stream, key in (("licenses", "license_key"), ("transactions", "transactionLineItemId")):
        by_export = {r[key]: r for r in exported.records[stream]}
        by_pages = {r[key]: r for r in paged.records[stream]}
        assert len(by_export) == len(exported.records[stream])
        assert by_export == by_pages, stream
    assert len(paged.records["transactions"]) == 130
    assert exported.final_state["bookmarks"]["licenses"] == \
        paged.final_state["bookmarks"]["licenses"]


def test_transaction_ids_repeat_across_line_items_but_keys_do_not(marketplace):
    server = marketplace(transactions=40)
    out = sync(TapMarketplace, config_for(server), streams={"transactions"})
    rows = out.records["transactions"]
    assert len({r["transactionLineItemId"] for r in rows}) == 40
    assert len({r["transactionId"] for r in rows}) == 20


def test_marketing_attribution_export_uses_the_generic_status_path(marketplace):
    server = marketplace(attributions=30, export_queued_seconds=0.05)
    out = sync(TapMarketplace, config_for(server, start_date="2020-01-01"),
               streams={"marketing_attribution"})

    rows = out.records["marketing_attribution"]
    assert rows and all(r["eventTimestamp"] >= "2020-01-01" for r in rows)
    assert len({r["attribution_id"] for r in rows}) == len(rows)
    assert calls(server, r"/marketing-attribution/async/export$", "POST")
    assert calls(server, REPORTING + r"[^/]+/async/export/[^/]+/status$")
    assert out.final_state["bookmarks"]["marketing_attribution"]["replication_key_value"] == \
        max(r["eventTimestamp"] for r in rows)


def test_failed_export_fails_the_run_with_the_vendors_message(marketplace):
    server = marketplace(failing_exports=("transactions",), export_queued_seconds=0.05,
                         export_failure_message="Export failed: report store unavailable")
    out = run_cli("tap-marketplace", config_for(server), catalog=catalog_with("transactions"))

    assert out.returncode == 1
    line = last_error_line(out.stderr)
    assert "transactions: export" in line and "FAILED" in line
    assert "Export failed: report store unavailable" in line
    assert not out.records.get("transactions")
    assert not calls(server, r"/async/export/[^/]+$"), "nothing is downloaded"


def test_export_stuck_in_progress_fails_naming_the_export(marketplace):
    server = marketplace(stuck_exports=("licenses",))
    out = run_cli("tap-marketplace", config_for(server, export_timeout_seconds=0.5),
                  catalog=catalog_with("licenses"))

    export_id = next(iter(server.app.exports))
    assert out.returncode == 1
    line = last_error_line(out.stderr)
    assert f"licenses: export {export_id} did not complete within 0.5 s" in line
    assert "IN_PROGRESS" in line
    # No bookmark; the export stays in the state, for the next run to resume.
    licenses = out.states[-1]["bookmarks"]["licenses"]
    assert "replication_key_value" not in licenses
    assert licenses["in_flight_export"]["id"] == export_id


def catalog_with(*names):
    return catalog_selecting(TapMarketplace, {"username": "u", "api_token": "t",
                                              "developer_id": "6f0e9a3c-1c2b-4d5e-9f00-5a1b2c3d4e5f"}, names)


# -- licenses: keys, the 2018 split ----------------------------------------------------


def test_license_key_covers_every_hosting_type(marketplace):
    server = marketplace(licenses=60)
    out = sync(TapMarketplace, config_for(server, start_date="2018-07-01"),
               streams={"licenses"})

    rows = out.records["licenses"]
    cloud = [r for r in rows if r["hosting"] == "Cloud"]
    server_rows = [r for r in rows if r["hosting"] != "Cloud"]
    assert cloud and server_rows
    assert all(r["license_key"] == r["appEntitlementNumber"] for r in cloud)
    with_sen = [r for r in server_rows if r.get("licenseId")]
    without = [r for r in server_rows if not r.get("licenseId")]
    assert with_sen and without
    assert all(r["license_key"] == r["licenseId"] for r in with_sen)
    assert all(r["license_key"] == "SEN-" + r["addonLicenseId"] for r in without)
    # Either billing-system spelling arrives as newBillingSystem.
    assert all("isNewBillingSystem" not in r and r["newBillingSystem"] in ("Yes", "No")
               for r in rows)


def test_range_before_july_2018_is_pulled_in_two_passes_without_duplicates(marketplace):
    server = marketplace(licenses=400, first_day="2016-01-01", last_day="2020-12-31")
    out = sync(TapMarketplace, config_for(server), streams={"licenses"})

    starts = calls(server, r"/licenses/async/export$", "POST")
    assert [(s.query.get("startDate"), s.query.get("endDate"), s.query.get("withDataInsights"))
            for s in starts] == [(["2018-07-01"], None, ["true"]), (None, ["2018-06-30"], None)]
    rows = out.records["licenses"]
    keys = [r["license_key"] for r in rows]
    assert len(keys) == len(set(keys)), "a license in both passes is emitted once"
    # Licenses active across 2018-07-01 are in both passes; the kept row has insights.
    straddling = [r for r in rows if r["maintenanceStartDate"] < "2018-07-01" <= r["maintenanceEndDate"]]
    assert straddling
    assert all(r["parentProductName"] is not None for r in straddling if "parentProductName" in r)
    assert all("attribution" in r for r in straddling)
    old = [r for r in rows if r["maintenanceEndDate"] < "2018-07-01"]
    assert old and all("attribution" not in r for r in old)
    expected = {r["license_key"] for r in server_licenses(server)}
    assert set(keys) == expected


def test_range_after_july_2018_or_without_insights_is_one_pass(marketplace):
    server = marketplace(licenses=50)
    sync(TapMarketplace, config_for(server, start_date="2019-03-01"), streams={"licenses"})
    sync(TapMarketplace, config_for(server, with_data_insights=False,
                                    include_atlassian_licenses=True), streams={"licenses"})

    starts = calls(server, r"/licenses/async/export$", "POST")
    assert len(starts) == 2
    assert starts[0].query["withDataInsights"] == ["true"]
    assert starts[0].query["includeAtlassianLicenses"] == ["false"]
    assert "withDataInsights" not in starts[1].query
    assert starts[1].query["includeAtlassianLicenses"] == ["true"]


def server_licenses(server, **query):
    """The sandbox's own licenses for a query, with the key the tap should give them."""
    from isv_sandbox.marketplace import Query
    return [dict(r, license_key=r.get("appEntitlementNumber") or r.get("licenseId")
                 or "SEN-" + r["addonLicenseId"])
            for r in server.app.data.licenses(Query(**query))]


# -- incremental ------------------------------------------------------------------------


@pytest.mark.parametrize("use_async_exports", [True, False])
def test_incremental_rerun_asks_from_the_bookmark_day_and_gets_updated_rows(
        marketplace, use_async_exports):
    server = marketplace(licenses=80, transactions=60, last_day="2025-06-30")
    config = config_for(server, start_date="2019-01-01", use_async_exports=use_async_exports)
    streams = {"licenses", "transactions", "license_churn_events"}
    first = sync(TapMarketplace, config, streams=streams)
    bookmarks = {s: first.final_state["bookmarks"][s]["replication_key_value"] for s in streams}
    assert bookmarks["licenses"] == max(r["lastUpdated"] for r in first.records["licenses"])

    server.app.data.update("licenses", range(20), lastUpdated="2025-07-02")
    updated_transaction = first.records["transactions"][0]["transactionLineItemId"]
    server.app.data.update("transactions", [int(updated_transaction[3:])],
                           lastUpdated="2025-07-03")
    server.requests.clear()
    second = sync(TapMarketplace, config, state=first.final_state, streams=streams)

    path = r"/licenses/async/export$" if use_async_exports else r"/licenses$"
    method = "POST" if use_async_exports else "GET"
    assert calls(server, path, method)[0].query["lastUpdated"] == [bookmarks["licenses"]]
    licenses = second.records["licenses"]
    assert all(r["lastUpdated"] >= bookmarks["licenses"] for r in licenses)
    updated = {r["license_key"] for r in licenses if r["lastUpdated"] == "2025-07-02"}
    assert updated == {r["license_key"] for r in server_licenses(
        server, start="2019-01-01", last_updated="2025-07-02")}
    assert updated
    # The bookmark day is re-read (inclusive): rows of that day come again.
    assert any(r["lastUpdated"] == bookmarks["licenses"] for r in licenses)
    assert [r["transactionLineItemId"] for r in second.records["transactions"]
            if r["lastUpdated"] == "2025-07-03"] == [updated_transaction]
    assert second.final_state["bookmarks"]["licenses"]["replication_key_value"] == "2025-07-02"
    assert second.final_state["bookmarks"]["transactions"]["replication_key_value"] == "2025-07-03"
    assert len(licenses) < len(first.records["licenses"])


def test_feedback_reruns_from_its_lookback_before_the_date_bookmark(marketplace):
    server = marketplace(feedback=80)
    first = sync(TapMarketplace, config_for(server), streams={"feedback"})
    bookmark = first.final_state["bookmarks"]["feedback"]["replication_key_value"]
    server.requests.clear()
    second = sync(TapMarketplace, config_for(server), state=first.final_state,
                  streams={"feedback"})

    since = (datetime.date.fromisoformat(bookmark) - datetime.timedelta(days=35)).isoformat()
    assert calls(server, r"/feedback/details$")[0].query["startDate"] == [since]
    assert second.records["feedback"]
    assert all(r["date"] >= since for r in second.records["feedback"])
    ids = {r["feedback_id"] for r in first.records["feedback"]}
    assert {r["feedback_id"] for r in second.records["feedback"]} <= ids, "ids are stable"


def test_license_details_stay_nested_whether_they_arrive_nested_or_flat(marketplace):
    server = marketplace(events_per_kind=20, flattened_license_details_every=3)
    out = sync(TapMarketplace, config_for(server), streams={
        "license_renewal_events", "license_conversion_events"})

    renewals = out.records["license_renewal_events"]
    assert len(renewals) == 20
    for row in renewals + out.records["license_conversion_events"]:
        details = row["licenseDetails"]
        # Cloud events name the license by its entitlement number, in licenseId too.
        assert details["licenseId"] == details["appEntitlementNumber"]
        assert details["maintenanceStartDate"] and details["monthsValid"] in (1, 12)
        # The licenses' rule: Cloud on the entitlement number, Data Center on the SEN.
        assert row["license_key"] == (details["appEntitlementNumber"]
                                      if row["hosting"] == "Cloud" else details["licenseId"])
        assert "licenseId" not in row and "maintenanceEndDate" not in row


# -- filters, developer id, auth -----------------------------------------------------


def test_product_ids_go_as_repeated_params(marketplace):
    server = marketplace(apps=4)
    wanted = [server.app.apps[1]["productId"], server.app.apps[3]["productId"]]
    out = sync(TapMarketplace, config_for(server, product_ids=wanted, use_async_exports=False),
               streams={"licenses", "transactions", "feedback", "license_churn_events"})

    for stream in ("licenses", "transactions", "feedback", "license_churn_events"):
        assert out.records[stream]
        assert {r["productId"] for r in out.records[stream]} == set(wanted), stream
    reporting = [r for r in server.requests if REPORTING in r.path]
    assert reporting and all(r.query["productId"] == wanted for r in reporting
                             if r.query.get("offset") == ["0"])


def test_vendor_id_is_resolved_once_for_every_stream(marketplace):
    server = marketplace()
    config = config_for(server, vendor_id=server.app.settings.vendor_id)
    del config["developer_id"]
    out = sync(TapMarketplace, config, streams={
        "licenses", "feedback", "app_listings", "developer_space", "developer_space_members"})

    assert len(calls(server, r"^/rest/3/developer-space/vendor/")) == 1
    assert out.records["developer_space"][0]["id"] == server.app.developer_id
    assert out.records["licenses"] and out.records["feedback"]


def test_unknown_vendor_id_fails_with_the_vendors_message(marketplace):
    server = marketplace()
    config = config_for(server, vendor_id="999")
    del config["developer_id"]
    out = run_cli("tap-marketplace", config)

    assert out.returncode == 1
    line = last_error_line(out.stderr)
    assert "HTTP 404" in line and "/rest/3/developer-space/vendor/999" in line
    assert "Vendor 999 not found" in line


def test_connection_test_reads_the_space_and_one_license_and_starts_no_export(marketplace):
    server = marketplace()
    config = config_for(server, vendor_id=server.app.settings.vendor_id)
    del config["developer_id"]
    out = run_cli("tap-marketplace", config, "--test")

    assert out.returncode == 0, out.stderr[-2000:]
    assert f"Connected to the developer space Sandbox Apps Inc. ({server.app.developer_id})" \
        in out.stderr
    space = server.app.developer_id
    assert [(r.method, r.path) for r in server.requests] == [
        ("GET", f"/rest/3/developer-space/vendor/{server.app.settings.vendor_id}"),
        ("GET", f"/rest/3/developer-space/{space}"),
        ("GET", f"/rest/3/reporting/developer-space/{space}/licenses"),
    ]


def test_connection_test_with_a_wrong_token_is_one_line_naming_the_settings(marketplace):
    server = marketplace()
    out = run_cli("tap-marketplace", config_for(server, api_token="wrong-token"), "--test")

    assert out.returncode == 1
    line = last_error_line(out.stderr)
    assert "connection test: HTTP 401" in line and "`api_token`" in line
    assert "wrong-token" not in out.stderr


@pytest.mark.parametrize(("path", "body", "said"), [
    (r"^/rest/3/developer-space/[^/]+$", b"[]", "expected a JSON object"),
    (r"/licenses$", json.dumps({"errors": [{"message": "Reporting is switched off"}]}).encode(),
     "Reporting is switched off"),
])
def test_connection_test_checks_what_each_answer_must_be(marketplace, path, body, said):
    server = marketplace()
    server.add_fault(path, status=200, body=body)
    out = run_cli("tap-marketplace", config_for(server), "--test")

    assert out.returncode == 1
    line = last_error_line(out.stderr)
    assert "connection test: HTTP 200" in line and said in line


def test_catalog_error_envelope_becomes_one_line(marketplace):
    server = marketplace()
    server.add_fault(r"^/rest/3/parent-software$", status=400, body=json.dumps(
        {"errors": [{"status": "400", "code": "INVALID_PARAMETER", "title": "Bad Request",
                     "detail": "limit must be between 1 and 50"}]}).encode())
    out = run_cli("tap-marketplace", config_for(server), catalog=catalog_with("parent_software"))

    assert out.returncode == 1
    line = last_error_line(out.stderr)
    assert ("parent_software: HTTP 400 Bad Request from GET /marketplace/rest/3/parent-software: "
            "INVALID_PARAMETER: Bad Request: limit must be between 1 and 50") in line


def test_occasional_429_with_retry_after_is_waited_out(marketplace):
    server = marketplace(rate_limit_every=4, retry_after_seconds=0.05, licenses=200)
    out = sync(TapMarketplace, config_for(server, use_async_exports=False),
               streams={"licenses", "transactions", "app_listings", "reviews"})

    assert server.count("", status=429) >= 3
    assert len(out.records["transactions"]) == 90
    assert len(out.records["reviews"]) == 21


# -- schemas and the console script -----------------------------------------------------


def test_every_record_matches_its_schema_exactly(marketplace):
    server = marketplace(events_per_kind=12, licenses=80)
    out = sync(TapMarketplace, config_for(server), streams=OWN_STREAMS)

    assert set(out.records) == OWN_STREAMS
    for stream, records in out.records.items():
        schema = out.schemas[stream]
        validator = jsonschema.Draft7Validator(schema, format_checker=jsonschema.FormatChecker())
        declared = set(schema["properties"])
        for record in records:
            errors = list(validator.iter_errors(record))
            assert not errors, f"{stream}: {errors[0].message}"
            assert set(record) <= declared, f"{stream}: undeclared {set(record) - declared}"


def test_about_discover_and_sync_through_the_console_script(marketplace):
    about = json.loads(run_cli("tap-marketplace", {}, "--about", "--format=json").stdout)
    assert about["name"] == "tap-marketplace"
    assert about["settings"]["properties"]["api_token"]["secret"] is True

    server = marketplace(licenses=30)
    discover = json.loads(run_cli("tap-marketplace", config_for(server), "--discover").stdout)
    entries = {s["tap_stream_id"]: s for s in discover["streams"]}
    assert entries["licenses"]["key_properties"] == ["license_key"]
    assert entries["transactions"]["key_properties"] == ["transactionLineItemId"]
    assert entries["reviews"]["key_properties"] == ["id"]
    assert not server.requests, "discovery makes no request"

    out = run_cli("tap-marketplace", config_for(server))
    assert out.returncode == 0, out.stderr[-2000:]
    assert len(out.records["licenses"]) == 28
    assert len(out.records["developer_space_members"]) == 13
