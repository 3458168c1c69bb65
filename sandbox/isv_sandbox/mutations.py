"""Changes to a running sandbox's data, as a vendor makes them between and during runs.

For the model-based test of the state cycle (``tests/test_state_cycle_model.py``): rows are
inserted, updated and deleted, arrive late or dated in the future, gain fields, repeat;
apps and installs appear; refresh tokens rotate. Everything here works on a started
sandbox's app object, in the test's process; nothing is an HTTP endpoint.

* ``MarketplaceRows`` takes over a Marketplace sandbox's licenses, transactions and
  feedback: they become explicit lists (feedback served newest first, as the live API
  pages it), so any row can be changed or removed;
* ``during_next_page`` changes the data between page 1 and page 2 of the next read;
* ``recalculate_month``, ``taxonomy_rows``, ``delete_request``, ``update_request`` for
  ISVapp (``IsvappApp.add_request`` adds a late request);
* ``provision_install``, ``change_plan``, ``rotate_refresh_token``, ``reauthorize``,
  ``echo_next_grant`` for Heroku's partner APIs.
"""

from __future__ import annotations

import copy
import datetime as dt
import secrets
import typing as t
import uuid

import orjson

from isv_sandbox.core import Request, Response, SandboxServer
from isv_sandbox.marketplace import Query

if t.TYPE_CHECKING:
    from isv_sandbox.heroku_partner import HerokuPartnerApp
    from isv_sandbox.isvapp import IsvappApp
    from isv_sandbox.marketplace import MarketplaceApp

# -- Atlassian Marketplace ----------------------------------------------------------------

#: The field each kind is read by (what ``lastUpdated``/``startDate`` filters).
MARKETPLACE_DATE_FIELD = {"licenses": "lastUpdated", "transactions": "lastUpdated",
                          "feedback": "date"}


class MarketplaceRows:
    """A Marketplace sandbox's licenses, transactions and feedback as lists of rows.

    The generated rows are copied once; from then on the app serves these lists (with
    the same filters), and ``insert``/``update``/``delete`` change them.
    """

    def __init__(self, app: MarketplaceApp) -> None:
        self.app = app
        data = app.data
        everything = Query(atlassian=True)
        self.rows: dict[str, list[dict]] = {
            "licenses": list(data.licenses(everything)),
            "transactions": list(data.transactions(everything)),
            "feedback": list(data.feedback(everything)),
        }
        self._numbers = iter(range(10_000, 10**9))
        data.licenses = self._licenses  # type: ignore[method-assign]
        data.transactions = self._transactions  # type: ignore[method-assign]
        data.feedback = self._feedback  # type: ignore[method-assign]

    # -- what the API serves --------------------------------------------------------

    def _licenses(self, query: Query) -> t.Iterator[dict]:
        for row in self._of("licenses", query):
            if row["licenseSourceType"] == "Atlassian" and not query.atlassian:
                continue
            if query.start and row["maintenanceEndDate"] < query.start:
                continue
            if query.end and row["maintenanceStartDate"] > query.end:
                continue
            yield row

    def _transactions(self, query: Query) -> t.Iterator[dict]:
        for row in self._of("transactions", query):
            sale_date = row["purchaseDetails"]["saleDate"]
            if not (query.start and sale_date < query.start
                    or query.end and sale_date > query.end):
                yield row

    def _feedback(self, query: Query) -> t.Iterator[dict]:
        rows = [row for row in self._of("feedback", query)
                if not (query.start and row["date"] < query.start
                        or query.end and row["date"] > query.end)]
        # Newest first, as the live API pages it: a new row moves every other one down.
        yield from sorted(rows, key=lambda row: row["date"], reverse=True)

    def _of(self, kind: str, query: Query) -> t.Iterator[dict]:
        for row in list(self.rows[kind]):
            if query.product_ids is not None and row["productId"] not in query.product_ids:
                continue
            if kind != "feedback" and query.last_updated and (
                    row["lastUpdated"] < query.last_updated):
                continue
            yield copy.deepcopy(row)

    # -- changes --------------------------------------------------------------------

    def new_row(self, kind: str, day: str, app: dict | None = None) -> dict:
        """A row that did not exist, dated ``day`` (its ``lastUpdated``, or ``date``)."""
        number = next(self._numbers)
        data = self.app.data
        app = app or self.app.apps[number % len(self.app.apps)]
        if kind == "licenses":
            row = data.license(number, app, insights=False)
            row["licenseSourceType"] = "Non-Atlassian"
        elif kind == "transactions":
            # A sale line of a license of the same number, as the generated data has them.
            row = data.transaction(number, app, number, data.license_history(number)[0])
        else:
            row = data.feedback_row(number, day)
            row.update(addonKey=app["appKey"], productId=app["productId"],
                       addonName=app["appName"])
        row[MARKETPLACE_DATE_FIELD[kind]] = day
        return row

    def insert(self, kind: str, row: dict) -> dict:
        self.rows[kind].append(copy.deepcopy(row))
        return row

    def update(self, kind: str, index: int, **fields: t.Any) -> dict:
        """Row ``index`` (modulo the count) with ``fields`` changed; returns the old row."""
        rows = self.rows[kind]
        index %= len(rows)
        old = copy.deepcopy(rows[index])
        rows[index].update(fields)
        return old

    def delete(self, kind: str, index: int) -> dict:
        rows = self.rows[kind]
        return rows.pop(index % len(rows))

    def add_field(self, name: str, value: t.Any) -> None:
        """The vendor starts sending a new field in every row."""
        for rows in self.rows.values():
            for row in rows:
                row[name] = value


