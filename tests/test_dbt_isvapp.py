"""ISVapp account health over time and feature adoption per subscriber (docs/transform.md,
"ISVapp account health and feature adoption").

ISVapp sends only each account's current health scores, so their history is what the
snapshot `snap_isvapp__account_health_scores` records build after build. Here a small
scenario is written into DuckDB and PostgreSQL the way the loaders write tap-isvapp's
tables (`salesforce_accounts` with its nested arrays as JSON, `taxonomy_item_usage` with
the export's fields), and `dbt build` runs four times: three with the scores changed
between them (a score changed, removed, back again, a primary score switched, an account
added, an account whose scores all went), and one with nothing changed.

The builds cannot run on different days, so after each build the test moves the
timestamps that build wrote into the snapshot (dbt_valid_from, dbt_valid_to,
dbt_updated_at) back to the day the build stands for, as if it had run then. The two
last scenario builds stand for the same day (morning and evening): only the evening's
scores hold at that day's end.

The marts are compared with figures computed here from the scenario alone: the health of
each account on each day is the state of the last build on or before that day (no SCD
logic), and adoption is counted from the usage rows; both warehouses give the same rows.
"""

from __future__ import annotations

import copy
import datetime as dt
import json
from collections import defaultdict
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path

import pytest

from dbt_warehouse import ScenarioWarehouse

SCHEMA = "isvh_tap_isvapp"
MARTS = "isvh_analytics"
SNAPSHOT = f"{MARTS}_snapshots.snap_isvapp__account_health_scores"
TODAY = dt.date.today()


def score(label: str, value: str | None, primary: bool = False) -> dict:
    return {"score": None if value is None else float(value), "is_primary": primary, "label": label}


# The scores ISVapp sends at each build: (when the build stands for, account -> scores).
# None: the account is listed without health_scores; an account not listed is not sent.
BUILD_1 = {
    "0014x000000000001AAA": [score("Overall health", "72", True), score("Adoption", "40"),
                             score("Support", "55.5")],
    "0014x000000000002AAA": [score("Overall health", "90", True), score("Adoption", "33.25")],
    "0014x000000000004AAA": None,
}
BUILD_2 = copy.deepcopy(BUILD_1)
BUILD_2["0014x000000000001AAA"] = [score("Overall health", "65", True), score("Support", "55.5")]
BUILD_2["0014x000000000002AAA"] = [score("Overall health", "90"), score("Adoption", "33.25", True)]
BUILD_2["0014x000000000003AAA"] = [score("Overall health", "10", True), score("Support", "11"),
                                   score("Adoption", "12")]
BUILD_3_MORNING = copy.deepcopy(BUILD_2)
BUILD_3_MORNING["0014x000000000001AAA"] = [score("Overall health", "80", True), score("Support", "55.5"),
                                           score("Adoption", "45")]
BUILD_3_MORNING["0014x000000000002AAA"] = []
BUILD_3_EVENING = copy.deepcopy(BUILD_3_MORNING)
BUILD_3_EVENING["0014x000000000001AAA"][0] = score("Overall health", "81", True)
BUILD_3_EVENING["0014x000000000003AAA"][1] = score("Support", "12.5")
BUILDS = [
    (dt.datetime.combine(TODAY - dt.timedelta(days=9), dt.time(6)), BUILD_1),
    (dt.datetime.combine(TODAY - dt.timedelta(days=6), dt.time(6)), BUILD_2),
    (dt.datetime.combine(TODAY - dt.timedelta(days=3), dt.time(7)), BUILD_3_MORNING),
    (dt.datetime.combine(TODAY - dt.timedelta(days=3), dt.time(19)), BUILD_3_EVENING),
]
NAMES = {"0014x000000000001AAA": "Acme", "0014x000000000002AAA": "Globex",
         "0014x000000000003AAA": "Initech", "0014x000000000004AAA": "Umbrella"}

# Taxonomies: (taxonomy, level) -> items. Two levels of the main product's taxonomy and
# an add-on's taxonomy with one level.
LEVELS = {("T-main", "L-area"): ("Main Product Taxonomy", "Product Area"),
          ("T-main", "L-feature"): ("Main Product Taxonomy", "Feature"),
          ("T-addon", "L-addon"): ("Add-on Taxonomy", "Feature")}
