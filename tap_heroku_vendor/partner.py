"""Partner mode (``api: partner``): Heroku's Platform API for Partners.

Heroku gives an add-on partner one OAuth grant per provisioned add-on resource; the
partner keeps its refresh token. This module holds what the partner streams share:

* the **installs** (resource uuid + refresh token) from the ``installs`` setting and/or
  the JSON Lines file of ``installs_file``;
* one **access token per install**, from ``POST <oauth_token_url>`` with
  ``grant_type=refresh_token``, renewed before ``expires_in`` runs out; a refused grant
  (``invalid_grant``) skips that install, a refused client (``invalid_client``) ends
  the run naming ``oauth_client_secret``;
* the **credentials per host**: the access token only to ``api_url``, the manifest
  credentials only to ``addons_api_url``, the client secret and refresh tokens only in
  the body of requests to ``oauth_token_url``;
* the optional **listing check** against ``addons.heroku.com/api/v3/apps``;
* **Range** pagination, and the counters behind the end-of-run summary.

Tokens and refresh tokens never reach a log line, a record, a context or the state:
the streams' contexts carry the resource uuid only, and ``Install`` hides its secrets
from ``repr``.
"""

from __future__ import annotations

import re
import time
import typing as t
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import orjson
from requests.auth import HTTPBasicAuth
from singer_sdk.exceptions import FatalAPIError
from singer_sdk.pagination import BaseAPIPaginator

from tap_common.auth import PerOriginAuth, origin
from tap_common.errors import CredentialRejectedError, PaginationError, PayloadError, VendorAPIError
from tap_common.http import RETRY_STATUSES, RenewedOnceOn401
from tap_common.ratelimit import RequestThrottle
from tap_common.redact import REDACTOR
from tap_common.responses import FirstOfEnvelopes, IdMessageEnvelope, OAuthErrorEnvelope
from tap_heroku_vendor.token_store import RotatedTokens

if t.TYPE_CHECKING:
    import logging

    import requests

    from tap_common.http import VendorClient

ACCEPT_V3 = "application/vnd.heroku+json; version=3"
DEFAULT_TOKEN_URL = "https://id.heroku.com/oauth/token"
DEFAULT_ADDONS_API_URL = "https://addons.heroku.com"
LISTING_PATH = "/api/v3/apps"
#: Heroku's largest page (``Range: id ..; max=1000``).
MAX_PAGE_SIZE = 1000
#: Renew an access token this long before it expires (at most a tenth of its lifetime).
RENEWAL_MARGIN_SECONDS = 300.0
#: Used when a token response has no ``expires_in`` (Heroku's access tokens: 8 hours).
DEFAULT_EXPIRES_IN = 28800.0
#: Refusals without an OAuth error code, before any token was issued, that end the run.
AMBIGUOUS_REFUSALS_BEFORE_FAILING = 3
#: RFC 6749 error codes about the token request itself (not about one install's grant).
OAUTH_REQUEST_ERRORS = frozenset({"invalid_request", "unauthorized_client",
                                  "unsupported_grant_type", "invalid_scope"})
#: Where the addons.heroku.com listing may carry the add-on resource uuid, in this order.
LISTING_UUID_FIELDS = ("resource.uuid", "resource_uuid", "addon.id", "addon_id", "addon.uuid",
                       "addon_uuid", "uuid")
#: id.heroku.com answers in RFC 6749's shape or in Heroku's own (both are read).
TOKEN_HOST_ENVELOPE = FirstOfEnvelopes(OAuthErrorEnvelope(), IdMessageEnvelope())
#: The state's list of installs a previous run owes (read them, or fail).
UNREAD_KEY = "installs_not_read"
#: Why a refused install is known to be still installed (words of the error line).
LISTED = "that addons.heroku.com still lists as installed"
OWED = ("that a previous run could not read although installed, or whose new refresh "
        "token it could not store")
_UUID_RE = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")


class InstallSkipped(Exception):  # noqa: N818  (a control-flow signal, not an error)
    """The install's grant was refused: its streams end quietly (caught per stream)."""


class InstallsError(FatalAPIError):
    """The installs setting or file cannot be read; the message never quotes a line."""


class InstallsLostError(FatalAPIError):
    """An install still installed was not read, or its new refresh token was not stored."""


