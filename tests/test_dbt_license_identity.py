"""One license, one reference for its whole life, on rows shaped like the real API's.

Atlassian adds identifiers to licenses over time: Data Center licenses got entitlement
numbers in 2025, cloud rows carry entitlement numbers and UUIDs (older ones an add-on
license id too), cloud license events put the entitlement number in ``licenseId``, a
cloud migration trial names its Server license in ``cmtDetails.relatedOnPremLicense``.
The sandbox serves exactly these rows (no generated ones); the documented command
(``meltano run tap-marketplace target-duckdb dbt-duckdb:build``) loads them in a fresh
clone, and each case checks that its rows are one license with the reference the rule in
docs/transform.md gives, and that its MRR moves only where the money does. The same rows
check the closed-books var (both ways) and the monthly metrics mart.
"""

from __future__ import annotations

import datetime as dt
import re
import typing as t
import uuid
from decimal import Decimal
from fractions import Fraction
from pathlib import Path

import pytest

import isv_sandbox
from helpers import REPO
from isv_sandbox.meltano import meltano_env as sandbox_meltano_env
from test_dbt_chain import base_env, fresh_clone, meltano

AS_OF = "2025-06-30"
SANDBOX = {"licenses": 0, "transactions": 0, "events_per_kind": 0, "feedback": 0,
           "attributions": 0, "reviews_per_app": 1, "members": 1, "apps": 3}


def entitlement_id(number: int) -> str:
    return str(uuid.UUID(int=number, version=4))


def license_row(app: dict, ids: dict, hosting: str, start: str, end: str, **fields: t.Any) -> dict:
    return {**ids, "addonKey": app["appKey"], "productId": app["productId"], "addonName": app["appName"],
            "hosting": hosting, "licenseType": "COMMERCIAL", "status": "active", "tier": "25 Users",
            "lastUpdated": start, "maintenanceStartDate": start, "maintenanceEndDate": end,
            "licenseSourceType": "Non-Atlassian",
            "contactDetails": {"company": f"Company {ids}", "country": "Germany", "region": "EMEA",
                               "technicalContact": {"email": "admin@company.test"}},
            **fields}


def line(app: dict, line_id: str, ids: dict, hosting: str, sale_type: str, start: str, end: str,
         amount: float, billing: str = "Annual", sale: str | None = None) -> dict:
    return {"transactionId": f"AT-{line_id}", "transactionLineItemId": line_id, **ids,
            "addonKey": app["appKey"], "productId": app["productId"], "addonName": app["appName"],
            "lastUpdated": sale or start, "paymentStatus": "Paid",
            "customerDetails": {"company": "Company", "country": "Germany", "region": "EMEA"},
            "purchaseDetails": {"saleDate": sale or start, "licenseType": "COMMERCIAL", "hosting": hosting,
                                "billingPeriod": billing, "tier": "25 Users", "purchasePrice": amount,
                                "vendorAmount": amount, "saleType": sale_type,
                                "maintenanceStartDate": start, "maintenanceEndDate": end}}


def event(app: dict, day: str, details: dict) -> dict:
    return {"addonKey": app["appKey"], "productId": app["productId"], "addonName": app["appName"],
            "hosting": "Cloud", "appEdition": "Standard", "lastUpdated": day, "eventDate": day,
            "transactionId": f"IN-EU-{day}", "licenseDetails": details}


