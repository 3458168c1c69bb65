"""The ISVapp base stream: the ``{data, success}`` envelope and the two ways to sign in.

ISVapp accepts a static API key or OAuth2 client-credentials tokens; with OAuth2 each
endpoint asks for its own minimum scope, so there is one token per scope. A token is
fetched through the tap's client like every other request (paced: the 2 requests/second
limit counts it; retried; its failure one line), when a request that needs it is signed,
so before that request takes its pacing slot; and renewed shortly before ``expires_in``
runs out. A 401 on a token renews it once and sends the request again; a second 401
ends the run naming the credential and scope.
"""

from __future__ import annotations

import time
import typing as t

from requests.auth import HTTPBasicAuth
from singer_sdk.authenticators import BearerTokenAuthenticator

from tap_common.auth import HostBoundAuth
from tap_common.client import VendorRESTStream
from tap_common.errors import CredentialRejectedError, PayloadError, sentence
from tap_common.http import RenewedOnceOn401
from tap_common.redact import REDACTOR

if t.TYPE_CHECKING:
    import requests

    from tap_common.http import VendorClient
    from tap_isvapp.tap import TapIsvapp

TOKEN_PATH = "/api/oauth2/token"
#: Renew a token this long before it expires (at most a tenth of its lifetime).
RENEWAL_MARGIN_SECONDS = 60.0
#: Lifetime of a token whose response does not say (``expires_in``).
DEFAULT_EXPIRES_IN_SECONDS = 3600
#: The API-key permission every documented endpoint asks for.
API_KEY_PERMISSION = "ISVapp metrics retrieval"


class ClientCredentialsToken(RenewedOnceOn401):
    """An OAuth2 client-credentials token for one scope, fetched through the tap's client.

    Signing a request fetches a token first if there is none or it is about to expire.
    A 401 for a signed request gets one new token and the same request once more (a
    token revoked or expired early); the answer to that one is final.
    """

    def __init__(self, *, scope: str, client_id: str, client_secret: str,
                 client: VendorClient) -> None:
        self.scope = scope
        self.client = client
        self.client_auth = HTTPBasicAuth(client_id, client_secret)
        self.access_token: str | None = None
        self.expires_in = 0.0
        self.obtained_at = 0.0

    def sign(self, request: requests.PreparedRequest) -> None:
        if not self.is_valid():
            self.obtain()
        request.headers["Authorization"] = f"Bearer {self.access_token}"

    def renew(self, rejected: requests.Response) -> bool:
        self.client.logger.warning("%s; renewing the OAuth2 token for scope %s once",
                                   self.client.error_line(rejected), self.scope)
        self.access_token = None
        return True

    def is_valid(self) -> bool:
        if self.access_token is None:
            return False
        margin = min(RENEWAL_MARGIN_SECONDS, self.expires_in / 10)
        return time.monotonic() - self.obtained_at < self.expires_in - margin

    def obtain(self) -> None:
        requested_at = time.monotonic()
        response = self.client.send(
            "POST", TOKEN_PATH, data={"scope": self.scope, "grant_type": "client_credentials"},
            auth=self.client_auth, validate=self.check_token_response)
        self.store(self.client.decode_json(response, "$", fields=("access_token",)),
                   requested_at=requested_at)
        self.client.logger.info("%s: new OAuth2 token for scope %s (valid %s s)",
                                self.client.caller, self.scope, self.expires_in)

    def check_token_response(self, response: requests.Response) -> None:
        if response.status_code in (401, 403):  # noqa: PLR2004
            msg = (f"{sentence(self.client.error_line(response))} ISVapp rejected the OAuth2 client "
                   "credentials: check the `client_id` and `client_secret` settings (token "
                   f"requested for scope `{self.scope}`).")
            raise CredentialRejectedError(msg)
        self.client.check(response)

    def store(self, payload: t.Any, *, requested_at: float) -> None:
        if not isinstance(payload, dict) or not payload.get("access_token"):
            msg = (f"The OAuth2 token response for scope {self.scope!r} has no "
                   f"access_token (fields: {sorted(payload) if isinstance(payload, dict) else type(payload).__name__})")
            raise PayloadError(msg)
        self.access_token = payload["access_token"]
        REDACTOR.add_secret(self.access_token)
        self.expires_in = float(payload.get("expires_in") or DEFAULT_EXPIRES_IN_SECONDS)
        self.obtained_at = requested_at