class TokenRefused(FatalAPIError):
    """The OAuth host answered a token request with a 4xx."""

    def __init__(self, line: str, response: requests.Response) -> None:
        super().__init__(line)
        self.line = line
        self.status = response.status_code
        self.code = oauth_error_code(response)


@dataclass
class Install:
    """One provisioned add-on resource and its credentials (never shown by ``repr``)."""

    uuid: str
    refresh_token: str = field(repr=False)
    access_token: str | None = field(default=None, repr=False)
    expires_in: float = 0.0
    issued_at: float = 0.0
    skipped: bool = False
    #: Read from ``installs_file`` (where a rotated refresh token is written back).
    from_file: bool = False

    def token_is_fresh(self, now: float) -> bool:
        if self.access_token is None:
            return False
        margin = min(RENEWAL_MARGIN_SECONDS, self.expires_in / 10)
        return now - self.issued_at < self.expires_in - margin


# -- installs -----------------------------------------------------------------------------


def read_installs(config: t.Mapping[str, t.Any]) -> tuple[list[Install], list[str]]:
    """Installs from the ``installs`` setting, then the ``installs_file``; and warnings.

    A uuid given twice keeps its first refresh token (with a warning, no value shown).
    """
    entries: list[tuple[str, t.Any, bool]] = [
        (f"installs[{n}]", item, False) for n, item in enumerate(config.get("installs") or [])]
    path = config.get("installs_file")
    if path:
        entries += [(where, item, True) for where, item in _file_entries(Path(path))]
    installs: dict[str, Install] = {}
    duplicates = 0
    for where, item, from_file in entries:
        install = _install_from(where, item)
        install.from_file = from_file
        if install.uuid in installs:
            duplicates += 1
            continue
        installs[install.uuid] = install
    warnings = []
    if duplicates:
        warnings.append(f"{duplicates} install(s) given more than once (same resource_uuid); "
                        "the first refresh token of each is used")
    return sorted(installs.values(), key=lambda i: i.uuid), warnings


def _file_entries(path: Path) -> t.Iterator[tuple[str, t.Any]]:
    try:
        handle = path.open("rb")
    except OSError as exc:
        msg = f"installs_file {str(path)!r} cannot be read: {exc.strerror or exc}"
        raise InstallsError(msg) from None
    with handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            where = f"installs_file {str(path)!r} line {number}"
            try:
                yield where, orjson.loads(line)
            except orjson.JSONDecodeError:
                msg = f"{where} is not a JSON object (JSON Lines: one install per line); the line is not shown"
                raise InstallsError(msg) from None


def _install_from(where: str, item: t.Any) -> Install:
    if not isinstance(item, dict):
        msg = f"{where} is not an object with resource_uuid and refresh_token"
        raise InstallsError(msg)
    resource = item.get("resource_uuid")
    refresh = item.get("refresh_token")
    missing = [name for name, value in (("resource_uuid", resource), ("refresh_token", refresh))
               if not isinstance(value, str) or not value.strip()]
    if missing:
        msg = f"{where} has no {' and no '.join(missing)} (a non-empty string each)"
        raise InstallsError(msg)
    # Each refresh token on its own, the moment it is read (from a file too).
    REDACTOR.add_secret(refresh.strip())
    return Install(uuid=resource.strip().lower(), refresh_token=refresh.strip())


# -- OAuth responses ----------------------------------------------------------------------


def oauth_error_code(response: requests.Response) -> str:
    """``invalid_grant`` etc. from an RFC 6749 body (``error``) or Heroku's (``id``)."""
    try:
        payload = orjson.loads(response.content or b"")
    except orjson.JSONDecodeError:
        return ""
    if not isinstance(payload, dict):
        return ""
    for key in ("error", "id"):
        value = payload.get(key)
        if isinstance(value, str):
            return value
    return ""


# -- pagination ---------------------------------------------------------------------------


class RangePaginator(BaseAPIPaginator[t.Optional[str]]):
    """Heroku's ``Range`` paging: a ``206`` with ``Next-Range`` means there is more.

    The next request repeats the ``Next-Range`` value as its ``Range`` header.
    """

    def __init__(self) -> None:
        super().__init__(None)

    def get_next(self, response: requests.Response) -> str | None:
        if response.status_code != 206:  # noqa: PLR2004
            return None
        return response.headers.get("Next-Range") or None


