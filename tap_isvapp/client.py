"""The ISVapp base stream: the ``{data, success}`` envelope and the two ways to sign in.

ISVapp accepts a static API key or OAuth2 client-credentials tokens; with OAuth2 each
endpoint asks for its own minimum scope, so there is one token per scope. Tokens are
fetched through the same pacing, retries and error lines as every other request (the
2 requests/second limit counts them), before the request that needs them takes its
pacing slot, and renewed shortly before ``expires_in`` runs out. A 401 on a token
renews it once and retries; a second 401 ends the run naming the credential and scope.
"""

from __future__ import annotations

import typing as t
from urllib.parse import urlsplit

from requests.auth import HTTPBasicAuth
from singer_sdk.authenticators import BearerTokenAuthenticator, OAuthAuthenticator
from singer_sdk.helpers._util import utc_now

from tap_common.auth import HostBoundAuth, origin
from tap_common.client import VendorRESTStream
from tap_common.errors import AuthenticationError, PayloadError, VendorRetriableError
from tap_common.redact import REDACTOR

if t.TYPE_CHECKING:
    import requests

    from tap_isvapp.tap import TapIsvapp

TOKEN_PATH = "/api/oauth2/token"
#: Renew a token this long before it expires (at most a tenth of its lifetime).
RENEWAL_MARGIN_SECONDS = 60.0
#: The API-key permission every documented endpoint asks for.
API_KEY_PERMISSION = "ISVapp metrics retrieval"


class ClientCredentialsToken(OAuthAuthenticator):
    """An OAuth2 client-credentials token for one scope."""

    def __init__(self, *, scope: str, client_id: str, client_secret: str, token_url: str) -> None:
        super().__init__(auth_endpoint=token_url, oauth_scopes=scope, client_id=client_id,
                         client_secret=client_secret, default_expiration=3600)
        #: Issued after the API rejected its predecessor and not yet accepted itself.
        self.unproven_renewal = False
        self.fetching = False

    @property
    def oauth_request_body(self) -> dict:
        return {"scope": self.oauth_scopes, "grant_type": "client_credentials"}

    def is_token_valid(self) -> bool:
        if self.access_token is None or self.last_refreshed is None:
            return False
        if not self.expires_in:
            return True
        margin = min(RENEWAL_MARGIN_SECONDS, self.expires_in / 10)
        age = (utc_now() - self.last_refreshed).total_seconds()
        return age < self.expires_in - margin

    def store(self, payload: t.Any, *, requested_at: t.Any) -> None:
        if not isinstance(payload, dict) or not payload.get("access_token"):
            msg = (f"The OAuth2 token response for scope {self.oauth_scopes!r} has no "
                   f"access_token (fields: {sorted(payload) if isinstance(payload, dict) else type(payload).__name__})")
            raise PayloadError(msg)
        self.access_token = payload["access_token"]
        REDACTOR.add_secret(self.access_token)
        expires_in = payload.get("expires_in") or self._default_expiration
        self.expires_in = int(float(expires_in))
        self.last_refreshed = requested_at

    def authenticate_request(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        # Only the header: the token was fetched beforehand by IsvappStream, paced like
        # any request. The SDK's version would fetch one here, after the pacing slot.
        self.auth_headers["Authorization"] = f"Bearer {self.access_token}"
        return super(OAuthAuthenticator, self).authenticate_request(request)


class IsvappCredentials:
    """The configured credential: one API key, or one OAuth2 token per scope."""

    def __init__(self, config: t.Mapping[str, t.Any]) -> None:
        self.api_url = str(config["api_url"]).rstrip("/")
        self.api_key: str | None = config.get("api_key")
        self._client_id: str | None = config.get("client_id")
        self._client_secret: str | None = config.get("client_secret")
        self._tokens: dict[str, ClientCredentialsToken] = {}
        self._authenticators: dict[str, HostBoundAuth] = {}

    @property
    def uses_oauth(self) -> bool:
        return not self.api_key

    @property
    def client_auth(self) -> HTTPBasicAuth:
        """The token endpoint's own credentials: client id and secret as HTTP Basic."""
        return HTTPBasicAuth(self._client_id or "", self._client_secret or "")

    def token(self, scope: str) -> ClientCredentialsToken | None:
        if not self.uses_oauth:
            return None
        if scope not in self._tokens:
            self._tokens[scope] = ClientCredentialsToken(
                scope=scope, client_id=self._client_id or "",
                client_secret=self._client_secret or "", token_url=self.api_url + TOKEN_PATH)
        return self._tokens[scope]

    def authenticator(self, scope: str) -> HostBoundAuth:
        key = scope if self.uses_oauth else ""
        if key not in self._authenticators:
            inner = self.token(scope) or BearerTokenAuthenticator(token=self.api_key)
            self._authenticators[key] = HostBoundAuth(inner, self.api_url)
        return self._authenticators[key]

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

    _tap: TapIsvapp

    @property
    def scope(self) -> str:
        return self._tap.scope_for(self.name, self.oauth_scope)

    @property
    def authenticator(self) -> HostBoundAuth:  # type: ignore[override]
        return self._tap.credentials.authenticator(self.scope)

    def get_new_paginator(self) -> None:
        # ISVapp documents no pagination: every list comes whole in one response.
        return None

    # -- tokens -----------------------------------------------------------------------

    def request_decorator(self, func: t.Callable) -> t.Callable:
        with_retries = super().request_decorator(func)

        def with_valid_token(*args: t.Any, **kwargs: t.Any) -> requests.Response:
            token = self._tap.credentials.token(self.scope)
            if token is not None and not token.fetching and not token.is_token_valid():
                self.renew_token(token)
            return with_retries(*args, **kwargs)

        return with_valid_token

    def renew_token(self, token: ClientCredentialsToken) -> None:
        token.fetching = True
        try:
            requested_at = utc_now()
            response = self.send("POST", TOKEN_PATH, data=token.oauth_request_body,
                                 auth=self._tap.credentials.client_auth)
            token.store(self.decode_json(response, "$", fields=("access_token",)),
                        requested_at=requested_at)
        finally:
            token.fetching = False
        self.logger.info("%s: new OAuth2 token for scope %s (valid %s s)",
                         self.name, token.oauth_scopes, token.expires_in)

    # -- responses --------------------------------------------------------------------

    def validate_response(self, response: requests.Response) -> None:
        status = response.status_code
        if status in (401, 403) and origin(response.url) == origin(self.url_base):
            self.raise_for_rejected_credential(response)
        if status < 400:
            token = self._tap.credentials.token(self.scope)
            if token is not None:
                token.unproven_renewal = False
        super().validate_response(response)

    def raise_for_rejected_credential(self, response: requests.Response) -> t.NoReturn:
        line = self.error_line(response)
        credentials = self._tap.credentials
        if urlsplit(response.url).path.endswith(TOKEN_PATH):
            msg = (f"{line}. ISVapp rejected the OAuth2 client credentials: check the "
                   f"`client_id` and `client_secret` settings (token requested for scope "
                   f"`{self.scope}`).")
            raise AuthenticationError(msg)
        token = credentials.token(self.scope)
        if response.status_code == 401 and token is not None and not token.unproven_renewal:
            self.logger.warning("%s; renewing the OAuth2 token for scope %s once",
                                line, self.scope)
            self.renew_token(token)
            token.unproven_renewal = True
            raise VendorRetriableError(line, response)
        raise AuthenticationError(f"{line}. {credentials.rejection_hint(response.status_code, self.scope)}")
