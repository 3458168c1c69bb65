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