def scenario(apps: list[dict]) -> dict[str, list[dict]]:
    """The rows of the four cases; app 0 holds only the Data Center license (its app
    figures are that license's), app 1 the migration, app 2 the rest."""
    dc_app, migration_app, other_app = apps
    # 1. A Data Center license whose renewal, after 2025, carries appEntitlementNumber.
    dc_sen = {"licenseId": "SEN-3100015", "addonLicenseId": "3100015"}
    dc_now = {**dc_sen, "appEntitlementNumber": "E-8DC-3100015", "appEntitlementId": entitlement_id(3100015)}
    # 2. A Server license whose lines carry only addonLicenseId (one also the SEN).
    server_ids = {"addonLicenseId": "3100020"}
    # 3. A cloud license: entitlement number and UUID; an older line also carries an
    #    add-on license id; its events carry the entitlement number as licenseId.
    cloud = {"appEntitlementNumber": "E-4AB-3300001", "appEntitlementId": entitlement_id(3300001)}
    # 4. A Server license migrated to cloud: the cloud license's migration trial names it.
    on_prem = {"licenseId": "SEN-3200001", "addonLicenseId": "3200001"}
    migrated = {"appEntitlementNumber": "E-4AB-3200002", "appEntitlementId": entitlement_id(3200002)}
    return {
        "licenses": [
            license_row(dc_app, dc_now, "Data Center", "2025-04-01", "2026-04-01"),
            license_row(other_app, server_ids, "Server", "2024-05-01", "2025-11-01"),
            license_row(other_app, cloud, "Cloud", "2025-06-10", "2025-07-10"),
            license_row(migration_app, on_prem, "Server", "2023-06-01", "2024-06-01", status="inactive"),
            license_row(migration_app, migrated, "Cloud", "2024-06-01", "2025-06-01",
                        cmtDetails={"status": "converted", "relatedOnPremLicense": "SEN-3200001"}),
        ],
        "transactions": [
            line(dc_app, "dc-1", dc_sen, "Data Center", "New", "2024-04-01", "2025-04-01", 1200.00),
            line(dc_app, "dc-2", dc_now, "Data Center", "Renewal", "2025-04-01", "2026-04-01", 1200.00),
            line(other_app, "server-1", server_ids, "Server", "New", "2024-05-01", "2024-11-01", 600.00),
            line(other_app, "server-2", {**server_ids, "licenseId": "SEN-3100020"}, "Server", "Renewal",
                 "2024-11-01", "2025-11-01", 1200.00),
            line(other_app, "cloud-1", cloud, "Cloud", "New", "2025-03-10", "2025-04-10", 50.00, "Monthly"),
            line(other_app, "cloud-2", {**cloud, "addonLicenseId": "3300001"}, "Cloud", "Renewal",
                 "2025-04-10", "2025-05-10", 50.00, "Monthly"),
            line(other_app, "cloud-3", cloud, "Cloud", "Renewal", "2025-05-10", "2025-06-10", 50.00, "Monthly"),
            line(other_app, "cloud-4", cloud, "Cloud", "Renewal", "2025-06-10", "2025-07-10", 50.00, "Monthly"),
            line(migration_app, "onprem-1", on_prem, "Server", "New", "2023-06-01", "2024-06-01", 1200.00),
            line(migration_app, "migrated-1", migrated, "Cloud", "New", "2024-06-01", "2025-06-01", 1800.00),
            # Closed books: a retroactive purchase (sold in March for a period from January)
            # and a refund issued in May for a period that began in April.
            *(line(other_app, line_id, {"licenseId": f"SEN-{number}", "addonLicenseId": str(number)},
                   "Server", sale_type, start, end, amount, sale=sale)
              for line_id, number, sale_type, start, end, amount, sale in RETROACTIVE_LINES),
        ],
        "conversion": [event(other_app, "2025-03-10", {"licenseId": cloud["appEntitlementNumber"], **cloud,
                                                       "maintenanceStartDate": "2025-03-10",
                                                       "maintenanceEndDate": "2025-04-10", "monthsValid": 1})],
        "renewal": [event(other_app, "2025-04-10", {"licenseId": cloud["appEntitlementNumber"], **cloud,
                                                    "maintenanceStartDate": "2025-04-10",
                                                    "maintenanceEndDate": "2025-05-10", "monthsValid": 1})],
    }


