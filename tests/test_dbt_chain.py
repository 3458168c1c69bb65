"""The whole chain on the sandbox: taps -> target-postgres / target-duckdb -> `dbt build`.

Each warehouse gets the three taps through the real `meltano run`, the last one as the
README's single command (`meltano run tap-marketplace target-X dbt-X:build`), so every
dbt model, snapshot and test runs on what the loaders really wrote. The marts are then
checked against figures computed here, independently, from the sandbox's own rows:
revenue per app and month (vendorAmount spread by day), MRR per app and month (spread
over the month ends of the maintenance period), and license states. Both warehouses
must give the same marts to the cent.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import subprocess
import typing as t
from collections import Counter, defaultdict
from decimal import Decimal
from fractions import Fraction
from pathlib import Path

import pytest

import isv_sandbox
import marketplace_figures
from helpers import BIN, LAST_MONTH, REPO
from isv_sandbox.isvapp import IsvappSettings
from isv_sandbox.meltano import meltano_env as sandbox_meltano_env
from isv_sandbox.marketplace import MarketplaceSettings, Query
from test_meltano_e2e import PG, postgres_connection

#: The marts' "today": the sandbox's last day of data, so the last MRR months have data.
AS_OF = dt.date.fromisoformat(MarketplaceSettings.last_day)

#: Atlassian's reports are asked for from this day on: the sandbox derives the sales and
#: license-event reports from its own rows, so the months from here to the as-of day are
#: settled and must agree with the raw rows (fct_marketplace_reconciliation).
REPORTS_SINCE = dt.date(2024, 1, 1)
#: Days from REPORTS_SINCE to today: where the sandbox's reports start and the tap asks from.
REPORT_DAYS = (dt.datetime.now(dt.timezone.utc).date() - REPORTS_SINCE).days

#: Small sandboxes: every mart gets rows, the chain takes a couple of minutes. Every license
#: event of the served license histories (events_per_kind None), each naming a license.
SANDBOXES: dict[str, dict[str, t.Any]] = {
    "marketplace": {"licenses": 150, "transactions": 160, "events_per_kind": None, "feedback": 10,
                    "attributions": 10, "reviews_per_app": 3, "members": 3,
                    "extra": {"report_history_days": REPORT_DAYS}},
    "isvapp": {"accounts": 10, "request_history_days": 4, "csv_rows_per_file": 6,
               "export_rows_per_month": 25, "latest_completed_month": LAST_MONTH,
               "export_pending_seconds": 0.1, "historical_exports": 1},
    "heroku": {"apps": 40, "deprovisioned_every": 9},
}
#: The order of the taps, and after which dbt builds in the same `meltano run` (the
#: issue's one command after the taps). PostgreSQL: the three taps, then Marketplace with
#: dbt. DuckDB: Marketplace with dbt first, while the other taps have no tables yet (their
#: marts must come out empty, not fail), then the other two, the last with dbt again.
ORDER = {"target-postgres": (("heroku", False), ("isvapp", False), ("marketplace", True)),
         "target-duckdb": (("marketplace", True), ("isvapp", False), ("heroku", True))}
MARTS = ("fct_marketplace_revenue_monthly", "fct_marketplace_mrr", "dim_marketplace_licenses",
         "fct_marketplace_license_events", "fct_isvapp_feature_usage_monthly",
         "fct_isvapp_package_usage_daily", "fct_heroku_installs_by_plan_region")


def fresh_clone(directory: Path) -> Path:
    """What a clone of the repository holds for Meltano and dbt (its tracked files, nothing
    a run left behind: no output/warehouse.duckdb, no transform/target), with the
    plugins scripts/bootstrap installed (.meltano's plugin folders, linked) and a Meltano
    system database of its own (no state from other runs), so the documented commands
    run there with their default paths."""
    files = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "meltano.yml", "plugins",  # noqa: S607
                            "transform", "output"], cwd=REPO, capture_output=True, text=True,
                           check=True).stdout.split()
    for name in files:
        (directory / name).parent.mkdir(parents=True, exist_ok=True)
        (directory / name).write_bytes((REPO / name).read_bytes())
    (directory / ".meltano").mkdir()
    for plugins in ("extractors", "loaders", "utilities"):
        (directory / ".meltano" / plugins).symlink_to(REPO / ".meltano" / plugins)
    return directory


def meltano(project: Path, *args: str, env: dict[str, str], timeout: float = 900) -> subprocess.CompletedProcess:
    return subprocess.run([str(BIN / "meltano"), *args], cwd=project, env=env,  # noqa: S603
                          capture_output=True, text=True, timeout=timeout, check=False)


def run_chain(project: Path, target: str, env: dict[str, str],
              schema_for: t.Callable[[str], str] | None = None,
              after_dbt: t.Callable[[str], None] = lambda vendor: None) -> None:
    """Every tap into ``target`` (into the schema ``schema_for`` names, else the loader's
    default), dbt build after the ones ORDER says."""
    for vendor, with_dbt in ORDER[target]:
        tap = isv_sandbox.VENDORS[vendor][2]
        with isv_sandbox.start(vendor, **SANDBOXES[vendor]) as server:
            steps = [tap, target]
            if with_dbt:
                steps.append(f"dbt-{target.removeprefix('target-')}:build")
            schema = ({f"{target.upper().replace('-', '_')}_DEFAULT_TARGET_SCHEMA": schema_for(tap)}
                      if schema_for else {})
            run = meltano(project, "run", "--full-refresh", "--state-id-suffix", "dbt-chain", *steps,
                          env=sandbox_meltano_env(REPO, tap, server.app.tap_config(), {**env, **schema}),
                          timeout=600)
        output = run.stdout + run.stderr
        assert run.returncode == 0, output[-6000:]
        if with_dbt:
            # Warnings are allowed (transactions of Atlassian-sourced licenses, which the
            # tap does not ask for); errors are not.
            assert re.search(r"Done\. PASS=[1-9][0-9]* WARN=[0-9]+ ERROR=0 ", output), output[-6000:]
            after_dbt(vendor)


def base_env(**extra: str) -> dict[str, str]:
    return {**os.environ, "MELTANO_CLI_DISABLE_VERSION_CHECK": "true",
            "MELTANO_SEND_ANONYMOUS_USAGE_STATS": "false", "DBT_AS_OF_DATE": AS_OF.isoformat(),
            "TAP_MARKETPLACE_REPORT_HISTORY_DAYS": str(REPORT_DAYS), **extra}


# -- the figures, computed from the sandbox's own rows ------------------------------------


def month_of(day: dt.date) -> dt.date:
    return day.replace(day=1)


def next_month(month: dt.date) -> dt.date:
    return (month + dt.timedelta(days=32)).replace(day=1)


def sandbox_rows() -> tuple[list[dict], list[dict]]:
    app = isv_sandbox.VENDORS["marketplace"][0](MarketplaceSettings(**SANDBOXES["marketplace"]))
    transactions = list(app.data.transactions(Query()))
    # The tap asks without includeAtlassianLicenses: Atlassian-sourced ones are not served.
    licenses = list(app.data.licenses(Query(insights=True)))
    return transactions, licenses


def expected_revenue(transactions: list[dict]) -> tuple[dict, Counter]:
    """(product, month) -> exact recognised amount, and how many lines share each."""
    revenue: dict[tuple[str, dt.date], Fraction] = defaultdict(Fraction)
    lines: Counter = Counter()
    for row in transactions:
        details = row["purchaseDetails"]
        amount = Fraction(Decimal(str(details["vendorAmount"])))
        start = dt.date.fromisoformat(details["maintenanceStartDate"])
        end = dt.date.fromisoformat(details["maintenanceEndDate"])
        if end <= start:
            revenue[row["productId"], month_of(start)] += amount
            lines[row["productId"], month_of(start)] += 1
            continue
        month = month_of(start)
        while month < end:
            days = (min(end, next_month(month)) - max(start, month)).days
            revenue[row["productId"], month] += amount * days / (end - start).days
            lines[row["productId"], month] += 1
            month = next_month(month)
    return revenue, lines


def license_mrr(transactions: list[dict]) -> tuple[dict, Counter]:
    """(product, license, month) -> MRR at the month's end, up to the as-of month, and
    (product, month) -> how many lines count in it."""
    by_license: dict[tuple[str, str, dt.date], Fraction] = defaultdict(Fraction)
    lines: Counter = Counter()
    for row in transactions:
        details = row["purchaseDetails"]
        start = dt.date.fromisoformat(details["maintenanceStartDate"])
        end = dt.date.fromisoformat(details["maintenanceEndDate"])
        month_ends = []
        month = month_of(start)
        while month <= end:
            last_day = next_month(month) - dt.timedelta(days=1)
            if start <= last_day < end:
                month_ends.append(month)
            month = next_month(month)
        for month in month_ends:
            if month <= month_of(AS_OF):
                by_license[row["productId"], marketplace_figures.license_ref(row), month] += (
                    Fraction(Decimal(str(details["vendorAmount"]))) / len(month_ends))
                lines[row["productId"], month] += 1
    return by_license, lines


def expected_mrr(transactions: list[dict]) -> tuple[dict, Counter, dict]:
    """(product, month) -> MRR, lines per (product, month), and
    (product, month, movement) -> the movement's amount.

    A license's MRR in a month is never below zero (a refund brings it to zero at most).
    Movements compare each license's MRR with its month before: new, reactivation,
    expansion, contraction, churn.
    """
    by_license, lines = license_mrr(transactions)
    mrr: dict[tuple[str, dt.date], Fraction] = defaultdict(Fraction)
    movements: dict[tuple[str, dt.date, str], Fraction] = defaultdict(Fraction)
    for product, license in {(p, lic) for p, lic, _ in by_license}:
        month = min(m for p, lic, m in by_license if (p, lic) == (product, license))
        previous, had_mrr = Fraction(0), False
        while month <= month_of(AS_OF):
            current = max(by_license.get((product, license, month), Fraction(0)), Fraction(0))
            mrr[product, month] += current
            if previous == 0 and current > 0:
                movement = "reactivation" if had_mrr else "new"
            elif previous > 0 and current == 0:
                movement = "churn"
            else:
                movement = "expansion" if current > previous else "contraction"
            movements[product, month, movement] += current - previous
            had_mrr = had_mrr or current > 0
            previous = current
            month = next_month(month)
    return mrr, lines, movements


def expected_license_states(licenses: list[dict]) -> dict[str, str]:
    states = {}
    for row in licenses:
        license_type = row["licenseType"].upper()
        if row["status"] == "active":
            state = ("evaluation" if license_type == "EVALUATION"
                     else "active_paid" if license_type in ("COMMERCIAL", "ACADEMIC")
                     else "active_free")
        else:
            state = "cancelled" if row["status"] == "cancelled" else "expired"
        states[marketplace_figures.license_ref(row)] = state
    return states


# -- the checks --------------------------------------------------------------------------


def expected_metrics(transactions: list[dict], licenses: list[dict]) -> dict[tuple[str, str | None, dt.date], dict]:
    """(scope, product or None, month) -> every figure of the metrics mart, per app and
    for all apps (each customer once across them), from each license's MRR; a customer
    is the license's contact company, else the license (tests/marketplace_figures.py)."""
    return marketplace_figures.expected_metrics(transactions, licenses, AS_OF)


#: Rates from MRR rounded to the cent: a tenth of a percent at most off.
RATES = ("logo_churn_rate", "gross_revenue_retention", "net_revenue_retention")


def check_metrics(fetch: t.Callable[[str], list[tuple]], marts: str,
                  transactions: list[dict], licenses: list[dict]) -> None:
    expected = expected_metrics(transactions, licenses)
    _, mrr_lines = license_mrr(transactions)
    names = list(next(iter(expected.values())))
    loaded = {(scope, product, month): dict(zip(names, figures)) for scope, product, month, *figures in fetch(
        f"select scope, product_id, metric_month, {', '.join(names)} from {marts}.fct_marketplace_metrics_monthly")}
    assert set(loaded) == set(expected)
    assert {scope for scope, _, _ in expected} == {"app", "all"}
    for (scope, product, month), figures in expected.items():
        # MRR: each line's monthly share is rounded to the cent.
        cents = Fraction(sum(n for (p, m), n in mrr_lines.items()
                             if m == month and (scope == "all" or p == product)), 200)
        paying = figures["paying_customers"]
        tolerance = {"mrr": cents, "arr": 12 * cents,
                     "average_revenue_per_customer": (cents / paying if paying else 0) + Fraction(1, 200),
                     **dict.fromkeys(RATES, Fraction(1, 1000))}
        for name, value in figures.items():
            got = loaded[scope, product, month][name]
            assert marketplace_figures.same(got, value, tolerance.get(name, Fraction(0))), (
                scope, product, month, name, got, value)
    assert sum(f["churned_customers"] for (scope, _, _), f in expected.items() if scope == "app") > 0
    assert sum(f["churned_customers"] for (scope, _, _), f in expected.items() if scope == "all") > 0


def licenses_as_loaded() -> list[dict]:
    """The sandbox's licenses as tap-marketplace asks for them without a start date: with
    data insights from 2018-07-01, then without insights up to 2018-06-30 (a license in
    both keeps its first row), so a license that ended before July 2018 has no insights."""
    app = isv_sandbox.VENDORS["marketplace"][0](MarketplaceSettings(**SANDBOXES["marketplace"]))
    loaded: dict[str, dict] = {}
    for query in (Query(start="2018-07-01", insights=True), Query(end="2018-06-30")):
        for row in app.data.licenses(query):
            loaded.setdefault(marketplace_figures.license_ref(row), row)
    return list(loaded.values())


def check_evaluations(fetch: t.Callable[[str], list[tuple]], marts: str,
                      transactions: list[dict], licenses: list[dict]) -> dict[str, list[tuple]]:
    """Every evaluation and every cohort of evaluation-to-paid conversion, as computed in
    Python from the sandbox's license and transaction rows; return the marts."""
    evaluations = marketplace_figures.expected_evaluations(licenses, transactions, AS_OF)
    names = list(next(iter(evaluations.values())))
    loaded = {ref: dict(zip(names, figures)) for ref, *figures in fetch(
        f"select evaluation_ref, {', '.join(names)} from {marts}.fct_marketplace_evaluations")}
    assert set(loaded) == set(evaluations)
    for ref, figures in evaluations.items():
        for name, value in figures.items():
            assert marketplace_figures.same(loaded[ref][name], value), (ref, name, loaded[ref][name], value)
    converted = [e for e in evaluations.values() if e["is_converted"]]
    assert 0 < len(converted) < len(evaluations)

    cohorts = marketplace_figures.expected_conversion(evaluations)
    names = list(next(iter(cohorts.values())))
    loaded_cohorts = {(scope, product, month): dict(zip(names, figures)) for scope, product, month, *figures in fetch(
        f"select scope, product_id, evaluation_month, {', '.join(names)} "
        f"from {marts}.fct_marketplace_evaluation_conversion")}
    assert set(loaded_cohorts) == set(cohorts)
    for key, figures in cohorts.items():
        for name, value in figures.items():
            got = loaded_cohorts[key][name]
            assert marketplace_figures.same(got, value, Fraction(1, 2 * 10**6)), (key, name, got, value)
    return {mart: sorted((rows(fetch, f"select * from {marts}.{mart}")), key=repr)
            for mart in ("fct_marketplace_metrics_monthly", "fct_marketplace_evaluations",
                         "fct_marketplace_evaluation_conversion")}


def check_reconciliation(fetch: t.Callable[[str], list[tuple]], marts: str,
                         transactions: list[dict]) -> None:
    """The sandbox's sales and license-event reports are Atlassian's aggregates of its own
    rows: in every settled month from REPORTS_SINCE both sides of the reconciliation equal
    the counts and sums computed here from the transactions and events, so the warn test
    is quiet because they agree."""
    app = isv_sandbox.VENDORS["marketplace"][0](MarketplaceSettings(**SANDBOXES["marketplace"]))
    expected: Counter = Counter()
    for row in transactions:
        details = row["purchaseDetails"]
        month = month_of(dt.date.fromisoformat(details["saleDate"]))
        expected[row["productId"], month, "sales_count"] += 1
        expected[row["productId"], month, "sales_revenue"] += Decimal(str(details["vendorAmount"]))
    for kind, measure in (("churn", "churned_licenses"), ("conversion", "converted_licenses"),
                          ("renewal", "renewed_licenses")):
        for event in app.data.events(kind, Query()):
            expected[event["productId"], month_of(dt.date.fromisoformat(event["eventDate"])), measure] += 1
    settled = {(product, month, measure): (vendor, computed) for product, month, measure, vendor, computed in rows(
        fetch, f"select product_id, period_month, measure, vendor_figure, computed_figure "
               f"from {marts}.fct_marketplace_reconciliation where is_settled and vendor_figure is not null")}
    # Settled: the month ended at least reconciliation_settle_days (7) before the as-of day.
    last_settled = month_of(month_of(AS_OF - dt.timedelta(days=7)) - dt.timedelta(days=1))
    months, month = [], REPORTS_SINCE
    while month <= last_settled:
        months.append(month)
        month = next_month(month)
    measures = ("sales_count", "sales_revenue", "churned_licenses", "converted_licenses", "renewed_licenses")
    assert set(settled) == {(app["productId"], month, measure) for app in app.apps
                            for month in months for measure in measures}
    for key, (vendor, computed) in settled.items():
        assert vendor == computed == expected.get(key, 0), (key, vendor, computed, expected.get(key, 0))
    for measure in measures:
        assert sum(expected.get(key, 0) for key in settled if key[2] == measure) > 0, measure


def rows(fetch: t.Callable[[str], list[tuple]], sql: str) -> list[tuple]:
    return [tuple(Decimal(str(v)) if isinstance(v, float) else v for v in row) for row in fetch(sql)]


def check_marts(fetch: t.Callable[[str], list[tuple]], marts: str) -> dict[str, list[tuple]]:
    """Compare the marts with the sandbox's figures; return them for the other warehouse."""
    transactions, licenses = sandbox_rows()

    revenue, revenue_lines = expected_revenue(transactions)
    loaded = {(p, m): v for p, m, v in rows(fetch, f"select product_id, revenue_month, "
                                                   f"recognized_vendor_amount from {marts}.fct_marketplace_revenue_monthly")}
    assert set(loaded) == set(revenue)
    for key, exact in revenue.items():
        # A line's month is its rounded amount through the month's end less the rounded
        # amount through the month before: each rounding half a cent at most, so up to a
        # cent per line off the exact share.
        assert abs(Fraction(loaded[key]) - exact) <= Fraction(revenue_lines[key], 100), key
    for product in {p for p, _ in revenue}:
        total = sum(Decimal(str(r["purchaseDetails"]["vendorAmount"])) for r in transactions
                    if r["productId"] == product)
        assert sum(v for (p, _), v in loaded.items() if p == product) == total

    mrr, mrr_lines, movements = expected_mrr(transactions)
    kinds = ("new", "expansion", "contraction", "churn", "reactivation")
    loaded_mrr, loaded_movements = {}, {}
    for product, month, value, *amounts in rows(fetch, f"""
            select product_id, mrr_month, mrr, new_mrr, expansion_mrr, contraction_mrr,
                   churned_mrr, reactivation_mrr from {marts}.fct_marketplace_mrr"""):
        loaded_mrr[product, month] = value
        loaded_movements.update({(product, month, kind): amount for kind, amount in zip(kinds, amounts)})
    assert max(m for _, m in loaded_mrr) == month_of(AS_OF)
    assert any(v > 0 for v in loaded_mrr.values())
    for key in set(mrr) | set(loaded_mrr):
        assert abs(Fraction(loaded_mrr.get(key, 0)) - mrr.get(key, 0)) <= Fraction(mrr_lines[key], 200), key
    for (product, month, kind), amount in loaded_movements.items():
        before = (month - dt.timedelta(days=1)).replace(day=1)
        tolerance = Fraction(mrr_lines[product, month] + mrr_lines[product, before], 200)
        assert abs(Fraction(amount) - movements.get((product, month, kind), 0)) <= tolerance, (
            product, month, kind)
    assert sum(v for (_, _, kind), v in movements.items() if kind == "churn") < 0

    check_metrics(fetch, marts, transactions, licenses)

    states = expected_license_states(licenses)
    loaded_states = dict(fetch(f"select license_ref, license_state from {marts}.dim_marketplace_licenses"))
    assert loaded_states == states
    assert Counter(states.values())["active_paid"] > 0
    days = dict(fetch(f"select license_ref, days_to_expiry from {marts}.dim_marketplace_licenses"))
    for row in licenses:
        end = dt.date.fromisoformat(row["maintenanceEndDate"])
        assert days[marketplace_figures.license_ref(row)] == (end - AS_OF).days

    counts = {mart: fetch(f"select count(*) from {marts}.{mart}")[0][0] for mart in MARTS}
    assert all(counts.values()), counts
    heroku = dict(((p, r), n) for p, r, n in fetch(
        f"select plan, region, installs from {marts}.fct_heroku_installs_by_plan_region"))
    assert sum(heroku.values()) == SANDBOXES["heroku"]["apps"]
    assert counts["fct_isvapp_feature_usage_monthly"] == SANDBOXES["isvapp"]["export_rows_per_month"]

    check_reconciliation(fetch, marts, transactions)
    check_heroku_history(fetch, marts)

    isvapp = check_isvapp_marts(fetch, marts)

    metric_marts = check_evaluations(fetch, marts, transactions, licenses_as_loaded())

    return {
        "isvapp": isvapp,
        **metric_marts,
        "reconciliation": sorted(rows(fetch, f"select * from {marts}.fct_marketplace_reconciliation")),
        "revenue": sorted(rows(fetch, f"select * from {marts}.fct_marketplace_revenue_monthly")),
        "mrr": sorted(rows(fetch, f"select * from {marts}.fct_marketplace_mrr")),
        "licenses": sorted(rows(fetch, f"select license_ref, license_state, days_to_expiry, "
                                       f"lifetime_vendor_amount, current_mrr from {marts}.dim_marketplace_licenses")),
        "heroku": sorted(heroku.items()),
    }


def check_heroku_history(fetch: t.Callable[[str], list[tuple]], marts: str) -> None:
    """The chain loads Heroku in legacy mode, with no dates and no prices, and builds on
    one day: every listed install is provisioned from today on (docs/transform.md,
    "Heroku installs and add-on MRR"), and none has a price."""
    from isv_sandbox.heroku import HerokuSettings, generate_apps
    plans = Counter(app["plan"] for app in generate_apps(HerokuSettings(**SANDBOXES["heroku"])))
    today = dt.datetime.now(dt.UTC).date()
    daily = {(day, source, plan, state): (installs, backfilled) for day, source, plan, state, installs, backfilled
             in fetch(f"select install_day, source, plan, state, installs, backfilled_installs "
                      f"from {marts}.fct_heroku_installs_daily")}
    assert daily == {(today, "legacy", plan, "provisioned"): (n, 0) for plan, n in plans.items()}
    mrr = {plan: (n, priced, unpriced, Decimal(str(value))) for month, plan, n, priced, unpriced, value
           in fetch(f"select month_start, plan, provisioned_installs, priced_installs, unpriced_installs, mrr "
                    f"from {marts}.fct_heroku_addon_mrr_monthly") if month == today.replace(day=1)}
    assert mrr == {plan: (n, 0, n, Decimal(0)) for plan, n in plans.items()}
def check_isvapp_marts(fetch: t.Callable[[str], list[tuple]], marts: str) -> list[tuple]:
    """ISVapp health and adoption against the sandbox's accounts and its export rows: every
    build of a chain runs today, so each account's health has one day, today's scores; the
    export holds one month (the latest completed), so nothing in it is "new" yet."""
    app = isv_sandbox.VENDORS["isvapp"][0](IsvappSettings(**SANDBOXES["isvapp"]))
    app.storage.stop()  # only its generated rows are needed, not its file host
    health_rows = rows(fetch, f"select health_date, salesforce_account_id, primary_health_score, "
                              f"primary_health_score_label, lowest_health_score, average_health_score, "
                              f"health_scores from {marts}.fct_isvapp_account_health_daily")
    health = {account: (day, *figures) for day, account, *figures in health_rows}
    assert len(health) == len(health_rows)
    today = dt.datetime.now(dt.timezone.utc).date()
    for account in app.accounts:
        scores = [Decimal(s["score"]) for s in account["health_scores"]]
        primary = next(s for s in account["health_scores"] if s["is_primary"])
        average = (sum(scores) / len(scores)).quantize(Decimal("0.01"), rounding="ROUND_HALF_UP")
        assert health.pop(account["salesforce_id"]) == (
            today, Decimal(primary["score"]), primary["label"], min(scores), average, len(scores))
    assert health == {}

    items = [item for item in app.taxonomy_items if item["taxonomy_id"] == app.taxonomy[0]["id"]]
    export = {"_months": [LAST_MONTH], "_items": items, "_accounts": None}
    usage = [json.loads(line) for line in b"".join(app.export_lines(export)).splitlines()]
    level_of = {item["id"]: item["level_id"] for item in items}
    seen = Counter(level_of[item] for item in {r["taxonomy_item_id"] for r in usage if int(r["unique_users"])})
    expected: dict[tuple, list] = defaultdict(lambda: [0, 0, 0])
    for row in usage:
        figures = expected[row["salesforce_account_id"], level_of[row["taxonomy_item_id"]]]
        figures[0] += int(row["unique_users"]) > 0
        figures[1] = max(figures[1], int(row["unique_users"]))
        figures[2] += int(row["operations"])
    loaded = rows(fetch, f"select salesforce_account_id, taxonomy_level_id, usage_month, features_used, "
                         f"features_seen_to_date, feature_adoption_share, new_features_adopted, "
                         f"most_used_feature_users, operations from {marts}.fct_isvapp_feature_adoption_monthly")
    assert {(a, level): [used, users, operations] for a, level, _, used, _, _, _, users, operations in loaded} == expected
    for account, level, month, used, seen_to_date, share, new, *_ in loaded:
        assert month.isoformat()[:7] == LAST_MONTH and new is None
        assert seen_to_date == seen[level]
        assert share == (Decimal(used) / seen[level]).quantize(Decimal("0.0001"), rounding="ROUND_HALF_UP")
    return sorted(loaded)


RESULTS: dict[str, dict[str, list[tuple]]] = {}


def run_dbt_commands(project: Path, utility: str, env: dict[str, str]) -> None:
    """docs/transform.md's other commands, as written: the settings, and a build on its own."""
    listed = meltano(project, "config", "list", utility, env=env, timeout=120)
    assert listed.returncode == 0, (listed.stdout + listed.stderr)[-3000:]
    # Settings at their defaults are listed as hidden; the ones the test sets, by name.
    assert re.search(r"schema \[env: |settings with default values: [0-9]+ hidden", listed.stdout), listed.stdout
    built = meltano(project, "invoke", f"{utility}:build", env=env, timeout=600)
    output = built.stdout + built.stderr
    assert built.returncode == 0, output[-6000:]
    assert re.search(r"Done\. PASS=[1-9][0-9]* WARN=[0-9]+ ERROR=0 ", output), output[-6000:]


@pytest.mark.e2e
@pytest.mark.postgres
def test_taps_into_postgres_then_dbt_build(tmp_path: Path) -> None:
    connection = postgres_connection()
    project = fresh_clone(tmp_path)
    prefix = "dbt_chain"
    for schema in (f"{prefix}_analytics", f"{prefix}_analytics_staging",
                   f"{prefix}_analytics_snapshots",
                   *(f"{prefix}_{tap.replace('-', '_')}" for *_, tap in isv_sandbox.VENDORS.values())):
        connection.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
    env = base_env(
        TARGET_POSTGRES_DATABASE=PG["dbname"], TARGET_POSTGRES_PASSWORD="postgres",
        DBT_POSTGRES_DBNAME=PG["dbname"], DBT_POSTGRES_SCHEMA=f"{prefix}_analytics",
        DBT_MARKETPLACE_SCHEMA=f"{prefix}_tap_marketplace", DBT_ISVAPP_SCHEMA=f"{prefix}_tap_isvapp",
        DBT_HEROKU_SCHEMA=f"{prefix}_tap_heroku_vendor")
    run_chain(project, "target-postgres", env, lambda tap: f"{prefix}_{tap.replace('-', '_')}")
    run_dbt_commands(project, "dbt-postgres", env)

    def fetch(sql: str) -> list[tuple]:
        return connection.execute(sql).fetchall()

    RESULTS["postgres"] = check_marts(fetch, f"{prefix}_analytics")
    snapshot_rows = fetch(f"select count(*) from {prefix}_analytics_snapshots.snap_marketplace__licenses")[0][0]
    assert snapshot_rows == len(sandbox_rows()[1])


@pytest.mark.e2e
def test_taps_into_duckdb_then_dbt_build(tmp_path: Path) -> None:
    """The documented commands in a fresh clone with nothing set for dbt or the loader:
    target-duckdb writes output/warehouse.duckdb (the folder is in the clone) and
    dbt-duckdb reads it (its default path)."""
    duckdb = pytest.importorskip("duckdb")
    project = fresh_clone(tmp_path)
    database = project / "output" / "warehouse.duckdb"
    env = {name: value for name, value in base_env().items()
           if not name.startswith(("DBT_DUCKDB_", "TARGET_DUCKDB_"))}

    def only_marketplace_loaded(vendor: str) -> None:
        if vendor != "marketplace":
            return
        with duckdb.connect(str(database), read_only=True) as db:
            for mart in MARTS:
                count = db.execute(f"select count(*) from analytics.{mart}").fetchone()[0]
                assert (count > 0) == mart.startswith(("fct_marketplace", "dim_marketplace")), mart

    run_chain(project, "target-duckdb", env, after_dbt=only_marketplace_loaded)
    run_dbt_commands(project, "dbt-duckdb", env)
    with duckdb.connect(str(database), read_only=True) as db:
        def fetch(sql: str) -> list[tuple]:
            return db.execute(sql).fetchall()

        RESULTS["duckdb"] = check_marts(fetch, "analytics")
        snapshot_rows = fetch("select count(*) from analytics_snapshots.snap_marketplace__transactions")[0][0]
        assert snapshot_rows == SANDBOXES["marketplace"]["transactions"]
    if "postgres" in RESULTS:
        # The same data through both loaders and adapters: the same marts, to the cent.
        assert RESULTS["duckdb"] == RESULTS["postgres"]