class IsvappCredentials:
    """The configured credential: one API key, or one OAuth2 token per scope."""

    def __init__(self, config: t.Mapping[str, t.Any], client: VendorClient) -> None:
        self.client = client
        self.api_url = str(config["api_url"]).rstrip("/")
        self.api_key: str | None = config.get("api_key")
        self._client_id: str | None = config.get("client_id")
        self._client_secret: str | None = config.get("client_secret")
        self._tokens: dict[str, ClientCredentialsToken] = {}
        self._authenticators: dict[str, HostBoundAuth] = {}

    @property
    def uses_oauth(self) -> bool:
        return not self.api_key

    def token(self, scope: str) -> ClientCredentialsToken | None:
        if not self.uses_oauth:
            return None
        if scope not in self._tokens:
            self._tokens[scope] = ClientCredentialsToken(
                scope=scope, client_id=self._client_id or "",
                client_secret=self._client_secret or "", client=self.client)
        return self._tokens[scope]

    def authenticator(self, scope: str) -> HostBoundAuth:
        key = scope if self.uses_oauth else ""
        if key not in self._authenticators:
            inner: t.Callable = self.token(scope) or BearerTokenAuthenticator(token=self.api_key)
            self._authenticators[key] = HostBoundAuth(inner, self.api_url)
        return self._authenticators[key]

    def raise_if_rejected(self, response: requests.Response, scope: str) -> None:
        """A 401/403 from the API: the credential, or its scope, named in the line."""
        status = response.status_code
        if status in (401, 403) and self.client.is_api(response.url):  # noqa: PLR2004
            hint = self.rejection_hint(status, scope)
            raise CredentialRejectedError(f"{sentence(self.client.error_line(response))} {hint}")

    def rejection_hint(self, status: int, scope: str) -> str:
        """What a 401/403 from the API means for the configured credential."""
        if not self.uses_oauth:
            if status == 401:
                return ("ISVapp rejected the `api_key` setting: check the key under "
                        "ISVapp > Setup > REST API.")
            return (f"The API key (`api_key`) lacks the permission scope this endpoint "
                    f"needs ({API_KEY_PERMISSION!r}).")
        if status == 401:
            return (f"A freshly issued OAuth2 token for scope `{scope}` was rejected too: "
                    "check that the OAuth2 client (`client_id`, `client_secret`) is still "
                    "active under ISVapp > Setup > REST API.")
        return (f"The OAuth2 client (`client_id`) is not allowed scope `{scope}`: grant it "
                "under ISVapp > Setup > REST API, or name the right scope in `oauth_scopes`.")


class IsvappStream(VendorRESTStream):
    """An ISVapp endpoint: records under ``data``, signed with the scope it needs."""

    records_jsonpath = "$.data[*]"
    #: The OAuth2 scope of the endpoint (seed 001); the `oauth_scopes` setting overrides it.
    oauth_scope: t.ClassVar[str] = "identity"

    tap: TapIsvapp

    @property
    def scope(self) -> str:
        return self.tap.scope_for(self.name, self.oauth_scope)

    @property
    def authenticator(self) -> HostBoundAuth:  # type: ignore[override]
        return self.tap.credentials.authenticator(self.scope)

    def get_new_paginator(self) -> None:
        # ISVapp documents no pagination: every list comes whole in one response.
        return None

    def validate_response(self, response: requests.Response) -> None:
        self.tap.credentials.raise_if_rejected(response, self.scope)
        super().validate_response(response)