ITEMS = {"P1": ("T-main", "L-area"), "P2": ("T-main", "L-area"),
         "F1": ("T-main", "L-feature"), "F2": ("T-main", "L-feature"),
         "F3": ("T-main", "L-feature"), "F4": ("T-main", "L-feature"),
         "X1": ("T-addon", "L-addon"), "X2": ("T-addon", "L-addon")}
A1, A2, A3 = "0014x000000000001AAA", "0014x000000000002AAA", "0014x000000000003AAA"
# (month, account, item, users, operations, internal operations); None: the export's cell empty.
USAGE_FIRST_LOAD = [
    ("2026-07", A1, "P1", 5, 50, 10),
    ("2026-07", A1, "F1", 5, 50, 10),
    ("2026-07", A1, "F2", 0, 0, 0),          # a row without use: not a feature used
    ("2026-08", A1, "P1", 6, 61, 0),
    ("2026-08", A1, "F1", 4, 31, 0),
    ("2026-08", A1, "F2", 3, 30, 30),
    ("2026-08", A2, "P2", 2, 9, 1),
    ("2026-08", A2, "F4", None, 7, None),    # operations without a user count: used
    ("2026-08", A2, "F1", 2, 2, 1),
    ("2026-09", A2, "F4", 1, 1, 0),          # A1 has no rows in September: no use
]
USAGE_SECOND_LOAD = [                        # October arrives with the second build
    ("2026-10", A1, "F3", 2, 20, 5),
    ("2026-10", A1, "F1", 1, 1, 1),
    ("2026-10", A1, "X1", 3, 12, 2),         # the add-on's first month
    ("2026-10", A2, "F4", 9, 90, 45),
    ("2026-10", A2, "F2", 1, 4, 4),
    ("2026-10", A3, "X2", 4, None, None),    # users without operations: used
    ("2026-10", A3, "F1", 0, 0, 0),          # A3's only main-taxonomy row: unused
]


