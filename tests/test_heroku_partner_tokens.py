"""Partner mode's refresh tokens across runs: a rotated token is never lost silently, an
install still installed is never skipped quietly, and no token is ever shown, whatever
its source (the ``installs`` setting, ``installs_file``, the token host's answers) and
whatever the token host echoes back.

Every run is the installed console script against the loopback sandbox.
"""

from __future__ import annotations

import functools
import json
import os
import stat

import pytest

from helpers import basic_auth_value, config_for, error_lines, run_at_debug, run_cli

STREAMS = ("addons", "addon_attachments", "partner_apps", "app_domains", "app_collaborators")


@pytest.fixture
def partner(sandboxes):
    return functools.partial(sandboxes, "heroku_partner")


def installs_file(tmp_path, server, mode=0o600):
    path = tmp_path / "installs.jsonl"
    path.write_text("".join(json.dumps(i) + "\n" for i in server.app.install_list))
    path.chmod(mode)
    return path


def file_config(server, path):
    config = config_for(server, installs_file=str(path))
    del config["installs"]
    return config


def current_tokens(server) -> dict[str, str]:
    """resource uuid -> the refresh token the sandbox honours now."""
    return {resource: token for token, resource in server.app.refresh_tokens.items()}


def addon_ids(out) -> set[str]:
    return {r["id"] for r in out.records.get("addons", [])}


def all_installs(server) -> set[str]:
    return {i["resource_uuid"] for i in server.app.install_list}


def assert_no_secret(out, secrets) -> None:
    everything = out.stderr + out.stdout
    for secret in secrets:
        assert secret not in everything, f"a secret in the output: {secret[:6]}…"


# -- a rotated refresh token ----------------------------------------------------------------


def test_a_rotated_token_is_written_back_to_installs_file_and_the_next_run_is_complete(
        partner, tmp_path):
    server = partner(installs=4, rotate_refresh_tokens=True)
    path = installs_file(tmp_path, server, mode=0o640)
    given = [i["refresh_token"] for i in server.app.install_list]
    config = file_config(server, path)

    first = run_at_debug("tap-heroku-vendor", config)
    assert first.returncode == 0, error_lines(first.stderr)
    assert addon_ids(first) == all_installs(server)
    assert server.app.rotations == 4
    written = {json.loads(line)["resource_uuid"]: json.loads(line)["refresh_token"]
               for line in path.read_text().splitlines()}
    assert written == current_tokens(server)
    assert stat.S_IMODE(path.stat().st_mode) == 0o640
    assert sorted(os.listdir(tmp_path)) == ["installs.jsonl"]  # no temporary file left
    assert_no_secret(first, given + list(written.values()))

    second = run_cli("tap-heroku-vendor", config)
    assert second.returncode == 0, error_lines(second.stderr)
    assert addon_ids(second) == all_installs(server)
    assert server.app.rotations == 8


def test_only_the_rotated_line_is_rewritten_and_a_symlinked_file_stays_a_symlink(
        partner, tmp_path):
    server = partner(installs=3, rotate_refresh_tokens=True)
    target = tmp_path / "store" / "installs.jsonl"
    target.parent.mkdir()
    lines = [json.dumps(i, separators=(", ", ": ")).encode() + b"\r\n"
             for i in server.app.install_list]
    lines[0] = lines[0].replace(b"}", b', "note": "kept"}')  # a field the tap does not read
    target.write_bytes(b"".join(lines) + b"\n")
    link = tmp_path / "installs.jsonl"
    link.symlink_to(target)
    config = file_config(server, link)
    # Only the first install's grant still works: the other lines stay byte for byte.
    first = server.app.install_list[0]["resource_uuid"]
    server.app.refresh_tokens = {t: r for t, r in server.app.refresh_tokens.items()
                                 if r == first}
    out = run_cli("tap-heroku-vendor", config)

    assert link.is_symlink()
    new_lines = target.read_bytes().splitlines(keepends=True)
    assert new_lines[1:] == lines[1:] + [b"\n"]
    assert new_lines[0].endswith(b"\r\n")
    rewritten = json.loads(new_lines[0])
    assert rewritten == {**json.loads(lines[0]), "refresh_token": current_tokens(server)[first]}
    # The other two were refused though addons.heroku.com lists them: a failed run.
    assert out.returncode == 1
    assert first in addon_ids(out)


