"""Local emulations of the vendors' APIs, for the tests, the demo and the benchmark."""

from __future__ import annotations

import dataclasses
import typing as t

from isv_sandbox.core import Fault, Request, Response, SandboxServer, VendorApp
from isv_sandbox.heroku import HerokuApp, HerokuSettings
from isv_sandbox.heroku_partner import HerokuPartnerApp, HerokuPartnerSettings
from isv_sandbox.isvapp import IsvappApp, IsvappSettings
from isv_sandbox.marketplace import MarketplaceApp, MarketplaceSettings

#: vendor name -> (app class, settings class, tap name)
VENDORS: dict[str, tuple[type[VendorApp], type, str]] = {
    "heroku": (HerokuApp, HerokuSettings, "tap-heroku-vendor"),
    "isvapp": (IsvappApp, IsvappSettings, "tap-isvapp"),
    "marketplace": (MarketplaceApp, MarketplaceSettings, "tap-marketplace"),
}
#: Every sandbox ``start`` knows: one per tap above, plus a second API of a tap
#: (``heroku_partner``: tap-heroku-vendor's partner mode, ``api: partner``).
SANDBOXES: dict[str, tuple[type[VendorApp], type, str]] = {
    **VENDORS,
    "heroku_partner": (HerokuPartnerApp, HerokuPartnerSettings, "tap-heroku-vendor"),
}


def start(vendor: str, **settings: t.Any) -> SandboxServer:
    """Start the sandbox of one vendor on a free loopback port."""
    app_class, settings_class, _ = SANDBOXES[vendor]
    known = {f.name for f in dataclasses.fields(settings_class)}
    unknown = set(settings) - known
    if unknown:
        msg = f"unknown {vendor} sandbox settings: {sorted(unknown)}; known: {sorted(known)}"
        raise ValueError(msg)
    # An app may live under a path, as the Marketplace API does under /marketplace.
    url_prefix = getattr(app_class, "URL_PREFIX", "")
    server = SandboxServer(app_class(settings_class(**settings)), url_prefix=url_prefix)
    server.vendor = vendor
    return server.start()


__all__ = ["SANDBOXES", "VENDORS", "Fault", "Request", "Response", "SandboxServer", "VendorApp", "start"]
