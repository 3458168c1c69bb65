"""The Marketplace metrics and evaluation conversion, computed in Python from rows shaped
like the API's (licenses and transactions), independently of the SQL: the expectations
of tests/test_dbt_metrics.py (a hand-made scenario) and tests/test_dbt_chain.py (the
sandbox). The rules are docs/transform.md's ("MRR and its movements", the metrics mart,
"Evaluations and their conversion to paid")."""

from __future__ import annotations

import datetime as dt
import typing as t
from collections import defaultdict
from decimal import ROUND_HALF_UP, Decimal
from fractions import Fraction

#: A customer key, or None for the all-apps scope's product.
Key = tuple[str, t.Optional[str], dt.date]


def month_of(day: dt.date) -> dt.date:
    return day.replace(day=1)


def next_month(month: dt.date) -> dt.date:
    return (month + dt.timedelta(days=32)).replace(day=1)


def day(value: t.Any) -> dt.date | None:
    """An ISO date, or None for "NA", "Pending", empty or missing (data insights)."""
    try:
        return dt.date.fromisoformat(value) if isinstance(value, str) else None
    except ValueError:
        return None


def identifiers(row: dict) -> list[str]:
    found = [row.get("licenseId"), row.get("appEntitlementNumber"), row.get("appEntitlementId")]
    if row.get("addonLicenseId"):
        found.append(f"SEN-{row['addonLicenseId']}")
    return [value for value in found if value]


def license_ref(row: dict) -> str:
    """The SEN first, else the entitlement number, else the UUID (docs/transform.md); the
    scenarios' rows of one license share it."""
    license_id = row.get("licenseId")
    if license_id and not license_id.startswith("E-"):
        return license_id
    if row.get("addonLicenseId"):
        return f"SEN-{row['addonLicenseId']}"
    return row.get("appEntitlementNumber") or license_id or row["appEntitlementId"]


def current_licenses(licenses: list[dict]) -> list[dict]:
    """One row per license reference, the latest by lastUpdated (as staging keeps it): an
    evaluation converted in place is exported again as the paid license."""
    latest: dict[str, dict] = {}
    for row in licenses:
        known = latest.get(license_ref(row))
        if known is None or row.get("lastUpdated", "") >= known.get("lastUpdated", ""):
            latest[license_ref(row)] = row
    return list(latest.values())


def license_month_mrr(transactions: list[dict], as_of: dt.date) -> dict[tuple[str, str, dt.date], Fraction]:
    """(product, license, month) -> the license's MRR at the month's end, up to the as-of
    month: each line's vendorAmount over the month ends of its period [start, end)."""
    mrr: dict[tuple[str, str, dt.date], Fraction] = defaultdict(Fraction)
    for row in transactions:
        details = row["purchaseDetails"]
        start = dt.date.fromisoformat(details["maintenanceStartDate"])
        end = dt.date.fromisoformat(details["maintenanceEndDate"])
        month_ends, month = [], month_of(start)
        while month <= end:
            if start <= next_month(month) - dt.timedelta(days=1) < end:
                month_ends.append(month)
            month = next_month(month)
        for month in month_ends:
            if month <= month_of(as_of):
                mrr[row["productId"], license_ref(row), month] += (
                    Fraction(Decimal(str(details["vendorAmount"]))) / len(month_ends))
    return mrr