def during_next_page(server: SandboxServer, path: str,
                     change: t.Callable[[], t.Any]) -> t.Any:
    """Call ``change`` right after the next page 1 (``offset=0``) of ``path`` (a regex) is
    computed, before it is sent: the following pages are served from the changed data.
    Returns the server's fault (its ``applied`` tells whether it happened)."""

    def after_first_page(request: Request, response: Response) -> Response | None:
        if request.arg("offset", "0") not in ("0", ""):
            return None
        change()
        return response

    return server.add_fault(path, kind="transform", transform=after_first_page, method="GET")


# -- ISVapp ----------------------------------------------------------------------------


def recalculate_month(app: IsvappApp, month: str) -> None:
    """ISVapp recalculates ``month``: its taxonomy exports give other figures from now on."""
    revisions: dict[str, int] = app.__dict__.setdefault("_month_revisions", {})
    revisions[month] = revisions.get(month, 0) + 1
    if "export_lines" in app.__dict__:
        return
    original = type(app).export_lines

    def export_lines(export: dict) -> t.Iterator[bytes]:
        for line in original(app, export):
            yield _revised(line, revisions)

    app.export_lines = export_lines  # type: ignore[method-assign]


def _revised(line: bytes, revisions: dict[str, int]) -> bytes:
    try:
        row = orjson.loads(line)
    except orjson.JSONDecodeError:
        return line
    revision = revisions.get(row.get("reference_date"), 0)
    if not revision:
        return line
    for name in ("unique_users", "unique_users_external", "operations", "operations_external"):
        row[name] = str(int(row[name]) + 7 * revision)
    return orjson.dumps(row) + b"\n"


def taxonomy_rows(app: IsvappApp, months: t.Iterable[str], taxonomy_ids: list[str]) -> list[dict]:
    """The rows a TAXONOMY_ITEM export of ``months`` holds now (recalculations included)."""
    export = {"_months": list(months), "_items": app._items_for("taxonomy_ids", taxonomy_ids),
              "_accounts": None}
    return [orjson.loads(line) for line in app.export_lines(export)]


def delete_request(app: IsvappApp, index: int) -> dict:
    """A raw request Salesforce withdraws (index modulo the count)."""
    return app.requests_data.pop(index % len(app.requests_data))


def update_request(app: IsvappApp, index: int, **fields: t.Any) -> dict:
    """A raw request listed with other values from now on; returns it."""
    row = app.requests_data[index % len(app.requests_data)]
    row.update(fields)
    return row


# -- Heroku partner --------------------------------------------------------------------


