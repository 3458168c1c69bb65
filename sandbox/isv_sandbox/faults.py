"""Named kinds of vendor misbehaviour, applicable to any endpoint of any sandbox.

``fault(kind, app, key=...)`` gives the keyword arguments of ``SandboxServer.add_fault``
for one kind; the fault matrix (tests/test_fault_matrix.py) applies every kind that fits
to every endpoint the taps call. The error envelope is the vendor's own
(``VendorApp.error_envelope``), so the same kind reads as ISVapp's ``success: false``,
Atlassian's ``errors`` or Heroku's ``id``/``message``.
"""

from __future__ import annotations

import re
import typing as t
from urllib.parse import urlencode

import orjson

from isv_sandbox.core import Request, Response, VendorApp

#: Every kind, in the order the matrix lists them.
KINDS = (
    "envelope_200",            # the vendor's error envelope with HTTP 200 (not transient)
    "envelope_200_transient",  # the same, in words that say "try again"
    "envelope_4xx",            # the envelope with 400
    "envelope_5xx",            # the envelope with 503 (retried)
    "wrong_shape",             # an object where an array is documented, or the reverse
    "missing_key",             # the records key renamed
    "empty_page",              # a page emptied, its link to the next page kept
    "truncated",               # the body cut short, with a matching Content-Length
    "reset",                   # half the body, then the connection drops
    "slow",                    # half the body, then a stall longer than the tap's timeout
    "huge_retry_after",        # 429 with Retry-After: 3600
    "unknown_status",          # an export status nobody documented (CANCELLED)
    "same_page_next",          # the next-page pointer points at the page itself
    "unreachable",             # the connection closes without an answer, every time
    "forbidden",               # 403 in the vendor's envelope (a per-item refusal)
    "not_found",               # 404 in the vendor's envelope (deleted since it was listed)
    "invalid_grant",           # an OAuth refresh-token grant refused (RFC 6749 invalid_grant)
    "echo_json",               # 400 in the vendor's envelope, quoting the request's credentials
    "echo_text",               # 400 in plain text, quoting the request's credentials
)
#: Kinds that need a page with a next-page pointer.
PAGING_KINDS = frozenset({"empty_page", "same_page_next"})
#: Kinds that rewrite a JSON body.
JSON_KINDS = frozenset({"wrong_shape", "missing_key", "empty_page", "same_page_next",
                        "unknown_status"})
#: Refusals of one item (an install, a resource) that a tap may document as tolerated.
REFUSAL_KINDS = frozenset({"forbidden", "not_found", "invalid_grant"})
ENVELOPE_KINDS = frozenset({"envelope_200", "envelope_200_transient", "envelope_4xx",
                            "envelope_5xx"})
#: Kinds whose error message echoes what the request carried (its credentials).
ECHO_KINDS = frozenset({"echo_json", "echo_text"})
#: Statuses that are rewritten to an unknown one by ``unknown_status``.
KNOWN_EXPORT_STATUSES = frozenset({"PENDING", "QUEUED", "IN_PROGRESS", "COMPLETED"})
UNKNOWN_STATUS = "CANCELLED"
STALL_SECONDS = 1.0
#: The statuses of the refusal kinds.
REFUSAL_STATUSES = {"forbidden": 403, "not_found": 404, "invalid_grant": 400}
_LINK_NEXT_RE = re.compile(r'<([^>]*)>\s*;\s*rel="?next"?')


