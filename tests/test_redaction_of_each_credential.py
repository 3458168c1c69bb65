"""Each credential a tap holds is redacted on its own, in every form a host may quote it.

Issue 18: the ``installs`` setting was registered as one string (the whole list), so no
single refresh token was; a vendor echoing a form body shows a token URL-encoded; a
vendor message cut to its first 300 characters kept the first part of a token that
straddled the cut. The end-to-end checks are the fault matrix's echo kinds and
tests/test_heroku_partner_tokens.py.
"""

from __future__ import annotations

import json
from urllib.parse import quote, urlencode

import requests

from tap_common.errors import vendor_message
from tap_common.redact import REDACTED, Redactor
from tap_heroku_vendor.tap import TapHerokuVendor


def test_each_element_of_a_secret_list_setting_is_registered_but_not_its_ids():
    tokens = ["rt-first/token+with=signs", "rt-second-token-0123456789"]
    config = {"api": "partner", "api_url": "http://127.0.0.1:9", "oauth_client_secret": "cs-secret-1",
              "installs": [{"resource_uuid": f"0000000{n}-aaaa-4bbb-8ccc-dddddddddddd",
                            "refresh_token": token} for n, token in enumerate(tokens)]}
    TapHerokuVendor(config=config, parse_env_config=False, validate_config=False)
    from tap_common.redact import redact

    for token in tokens:
        assert redact(f"Refresh token {token} is not valid") == f"Refresh token {REDACTED} is not valid"
    uuid = config["installs"][0]["resource_uuid"]
    assert redact(f"add-on resource {uuid}") == f"add-on resource {uuid}"


def test_a_secret_is_redacted_url_encoded_and_json_escaped():
    redactor = Redactor()
    secret = "s3cr3t/with+plus&amp=eq"
    redactor.add_secret(secret)
    body = urlencode({"grant_type": "refresh_token", "refresh_token": secret})
    echoed = [f"received {body}", f"received {quote(secret, safe='')}",
              json.dumps({"message": f"token {secret}"}),
              json.dumps({"message": f"token {secret}"}).replace("/", "\\/")]
    for text in echoed:
        shown = redactor.redact(text)
        for form in (secret, quote(secret, safe=""), "s3cr3t"):
            assert form not in shown, shown


def test_a_vendor_message_is_redacted_before_it_is_cut():
    from tap_common.redact import REDACTOR

    token = "rt-" + "x" * 40
    REDACTOR.add_secret(token)
    response = requests.Response()
    response.status_code = 400
    # The token starts before the 300-character cut and ends after it.
    response._content = json.dumps({"message": "a" * 280 + f" {token} end"}).encode()  # noqa: SLF001
    message = vendor_message(response)
    assert "rt-xxx" not in message
    assert REDACTED in message


def test_a_presigned_url_signature_is_registered_when_the_url_is_sent():
    redactor = Redactor()
    redactor.add_signed_path(r"/download/(?P<secret>[A-Za-z0-9_.~%+=-]+)")
    redactor.add_secrets_of_url(
        "http://127.0.0.2:9/files/a.csv.gz?X-Amz-Signature=abcdef0123456789&X-Amz-Expires=60",
        query=True)
    redactor.add_secrets_of_url("http://127.0.0.1:9/api/v1/exports/7/download/key-1234567",
                                query=False)
    assert redactor.redact("signature abcdef0123456789 does not match") == \
        f"signature {REDACTED} does not match"
    assert redactor.redact("download key key-1234567 expired") == f"download key {REDACTED} expired"


def test_thousands_of_tokens_are_each_redacted_quickly():
    """Partner mode registers a refresh and an access token per install."""
    import time

    redactor = Redactor()
    tokens = [f"refresh-{n:024x}" for n in range(5000)] + ["short1", "short12345"]
    for token in tokens:
        redactor.add_secret(token)
    text = " ".join(f"token {t} refused" for t in tokens[::500]) + " short12345 short1x"
    began = time.perf_counter()
    shown = redactor.redact(text)
    took = time.perf_counter() - began
    assert not any(token in shown for token in tokens), shown
    # The longer of two secrets starting at one place wins; nothing of either is left.
    assert shown.endswith(f"{REDACTED} {REDACTED}x")
    assert took < 0.5, f"{took:.3f} s to redact {len(text)} characters"
