"""Heroku installs by plan and state over time, and add-on MRR (docs/transform.md,
"Heroku installs and add-on MRR").

A hand-made scenario is written into DuckDB and PostgreSQL the way the loaders write
tap-heroku-vendor's tables in both modes (legacy: `apps`, `app_info`; partner: `addons`,
`partner_apps`, objects as JSON), one install held by both modes. dbt builds the Heroku
models; the first build's snapshot is then moved back as if it had run FIRST_BUILD_AGO
days earlier (dbt stamps versions with its own clock, and a test cannot wait a month),
the data changes (an upgrade Heroku dates, a plan change the legacy API does not date, a
deprovisioning, an install the listing drops, a new install) and dbt builds again. Every
row of `fct_heroku_installs_daily` and `fct_heroku_addon_mrr_monthly` must equal the
figures computed here from the scenario and the documented rules, on both warehouses.
A third build without the legacy tables (a vendor that moved to partner mode and dropped
them) checks that the marts run on partner mode alone.
"""

from __future__ import annotations

import datetime as dt
import json
from collections import defaultdict
from decimal import Decimal
from pathlib import Path

import pytest

from dbt_warehouse import ScenarioWarehouse
SCHEMA = "herokutest_tap_heroku_vendor"
MARTS = "herokutest_analytics"
SERVICE = "sandbox-addon"
FIRST_BUILD_AGO = 40
TODAY = dt.datetime.now(dt.UTC).date()
NOW = dt.datetime.now(dt.UTC).replace(tzinfo=None, microsecond=0)
DAY = dt.timedelta(days=1)

# Partner-mode installs: uuid -> (plan, state, billed_price or None, created_at, app id)
APPS = {"app-1": ("owner-1", "us"), "app-2": ("owner-2", "eu"), "app-3": ("owner-1", "us")}


def uuid(n: int) -> str:
    return f"00000000-0000-4000-8000-{n:012d}"


def month_price(cents: int, unit: str = "month", contract: bool = False) -> dict:
    return {"cents": cents, "unit": unit, "contract": contract}


def first_state() -> dict:
    """The data at the first build: partner add-ons, legacy listing rows."""
    partner = {
        uuid(1): {"plan": "basic", "state": "provisioned", "price": month_price(900),
                  "created": dt.datetime(2025, 1, 10, 9, 30), "app": "app-1"},
        uuid(2): {"plan": "premium", "state": "provisioned", "price": month_price(2500),
                  "created": dt.datetime(2025, 3, 5, 23, 59), "app": "app-2"},
        uuid(3): {"plan": "test", "state": "provisioned", "price": month_price(0),
                  "created": dt.datetime(2025, 6, 1), "app": "app-1"},
        # A contract price: provisioned but not in MRR.
        uuid(4): {"plan": "enterprise", "state": "provisioned", "price": month_price(50000, contract=True),
                  "created": dt.datetime(2025, 2, 14), "app": "app-3"},
        # An hourly price: 3 cents an hour is 2,160 cents a month (720 hours).
        uuid(5): {"plan": "metered", "state": "provisioned", "price": month_price(3, "hour"),
                  "created": dt.datetime(2025, 4, 20), "app": "app-3"},
        uuid(6): {"plan": "basic", "state": "provisioning", "price": month_price(900),
                  "created": dt.datetime(2025, 7, 1), "app": "app-2"},
        # No billed price in the data.
        uuid(7): {"plan": "basic", "state": "provisioned", "price": None,
                  "created": dt.datetime(2025, 5, 5), "app": "app-2"},
        # Held by both modes: counted once, described by this row.
        uuid(8): {"plan": "basic", "state": "provisioned", "price": month_price(900),
                  "created": dt.datetime(2024, 11, 20), "app": "app-1"},
    }
    for row in partner.values():
        row["updated"] = row["created"]
    legacy = {
        uuid(8): {"plan": "basic", "region": "amazon-web-services::us-east-1", "owner": "owner-1"},
        uuid(11): {"plan": "premium", "region": "amazon-web-services::eu-west-1", "owner": "owner-9"},
        uuid(12): {"plan": "test", "region": None, "owner": None},  # no detail row
        uuid(13): {"plan": "basic", "region": "amazon-web-services::us-east-1", "owner": "owner-8"},
    }
    return {"partner": partner, "legacy": legacy}