def fault(kind: str, app: VendorApp, *, key: str | None = None,
          stall_seconds: float = STALL_SECONDS) -> dict[str, t.Any]:
    """``add_fault`` keyword arguments (all but the path) for one kind.

    ``key`` is where the endpoint's records are (``missing_key``, ``empty_page``).
    """
    envelope = {"Content-Type": "application/json"}
    if kind == "envelope_200":
        return {"status": 200, "headers": envelope,
                "body": app.error_envelope("Report generation failed: invalid state", 200)}
    if kind == "envelope_200_transient":
        return {"status": 200, "headers": envelope, "body": app.error_envelope(
            "Temporarily unable to retrieve data, please try again", 200)}
    if kind == "envelope_4xx":
        return {"status": 400, "headers": envelope,
                "body": app.error_envelope("Invalid request parameters", 400)}
    if kind == "envelope_5xx":
        return {"status": 503, "headers": envelope,
                "body": app.error_envelope("Service temporarily unavailable", 503)}
    if kind == "huge_retry_after":
        return {"status": 429, "headers": {**envelope, "Retry-After": "3600"},
                "body": app.error_envelope("Rate limit exceeded", 429)}
    if kind == "truncated":
        return {"kind": "truncate", "fraction": 0.6}
    if kind == "reset":
        return {"kind": "reset", "fraction": 0.5}
    if kind == "slow":
        return {"kind": "slow", "fraction": 0.5, "seconds": stall_seconds}
    if kind == "unreachable":
        return {"kind": "drop", "times": 1000}
    if kind in ECHO_KINDS:
        return {"kind": "transform",
                "transform": lambda request, response: echo(app, request, kind)}
    if kind in REFUSAL_KINDS:
        # A transform (not a canned answer), so the request refused can be looked at.
        return {"kind": "transform",
                "transform": lambda request, response: refusal(app, kind)}
    transforms: dict[str, t.Callable[[Request, Response], Response | None]] = {
        "wrong_shape": wrong_shape,
        "missing_key": lambda request, response: missing_key(response, key),
        "empty_page": lambda request, response: empty_page(app, request, response, key),
        "same_page_next": lambda request, response: same_page_next(app, request, response),
        "unknown_status": lambda request, response: unknown_status(response),
    }
    if kind in transforms:
        return {"kind": "transform", "transform": transforms[kind]}
    msg = f"unknown fault kind {kind!r}; known: {KINDS}"
    raise ValueError(msg)


def refusal(app: VendorApp, kind: str) -> Response:
    """The vendor's refusal of one item; an OAuth host says ``invalid_grant`` its own way."""
    status = REFUSAL_STATUSES[kind]
    if kind == "invalid_grant":
        body = app.oauth_error_body("invalid_grant", "Invalid refresh token.")  # type: ignore[attr-defined]
    else:
        body = app.error_envelope("You do not have access to this resource." if status == 403
                                  else "Couldn't find that resource.", status)
    return Response(status, body, {"Content-Type": "application/json"})


def received_credentials(request: Request) -> list[str]:
    """Every credential a request carried, as a vendor that quotes it back would: a
    Basic user's password and a bearer token decoded, each form field (refresh token,
    client secret), each query value (a signature), the path (a signed download key);
    then the raw body and Authorization header (last: a pattern that hides a header's
    value to the end of the line must not be what hides the rest)."""
    quoted = []
    basic = request.basic_auth()
    if basic is not None:
        quoted.append(f"user {basic[0]} with password {basic[1]} is not valid")
    token = request.bearer()
    if token is not None:
        quoted.append(f"access token {token} is not valid")
    text = request.body.decode("utf-8", "replace") if request.body else ""
    if "=" in text and not text.lstrip().startswith(("{", "[")):
        quoted += [f"{name.replace('_', ' ')} {value} is not valid"
                   for name, value in request.form().items()]
    quoted += [f"{value} does not match" for values in request.query.values() for value in values]
    quoted.append(f"for path {request.path}")
    if text:
        quoted.append(f"received {text[:400]}")
    header = request.headers.get("Authorization", "")
    if header:
        quoted.append(f"Authorization: {header}")
    return quoted


def echo(app: VendorApp, request: Request, kind: str) -> Response:
    """A 400 whose message repeats what the request sent: the vendor's envelope
    (``echo_json``) or plain text (``echo_text``)."""
    message = "Request rejected: " + "; ".join(received_credentials(request))
    if kind == "echo_json":
        return Response(400, app.error_envelope(message, 400), {"Content-Type": "application/json"})
    return Response(400, message.encode(), {"Content-Type": "text/plain"})


# -- rewriting a JSON answer ---------------------------------------------------------------


def _json(response: Response) -> t.Any:
    if response.status >= 300:
        return None
    body = response.body if isinstance(response.body, bytes) else b"".join(response.body)
    response.body = body  # a streamed body, now read: keep it for the normal answer
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError:
        return None