#: (line, license number, sale type, period start, period end, vendor amount, sale day)
RETROACTIVE_LINES = (
    ("retro-1", 3100030, "New", "2025-01-01", "2026-01-01", 1200.00, "2025-03-15"),
    ("late-1", 3100040, "New", "2025-04-01", "2025-07-01", 300.00, "2025-04-01"),
    ("late-refund", 3100040, "Refund", "2025-04-01", "2025-07-01", -300.00, "2025-05-20"),
)


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh clone with the scenario loaded and the marts built (closed_books unset)."""
    project = fresh_clone(tmp_path_factory.mktemp("identity"))
    with isv_sandbox.start("marketplace", **SANDBOX) as server:
        for kind, rows in scenario(server.app.apps).items():
            server.app.data.add(kind, rows)
        run = meltano(project, "run", "tap-marketplace", "target-duckdb", "dbt-duckdb:build",
                      env=sandbox_meltano_env(REPO, "tap-marketplace", server.app.tap_config(),
                                              base_env(DBT_AS_OF_DATE=AS_OF)), timeout=900)
    output = run.stdout + run.stderr
    assert run.returncode == 0, output[-6000:]
    assert re.search(r"Done\. PASS=[1-9][0-9]* WARN=[0-9]+ ERROR=0 ", output), output[-6000:]
    return project


@pytest.fixture
def marts(project: Path) -> t.Callable[[str], list[tuple]]:
    duckdb = pytest.importorskip("duckdb")

    def fetch(sql: str) -> list[tuple]:
        # A connection per query: dbt writes the file between tests.
        with duckdb.connect(str(project / "output" / "warehouse.duckdb"), read_only=True) as db:
            return db.execute(sql).fetchall()
    return fetch


def license_of(fetch: t.Callable[[str], list[tuple]], ref: str) -> tuple:
    rows = fetch(f"select license_ref, hosting, lifetime_vendor_amount, transaction_line_items "
                 f"from analytics.dim_marketplace_licenses where license_ref = '{ref}'")
    assert len(rows) == 1, rows
    return rows[0]


def movements(fetch: t.Callable[[str], list[tuple]], ref: str) -> dict[str, tuple[Decimal, str]]:
    return {month.isoformat()[:7]: (Decimal(str(mrr)), movement) for month, mrr, movement in fetch(
        f"select month_start, mrr, movement_type from analytics_staging.int_marketplace__license_mrr_months "
        f"where license_ref = '{ref}' order by month_start")}


def all_refs(fetch: t.Callable[[str], list[tuple]]) -> set[str]:
    return {ref for (ref,) in fetch("select license_ref from analytics.dim_marketplace_licenses")} | {
        ref for (ref,) in fetch("select distinct license_ref from analytics_staging.int_marketplace__license_mrr_months")}


def test_data_center_license_gaining_an_entitlement_number_stays_one_license(marts) -> None:
    assert license_of(marts, "SEN-3100015")[1:] == ("Data Center", Decimal("2400.00"), 2)
    assert "E-8DC-3100015" not in all_refs(marts)
    by_month = movements(marts, "SEN-3100015")
    # The same-price renewal in April 2025 is no movement.
    assert by_month["2025-03"] == (Decimal("100.00"), "unchanged")
    assert by_month["2025-04"] == (Decimal("100.00"), "unchanged")
    assert by_month["2024-04"][1] == "new"
    # The app holds only this license: its April has no new and no churned MRR.
    new, churned, mrr = marts("select new_mrr, churned_mrr, mrr from analytics.fct_marketplace_mrr "
                              "where mrr_month = date '2025-04-01' and product_id = "
                              "(select product_id from analytics.dim_marketplace_licenses "
                              "where license_ref = 'SEN-3100015')")[0]
    assert (Decimal(str(new)), Decimal(str(churned)), Decimal(str(mrr))) == (0, 0, Decimal("100.00"))


def test_server_lines_with_only_an_addon_license_id_are_the_license(marts) -> None:
    assert license_of(marts, "SEN-3100020")[1:] == ("Server", Decimal("1800.00"), 2)
    by_month = movements(marts, "SEN-3100020")
    assert by_month["2024-10"] == (Decimal("100.00"), "unchanged")
    assert by_month["2024-11"] == (Decimal("100.00"), "unchanged")


def test_cloud_license_with_entitlement_numbers_is_one_license_with_its_events(marts) -> None:
    # A line carries addonLicenseId too: the SEN is the oldest kind, so it is the reference.
    assert license_of(marts, "SEN-3300001")[1:] == ("Cloud", Decimal("200.00"), 4)
    assert not {"E-4AB-3300001", entitlement_id(3300001)} & all_refs(marts)
    by_month = movements(marts, "SEN-3300001")
    assert [by_month[m] for m in ("2025-03", "2025-04", "2025-05", "2025-06")] == [
        (Decimal("50.00"), "new"), (Decimal("50.00"), "unchanged"),
        (Decimal("50.00"), "unchanged"), (Decimal("50.00"), "unchanged")]
    events = marts("select event_type, license_ref, license_found from analytics.fct_marketplace_license_events "
                   "order by event_date")
    assert events == [("conversion", "SEN-3300001", True), ("renewal", "SEN-3300001", True)]


def test_server_license_migrated_to_cloud_is_linked(marts) -> None:
    # The cloud license (the later one) describes it; its lifetime holds both sales.
    assert license_of(marts, "SEN-3200001")[1:] == ("Cloud", Decimal("3000.00"), 2)
    assert "E-4AB-3200002" not in all_refs(marts)
    by_month = movements(marts, "SEN-3200001")
    # The move to cloud at a higher price is expansion, not churn and a new customer.
    assert by_month["2024-05"] == (Decimal("100.00"), "unchanged")
    assert by_month["2024-06"] == (Decimal("150.00"), "expansion")
    app_month = marts("select new_mrr, expansion_mrr, churned_mrr from analytics.fct_marketplace_mrr "
                      "where mrr_month = date '2024-06-01' and product_id = "
                      "(select product_id from analytics.dim_marketplace_licenses where license_ref = 'SEN-3200001')")
    assert [tuple(Decimal(str(v)) for v in row) for row in app_month] == [(0, Decimal("50.00"), 0)]


def recognised_by_day(amount: str, start: str, end: str) -> dict[dt.date, Decimal]:
    """The line's amount by month, spread over the days of [start, end), each month's cents
    the rounded amount through its end less the rounded amount through the month before
    (docs/transform.md)."""
    first, last = dt.date.fromisoformat(start), dt.date.fromisoformat(end)
    cents, days = int(Decimal(amount) * 100), (last - first).days
    shares, month, through, booked = {}, first.replace(day=1), 0, 0
    while month < last:
        following = (month + dt.timedelta(days=32)).replace(day=1)
        through += (min(last, following) - max(first, month)).days
        # Half away from zero, in whole cents: a refund mirrors its sale.
        rounded = (1 if cents >= 0 else -1) * ((2 * abs(cents) * through + days) // (2 * days))
        shares[month] = Decimal(rounded - booked) / 100
        booked, month = rounded, following
    return shares


def expected_revenue(closed_books: bool) -> dict[tuple[str, dt.date], Decimal]:
    expected: dict[tuple[str, dt.date], Decimal] = {}
    for line_id, _, _, start, end, amount, sale in RETROACTIVE_LINES:
        sale_month = dt.date.fromisoformat(sale).replace(day=1)
        for month, share in recognised_by_day(str(amount), start, end).items():
            month = max(month, sale_month) if closed_books else month
            expected[line_id, month] = expected.get((line_id, month), Decimal(0)) + share
    return expected


def loaded_revenue(marts: t.Callable[[str], list[tuple]]) -> dict[tuple[str, dt.date], Decimal]:
    ids = ", ".join(f"'{line_id}'" for line_id, *_ in RETROACTIVE_LINES)
    return {(line_id, month): Decimal(str(amount)) for line_id, month, amount in marts(
        f"select transaction_line_item_id, revenue_month, recognized_vendor_amount "
        f"from analytics_staging.int_marketplace__transaction_revenue_months "
        f"where transaction_line_item_id in ({ids})")}


def test_revenue_restates_past_months_by_default(marts) -> None:
    expected = expected_revenue(closed_books=False)
    assert loaded_revenue(marts) == expected
    # The retroactive purchase puts revenue in January and February, before its sale.
    assert expected["retro-1", dt.date(2025, 1, 1)] > 0


def test_closed_books_book_earlier_shares_in_the_sale_month(project: Path, marts) -> None:
    built = meltano(project, "invoke", "dbt-duckdb:build",
                    env=base_env(DBT_AS_OF_DATE=AS_OF, DBT_CLOSED_BOOKS="true"), timeout=900)
    assert built.returncode == 0, (built.stdout + built.stderr)[-6000:]
    expected = expected_revenue(closed_books=True)
    assert loaded_revenue(marts) == expected
    assert not any(month < dt.date(2025, 3, 1) for line_id, month in expected if line_id == "retro-1")
    # The refund's April share moves to May, its sale month; the sale keeps April.
    assert ("late-refund", dt.date(2025, 4, 1)) not in expected
    assert expected["late-1", dt.date(2025, 4, 1)] > 0
    # Every line still adds up to its amount.
    for line_id, *_, amount, _ in RETROACTIVE_LINES:
        assert sum(v for (i, _), v in expected.items() if i == line_id) == Decimal(str(amount))


def customer_mrr(lines: list[tuple[str, str, float]]) -> dict[dt.date, Fraction]:
    """One customer's MRR by month up to the as-of month: each line's amount over the month
    ends its period [start, end) holds."""
    as_of_month = dt.date.fromisoformat(AS_OF).replace(day=1)
    mrr: dict[dt.date, Fraction] = {}
    for start, end, amount in lines:
        first, last = dt.date.fromisoformat(start), dt.date.fromisoformat(end)
        months, month = [], first.replace(day=1)
        while month < last:
            following = (month + dt.timedelta(days=32)).replace(day=1)
            if first <= following - dt.timedelta(days=1) < last:
                months.append(month)
            month = following
        for month in months:
            if month <= as_of_month:
                mrr[month] = mrr.get(month, Fraction(0)) + Fraction(Decimal(str(amount))) / len(months)
    return mrr


def expected_metrics(lines: list[tuple[str, str, float]]) -> dict[dt.date, dict[str, t.Any]]:
    """The metrics of an app with one customer whose lines these are."""
    mrr = customer_mrr(lines)
    month, last = min(mrr), dt.date.fromisoformat(AS_OF).replace(day=1)
    metrics, before = {}, Fraction(0)
    while month <= last:
        now = mrr.get(month, Fraction(0))
        metrics[month] = {
            "mrr": now, "arr": 12 * now, "paying_licenses": int(now > 0), "paying_customers": int(now > 0),
            "new_customers": int(now > 0 and month == min(mrr)), "churned_customers": int(before > 0 and now == 0),
            "logo_churn_rate": (Fraction(int(now == 0)) if before > 0 else None),
            "gross_revenue_retention": min(now, before) / before if before > 0 else None,
            "net_revenue_retention": now / before if before > 0 else None,
            "average_revenue_per_customer": now if now > 0 else None}
        before, month = now, (month + dt.timedelta(days=32)).replace(day=1)
    return metrics


@pytest.mark.parametrize(("license_ref", "lines"), [
    ("SEN-3100015", [("2024-04-01", "2025-04-01", 1200.00), ("2025-04-01", "2026-04-01", 1200.00)]),
    ("SEN-3200001", [("2023-06-01", "2024-06-01", 1200.00), ("2024-06-01", "2025-06-01", 1800.00)]),
])
def test_metrics_of_an_app_with_one_customer(marts, license_ref: str, lines: list) -> None:
    """App 0 holds only the Data Center license, app 1 only the migrated one (one
    customer across its Server and cloud licenses)."""
    names = list(expected_metrics(lines)[min(expected_metrics(lines))])
    loaded = {row[0]: dict(zip(names, row[1:])) for row in marts(
        f"select metric_month, {', '.join(names)} from analytics.fct_marketplace_metrics_monthly "
        f"where product_id = (select product_id from analytics.dim_marketplace_licenses "
        f"where license_ref = '{license_ref}')")}
    expected = expected_metrics(lines)
    assert set(loaded) == set(expected)
    for month, figures in expected.items():
        for name, value in figures.items():
            got = loaded[month][name]
            if value is None:
                assert got is None, (month, name)
            else:
                assert abs(Fraction(Decimal(str(got))) - value) <= Fraction(1, 10**6), (month, name, got, value)