def first_range(page_size: int) -> str:
    return f"id ..; max={page_size}"


# -- pacing -------------------------------------------------------------------------------


class PerInstallThrottle:
    """``RequestThrottle`` with Heroku's pool tracked per access token (install).

    ``requests_per_second`` still spaces every request of the run; the pool pacing
    (``RateLimit-Remaining`` at or below the reserve) applies to the install whose
    response reported it.
    """

    def __init__(self, requests_per_second: float | None, *, pool_reserve: int = 0,
                 pool_refill_per_second: float | None = None) -> None:
        self._rate = RequestThrottle(requests_per_second)
        self._pool_settings = {"pool_reserve": pool_reserve,
                               "pool_refill_per_second": pool_refill_per_second}
        self._pools: dict[str | None, RequestThrottle] = {}
        self.key: str | None = None

    def _pool(self) -> RequestThrottle:
        pool = self._pools.get(self.key)
        if pool is None:
            pool = self._pools[self.key] = RequestThrottle(None, **self._pool_settings)
        return pool

    def acquire(self) -> None:
        self._rate.acquire()
        self._pool().acquire()

    def observe(self, headers: t.Mapping[str, str]) -> None:
        self._pool().observe(headers)

    def forget(self, key: str) -> None:
        """The install is done: its pool state is no longer needed."""
        self._pools.pop(key, None)


# -- the current install's token ------------------------------------------------------


class InstallToken(RenewedOnceOn401):
    """The access token of the install being read, to ``api_url`` only (see
    ``PerOriginAuth``). Applied by the client to every attempt: a retry after a long
    backoff gets a valid token, fetched through the same client, or ``InstallSkipped``.
    A 401 (a token revoked or expired early) gets one fresh token and the request once
    more."""

    def __init__(self, session: PartnerSession) -> None:
        self.session = session

    def sign(self, request: requests.PreparedRequest) -> None:
        self.session.ensure_token()
        install = self.session.current
        if install is not None and install.access_token:
            request.headers["Authorization"] = f"Bearer {install.access_token}"

    def renew(self, rejected: requests.Response) -> bool:
        session = self.session
        install = session.current
        if install is None:
            return False
        session.requests["api"] += 1  # the stream only sees the answer to the request sent again
        session.logger.warning("%s; renewing the access token of add-on resource %s once",
                               session.client.error_line(rejected), install.uuid)
        install.access_token = None
        return True


# -- the session --------------------------------------------------------------------------