class IsvappWarehouse(ScenarioWarehouse):
    def reset(self) -> None:
        for schema in (SCHEMA, MARTS, f"{MARTS}_staging", f"{MARTS}_snapshots"):
            self.run(f"drop schema if exists {schema} cascade")

    def load(self, accounts: dict[str, list[dict] | None], usage: list[tuple]) -> None:
        """tap-isvapp's two tables, replaced as a full-table and an incremental load leave them."""
        run, js = self.run, self.json()
        run(f"drop schema if exists {SCHEMA} cascade")
        run(f"create schema {SCHEMA}")
        run(f"create table {SCHEMA}.salesforce_accounts (salesforce_id text, isvapp_id text, name text, "
            f"health_scores {js}, subscriber_orgs {js})")
        for account, scores in accounts.items():
            orgs = [{"name": f"{NAMES[account]} production", "salesforce_id": "00D" + account[-12:]}]
            run(f"insert into {SCHEMA}.salesforce_accounts values (?, ?, ?, cast(? as {js}), cast(? as {js}))",
                [account, f"isvapp-{account[-4:]}", NAMES[account],
                 None if scores is None else json.dumps(scores), json.dumps(orgs)])
        run(f"create table {SCHEMA}.taxonomy_item_usage (reference_date text, salesforce_account_id text, "
            "taxonomy_item_id text, type text, aggregation text, salesforce_account_name text, "
            "taxonomy_id text, taxonomy_label text, taxonomy_level_id text, taxonomy_level_label text, "
            "taxonomy_item_label text, taxonomy_item_parent_item_id text, unique_users bigint, "
            "unique_users_external bigint, unique_users_internal bigint, operations bigint, "
            "operations_external bigint, operations_internal bigint)")
        for month, account, item, users, operations, internal in usage:
            taxonomy, level = ITEMS[item]
            taxonomy_label, level_label = LEVELS[taxonomy, level]
            external = None if operations is None or internal is None else operations - internal
            run(f"insert into {SCHEMA}.taxonomy_item_usage values "
                "(?, ?, ?, 'TAXONOMY_ITEM', 'MONTHLY', ?, ?, ?, ?, ?, ?, null, ?, ?, ?, ?, ?, ?)",
                [month, account, item, f"Account {account[-4:]}", taxonomy, taxonomy_label, level,
                 level_label, f"Item {item}", users, None if users is None else users // 2,
                 None if users is None else users - users // 2, operations, external, internal])

    def build(self) -> str:
        run = self.dbt_build(["+fct_isvapp_account_health_daily+", "+fct_isvapp_feature_adoption_monthly+"],
                             {"isvapp_schema": SCHEMA}, cautious=True)
        assert " WARN=0 ERROR=0 " in run.stdout, run.stdout[-6000:]
        return run.stdout

    def backdate_snapshot(self, when: dt.datetime) -> None:
        """What the last build wrote into the snapshot (timestamps after every simulated
        one) is dated `when` instead, as if that build had run then."""
        cutoff = dt.datetime.combine(TODAY - dt.timedelta(days=1), dt.time())
        for column in ("dbt_valid_from", "dbt_valid_to", "dbt_updated_at"):
            self.run(f"update {SNAPSHOT} set {column} = cast(? as timestamp) where {column} > cast(? as timestamp)",
                     [when.isoformat(sep=" "), cutoff.isoformat(sep=" ")])


# -- the figures, computed from the scenario --------------------------------------------


def cents(value: Decimal) -> Decimal:
    return value.quantize(Decimal("0.01"), rounding=ROUND_HALF_UP)


def expected_health() -> dict[tuple[dt.date, str], tuple]:
    """(day, account) -> (primary score, its label, change, lowest, average, count): the
    state the last build of the day or before saw, from the first day with a score to today."""
    def state_at(day: dt.date) -> dict:
        states = [accounts for when, accounts in BUILDS if when.date() <= day]
        return states[-1] if states else {}

    first_day: dict[str, dt.date] = {}
    for when, accounts in BUILDS:
        for account, scores in accounts.items():
            if scores:
                first_day.setdefault(account, when.date())
    expected = {}
    for account, first in first_day.items():
        previous = None
        for offset in range((TODAY - first).days + 1):
            day = first + dt.timedelta(days=offset)
            scores = state_at(day).get(account) or []
            values = [Decimal(str(s["score"])) for s in scores if s["score"] is not None]
            primaries = sorted((s for s in scores if s["is_primary"]), key=lambda s: s["label"])
            primary = Decimal(str(primaries[0]["score"])) if primaries else None
            change = primary - previous if primary is not None and previous is not None and offset else None
            expected[day, account] = (
                primary, primaries[0]["label"] if primaries else None, change,
                min(values) if values else None,
                cents(sum(values) / len(values)) if values else None, len(scores))
            previous = primary
    return expected


def month_start(month: str) -> dt.date:
    return dt.date.fromisoformat(month + "-01")


def months_between(first: dt.date, last: dt.date) -> list[dt.date]:
    months = []
    while first <= last:
        months.append(first)
        first = (first + dt.timedelta(days=32)).replace(day=1)
    return months


def expected_adoption(usage: list[tuple]) -> dict[tuple, tuple]:
    """(month, account, taxonomy, level) -> (features used, seen to date, share, used to
    date, new, most used feature's users, operations, internal, external)."""
    def used(row: tuple) -> bool:
        return bool(row[3]) or bool(row[4])

    rows_of = defaultdict(list)
    for row in usage:
        rows_of[ITEMS[row[2]]].append(row)
    last_month = {taxonomy: max(month_start(r[0]) for r in usage if ITEMS[r[2]][0] == taxonomy)
                  for taxonomy, _ in rows_of}
    expected = {}
    for level, rows in rows_of.items():
        level_months = months_between(min(month_start(r[0]) for r in rows), last_month[level[0]])
        for account in {r[1] for r in rows}:
            mine = [r for r in rows if r[1] == account]
            for month in level_months:
                if month < min(month_start(r[0]) for r in mine):
                    continue
                this = [r for r in mine if month_start(r[0]) == month]
                used_now = {r[2] for r in this if used(r)}
                used_before = {r[2] for r in mine if used(r) and month_start(r[0]) < month}
                seen = {r[2] for r in rows if used(r) and month_start(r[0]) <= month}
                share = (Decimal(len(used_now)) / len(seen)).quantize(Decimal("0.0001"), ROUND_HALF_UP) if seen else None
                new = len(used_now - used_before) if month > level_months[0] else None
                expected[month, account, *level] = (
                    len(used_now), len(seen), share, len(used_now | used_before), new,
                    max((r[3] for r in this if r[3] is not None), default=0),
                    sum(r[4] or 0 for r in this), sum(r[5] or 0 for r in this),
                    sum((r[4] - r[5]) for r in this if r[4] is not None and r[5] is not None))
    return expected


# -- the marts ----------------------------------------------------------------------------


def decimal(value: object) -> Decimal | None:
    return None if value is None else Decimal(str(value))


def health_rows(warehouse: IsvappWarehouse) -> dict[tuple[dt.date, str], tuple]:
    rows = warehouse.run(
        "select health_date, salesforce_account_id, account_name, primary_health_score, "
        "primary_health_score_label, primary_health_score_change, lowest_health_score, "
        f"average_health_score, health_scores from {MARTS}.fct_isvapp_account_health_daily", read=True)
    loaded = {}
    for day, account, name, primary, label, change, lowest, average, count in rows:
        assert name == NAMES[account]
        loaded[day, account] = (decimal(primary), label, decimal(change), decimal(lowest), decimal(average), count)
    return loaded


def adoption_rows(warehouse: IsvappWarehouse) -> dict[tuple, tuple]:
    rows = warehouse.run(
        "select usage_month, salesforce_account_id, taxonomy_id, taxonomy_level_id, account_name, "
        "taxonomy_label, taxonomy_level_label, features_used, features_seen_to_date, feature_adoption_share, "
        "features_used_to_date, new_features_adopted, most_used_feature_users, operations, "
        f"operations_internal, operations_external from {MARTS}.fct_isvapp_feature_adoption_monthly", read=True)
    loaded = {}
    for month, account, taxonomy, level, name, taxonomy_label, level_label, *figures in rows:
        assert name == NAMES[account]
        assert (taxonomy_label, level_label) == LEVELS[taxonomy, level]
        figures[2] = decimal(figures[2])
        loaded[month, account, taxonomy, level] = tuple(figures)
    return loaded


RESULTS: dict[str, tuple] = {}


@pytest.mark.postgres
@pytest.mark.parametrize("kind", ["duckdb", "postgres"])
def test_health_history_and_feature_adoption(kind: str, tmp_path: Path) -> None:
    warehouse = IsvappWarehouse(kind, tmp_path, MARTS)
    warehouse.reset()
    for number, (when, accounts) in enumerate(BUILDS):
        warehouse.load(accounts, USAGE_FIRST_LOAD + (USAGE_SECOND_LOAD if number else []))
        warehouse.build()
        warehouse.backdate_snapshot(when)
    versions = warehouse.run(f"select count(*) from {SNAPSHOT}", read=True)[0][0]
    # A build on the same data adds no version; the marts are rebuilt on the backdated history.
    warehouse.build()
    assert warehouse.run(f"select count(*) from {SNAPSHOT}", read=True)[0][0] == versions

    health = health_rows(warehouse)
    expected = expected_health()
    assert health == expected
    # The history is really there: Acme's primary score on each scenario day, and the
    # morning's 80 never held at a day's end.
    acme = {day: row[0] for (day, account), row in health.items() if account == A1}
    assert [acme[when.date()] for when, _ in BUILDS] == [Decimal(72), Decimal(65), Decimal(81), Decimal(81)]
    assert Decimal(80) not in acme.values()
    assert health[BUILDS[1][0].date(), A1][2] == Decimal(-7)
    assert health[TODAY, "0014x000000000002AAA"] == (None, None, None, None, None, 0)
    # Versions: 3 + 2 (build 1); Acme's Overall 65, Globex's two (primary switched) and
    # Initech's three (build 2); Acme's Overall 80 and Adoption 45 (morning), Acme's 81
    # and Initech's Support 12.5 (evening).
    assert versions == 5 + 1 + 2 + 3 + 2 + 2

    adoption = adoption_rows(warehouse)
    assert adoption == expected_adoption(USAGE_FIRST_LOAD + USAGE_SECOND_LOAD)
    # Acme in the main product's Feature level: September without rows is 0, October
    # adds F3 (new) and the level then knows F1-F4.
    october = adoption[dt.date(2026, 10, 1), A1, "T-main", "L-feature"]
    assert october[:5] == (2, 4, Decimal("0.5000"), 3, 1)
    assert adoption[dt.date(2026, 9, 1), A1, "T-main", "L-feature"][:2] == (0, 3)
    assert adoption[dt.date(2026, 10, 1), A1, "T-addon", "L-addon"][4] is None
    # Nobody used a product area after August: the level still has its zero months up to
    # the taxonomy's last month.
    assert adoption[dt.date(2026, 10, 1), A1, "T-main", "L-area"][:4] == (0, 2, Decimal("0.0000"), 1)

    RESULTS[kind] = (sorted(health.items()), sorted(adoption.items()))
    if len(RESULTS) == 2:
        assert RESULTS["duckdb"] == RESULTS["postgres"]
