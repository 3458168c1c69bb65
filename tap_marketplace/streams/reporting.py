"""Reporting streams of a developer space: licenses, transactions, attribution, feedback, events."""

from __future__ import annotations

import typing as t

from singer_sdk import SchemaDirectory, StreamSchema

from tap_marketplace import schemas
from tap_marketplace.client import (
    REPORTING,
    ExportableReportingStream,
    ReportingStream,
    content_key,
    license_key,
)

if t.TYPE_CHECKING:
    from singer_sdk.helpers.types import Context

SCHEMAS = SchemaDirectory(schemas)

#: Atlassian has data insights only for licenses from this day on (reference §5).
INSIGHTS_SINCE = "2018-07-01"
LAST_DAY_WITHOUT_INSIGHTS = "2018-06-30"
#: Attribution rows are customer activity "in the last 30 days before start of
#: evaluation" (seed 002): they arrive when the evaluation starts, dated up to 30 days
#: earlier. 30 days, and 5 more for the export to catch up with the evaluation.
ATTRIBUTION_LOOKBACK_DAYS = 35
#: Feedback has no lastUpdated, only its ``date`` (seed 002); the same window as
#: attribution catches rows that become visible after their day, at little cost.
FEEDBACK_LOOKBACK_DAYS = 35



def _flag(value: t.Any) -> str:
    return "true" if value else "false"


class LicensesStream(ExportableReportingStream):
    """Licenses of every hosting type, keyed on ``license_key``.

    ``withDataInsights`` only works for ``startDate`` from July 2018, so a range that
    reaches further back is asked for in two passes: from 2018-07-01 with insights,
    then up to 2018-06-30 without. A license active across the boundary is in both; the
    first (with insights) is kept.
    """

    name = "licenses"
    path = f"{REPORTING}/licenses"
    export_path = f"{REPORTING}/licenses/async/export"
    collection_key = "licenses"
    primary_keys = ("license_key",)
    replication_key = "lastUpdated"
    schema = StreamSchema(SCHEMAS)

    def queries(self, context: Context | None) -> list[dict[str, t.Any]]:
        common = {
            "lastUpdated": self.starting_date(context),
            "includeAtlassianLicenses": _flag(self.config.get("include_atlassian_licenses")),
        }
        start = self.config.get("start_date")
        if not self.config.get("with_data_insights", True):
            return [{**common, "startDate": start}]
        if start and str(start) >= INSIGHTS_SINCE:
            return [{**common, "startDate": start, "withDataInsights": "true"}]
        return [
            {**common, "startDate": INSIGHTS_SINCE, "withDataInsights": "true"},
            {**common, "startDate": start, "endDate": LAST_DAY_WITHOUT_INSIGHTS},
        ]

    def get_records(self, context: Context | None) -> t.Iterable[dict]:
        if len(self.queries(context)) == 1:
            yield from super().get_records(context)
            return
        # Only a license that started before the boundary can be in both passes, so
        # only those keys are remembered: memory stays small on a large export.
        straddling: set[str | None] = set()
        for row in super().get_records(context):
            key = license_key(row)
            if key in straddling:
                continue
            if (row.get("maintenanceStartDate") or "") < INSIGHTS_SINCE:
                straddling.add(key)
            yield row

    def adapt(self, row: dict, context: Context | None) -> dict:
        row["license_key"] = license_key(row)
        # The spec names it isNewBillingSystem; the live API sends newBillingSystem.
        if "isNewBillingSystem" in row:
            row.setdefault("newBillingSystem", row.pop("isNewBillingSystem"))
        return row


class TransactionsStream(ExportableReportingStream):
    """Sales line items; a ``transactionId`` repeats across the line items of one sale."""

    name = "transactions"
    path = f"{REPORTING}/sales/transactions"
    export_path = f"{REPORTING}/sales/transactions/async/export"
    collection_key = "transactions"
    primary_keys = ("transactionLineItemId",)
    replication_key = "lastUpdated"
    bookmark_param = "lastUpdated"
    schema = StreamSchema(SCHEMAS)


class MarketingAttributionStream(ExportableReportingStream):
    """Marketing touch points before evaluations: export only, keyed on the row's content
    (``OccurrenceKeys``), re-read from ``lookback`` days before the bookmark."""

    name = "marketing_attribution"
    path = f"{REPORTING}/marketing-attribution/async/export"
    export_path = path
    export_only = True
    export_wrapper_key = "marketingAttribution"
    primary_keys = ("attribution_id",)
    replication_key = "eventTimestamp"
    replication_key_form = "date-time"  # "YYYY-MM-DD HH:MM:SS"; the schema gives no format
    bookmark_param = "startDate"
    content_key_field = "attribution_id"
    lookback_days = ATTRIBUTION_LOOKBACK_DAYS
    lookback_setting = "marketing_attribution_lookback_days"
    schema = StreamSchema(SCHEMAS)


class FeedbackStream(ReportingStream):
    """Disable/uninstall feedback; rows have no id, so the key is their content
    (``OccurrenceKeys``). Re-read from ``lookback`` days before the bookmark."""

    name = "feedback"
    path = f"{REPORTING}/feedback/details"
    collection_key = "feedback"
    primary_keys = ("feedback_id",)
    replication_key = "date"
    bookmark_param = "startDate"
    content_key_field = "feedback_id"
    lookback_days = FEEDBACK_LOOKBACK_DAYS
    lookback_setting = "feedback_lookback_days"
    schema = StreamSchema(SCHEMAS)


LICENSE_DETAIL_FIELDS = (
    "licenseId", "appEntitlementId", "appEntitlementNumber", "cloudId", "maintenanceStartDate",
    "maintenanceEndDate", "monthsValid", "inGracePeriod", "multiInstanceEntitlementId",
    "multiInstanceEntitlementNumber",
)


class LicenseEventsStream(ReportingStream):
    """Cloud license churn/conversion/renewal events, one row per license and event day."""

    event: t.ClassVar[str]
    collection_key = "events"
    primary_keys = ("license_key", "eventDate")
    replication_key = "lastUpdated"
    bookmark_param = "lastUpdated"

    def adapt(self, row: dict, context: Context | None) -> dict:
        # Nested in the live API, flattened onto the event in one spec example.
        details = row.get("licenseDetails")
        details = dict(details) if isinstance(details, dict) else {}
        for name in LICENSE_DETAIL_FIELDS:
            if name in row:
                details.setdefault(name, row.pop(name))
        row["licenseDetails"] = details or None
        row["license_key"] = (license_key(details, row.get("hosting"))
                              or content_key(self.keyed_content(row)))
        return row


class LicenseChurnEventsStream(LicenseEventsStream):
    name = "license_churn_events"
    path = f"{REPORTING}/sales/metrics/churn/details"
    schema = StreamSchema(SCHEMAS)


class LicenseConversionEventsStream(LicenseEventsStream):
    name = "license_conversion_events"
    path = f"{REPORTING}/sales/metrics/conversion/details"
    schema = StreamSchema(SCHEMAS)


class LicenseRenewalEventsStream(LicenseEventsStream):
    name = "license_renewal_events"
    path = f"{REPORTING}/sales/metrics/renewal/details"
    schema = StreamSchema(SCHEMAS)