def test_a_rotated_token_from_the_installs_setting_ends_the_run_naming_the_installs(partner):
    server = partner(installs=3, rotate_refresh_tokens=True)
    config = config_for(server)
    out = run_at_debug("tap-heroku-vendor", config)

    # Everything was read and emitted first; then one line names the installs.
    assert addon_ids(out) == all_installs(server)
    assert out.returncode == 1
    errors = error_lines(out.stderr)
    assert len(errors) == 1, errors
    assert "| addons: Heroku issued new refresh tokens for 3 add-on resource(s)" in errors[0]
    for resource in all_installs(server):
        assert resource in errors[0]
    assert_no_secret(out, [i["refresh_token"] for i in config["installs"]]
                     + list(server.app.refresh_tokens) + list(server.app.access_tokens))

    # The next run, with the old tokens: refused, and addons.heroku.com still lists
    # every install, so it is not green.
    again = run_cli("tap-heroku-vendor", config)
    assert again.returncode == 1
    assert not addon_ids(again)
    errors = error_lines(again.stderr)
    assert len(errors) == 1, errors
    assert "still lists as installed" in errors[0] and "invalid_grant" in errors[0]
    for resource in all_installs(server):
        assert resource in errors[0]


def test_an_installs_file_that_cannot_be_written_ends_the_run_naming_the_install(
        partner, tmp_path):
    server = partner(installs=2, rotate_refresh_tokens=True)
    # A name so long that no temporary file can be made beside it (ENAMETOOLONG; a
    # read-only directory would not stop root).
    path = tmp_path / ("i" * 240 + ".jsonl")
    path.write_text("".join(json.dumps(i) + "\n" for i in server.app.install_list))
    before = path.read_bytes()
    out = run_cli("tap-heroku-vendor", file_config(server, path))

    assert addon_ids(out) == all_installs(server)
    assert out.returncode == 1
    errors = error_lines(out.stderr)
    assert len(errors) == 1, errors
    assert "installs_file cannot be written" in errors[0]
    assert all(resource in errors[0] for resource in all_installs(server))
    assert path.read_bytes() == before


# -- an install refused though still installed ----------------------------------------------


def test_a_refused_install_that_is_still_listed_fails_the_run_after_the_others(partner):
    server = partner(installs=4)
    refused = sorted(all_installs(server))[1]
    server.app.refresh_tokens = {t: r for t, r in server.app.refresh_tokens.items()
                                 if r != refused}  # its grant gone, the add-on still listed
    out = run_cli("tap-heroku-vendor", config_for(server))

    assert addon_ids(out) == all_installs(server) - {refused}
    assert out.returncode == 1
    errors = error_lines(out.stderr)
    assert len(errors) == 1, errors
    assert "| addons: HTTP 400" in errors[0] and refused in errors[0]
    assert "still lists as installed" in errors[0]


def test_a_deprovisioned_install_is_still_skipped_quietly(partner):
    """Not in addons.heroku.com's list: deprovisioned, and its grant with it."""
    server = partner(installs=4, revoked_every=2)
    out = run_cli("tap-heroku-vendor", config_for(server))
    assert out.returncode == 0, error_lines(out.stderr)
    assert addon_ids(out) == all_installs(server) - server.app.revoked


# -- secrets, whatever their source, whatever the vendor echoes -----------------------------


@pytest.mark.parametrize("body", ["json", "text"])
@pytest.mark.parametrize("source", ["installs", "installs_file"])
def test_a_token_host_echoing_the_refresh_token_and_secret_shows_neither(
        partner, tmp_path, body, source):
    """Issue 18, case 6: the token host's message quotes what it received."""
    server = partner(installs=3)
    config = (config_for(server) if source == "installs"
              else file_config(server, installs_file(tmp_path, server)))
    secret = config["oauth_client_secret"]

    def echo(request, response):
        form = request.form()
        message = (f"Refresh token {form['refresh_token']} is not valid for client secret "
                   f"{form['client_secret']} (received {request.body.decode()})")
        if body == "json":
            return type(response).json({"id": "bad_request", "message": message}, 400)
        return type(response)(400, message.encode(), {"Content-Type": "text/plain"})

    secrets = [i["refresh_token"] for i in server.app.install_list] + [secret]
    for run in (run_cli, run_at_debug):  # the default level, then DEBUG (tracebacks)
        server.app.oauth.add_fault("^/oauth/token$", kind="transform", transform=echo, skip=1)
        out = run("tap-heroku-vendor", config)
        assert out.returncode == 1
        assert len(error_lines(out.stderr)) == 1
        assert "is not valid for client secret" in error_lines(out.stderr)[0]
        assert_no_secret(out, secrets + list(server.app.access_tokens))


