"""The metrics mart (per app and for all apps) and evaluation-to-paid conversion, on a
hand-made scenario shaped like the real API's rows, on DuckDB and on PostgreSQL.

The sandbox serves exactly these rows; `meltano run tap-marketplace target-X dbt-X:build`
loads them in a fresh clone and builds, and every figure of fct_marketplace_metrics_monthly,
fct_marketplace_evaluations and fct_marketplace_evaluation_conversion must equal the one
computed in Python from the same rows (tests/marketplace_figures.py). The scenario holds a
customer on two apps (one paying customer overall), customers leaving one app while
staying on the other (churned there, not overall), a customer with two licenses of one
app, one without a company (the license is the customer), and evaluations of several
months: converted in place (cloud) with Atlassian's mapped sale date, converted into
another license named by its data insights (by a SEN and by a bare add-on license
number), named only by the paid license's insights, converted by a paid line of its own
license, not converted, still open, and converting only after the as-of day.
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
from marketplace_figures import expected_conversion, expected_evaluations, expected_metrics, same
from test_dbt_chain import base_env, fresh_clone, meltano
from test_meltano_e2e import PG, postgres_connection

AS_OF = dt.date(2025, 6, 30)
SANDBOX = {"licenses": 0, "transactions": 0, "events_per_kind": 0, "feedback": 0,
           "attributions": 0, "reviews_per_app": 1, "members": 1, "apps": 2}
NO_INSIGHTS = {"evaluationLicense": "NA", "evaluationStartDate": "NA", "evaluationEndDate": "NA",
               "evaluationSaleDate": "NA", "daysToConvertEval": "NA", "evaluationOpportunitySize": "NA"}


def server(number: int) -> dict:
    return {"licenseId": f"SEN-{number}", "addonLicenseId": str(number)}


def cloud(number: int) -> dict:
    return {"appEntitlementNumber": f"E-4EV-{number}", "appEntitlementId": str(uuid.UUID(int=number, version=4))}


def license_row(app: dict, ids: dict, company: str | None, start: str, end: str, license_type: str = "COMMERCIAL",
                status: str = "active", **insights: str) -> dict:
    contact = {"country": "Germany", "region": "EMEA", "technicalContact": {"email": "admin@example.test"}}
    if company:
        contact["company"] = company
    return {**ids, "addonKey": app["appKey"], "productId": app["productId"], "addonName": app["appName"],
            "hosting": "Cloud" if "appEntitlementNumber" in ids else "Server", "licenseType": license_type,
            "status": status, "tier": "Evaluation" if license_type == "EVALUATION" else "25 Users",
            "lastUpdated": start, "maintenanceStartDate": start, "maintenanceEndDate": end,
            "licenseSourceType": "Non-Atlassian", "contactDetails": contact, **NO_INSIGHTS, **insights}


def line(app: dict, line_id: str, ids: dict, sale: str, start: str, end: str, amount: float,
         billing: str = "Annual", sale_type: str = "New") -> dict:
    return {"transactionId": f"AT-{line_id}", "transactionLineItemId": line_id, **ids,
            "addonKey": app["appKey"], "productId": app["productId"], "addonName": app["appName"],
            "lastUpdated": sale, "paymentStatus": "Paid",
            "customerDetails": {"company": "Company", "country": "Germany", "region": "EMEA"},
            "purchaseDetails": {"saleDate": sale, "licenseType": "COMMERCIAL",
                                "hosting": "Cloud" if "appEntitlementNumber" in ids else "Server",
                                "billingPeriod": billing, "tier": "25 Users", "purchasePrice": amount,
                                "vendorAmount": amount, "saleType": sale_type,
                                "maintenanceStartDate": start, "maintenanceEndDate": end}}


def scenario(apps: list[dict]) -> dict[str, list[dict]]:
    a, b = apps
    licenses = [
        # Acme pays for both apps; it leaves app B in April 2025 and stays on app A.
        license_row(a, server(3500001), "Acme", "2024-07-01", "2025-07-01"),
        license_row(b, server(3500002), "Acme", "2024-10-01", "2025-04-01", status="inactive"),
        # Beta leaves app A in March 2025, a month after it started on app B (no new
        # customer in February and no churn in March for all apps).
        license_row(a, server(3500003), "Beta", "2024-09-01", "2025-03-01", status="inactive"),
        license_row(b, cloud(3500004), "Beta", "2025-02-01", "2026-02-01"),
        # No company on the license: the license is the customer; monthly, gone in April.
        license_row(b, cloud(3500005), None, "2025-03-10", "2025-04-10", status="inactive"),
        # Delta: two licenses of app A, the second a month later (expansion).
        license_row(a, server(3500006), "Delta", "2025-01-01", "2026-01-01"),
        license_row(a, server(3500007), "Delta", "2025-03-01", "2026-03-01"),
        # Evaluations, app A. A cloud evaluation converted in place: the row is the paid
        # license now, its insights name itself and the mapped sale (20 days).
        license_row(a, cloud(3600001), "Epsilon", "2025-01-25", "2026-01-25",
                    evaluationLicense="E-4EV-3600001", evaluationStartDate="2025-01-05",
                    evaluationEndDate="2025-02-04", evaluationSaleDate="2025-01-25", daysToConvertEval="20"),
        # A Server evaluation and the paid license naming it; the sale is not mapped yet
        # ("Pending"): the first paid line counts (23 days).
        license_row(a, server(3600002), "Zeta", "2025-01-12", "2025-02-11", "EVALUATION", "inactive"),
        license_row(a, server(3600003), "Zeta", "2025-02-04", "2026-02-04", evaluationLicense="SEN-3600002",
                    evaluationStartDate="2025-01-12", evaluationEndDate="2025-02-11",
                    evaluationSaleDate="Pending", daysToConvertEval="Pending"),
        # Not converted, in January; still open in June.
        license_row(a, server(3600004), "Iota", "2025-01-20", "2025-02-19", "EVALUATION", "inactive"),
        license_row(a, cloud(3600005), "Kappa", "2025-06-15", "2025-07-15", "EVALUATION"),
        # Named only by the paid license's insights (its own row is not in the export):
        # started in February, converted by the first paid line in March (19 days).
        license_row(a, cloud(3600009), "Eta", "2025-04-01", "2025-05-01", status="inactive",
                    evaluationLicense="E-4EV-3600010", evaluationStartDate="2025-02-10",
                    evaluationEndDate="2025-03-12", evaluationSaleDate="NA"),
        # Evaluations, app B. Named by a bare add-on license number, sale mapped (18 days).
        license_row(b, {"addonLicenseId": "3600006"}, "Lambda", "2025-03-02", "2025-04-01", "EVALUATION", "inactive"),
        license_row(b, server(3600007), "Lambda", "2025-03-20", "2026-03-20", evaluationLicense="3600006",
                    evaluationStartDate="2025-03-02", evaluationEndDate="2025-04-01",
                    evaluationSaleDate="2025-03-20", daysToConvertEval="18"),
        # Still an EVALUATION row, but its license has a paid line after the start (27 days).
        license_row(b, cloud(3600012), "Theta", "2025-04-03", "2025-05-03", "EVALUATION", "inactive"),
        # Converts only after the as-of day: open, not converted, on June 30.
        license_row(b, cloud(3600008), "Mu", "2025-06-01", "2025-07-01", "EVALUATION"),
    ]
    transactions = [
        line(a, "acme-a", server(3500001), "2024-07-01", "2024-07-01", "2025-07-01", 1200.00),
        line(b, "acme-b", server(3500002), "2024-10-01", "2024-10-01", "2025-04-01", 600.00),
        line(a, "beta-a", server(3500003), "2024-09-01", "2024-09-01", "2025-03-01", 1200.00),
        line(b, "beta-b", cloud(3500004), "2025-02-01", "2025-02-01", "2026-02-01", 2400.00),
        *(line(b, f"gamma-{n}", cloud(3500005), start, start, end, 50.00, "Monthly", "New" if n == 1 else "Renewal")
          for n, (start, end) in enumerate((("2025-01-10", "2025-02-10"), ("2025-02-10", "2025-03-10"),
                                            ("2025-03-10", "2025-04-10")), start=1)),
        line(a, "delta-1", server(3500006), "2025-01-01", "2025-01-01", "2026-01-01", 1200.00),
        line(a, "delta-2", server(3500007), "2025-03-01", "2025-03-01", "2026-03-01", 2400.00),
        line(a, "epsilon", cloud(3600001), "2025-01-25", "2025-01-25", "2026-01-25", 1200.00),
        line(a, "zeta", server(3600003), "2025-02-04", "2025-02-04", "2026-02-04", 1200.00),
        line(a, "eta-1", cloud(3600009), "2025-03-01", "2025-03-01", "2025-04-01", 30.00, "Monthly"),
        line(a, "eta-2", cloud(3600009), "2025-04-01", "2025-04-01", "2025-05-01", 30.00, "Monthly", "Renewal"),
        line(b, "lambda", server(3600007), "2025-03-20", "2025-03-20", "2026-03-20", 1200.00),
        line(b, "theta", cloud(3600012), "2025-04-30", "2025-04-30", "2025-05-30", 40.00, "Monthly"),
        line(b, "mu", cloud(3600008), "2025-07-05", "2025-07-05", "2026-07-05", 1200.00),
    ]
    return {"licenses": licenses, "transactions": transactions}


def build(project: Path, target: str, extra_env: dict[str, str]) -> dict[str, list[dict]]:
    """Load the scenario with the documented command and build; return its rows."""
    with isv_sandbox.start("marketplace", **SANDBOX) as server:
        rows = scenario(server.app.apps)
        for kind, kind_rows in rows.items():
            server.app.data.add(kind, kind_rows)
        run = meltano(project, "run", "tap-marketplace", target, f"dbt-{target.removeprefix('target-')}:build",
                      env=sandbox_meltano_env(REPO, "tap-marketplace", server.app.tap_config(),
                                              base_env(DBT_AS_OF_DATE=AS_OF.isoformat(), **extra_env)),
                      timeout=900)
    output = run.stdout + run.stderr
    assert run.returncode == 0, output[-6000:]
    assert re.search(r"Done\. PASS=[1-9][0-9]* WARN=[0-9]+ ERROR=0 ", output), output[-6000:]
    return rows


Fetch = t.Callable[[str], list[tuple]]
PG_PREFIX = "dbt_metrics"


@pytest.fixture(scope="module")
def duckdb_marts(tmp_path_factory: pytest.TempPathFactory) -> tuple[Fetch, dict]:
    duckdb = pytest.importorskip("duckdb")
    project = fresh_clone(tmp_path_factory.mktemp("metrics_duckdb"))
    rows = build(project, "target-duckdb", {})

    def fetch(sql: str) -> list[tuple]:
        with duckdb.connect(str(project / "output" / "warehouse.duckdb"), read_only=True) as db:
            return db.execute(sql.format(marts="analytics")).fetchall()
    return fetch, rows


@pytest.fixture(scope="module")
def postgres_marts(tmp_path_factory: pytest.TempPathFactory) -> tuple[Fetch, dict]:
    connection = postgres_connection()
    for schema in ("analytics", "analytics_staging", "analytics_snapshots", "tap_marketplace"):
        connection.execute(f'DROP SCHEMA IF EXISTS "{PG_PREFIX}_{schema}" CASCADE')
    project = fresh_clone(tmp_path_factory.mktemp("metrics_postgres"))
    rows = build(project, "target-postgres", {
        "TARGET_POSTGRES_DATABASE": PG["dbname"], "TARGET_POSTGRES_PASSWORD": "postgres",
        "TARGET_POSTGRES_DEFAULT_TARGET_SCHEMA": f"{PG_PREFIX}_tap_marketplace",
        "DBT_POSTGRES_DBNAME": PG["dbname"], "DBT_POSTGRES_SCHEMA": f"{PG_PREFIX}_analytics",
        "DBT_MARKETPLACE_SCHEMA": f"{PG_PREFIX}_tap_marketplace"})

    def fetch(sql: str) -> list[tuple]:
        return connection.execute(sql.format(marts=f"{PG_PREFIX}_analytics")).fetchall()
    return fetch, rows


WAREHOUSES = [pytest.param("duckdb_marts", id="duckdb"),
              pytest.param("postgres_marts", id="postgres", marks=pytest.mark.postgres)]
METRICS = ("mrr", "arr", "paying_licenses", "paying_customers", "new_customers", "churned_customers",
           "logo_churn_rate", "gross_revenue_retention", "net_revenue_retention", "average_revenue_per_customer")
#: Rates are stored to 6 decimals, the average revenue per customer to the cent.
TOLERANCE = {"logo_churn_rate": Fraction(1, 2 * 10**6), "gross_revenue_retention": Fraction(1, 2 * 10**6),
             "net_revenue_retention": Fraction(1, 2 * 10**6), "average_revenue_per_customer": Fraction(1, 200),
             "conversion_rate": Fraction(1, 2 * 10**6)}


def loaded(fetch: Fetch, mart: str, keys: tuple[str, ...], names: t.Iterable[str]) -> dict[tuple, dict]:
    names = list(names)
    return {tuple(row[:len(keys)]): dict(zip(names, row[len(keys):])) for row in fetch(
        f"select {', '.join(keys)}, {', '.join(names)} from {{marts}}.{mart}")}


def assert_figures(got: dict[tuple, dict], expected: dict[tuple, dict]) -> None:
    assert set(got) == set(expected)
    for key, figures in expected.items():
        for name, value in figures.items():
            assert same(got[key][name], value, TOLERANCE.get(name, Fraction(0))), (key, name, got[key][name], value)


@pytest.mark.e2e
@pytest.mark.parametrize("warehouse", WAREHOUSES)
def test_metrics_per_app_and_for_all_apps(warehouse: str, request: pytest.FixtureRequest) -> None:
    fetch, rows = request.getfixturevalue(warehouse)
    expected = expected_metrics(rows["transactions"], rows["licenses"], AS_OF)
    assert_figures(loaded(fetch, "fct_marketplace_metrics_monthly", ("scope", "product_id", "metric_month"),
                          METRICS), expected)

    # The cases the scenario is made of, on the figures just compared.
    a = rows["licenses"][0]["productId"]
    b = next(row["productId"] for row in rows["licenses"] if row["productId"] != a)
    april, march, february = dt.date(2025, 4, 1), dt.date(2025, 3, 1), dt.date(2025, 2, 1)
    # Acme (app B, 2024-10 to 2025-03) and the license without a company leave app B in
    # April; Acme stays on app A, so all apps lose one customer, not two.
    assert expected["app", b, april]["churned_customers"] == 2
    assert expected["all", None, april]["churned_customers"] == 1
    # Beta leaves app A in March but pays for app B since February: no churn for all apps,
    # and February's new customer on app B is no new customer for all apps.
    assert expected["app", a, march]["churned_customers"] == 1
    assert expected["all", None, march]["churned_customers"] == 0
    assert expected["all", None, february]["new_customers"] == (
        expected["app", a, february]["new_customers"] + expected["app", b, february]["new_customers"] - 1)
    # Customers of two apps count once for all apps; Delta's two licenses are one customer.
    for month in (february, march):
        assert (expected["all", None, month]["paying_customers"]
                < expected["app", a, month]["paying_customers"] + expected["app", b, month]["paying_customers"])
        assert expected["all", None, month]["mrr"] == expected["app", a, month]["mrr"] + expected["app", b, month]["mrr"]
    assert expected["app", a, march]["paying_licenses"] > expected["app", a, march]["paying_customers"]
    # The all-apps rows start with the first app's first MRR month.
    assert min(m for s, _, m in expected if s == "all") == dt.date(2024, 7, 1)
    assert fetch("select count(*) from {marts}.fct_marketplace_metrics_monthly "
                 "where scope = 'all' and (product_id is not null or app_name is not null)") == [(0,)]


EVALUATION_COLUMNS = ("product_id", "evaluation_start_date", "evaluation_month", "evaluation_end_date",
                      "has_evaluation_license_row", "is_converted", "converted_license_ref", "conversion_date",
                      "days_to_convert", "is_open")
CONVERSION_COLUMNS = ("evaluations_started", "evaluations_converted", "evaluations_open", "conversion_rate",
                      "median_days_to_convert", "average_days_to_convert")


@pytest.mark.e2e
@pytest.mark.parametrize("warehouse", WAREHOUSES)
def test_evaluations_and_their_conversion(warehouse: str, request: pytest.FixtureRequest) -> None:
    fetch, rows = request.getfixturevalue(warehouse)
    evaluations = expected_evaluations(rows["licenses"], rows["transactions"], AS_OF)
    got = loaded(fetch, "fct_marketplace_evaluations", ("evaluation_ref",), EVALUATION_COLUMNS)
    assert_figures(got, {(ref,): figures for ref, figures in evaluations.items()})
    # The cases: converted after 20, 23, 19, 18 and 27 days; two not converted as of the
    # as-of day (one converts on 2025-07-05, after it), one over and not converted.
    assert sorted(e["days_to_convert"] for e in evaluations.values() if e["is_converted"]) == [18, 19, 20, 23, 27]
    assert {ref for ref, e in evaluations.items() if e["is_open"]} == {"E-4EV-3600005", "E-4EV-3600008"}
    assert evaluations["SEN-3600002"]["converted_license_ref"] == "SEN-3600003"
    assert evaluations["SEN-3600006"]["converted_license_ref"] == "SEN-3600007"
    assert not evaluations["E-4EV-3600010"]["has_evaluation_license_row"]

    conversion = expected_conversion(evaluations)
    assert_figures(loaded(fetch, "fct_marketplace_evaluation_conversion",
                          ("scope", "product_id", "evaluation_month"), CONVERSION_COLUMNS), conversion)
    # January on app A: 20 and 23 days of three evaluations (a half-day median).
    january = next(figures for (scope, product, month), figures in conversion.items()
                   if scope == "app" and month == dt.date(2025, 1, 1))
    assert (january["evaluations_started"], january["evaluations_converted"]) == (3, 2)
    assert january["median_days_to_convert"] == Fraction(43, 2)
    assert len({month for _, _, month in conversion}) == 5


@pytest.mark.e2e
@pytest.mark.postgres
def test_both_warehouses_agree_to_the_cent(duckdb_marts, postgres_marts) -> None:
    for mart in ("fct_marketplace_metrics_monthly", "fct_marketplace_evaluations",
                 "fct_marketplace_evaluation_conversion"):
        on_duckdb, on_postgres = (sorted((tuple(Decimal(str(v)) if isinstance(v, float) else v for v in row)
                                          for row in fetch(f"select * from {{marts}}.{mart}")),
                                         key=repr) for fetch, _ in (duckdb_marts, postgres_marts))
        assert on_duckdb == on_postgres, mart