def expected_metrics(transactions: list[dict], licenses: list[dict], as_of: dt.date) -> dict[Key, dict]:
    """(scope, product or None, month) -> every figure of fct_marketplace_metrics_monthly.

    A customer is the license's contact company, else the license. Scope 'app' looks at
    one app's licenses, scope 'all' at every license, so a customer of two apps is one
    customer there. A license's MRR is never below zero.
    """
    by_license = license_month_mrr(transactions, as_of)
    company = {license_ref(row): (row.get("contactDetails") or {}).get("company")
               for row in current_licenses(licenses)}
    last = month_of(as_of)
    # scope key -> month -> customer -> MRR; and -> month -> paying licenses
    customers: dict[tuple[str, str | None], dict[dt.date, dict[str, Fraction]]] = defaultdict(
        lambda: defaultdict(lambda: defaultdict(Fraction)))
    paying_licenses: dict[tuple[str, str | None], dict[dt.date, int]] = defaultdict(lambda: defaultdict(int))
    first_months: dict[str, dt.date] = {}
    for product, license in {(p, lic) for p, lic, _ in by_license}:
        months = {m: max(v, Fraction(0)) for (p, lic, m), v in by_license.items() if (p, lic) == (product, license)}
        if not any(months.values()):
            continue
        first = min(m for m, v in months.items() if v > 0)
        first_months[product] = min(first, first_months.get(product, first))
        customer = company.get(license) or license
        for scope in (("app", product), ("all", None)):
            for month, value in months.items():
                customers[scope][month][customer] += value
                paying_licenses[scope][month] += value > 0
    if not first_months:
        return {}
    spans = {("app", product): first for product, first in first_months.items()}
    spans["all", None] = min(first_months.values())
    metrics: dict[Key, dict] = {}
    for scope, first in spans.items():
        by_month = customers[scope]
        first_paid: dict[str, dt.date] = {}
        for month in sorted(by_month):
            for customer, value in by_month[month].items():
                if value > 0:
                    first_paid.setdefault(customer, month)
        month, before = first, {}
        while month <= last:
            now = by_month.get(month, {})
            kept = {c: v for c, v in before.items() if v > 0}
            mrr = sum(now.values(), Fraction(0))
            paying = sum(1 for v in now.values() if v > 0)
            churned = sum(1 for c in kept if now.get(c, 0) == 0)
            base = sum(kept.values(), Fraction(0))
            metrics[(*scope, month)] = {
                "mrr": mrr, "arr": 12 * mrr, "paying_licenses": paying_licenses[scope].get(month, 0),
                "paying_customers": paying,
                "new_customers": sum(1 for c, v in now.items() if v > 0 and first_paid[c] == month),
                "churned_customers": churned,
                "logo_churn_rate": Fraction(churned, len(kept)) if kept else None,
                "gross_revenue_retention": (sum(min(now.get(c, Fraction(0)), v) for c, v in kept.items()) / base
                                            if base else None),
                "net_revenue_retention": sum(now.get(c, Fraction(0)) for c in kept) / base if base else None,
                "average_revenue_per_customer": mrr / paying if paying else None,
            }
            before, month = now, next_month(month)
    return metrics