def test_each_install_of_the_setting_is_redacted_on_its_own(partner):
    """The whole list was one registered string: no single refresh token matched it."""
    server = partner(installs=2)
    config = config_for(server)
    token = config["installs"][1]["refresh_token"]
    resource = config["installs"][1]["resource_uuid"]
    basic = basic_auth_value(config["manifest_id"], config["manifest_password"])
    # The listing (manifest credentials) answers with a message quoting a refresh token.
    server.app.addons_host.add_fault(
        "^/api/v3/apps$", status=400, headers={"Content-Type": "application/json"},
        body=json.dumps({"id": "bad_request",
                         "message": f"unexpected {token} of {resource} with {basic}"}).encode())
    out = run_at_debug("tap-heroku-vendor", config)
    assert out.returncode == 1
    line = error_lines(out.stderr)[0]
    # Only the secret property of an install is a secret: its uuid stays readable.
    assert f"unexpected <redacted> of {resource} with <redacted>" in line
    assert_no_secret(out, [token, config["manifest_password"], basic])


# -- without the listing: the state remembers what is owed ----------------------------------


def without_listing(config: dict) -> dict:
    return {k: v for k, v in config.items() if k not in ("manifest_id", "manifest_password")}


def test_without_the_listing_the_state_keeps_a_rotated_install_owed_until_it_is_read(partner):
    """Issue 18, case 7, without manifest credentials: the install whose new refresh token
    was lost is not skipped quietly the next night."""
    server = partner(installs=3, rotate_refresh_tokens=True)
    config = without_listing(config_for(server))
    first = run_cli("tap-heroku-vendor", config)
    assert first.returncode == 1
    assert addon_ids(first) == all_installs(server)
    owed = first.final_state["bookmarks"]["addons"]["installs_not_read"]
    assert owed == sorted(all_installs(server))
    state_text = json.dumps(first.states)
    assert not any(token in state_text for token in
                   [i["refresh_token"] for i in config["installs"]] + list(server.app.refresh_tokens))

    # The next night, the old tokens are refused; the state says these were installed.
    second = run_cli("tap-heroku-vendor", config, state=first.final_state)
    assert second.returncode == 1
    errors = error_lines(second.stderr)
    assert len(errors) == 1, errors
    assert "a previous run could not read although installed" in errors[0]
    assert all(resource in errors[0] for resource in all_installs(server))
    assert second.final_state["bookmarks"]["addons"]["installs_not_read"] == owed

    # Re-authorized (the tokens the vendor honours now): read, and nothing owed any more.
    fixed = {**config, "installs": [{"resource_uuid": r, "refresh_token": t}
                                    for r, t in current_tokens(server).items()],
             "installs_file": None}
    fixed = {k: v for k, v in fixed.items() if v is not None}
    server.app.settings.rotate_refresh_tokens = False
    third = run_cli("tap-heroku-vendor", fixed, state=second.final_state)
    assert third.returncode == 0, error_lines(third.stderr)
    assert addon_ids(third) == all_installs(server)
    assert "installs_not_read" not in third.final_state["bookmarks"]["addons"]


def test_without_the_listing_or_a_debt_a_refused_install_is_skipped(partner):
    server = partner(installs=3, revoked_every=3)
    out = run_cli("tap-heroku-vendor", without_listing(config_for(server)))
    assert out.returncode == 0, error_lines(out.stderr)
    assert addon_ids(out) == all_installs(server) - server.app.revoked
    assert "installs_not_read" not in json.dumps(out.final_state)


def test_a_malformed_access_token_in_a_library_error_is_not_shown(partner):
    """requests refuses a header value with a line break and quotes it in its exception
    (the error line at the default level, the traceback at DEBUG)."""
    server = partner(installs=2)
    token = "access-0123456789abcdef0123456789abcdef"

    def malformed(request, response):
        return type(response).json({"access_token": token + "\r\nX-Injected: yes",
                                    "expires_in": 28800, "token_type": "Bearer"})

    for run in (run_cli, run_at_debug):
        server.app.oauth.add_fault("^/oauth/token$", kind="transform", transform=malformed)
        out = run("tap-heroku-vendor", config_for(server))
        assert out.returncode == 1
        assert len(error_lines(out.stderr)) == 1, error_lines(out.stderr)
        assert_no_secret(out, [token, token[7:]])


def test_an_owed_install_that_the_listing_no_longer_has_is_skipped_and_forgotten(partner):
    """The listing outranks the state: deprovisioned since, nothing is owed any more."""
    server = partner(installs=3, revoked_every=3)
    revoked = next(iter(server.app.revoked))
    state = {"bookmarks": {"addons": {"installs_not_read": [revoked]}}}
    out = run_cli("tap-heroku-vendor", config_for(server), state=state)
    assert out.returncode == 0, error_lines(out.stderr)
    assert addon_ids(out) == all_installs(server) - {revoked}
    assert "installs_not_read" not in json.dumps(out.final_state)