def _with(response: Response, payload: t.Any) -> Response:
    return Response(response.status, orjson.dumps(payload), dict(response.headers))


def wrong_shape(request: Request, response: Response) -> Response | None:
    """An object where the array should be ({"items": [...]}), or an array of the object."""
    payload = _json(response)
    if isinstance(payload, list):
        return _with(response, {"items": payload})
    if isinstance(payload, dict):
        return _with(response, [payload])
    return None


def missing_key(response: Response, key: str | None) -> Response | None:
    """The body without its records key (renamed, as a new API version might)."""
    payload = _json(response)
    if not isinstance(payload, dict) or not key or key not in payload:
        return None
    payload[f"{key}V2"] = payload.pop(key)
    return _with(response, payload)


def next_pointer(payload: t.Any, headers: t.Mapping[str, str]) -> bool:
    """Whether an answer says another page follows (any of the vendors' ways)."""
    if _LINK_NEXT_RE.search(headers.get("Link", "")) or headers.get("Next-Range"):
        return True
    if not isinstance(payload, dict):
        return False
    for links in (payload.get("_links"), payload.get("links"), payload):
        if isinstance(links, dict) and links.get("next"):
            return True
    return bool(payload.get("cursor"))


def empty_page(app: VendorApp, request: Request, response: Response,
               key: str | None) -> Response | None:
    """A page with no records that still announces the next one."""
    payload = _json(response)
    if not next_pointer(payload, response.headers):
        return None
    if isinstance(payload, list):
        return _with(response, [])
    if isinstance(payload, dict) and key and isinstance(payload.get(key), list):
        payload[key] = []
        return _with(response, payload)
    return None


def same_page_next(app: VendorApp, request: Request, response: Response) -> Response | None:
    """The next-page pointer aimed at the page that carries it."""
    payload = _json(response)
    if not next_pointer(payload, response.headers):
        return None
    if response.headers.get("Next-Range"):
        # Range paging (Heroku): "the same page again" is a Next-Range equal to the Range
        # this page was asked with (a first page asked without Range has no such value).
        current = request.headers.get("Range")
        if not current:
            return None
        return Response(response.status, response.body,
                        {**response.headers, "Next-Range": current})
    query = [(k, v) for k, values in request.query.items() for v in values]
    href = request.path + (f"?{urlencode(query)}" if query else "")
    if _LINK_NEXT_RE.search(response.headers.get("Link", "")):
        headers = dict(response.headers)
        headers["Link"] = _LINK_NEXT_RE.sub(f'<{app.base_url}{href}>; rel="next"',
                                           headers["Link"])
        return Response(response.status, response.body, headers)
    if not isinstance(payload, dict):
        return None
    for name in ("_links", "links"):
        links = payload.get(name)
        if isinstance(links, dict) and links.get("next"):
            links["next"] = _same_shape(links["next"], href)
            return _with(response, payload)
    if payload.get("next") and isinstance(payload["next"], (dict, list)):
        payload["next"] = _same_shape(payload["next"], href)
        return _with(response, payload)
    # A bare cursor token: the token this request was sent with (not on a first page).
    cursor = request.arg("cursor")
    if not cursor:
        return None
    for name in ("next", "cursor"):
        if isinstance(payload.get(name), str):
            payload[name] = cursor
            return _with(response, payload)
    return None


def _same_shape(link: t.Any, href: str) -> t.Any:
    if isinstance(link, list):
        return [_same_shape(item, href) for item in link]
    if isinstance(link, dict):
        return {**link, "href": href}
    return href


def unknown_status(response: Response) -> Response | None:
    """An export whose ``status`` is one no documentation lists."""
    payload = _json(response)
    changed = False

    def visit(value: t.Any) -> None:
        nonlocal changed
        if isinstance(value, dict):
            if value.get("status") in KNOWN_EXPORT_STATUSES:
                value["status"] = UNKNOWN_STATUS
                changed = True
            for item in value.values():
                visit(item)
        elif isinstance(value, list):
            for item in value:
                visit(item)

    visit(payload)
    return _with(response, payload) if changed else None
