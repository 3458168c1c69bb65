"""Every stream of tap-marketplace, by domain, and the one list the tap discovers.

    reporting        licenses, transactions, attribution, feedback, license events
    catalog          apps, their software and versions, reviews, the developer space
    aggregates       series reports, benchmarks, customer insights, search keywords
    partner_metrics  the partner-metrics query
    product_catalog  the Marketplace-wide catalog snapshot (CSV)
    report_settings  the settings of the aggregated reports
"""

from __future__ import annotations

from tap_marketplace.client import MarketplaceStream
from tap_marketplace.streams.aggregates import (
    AppRequestsAndApprovalsStream,
    ChurnBenchmarksStream,
    CustomerInsightsStream,
    EvaluationBenchmarksStream,
    EvaluationMetricsStream,
    FeedbackMetricsStream,
    FreeStarterTierEntitlementsStream,
    LicenseEventMetricsStream,
    SalesBenchmarksStream,
    SalesMetricsStream,
    SearchKeywordsStream,
    ZeroResultSearchKeywordsStream,
)
from tap_marketplace.streams.catalog import (
    AppListingsStream,
    AppSoftwareStream,
    AppSoftwareVersionsStream,
    AppVersionListingsStream,
    CloudMigrationCompatibilityStream,
    DeveloperSpaceListingsStream,
    DeveloperSpaceMembersStream,
    DeveloperSpaceStream,
    ParentSoftwareStream,
    ParentSoftwareVersionsStream,
    PrivacyAndSecurityStream,
    ReviewsStream,
)
from tap_marketplace.streams.partner_metrics import PartnerMetricsStream
from tap_marketplace.streams.product_catalog import ProductCatalogStream
from tap_marketplace.streams.reporting import (
    ATTRIBUTION_LOOKBACK_DAYS,
    FEEDBACK_LOOKBACK_DAYS,
    FeedbackStream,
    LicenseChurnEventsStream,
    LicenseConversionEventsStream,
    LicenseRenewalEventsStream,
    LicensesStream,
    MarketingAttributionStream,
    TransactionsStream,
)

__all__ = ["ATTRIBUTION_LOOKBACK_DAYS", "FEEDBACK_LOOKBACK_DAYS", "STREAMS"]

#: Every stream, in the order a run syncs them.
STREAMS: list[type[MarketplaceStream]] = [
    # reporting
    LicensesStream,
    TransactionsStream,
    MarketingAttributionStream,
    FeedbackStream,
    LicenseChurnEventsStream,
    LicenseConversionEventsStream,
    LicenseRenewalEventsStream,
    # catalog
    AppListingsStream,
    AppSoftwareStream,
    AppSoftwareVersionsStream,
    AppVersionListingsStream,
    ParentSoftwareStream,
    ParentSoftwareVersionsStream,
    ReviewsStream,
    CloudMigrationCompatibilityStream,
    PrivacyAndSecurityStream,
    DeveloperSpaceStream,
    DeveloperSpaceMembersStream,
    DeveloperSpaceListingsStream,
    # aggregates
    EvaluationMetricsStream,
    FeedbackMetricsStream,
    SalesMetricsStream,
    LicenseEventMetricsStream,
    ChurnBenchmarksStream,
    EvaluationBenchmarksStream,
    SalesBenchmarksStream,
    CustomerInsightsStream,
    AppRequestsAndApprovalsStream,
    SearchKeywordsStream,
    ZeroResultSearchKeywordsStream,
    FreeStarterTierEntitlementsStream,
    # partner metrics and the catalog snapshot
    PartnerMetricsStream,
    ProductCatalogStream,
]