class PartnerSession:
    """Everything the partner streams of one run share: installs, tokens, counters."""

    def __init__(self, config: t.Mapping[str, t.Any], client: VendorClient,
                 logger: logging.Logger) -> None:
        self.config = config
        self.client = client
        self.throttle = client.throttle
        self.logger = logger
        self.api_url = str(config["api_url"]).rstrip("/")
        self.token_url = str(config.get("oauth_token_url") or DEFAULT_TOKEN_URL)
        self.addons_url = str(config.get("addons_api_url") or DEFAULT_ADDONS_API_URL).rstrip("/")
        self.page_size = int(config.get("page_size") or MAX_PAGE_SIZE)
        self._client_secret = str(config.get("oauth_client_secret") or "")
        manifest = (config.get("manifest_id"), config.get("manifest_password"))
        self._manifest = manifest if all(manifest) else None
        self.origins = {"api": origin(self.api_url), "token": origin(self.token_url),
                        "addons": origin(self.addons_url)}
        self.installs: dict[str, Install] = {}
        self.current: Install | None = None
        self.prepared = False
        self.started = time.monotonic()
        self.requests: Counter[str] = Counter()
        self.tokens_issued = 0
        self.ambiguous_refusals = 0
        self.skipped: list[str] = []
        self.not_found: list[str] = []
        self.without_token: list[str] = []
        self.refusals: dict[tuple[str, int], list[str]] = defaultdict(list)
        self.synced_apps: set[str] = set()
        #: The installs addons.heroku.com lists (None: no listing was read).
        self.listed: set[str] | None = None
        #: Installs whose grant was refused though they are still installed.
        self.refused_installed: list[str] = []
        self.rotated_tokens = RotatedTokens(config.get("installs_file"), logger)
        #: The state's installs owed by previous runs, and those still owed now.
        self.owed_before: set[str] = set()
        self.unread: set[str] = set()
        self._recalled = False
        #: The first refusal line per kind of evidence that the install is still there.
        self._refusal_lines: dict[str, str] = {}
        self.authenticator = PerOriginAuth({self.api_url: InstallToken(self),
                                            self.addons_url: self._manifest_auth})

    # -- credentials (each only for its own origin: see PerOriginAuth) ---------------

    def _manifest_auth(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        if self._manifest is None:
            return request
        return HTTPBasicAuth(*self._manifest)(request)

    def host_of(self, url: str) -> str | None:
        """``api``, ``token`` or ``addons``: which configured host a URL is on."""
        found = origin(url)
        for name, value in self.origins.items():
            if found == value:
                return name
        return None

    # -- start of the run: installs and the listing check -----------------------------

    def prepare(self, caller: str) -> None:
        """Read the installs and, with manifest credentials, compare them to Heroku's list
        (a failure of that is ``caller``'s, the stream that asked)."""
        if self.prepared:
            return
        self.prepared = True
        installs, warnings = read_installs(self.config)
        for warning in warnings:
            self.logger.warning("partner mode: %s", warning)
        self.installs = {i.uuid: i for i in installs}
        self.logger.info("partner mode: %d install(s) with a refresh token", len(installs))
        if self._manifest is not None:
            self.check_listing(caller)

    def check_listing(self, caller: str) -> None:
        listed, rows = self.list_installs(caller)
        self.listed = set(listed)
        self.without_token = sorted(set(listed) - set(self.installs))
        for resource in self.without_token:
            self.logger.warning(
                "partner mode: add-on resource %s is installed (addons.heroku.com lists it) "
                "but has no refresh token in installs/installs_file: not read", resource)
        if self.without_token:
            self.logger.warning(
                "partner mode: %d of %d installed add-on resource(s) have no refresh token "
                "and were not read", len(self.without_token), len(set(listed)))
        unlisted = set(self.installs) - set(listed)
        if unlisted:
            self.logger.info(
                "partner mode: %d install(s) with a refresh token are not in addons.heroku.com's "
                "list (deprovisioned since?); they are tried all the same", len(unlisted))
        unidentified = rows - len(listed)
        if unidentified:
            self.logger.warning("partner mode: %d of %d entries of addons.heroku.com's list "
                                "carry no resource uuid", unidentified, rows)

    def list_installs(self, caller: str) -> tuple[list[str], int]:
        """Every resource uuid of ``GET <addons_api_url>/api/v3/apps``, following pages."""
        url: str | None = self.addons_url + LISTING_PATH
        listed: list[str] = []
        rows = 0
        seen_fields: set[str] = set()
        pages = 0
        requested = {url}
        while url:
            response = self.client.send(
                "GET", url, caller=caller, headers={"Accept": "application/json"},
                follow_redirects=False, credentials=self.authenticator,
                validate=self.check_listing_response)
            pages += 1
            entries = listing_entries(self.client.decode_json(response))
            for entry in entries:
                rows += 1
                seen_fields.update(entry)
                resource = listing_uuid(entry)
                if resource:
                    listed.append(resource)
            url = response.links.get("next", {}).get("url")
            if url and self.host_of(url) != "addons":
                msg = (f"{self.client.where(response)}: addons.heroku.com's list pointed its next "
                       "page at another host; the manifest credentials are only sent to "
                       "addons_api_url")
                raise PayloadError(msg)
            # The same guards as the shared page loop (VendorRESTStream.request_records).
            if url and not entries:
                msg = (f"{self.client.where(response)}: page {pages} of addons.heroku.com's list is "
                       "empty but announces more pages; an empty page in the middle is an "
                       "error, not the end")
                raise PaginationError(msg)
            if url in requested:
                msg = (f"{self.client.where(response)}: addons.heroku.com's list points to a page "
                       f"already read as page {pages + 1}: the pagination loops")
                raise PaginationError(msg)
            requested.add(url)
            if pages > 10_000:  # noqa: PLR2004
                msg = "addons.heroku.com's list did not end after 10,000 pages"
                raise PayloadError(msg)
        if rows and not listed:
            msg = (f"addons.heroku.com {LISTING_PATH}: none of its {rows} entries carries a "
                   f"resource uuid (looked for {', '.join(LISTING_UUID_FIELDS)}; the entries "
                   f"have {', '.join(sorted(seen_fields)) or 'no fields'}). Heroku does not "
                   "publish this list's fields; unset manifest_id/manifest_password to skip "
                   "the check, and please report the field names")
            raise PayloadError(msg)
        return listed, rows

    # -- per install ------------------------------------------------------------------

    def pending(self, after: str | None) -> list[str]:
        """Install uuids to read, in order, after the one a killed run finished last."""
        return [u for u in self.installs if after is None or u > after]

    def use(self, resource_uuid: str) -> Install | None:
        """Make ``resource_uuid`` the install whose token signs the next requests."""
        install = self.installs.get(resource_uuid)
        self.current = install
        if hasattr(self.throttle, "key"):
            self.throttle.key = resource_uuid
        return install

    def finished(self, resource_uuid: str) -> None:
        install = self.installs.get(resource_uuid)
        if install is not None:
            install.access_token = None  # not needed any more
            if not install.skipped:
                self.unread.discard(resource_uuid)
        if hasattr(self.throttle, "forget"):
            self.throttle.forget(resource_uuid)

    def ensure_token(self) -> None:
        """A valid access token for the current install, or ``InstallSkipped``."""
        install = self.current
        if install is None:
            return
        if install.skipped:
            raise InstallSkipped(install.uuid)
        if not install.token_is_fresh(time.monotonic()):
            self.renew(install)

    def renew(self, install: Install) -> None:
        requested_at = time.monotonic()
        form = {"grant_type": "refresh_token", "refresh_token": install.refresh_token,
                "client_secret": self._client_secret}
        try:
            response = self.client.send(
                "POST", self.token_url, data=form, headers={"Accept": "application/json"},
                follow_redirects=False, credentials=self.authenticator,
                validate=self.check_token_response)
        except TokenRefused as refused:
            self.refused(install, refused)
            raise InstallSkipped(install.uuid) from None
        payload = self.client.decode_json(response, "$", fields=("access_token",))
        token = payload["access_token"]
        if not isinstance(token, str):
            msg = (f"{self.client.where(response)}: the token response for add-on resource "
                   f"{install.uuid} has an access_token that is not a string")
            raise PayloadError(msg)
        REDACTOR.add_secret(token)
        try:
            expires_in = float(payload.get("expires_in") or DEFAULT_EXPIRES_IN)
        except (TypeError, ValueError):
            expires_in = DEFAULT_EXPIRES_IN
        new_refresh = payload.get("refresh_token")
        if isinstance(new_refresh, str) and new_refresh and new_refresh != install.refresh_token:
            # The old one may stop working: stored, or the run ends naming the install.
            self.rotated_tokens.rotated(install.uuid, install.refresh_token, new_refresh,
                                        from_file=install.from_file)
            install.refresh_token = new_refresh
        install.access_token = token
        install.expires_in = expires_in
        install.issued_at = requested_at
        self.tokens_issued += 1
        self.logger.debug("partner mode: access token for add-on resource %s (valid %g s)",
                          install.uuid, expires_in)

    # -- answers of the token and listing hosts ----------------------------------------

    def check_token_response(self, response: requests.Response) -> None:
        self.requests["token"] += 1
        if _final(response):
            raise TokenRefused(self.client.error_line(response), response)
        self.client.check(response)

    def check_listing_response(self, response: requests.Response) -> None:
        self.requests["addons"] += 1
        if _final(response):
            line = self.client.error_line(response)
            if response.status_code in (401, 403):  # noqa: PLR2004
                msg = (f"{line}. addons.heroku.com rejected the add-on manifest credentials: "
                       "check `manifest_id` and `manifest_password` (or unset both to skip "
                       "the check for installs without a refresh token).")
                raise CredentialRejectedError(msg)
            msg = (f"{line}. The list of installs ({LISTING_PATH} on `addons_api_url`) is not "
                   "publicly documented; unset `manifest_id` and `manifest_password` to run "
                   "without the check for installs without a refresh token.")
            raise VendorAPIError(msg)
        self.client.check(response)

    def refused(self, install: Install, refused: TokenRefused) -> None:
        """A 4xx from the token endpoint: skip the install, or end the run."""
        client_hint = (
            "check the `oauth_client_secret` setting (the add-on's OAuth client secret, "
            "from the Add-on Partner Portal; `oauth_token_url` must be Heroku's token endpoint)")
        if refused.code == "invalid_client":
            msg = f"{refused.line}. Heroku refused the OAuth client: {client_hint}."
            raise CredentialRejectedError(msg)
        if refused.code in OAUTH_REQUEST_ERRORS:
            # The token endpoint says the request itself is wrong, not this install's
            # grant: every install would be skipped alike, so the run ends.
            msg = (f"{refused.line}. Heroku's token endpoint refused the request itself "
                   f"({refused.code}), not this install's grant: check `oauth_token_url`.")
            raise VendorAPIError(msg)
        if refused.code != "invalid_grant":
            if refused.status not in (400, 401, 403):  # noqa: PLR2004
                raise refused
            # No OAuth error code: a refused client and a refused grant look alike. A
            # client secret that already worked in this run is not the cause.
            self.ambiguous_refusals += 1
            if self.tokens_issued == 0 and (
                self.ambiguous_refusals >= min(AMBIGUOUS_REFUSALS_BEFORE_FAILING, len(self.installs))
            ):
                msg = (f"{refused.line}. Heroku refused the first {self.ambiguous_refusals} "
                       f"token request(s) without saying why: {client_hint}, and that the "
                       "refresh tokens belong to this add-on.")
                raise CredentialRejectedError(msg)
        install.skipped = True
        install.access_token = None
        evidence = self.still_installed(install.uuid)
        if evidence:
            # Its rows would be missing from a green run. The other installs are read;
            # the run ends with an error naming it.
            self.refused_installed.append(install.uuid)
            self.unread.add(install.uuid)
            self.logger.warning(
                "partner mode: Heroku refused the refresh token of add-on resource %s (%s), "
                "which %s: not read; the run will end with an error naming it", install.uuid,
                refused.code or f"HTTP {refused.status}", evidence)
            self._refusal_lines.setdefault(evidence, refused.line)
            return
        self.unread.discard(install.uuid)  # deprovisioned: owed no more
        self.skipped.append(install.uuid)
        self.logger.warning(
            "partner mode: add-on resource %s skipped: Heroku refused its refresh token (%s: "
            "deprovisioned, or the grant was revoked); %d install(s) skipped so far",
            install.uuid, refused.code or f"HTTP {refused.status}", len(self.skipped))

    def api_refused(self, stream_name: str, status: int) -> None:
        """A 403/404 from the Platform API: a warning the first time per stream and status."""
        install = self.current
        resource = install.uuid if install else "?"
        seen = self.refusals[(stream_name, status)]
        seen.append(resource)
        if len(seen) == 1:
            meaning = ("the partner token may not call this endpoint" if status == 403  # noqa: PLR2004
                       else "not found (deprovisioned or deleted)")
            self.logger.warning(
                "%s: HTTP %d for add-on resource %s (%s); skipped for this install, and further "
                "%d answers of this stream are counted in the summary at the end of the run",
                stream_name, status, resource, meaning, status)

    # -- installs that must not go missing quietly ------------------------------------

    def still_installed(self, resource_uuid: str) -> str | None:
        """Why a refused install counts as installed (None: deprovisioned, or unknown).

        addons.heroku.com's listing decides when it was read. Without it, the state
        decides: an install a previous run could not read although it was installed, or
        whose new refresh token it could not store, stays owed until it is read again
        (or leaves the installs)."""
        if self.listed is not None:
            return LISTED if resource_uuid in self.listed else None
        return OWED if resource_uuid in self.owed_before else None

    def recall(self, state: t.Mapping[str, t.Any]) -> None:
        """The installs a previous run left unread (uuids only; the state never holds a
        token). Once per run: later calls keep what this run found."""
        if self._recalled:
            return
        self._recalled = True
        owed = state.get(UNREAD_KEY)
        self.owed_before = {u for u in owed if isinstance(u, str)} if isinstance(owed, list) else set()
        self.unread = set(self.owed_before)

    def remember(self, state: dict) -> None:
        """Into the state: the installs still owed (refused though installed, or whose new
        refresh token is not stored yet), so the next run cannot skip them quietly."""
        owed = (self.unread | set(self.rotated_tokens.pending) | set(self.rotated_tokens.unsaved)) \
            & set(self.installs)
        if owed:
            state[UNREAD_KEY] = sorted(owed)
        else:
            state.pop(UNREAD_KEY, None)

    # -- the end of the run -----------------------------------------------------------

    def failure_line(self, stream_name: str) -> str | None:
        """The run's one error line when an install that is still installed was not read,
        or a new refresh token is known only to this process (None: nothing lost)."""
        self.rotated_tokens.write()
        parts = []
        for evidence, line in self._refusal_lines.items():
            resources = sorted(u for u in self.refused_installed
                               if self.still_installed(u) == evidence)
            parts.append(
                f"{line}. Heroku refused the refresh tokens of {len(resources)} add-on "
                f"resource(s) {evidence}, so their rows are missing: {', '.join(resources)}. "
                "Update their refresh tokens (rotated or re-issued) in your installs store")
        lost = self.rotated_tokens.failure_line(stream_name)
        if lost:
            parts.append(lost if not parts else lost.split(": ", 1)[1])
        return "; and ".join(parts) or None

    def summary(self) -> str:
        seconds = time.monotonic() - self.started
        read = len(self.installs) - len(self.skipped) - len(self.refused_installed)
        total = sum(self.requests.values())
        parts = [
            f"partner mode: {len(self.installs)} install(s), {read} read, "
            f"{len(self.skipped)} skipped (refresh token refused)",
        ]
        if self.refused_installed:
            parts.append(f"{len(self.refused_installed)} refused though still installed")
        if self.without_token:
            parts.append(f"{len(self.without_token)} installed without a refresh token")
        parts.append(
            f"{total} requests ({self.requests['api']} Platform API, {self.requests['token']} "
            f"token, {self.requests['addons']} addons.heroku.com) in {seconds:.1f} s")
        for (stream_name, status), resources in sorted(self.refusals.items()):
            parts.append(f"{stream_name}: HTTP {status} for {len(resources)} install(s)")
        return "; ".join(parts)

    def figures(self) -> dict[str, t.Any]:
        """The summary as numbers (for tests and benchmarks)."""
        return {
            "installs": len(self.installs), "skipped": list(self.skipped),
            "without_token": list(self.without_token), "requests": dict(self.requests),
            "refused_installed": list(self.refused_installed),
            "rotated_stored": list(self.rotated_tokens.stored),
            "tokens_issued": self.tokens_issued,
            "refusals": {f"{s}:{c}": len(r) for (s, c), r in self.refusals.items()},
            "seconds": time.monotonic() - self.started,
        }


# -- the addons.heroku.com listing, read loosely ------------------------------------------


def listing_entries(payload: t.Any) -> list[dict]:
    """The entries of the listing: a bare array, or the first array of objects in an object."""
    if isinstance(payload, list):
        return [e for e in payload if isinstance(e, dict)]
    if isinstance(payload, dict):
        for key in ("apps", "data", "items", "results", "installs"):
            value = payload.get(key)
            if isinstance(value, list):
                return [e for e in value if isinstance(e, dict)]
        for value in payload.values():
            if isinstance(value, list) and value and all(isinstance(e, dict) for e in value):
                return value
        return []
    msg = f"addons.heroku.com {LISTING_PATH} answered {type(payload).__name__}, not a list"
    raise PayloadError(msg)


def listing_uuid(entry: dict) -> str | None:
    for dotted in LISTING_UUID_FIELDS:
        value: t.Any = entry
        for name in dotted.split("."):
            value = value.get(name) if isinstance(value, dict) else None
        if isinstance(value, str) and _UUID_RE.match(value):
            return value.lower()
    return None


def _final(response: requests.Response) -> bool:
    """An error status that no retry will change."""
    return response.status_code >= 400 and response.status_code not in RETRY_STATUSES  # noqa: PLR2004