def second_state(first: dict) -> dict:
    """The data at the second build: what changed between the builds."""
    state = json.loads(json.dumps(first, default=str))
    for rows in state.values():
        for row in rows.values():
            for key in ("created", "updated"):
                if key in row:
                    row[key] = dt.datetime.fromisoformat(row[key])
    partner, legacy = state["partner"], state["legacy"]
    # An upgrade that Heroku dates (updated_at) between the two builds.
    partner[uuid(2)].update(plan="enterprise", price=month_price(10000), updated=NOW - 10 * DAY)
    # A deprovisioning, dated too.
    partner[uuid(1)].update(state="deprovisioned", updated=NOW - 5 * DAY)
    # Provisioning finished: dated before the first build, so it counts from the build
    # that saw it (a date before the version it follows cannot be the change's).
    partner[uuid(6)].update(state="provisioned", updated=NOW - 60 * DAY)
    # A new install created between the builds: backfilled from its created_at.
    partner[uuid(9)] = {"plan": "premium", "state": "provisioned", "price": month_price(2500),
                        "created": NOW - 20 * DAY, "updated": NOW - 20 * DAY, "app": "app-3"}
    legacy[uuid(11)]["plan"] = "enterprise"  # the legacy API does not date it
    del legacy[uuid(13)]  # no longer listed: target-postgres marks the row deleted
    return state


def partner_only(second: dict) -> dict:
    return {"partner": second["partner"], "legacy": None}


class Warehouse(ScenarioWarehouse):
    def build(self) -> str:
        run = self.dbt_build(["+fct_heroku_installs_daily+", "+fct_heroku_addon_mrr_monthly+",
                              "+fct_heroku_installs_by_plan_region+"], {"heroku_schema": SCHEMA})
        assert " ERROR=0 " in run.stdout and " WARN=0 " in run.stdout, run.stdout[-3000:]
        return run.stdout


