"""Credentials go only to the configured API host."""

from __future__ import annotations

import typing as t
from urllib.parse import urlsplit

import requests


def origin(url: str) -> tuple[str, str, int | None]:
    """Scheme, host and port: two URLs with the same origin may share credentials."""
    parts = urlsplit(url)
    port = parts.port or {"http": 80, "https": 443}.get(parts.scheme)
    return parts.scheme, (parts.hostname or "").lower(), port


class HostBoundAuth(requests.auth.AuthBase):
    """Applies ``inner`` only to requests for the API's own origin.

    A request anywhere else (a presigned storage URL, a CDN) leaves without any
    ``Authorization`` header, even if one was set on it earlier.
    """

    def __init__(self, inner: t.Callable[[requests.PreparedRequest], requests.PreparedRequest],
                 api_url: str) -> None:
        self.inner = inner
        self.api_origin = origin(api_url)

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        if origin(request.url or "") == self.api_origin:
            return self.inner(request)
        request.headers.pop("Authorization", None)
        return request


class PerOriginAuth(requests.auth.AuthBase):
    """One credential per origin, for taps that talk to several hosts.

    ``credentials`` maps a base URL to the authenticator of that host. A request is
    signed by its own origin's authenticator only; a request to any other origin
    leaves without an ``Authorization`` header. Each authenticator is called anew for
    every attempt, so a renewed token reaches a retried request.
    """

    def __init__(self, credentials: t.Mapping[str, t.Callable[[requests.PreparedRequest],
                                                                 requests.PreparedRequest]]) -> None:
        self.by_origin = {origin(url): auth for url, auth in credentials.items()}

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        request.headers.pop("Authorization", None)
        auth = self.by_origin.get(origin(request.url or ""))
        return auth(request) if auth is not None else request
