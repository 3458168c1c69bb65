"""tap-marketplace: Atlassian Marketplace reporting and catalog."""
from tap_marketplace.tap import TapMarketplace

TapMarketplace.cli()