def load(warehouse: Warehouse, state: dict) -> None:
    """The tables as the loaders write them (upserted on the tap's key; target-postgres
    marks a row a full-table sync no longer returned with _sdc_deleted_at)."""
    run = warehouse.run
    js = warehouse.json()
    ts = warehouse.timestamp()
    run(f"create schema if not exists {SCHEMA}")
    cascade = "" if warehouse.kind == "duckdb" else " cascade"  # PostgreSQL: the staging views
    for table in ("addons", "partner_apps"):
        run(f"drop table if exists {SCHEMA}.{table}{cascade}")
    run(f"create table {SCHEMA}.addons (id text, name text, addon_service {js}, app {js}, "
        f"billing_entity {js}, billed_price {js}, plan {js}, provider_id text, state text, web_url text, "
        f"created_at {ts}, updated_at {ts})")
    for n, (resource, row) in enumerate(sorted(state["partner"].items())):
        app = {"id": row["app"], "name": f"customer-{row['app']}"}
        run(f"insert into {SCHEMA}.addons values (?, ?, cast(? as {js}), cast(? as {js}), cast(? as {js}), "
            f"cast(? as {js}), cast(? as {js}), ?, ?, ?, cast(? as {ts}), cast(? as {ts}))",
            [resource, f"{SERVICE}-fluffy-{n}", json.dumps({"id": "svc", "name": SERVICE}), json.dumps(app),
             json.dumps({**app, "type": "app"}), json.dumps(row["price"]) if row["price"] else None,
             json.dumps({"id": f"plan-{row['plan']}", "name": f"{SERVICE}:{row['plan']}"}), str(n + 1),
             row["state"], None, iso(row["created"]), iso(row["updated"])])
    run(f"create table {SCHEMA}.partner_apps (id text, name text, owner {js}, organization {js}, team {js}, "
        f"region {js}, stack {js}, created_at {ts}, updated_at {ts}, archived_at {ts})")
    for app, (owner, region) in APPS.items():
        run(f"insert into {SCHEMA}.partner_apps values (?, ?, cast(? as {js}), null, null, cast(? as {js}), "
            f"cast(? as {js}), cast(? as {ts}), cast(? as {ts}), null)",
            [app, f"customer-{app}", json.dumps({"id": owner, "email": f"{owner}@example.test"}),
             json.dumps({"id": "r", "name": region}), json.dumps({"id": "s", "name": "heroku-24"}),
             "2024-01-01T00:00:00Z", "2024-01-01T00:00:00Z"])
    if state["legacy"] is None:
        for table in ("apps", "app_info"):
            run(f"drop table if exists {SCHEMA}.{table}{cascade}")
        return
    if not warehouse.run("select table_name from information_schema.tables where table_schema = ? "
                         "and table_name = 'apps'", [SCHEMA], read=True):
        run(f"create table {SCHEMA}.apps (resource_uuid text, provider_id text, heroku_id text, callback_url text, "
            f"plan text, name text, resource {js}, _sdc_deleted_at {ts})")
        run(f"create table {SCHEMA}.app_info (resource_uuid text, provider_id text, id text, name text, plan text, "
            f"callback_url text, owner_email text, owner {js}, region text, resource {js}, _sdc_deleted_at {ts})")
    listed = set(state["legacy"])
    run(f"update {SCHEMA}.apps set _sdc_deleted_at = cast(? as {ts}) where _sdc_deleted_at is null and "
        f"resource_uuid not in ({', '.join('?' for _ in listed)})", [iso(NOW), *sorted(listed)])
    run(f"update {SCHEMA}.app_info set _sdc_deleted_at = cast(? as {ts}) where _sdc_deleted_at is null and "
        f"resource_uuid not in ({', '.join('?' for _ in listed)})", [iso(NOW), *sorted(listed)])
    for n, (resource, row) in enumerate(sorted(state["legacy"].items())):
        for table in ("apps", "app_info"):
            run(f"delete from {SCHEMA}.{table} where resource_uuid = ?", [resource])
        run(f"insert into {SCHEMA}.apps values (?, ?, ?, ?, ?, ?, cast(? as {js}), null)",
            [resource, str(100 + n), f"app{n}@heroku.com", f"https://api.heroku.com/vendor/apps/{resource}",
             row["plan"], f"legacy-app-{n}", json.dumps({"uuid": resource, "name": f"addon-{n}"})])
        if row["region"]:
            run(f"insert into {SCHEMA}.app_info values (?, ?, ?, ?, ?, ?, ?, cast(? as {js}), ?, cast(? as {js}), null)",
                [resource, str(100 + n), f"app{n}@heroku.com", f"legacy-app-{n}", row["plan"],
                 f"https://api.heroku.com/vendor/apps/{resource}", f"{row['owner']}@example.test",
                 json.dumps({"uuid": row["owner"], "email": f"{row['owner']}@example.test"}), row["region"],
                 json.dumps({"uuid": resource, "name": f"addon-{n}"})])