def provision_install(app: HerokuPartnerApp) -> dict:
    """A new install of the add-on on a new app: ``{"resource_uuid", "refresh_token"}``."""
    template = next(iter(app.addons.values()))
    number = len(app.addons)
    customer_app = app.make_app(number)
    resource = app.new_id()
    addon = copy.deepcopy(template)
    ref = {"id": customer_app["id"], "name": customer_app["name"]}
    addon.update(id=resource, name=f"{app.settings.manifest_id}-new-{number}", app=ref,
                 billing_entity={**ref, "type": "app"}, provider_id=str(number + 1),
                 created_at=_now(), updated_at=_now())
    for n, var in enumerate(addon["_config"]):
        var["value"] = f"secret-value-{resource[:8]}-{n}"
    for attachment in addon["_attachments"]:
        attachment.update(id=app.new_id(), app=ref,
                          addon={"id": resource, "name": addon["name"], "app": ref})
    refresh = f"refresh-{secrets.token_hex(12)}"
    with app._lock:
        app.addons[resource] = addon
        app.refresh_tokens[refresh] = resource
        install = {"resource_uuid": resource, "refresh_token": refresh}
        app.install_list.append(install)
    return dict(install)


def change_plan(app: HerokuPartnerApp, index: int, plan: str) -> dict:
    """The customer changes the plan of install ``index`` (modulo the count)."""
    addon = list(app.addons.values())[index % len(app.addons)]
    addon["plan"] = {"id": str(uuid.uuid4()), "name": f"{app.settings.manifest_id}:{plan}"}
    addon["updated_at"] = _now()
    return addon


def rotate_refresh_token(app: HerokuPartnerApp, resource: str) -> None:
    """The token host answers the next grant for ``resource`` with a new refresh token;
    the one presented stops working."""
    _token_hooks(app)["rotate"].add(resource)


def echo_next_grant(app: HerokuPartnerApp) -> None:
    """The next grant is refused (400 ``invalid_grant``, once) with a message that quotes
    the refresh token and client secret it received, as some OAuth servers do."""
    _token_hooks(app)["echo"] = True


def _token_hooks(app: HerokuPartnerApp) -> dict:
    hooks = app.__dict__.get("_token_hooks")
    if hooks is not None:
        return hooks
    hooks = app.__dict__["_token_hooks"] = {"rotate": set(), "echo": False, "retired": []}
    original = type(app).issue_token

    def issue_token(request: Request) -> Response:
        form = request.form()
        if hooks["echo"]:
            hooks["echo"] = False
            return app.oauth_error(
                400, "invalid_grant",
                f"Refresh token {form.get('refresh_token')} is not valid for client secret "
                f"{form.get('client_secret')}")
        response = original(app, request)
        resource = app.refresh_tokens.get(form.get("refresh_token", ""))
        if response.status != 200 or resource not in hooks["rotate"]:
            return response
        hooks["rotate"].discard(resource)
        new = f"refresh-{secrets.token_hex(12)}"
        with app._lock:
            old = form["refresh_token"]
            del app.refresh_tokens[old]
            app.refresh_tokens[new] = resource
            hooks["retired"].append(old)
        body = orjson.loads(response.body)  # type: ignore[arg-type]
        body["refresh_token"] = new
        return Response.json(body)

    app.issue_token = issue_token  # type: ignore[method-assign]
    return hooks


def reauthorize(app: HerokuPartnerApp, resource: str) -> str:
    """The partner re-authorizes an install (a new OAuth grant for it): a new refresh
    token, and the ones it had stop working. Returns the new token."""
    hooks = _token_hooks(app)
    new = f"refresh-{secrets.token_hex(12)}"
    with app._lock:
        for token, owner in list(app.refresh_tokens.items()):
            if owner == resource:
                del app.refresh_tokens[token]
                hooks["retired"].append(token)
        app.refresh_tokens[new] = resource
    return new


def retired_refresh_tokens(app: HerokuPartnerApp) -> list[str]:
    """Refresh tokens that worked once and were rotated away (still secrets)."""
    return list(_token_hooks(app)["retired"])


def _now() -> str:
    return dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
