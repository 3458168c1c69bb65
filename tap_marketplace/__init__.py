"""tap-marketplace: Atlassian Marketplace reporting and catalog."""