def iso(moment: dt.datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def backdate_first_build(warehouse: Warehouse) -> None:
    """As if the first build had run FIRST_BUILD_AGO days ago."""
    shift = f"interval '{FIRST_BUILD_AGO} day'"
    warehouse.run(f"update {MARTS}_snapshots.snap_heroku__installs set dbt_valid_from = dbt_valid_from - {shift}, "
                  f"dbt_updated_at = dbt_updated_at - {shift}")


# -- the expected figures, from the scenario and the rules in docs/transform.md ----------

def describe(state: dict) -> dict[str, dict]:
    """resource uuid -> what one build sees of it (source, plan, state, monthly cents,
    owner, created, updated), an install both modes hold described by its partner row."""
    seen: dict[str, dict] = {}
    for resource, row in (state["legacy"] or {}).items():
        seen[resource] = {"source": "legacy", "plan": row["plan"], "state": "provisioned", "cents": None,
                          "owner": row["owner"], "created": None, "updated": None}
    for resource, row in state["partner"].items():
        price = row["price"]
        cents = None
        if price and not price["contract"]:
            cents = {"month": price["cents"], "hour": price["cents"] * 720}.get(price["unit"])
        seen[resource] = {"source": "both" if resource in seen else "partner", "plan": row["plan"],
                          "state": row["state"], "cents": cents, "owner": APPS[row["app"]][0],
                          "created": row["created"], "updated": row["updated"]}
    return seen


def timelines(builds: list[tuple[dt.datetime, dict]]) -> dict[str, list[tuple[dt.date, dict]]]:
    """Per install, (first day, version) in order, from what each build saw."""
    changed = ("source", "plan", "state", "cents")
    versions: dict[str, list[tuple[dt.datetime, dict]]] = defaultdict(list)
    first_seen: dict[str, dt.datetime] = {}
    #: The build that recorded the install's current version (its snapshot row's dbt_valid_from).
    recorded: dict[str, dt.datetime] = {}
    for built_at, state in builds:
        seen = describe(state)
        for resource, now in seen.items():
            history = versions[resource]
            if not history:
                first_seen[resource] = built_at
                start = min(built_at, now["created"]) if now["created"] else built_at
                history.append((start, now))
                recorded[resource] = built_at
            elif any(history[-1][1][k] != now[k] for k in changed) or history[-1][1]["state"] == "removed":
                updated = now["updated"]
                dated = updated is not None and recorded[resource] < updated <= built_at
                history.append((updated if dated else built_at, now))
                recorded[resource] = built_at
        for resource, history in versions.items():
            if resource not in seen and history[-1][1]["state"] != "removed":
                history.append((built_at, {**history[-1][1], "state": "removed", "cents": None}))
                recorded[resource] = built_at
    return {resource: [(start.date(), version, first_seen[resource].date()) for start, version in history]
            for resource, history in versions.items()}


def version_on(history: list, day: dt.date) -> tuple[dict, dt.date] | None:
    """The version in effect at the end of ``day`` (the last one starting on or before it)."""
    found = None
    for start, version, first in history:
        if start <= day:
            found = (version, first)
    return found


def expected_daily(lines: dict) -> dict[tuple, tuple]:
    first = min(start for history in lines.values() for start, _, _ in history)
    figures: dict[tuple, list] = defaultdict(lambda: [0, 0, set()])
    day = first
    while day <= TODAY:
        for history in lines.values():
            found = version_on(history, day)
            if found:
                version, first_seen = found
                cell = figures[(day, version["source"], version["plan"], version["state"])]
                cell[0] += 1
                cell[1] += day < first_seen
                if version["owner"]:
                    cell[2].add(version["owner"])
        day += DAY
    return {key: (n, backfilled, len(owners)) for key, (n, backfilled, owners) in figures.items()}


def expected_mrr(lines: dict) -> dict[tuple, tuple]:
    first = min(start for history in lines.values() for start, _, _ in history)
    month = first.replace(day=1)
    figures: dict[tuple, list] = {}
    while month <= TODAY:
        following = (month + 32 * DAY).replace(day=1)
        counted = min(following - DAY, TODAY)
        for history in lines.values():
            found = version_on(history, counted)
            if found and found[0]["state"] == "provisioned":
                version = found[0]
                cell = figures.setdefault((month, version["plan"]), [counted, 0, 0, 0])
                cell[1] += 1
                if version["cents"] is not None:
                    cell[2] += 1
                    cell[3] += version["cents"]
        month = following
    return {key: (counted, n, priced, n - priced, Decimal(cents) / 100, Decimal(cents * 12) / 100)
            for key, (counted, n, priced, cents) in figures.items()}


def expected_plan_region(state: dict) -> dict[tuple, int]:
    """Installs provisioned now per plan and region: the partner app's region for an
    install partner mode holds, else the legacy detail's, else unknown."""
    figures: dict[tuple, int] = defaultdict(int)
    for resource, row in (state["legacy"] or {}).items():
        if resource not in state["partner"]:
            figures[(row["plan"], row["region"] or "unknown")] += 1
    for row in state["partner"].values():
        if row["state"] == "provisioned":
            figures[(row["plan"], APPS[row["app"]][1])] += 1
    return dict(figures)


def model_daily(warehouse: Warehouse) -> dict[tuple, tuple]:
    rows = warehouse.run(f"select install_day, source, plan, state, installs, backfilled_installs, distinct_owners "
                         f"from {MARTS}.fct_heroku_installs_daily", read=True)
    return {(day, source, plan, state): (int(n), int(backfilled), int(owners))
            for day, source, plan, state, n, backfilled, owners in rows}


def model_mrr(warehouse: Warehouse) -> dict[tuple, tuple]:
    rows = warehouse.run(f"select month_start, plan, counted_day, provisioned_installs, priced_installs, "
                         f"unpriced_installs, mrr, arr from {MARTS}.fct_heroku_addon_mrr_monthly", read=True)
    return {(month, plan): (counted, int(n), int(priced), int(unpriced), Decimal(str(mrr)), Decimal(str(arr)))
            for month, plan, counted, n, priced, unpriced, mrr, arr in rows}


def plan_region(warehouse: Warehouse) -> dict[tuple, int]:
    rows = warehouse.run(f"select plan, region, installs from {MARTS}.fct_heroku_installs_by_plan_region", read=True)
    return {(plan, region): int(n) for plan, region, n in rows}


@pytest.mark.postgres
def test_heroku_installs_over_time_and_mrr_on_both_warehouses(tmp_path: Path) -> None:
    first = first_state()
    second = second_state(first)
    builds = [(NOW - FIRST_BUILD_AGO * DAY, first), (NOW, second)]
    expected_two = timelines(builds)
    expected_three = timelines([*builds, (NOW, partner_only(second))])
    results = {}
    for kind in ("duckdb", "postgres"):
        warehouse = Warehouse(kind, tmp_path / kind, MARTS)
        (tmp_path / kind).mkdir()
        for schema in (SCHEMA, MARTS, f"{MARTS}_staging", f"{MARTS}_snapshots"):
            warehouse.run(f"drop schema if exists {schema} cascade")
        load(warehouse, first)
        warehouse.build()
        backdate_first_build(warehouse)
        load(warehouse, second)
        warehouse.build()
        daily, mrr = model_daily(warehouse), model_mrr(warehouse)
        assert daily == expected_daily(expected_two), kind
        assert mrr == expected_mrr(expected_two), kind
        assert plan_region(warehouse) == expected_plan_region(second)
        load(warehouse, partner_only(second))
        warehouse.build()
        results[kind] = (daily, mrr, model_daily(warehouse), model_mrr(warehouse))
        assert results[kind][2] == expected_daily(expected_three), kind
        assert results[kind][3] == expected_mrr(expected_three), kind
        assert plan_region(warehouse) == expected_plan_region(partner_only(second))
    assert results["duckdb"] == results["postgres"]

    # The scenario shows what it is meant to: history the snapshot kept, the data's dates.
    today = TODAY
    first_build_day = (NOW - FIRST_BUILD_AGO * DAY).date()
    daily = results["duckdb"][0]
    # uuid 2 upgraded ten days ago (uuid 4 has been on enterprise all along); uuid 9 is new.
    assert daily[(today, "partner", "enterprise", "provisioned")][0] == 2
    assert daily[((NOW - 11 * DAY).date(), "partner", "premium", "provisioned")][0] == 2
    assert daily[((NOW - 10 * DAY).date(), "partner", "premium", "provisioned")][0] == 1
    assert daily[((NOW - 5 * DAY).date(), "partner", "basic", "deprovisioned")][0] == 1
    assert daily[(today, "legacy", "enterprise", "provisioned")][0] == 1  # undated: the build's day
    assert daily[(today - DAY, "legacy", "premium", "provisioned")][0] == 1
    assert daily[(today, "legacy", "basic", "removed")][0] == 1
    assert daily[(first_build_day, "both", "basic", "provisioned")][0] == 1
    assert daily[((NOW - 20 * DAY).date(), "partner", "premium", "provisioned")][1] == 1  # backfilled
    assert daily[(dt.date(2024, 11, 20), "both", "basic", "provisioned")] == (1, 1, 1)
    assert not any(source == "legacy" and day < first_build_day for day, source, _, _ in daily)
    mrr = results["duckdb"][1]
    assert mrr[(today.replace(day=1), "metered")][4] == Decimal("21.60")  # 3 cents × 720 hours
    # uuid 2 priced; uuid 4 (a contract) and uuid 11 (legacy only) unpriced.
    assert mrr[(today.replace(day=1), "enterprise")][1:4] == (3, 1, 2)