def expected_evaluations(licenses: list[dict], transactions: list[dict], as_of: dt.date) -> dict[str, dict]:
    """evaluation reference -> its row of fct_marketplace_evaluations.

    An evaluation is a license row of type EVALUATION (its maintenance period is the
    trial) or the evaluation a paid license's evaluationLicense names (its
    evaluationStartDate/EndDate). It converted on the paid license's evaluationSaleDate
    when that is on or after the start, else on the first transaction line with
    vendorAmount above zero of the paid license (the one naming it, else its own) on or
    after the start; by the as-of day.
    """
    licenses = current_licenses(licenses)
    refs = {identifier: license_ref(row) for row in [*licenses, *transactions] for identifier in identifiers(row)}
    evaluation_rows: dict[str, dict] = {}
    for row in licenses:
        if row["licenseType"].upper() == "EVALUATION":
            ref = refs.get(license_ref(row), license_ref(row))
            start, end = dt.date.fromisoformat(row["maintenanceStartDate"]), day(row.get("maintenanceEndDate"))
            known = evaluation_rows.get(ref)
            evaluation_rows[ref] = {"product": known["product"] if known else row["productId"],
                                    "start": min(start, known["start"]) if known else start,
                                    "end": max(filter(None, [end, known and known["end"]]), default=None)}
    namings: dict[str, dict] = {}
    for row in licenses:
        named = (row.get("evaluationLicense") or "").strip()
        if row["licenseType"].upper() == "EVALUATION" or not named or named.upper() in ("NA", "PENDING"):
            continue
        ref = refs.get(named) or refs.get(f"SEN-{named}") or named
        naming = {"product": row["productId"], "paid": refs.get(license_ref(row), license_ref(row)),
                  "start": day(row.get("evaluationStartDate")), "end": day(row.get("evaluationEndDate")),
                  "sale": day(row.get("evaluationSaleDate"))}
        order = (naming["sale"] is None, naming["sale"] or dt.date.min, naming["paid"])
        known = namings.get(ref)
        if known is None or order < (known["sale"] is None, known["sale"] or dt.date.min, known["paid"]):
            namings[ref] = naming
    paid_sales: dict[str, list[dt.date]] = defaultdict(list)
    for row in transactions:
        if Decimal(str(row["purchaseDetails"]["vendorAmount"])) > 0:
            paid_sales[refs.get(license_ref(row), license_ref(row))].append(
                dt.date.fromisoformat(row["purchaseDetails"]["saleDate"]))
    evaluations = {}
    for ref in set(evaluation_rows) | set(namings):
        own, naming = evaluation_rows.get(ref), namings.get(ref)
        # The evaluation's own row first, the paid license's insights where it has none.
        start = (own and own["start"]) or (naming and naming["start"])
        if start is None or start > as_of:
            continue
        end = (own and own["end"]) or (naming and naming["end"])
        paid = naming["paid"] if naming else ref
        sales = [d for d in paid_sales.get(paid, []) if d >= start]
        conversion = None
        if naming and naming["sale"] and start <= naming["sale"] <= as_of:
            conversion = naming["sale"]
        elif sales and min(sales) <= as_of:
            conversion = min(sales)
        evaluations[ref] = {
            "product_id": own["product"] if own else naming["product"], "evaluation_start_date": start,
            "evaluation_month": month_of(start), "evaluation_end_date": end,
            "has_evaluation_license_row": own is not None, "is_converted": conversion is not None,
            "converted_license_ref": paid if conversion else None, "conversion_date": conversion,
            "days_to_convert": (conversion - start).days if conversion else None,
            "is_open": conversion is None and end is not None and end >= as_of}
    return evaluations


def expected_conversion(evaluations: dict[str, dict]) -> dict[tuple[str, str | None, dt.date], dict]:
    """(scope, product or None, evaluation month) -> the cohort's row of
    fct_marketplace_evaluation_conversion."""
    cohorts: dict[tuple[str, str | None, dt.date], list[dict]] = defaultdict(list)
    for evaluation in evaluations.values():
        cohorts["app", evaluation["product_id"], evaluation["evaluation_month"]].append(evaluation)
        cohorts["all", None, evaluation["evaluation_month"]].append(evaluation)
    figures = {}
    for key, members in cohorts.items():
        days = [e["days_to_convert"] for e in members if e["is_converted"]]
        figures[key] = {
            "evaluations_started": len(members), "evaluations_converted": len(days),
            "evaluations_open": sum(1 for e in members if e["is_open"]),
            "conversion_rate": Fraction(len(days), len(members)),
            "median_days_to_convert": median(days) if days else None,
            "average_days_to_convert": (Decimal(sum(days)) / len(days)).quantize(Decimal("0.01"), ROUND_HALF_UP)
            if days else None}
    return figures


def median(values: list[int]) -> Fraction:
    ordered, middle = sorted(values), len(values) // 2
    return Fraction(ordered[middle]) if len(ordered) % 2 else Fraction(ordered[middle - 1] + ordered[middle], 2)


def same(got: t.Any, expected: t.Any, tolerance: Fraction = Fraction(0)) -> bool:
    """A loaded figure equals an expected one (None, int, date, bool, or a number within
    the tolerance)."""
    if expected is None or got is None or isinstance(expected, (bool, dt.date, str)):
        return got == expected
    return abs(Fraction(Decimal(str(got))) - Fraction(expected)) <= tolerance
