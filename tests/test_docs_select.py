"""The `meltano select` commands the docs give do what the docs say they do.

Each command is looked up in its doc (so the doc and the test cannot drift apart), then run
by bash as written in a copy of this repository's Meltano project (meltano.yml with its
default `select`, the installed extractors linked in), and the selection is read back with
`meltano select <tap> --list --all --json`. The claim the docs make about the command that
does not work (adding a rule for an excluded field) is checked too.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
from pathlib import Path

import pytest

from helpers import BIN, REPO

pytestmark = pytest.mark.e2e

PARTNER = {"TAP_HEROKU_VENDOR_API": "partner"}
PARTNER_SELECT = ("TAP_HEROKU_VENDOR__SELECT='[\"addons.*\", \"addon_attachments.*\", "
                  "\"!addon_attachments.log_input_url\", \"partner_apps.*\", \"app_domains.*\", "
                  "\"app_collaborators.*\"]'")

#: (docs that show the command, the command, environment, {stream.property: selection after it})
CASES: list[tuple[tuple[str, ...], str, dict[str, str], dict[str, str]]] = [
    (("behaviour.md", "tap-heroku-vendor.md"),
     "meltano select tap-heroku-vendor --rm --exclude app_info config", {},
     {"app_info.config": "selected", "app_info.log_input_url": "excluded", "app_info.name": "selected"}),
    (("tap-heroku-vendor.md",),
     "meltano select tap-heroku-vendor --rm --exclude app_info log_input_url", {},
     {"app_info.log_input_url": "selected", "app_info.config": "excluded"}),
    (("tap-heroku-vendor.md",), "meltano select tap-heroku-vendor addons '*'", PARTNER,
     {"addons.name": "selected", "addon_config.value": "excluded"}),
    (("tap-heroku-vendor.md",), "meltano select tap-heroku-vendor addon_config '*'", PARTNER,
     {"addon_config.value": "selected", "addons.name": "excluded"}),
    (("tap-heroku-vendor.md",), "meltano select tap-heroku-vendor addon_attachments log_input_url",
     PARTNER, {"addon_attachments.log_input_url": "selected"}),
    (("tap-isvapp.md",), "meltano select tap-isvapp --rm --exclude salesforce_account_summaries '*'", {},
     {"salesforce_account_summaries.account_name": "selected", "exports.download_url": "excluded"}),
    (("tap-isvapp.md",), "meltano select tap-isvapp --rm --exclude exports download_url", {},
     {"exports.download_url": "selected", "salesforce_account_summaries.account_name": "excluded"}),
    (("tap-marketplace.md",), "meltano select tap-marketplace --rm --exclude product_catalog '*'", {},
     {"product_catalog.summary": "selected", "licenses.addonKey": "selected"}),
]


def doc_text(name: str) -> str:
    return " ".join((REPO / "docs" / name).read_text().split())


def project_copy(root: Path) -> Path:
    """This repository's Meltano project in a folder of its own, its extractors as installed."""
    project = root / "project"
    (project / ".meltano").mkdir(parents=True)
    (project / "meltano.yml").write_text((REPO / "meltano.yml").read_text())
    (project / ".meltano" / "extractors").symlink_to(REPO / ".meltano" / "extractors")
    return project


def meltano_env(extra: dict[str, str]) -> dict[str, str]:
    env = {name: value for name, value in os.environ.items()
           if not name.startswith(("TAP_", "TARGET_", "MELTANO_"))}
    return {**env, "PATH": f"{BIN}{os.pathsep}{env.get('PATH', '')}",
            "MELTANO_SEND_ANONYMOUS_USAGE_STATS": "false", "MELTANO_CLI_DISABLE_VERSION_CHECK": "true",
            **extra}


def bash(command: str, project: Path, env: dict[str, str]) -> str:
    done = subprocess.run(["bash", "-euo", "pipefail", "-c", command], cwd=project, env=env,  # noqa: S603, S607
                          capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, f"{command}:\n{done.stderr[-3000:]}"
    return done.stdout


def selection(tap: str, project: Path, env: dict[str, str]) -> dict[str, str]:
    listed = json.loads(bash(f"meltano select {tap} --list --all --json", project, env))
    return {f"{row['stream']}.{row['property']}": row["selection"] for row in listed["streams"]}


@pytest.mark.parametrize(("docs", "command", "extra_env", "expected"), CASES,
                         ids=[case[1].split(" ", 3)[3] for case in CASES])
def test_documented_select_command(tmp_path, docs, command, extra_env, expected) -> None:
    for doc in docs:
        assert command in doc_text(doc), f"docs/{doc} no longer shows `{command}`"
    project, env = project_copy(tmp_path), meltano_env(extra_env)
    tap = shlex.split(command)[2]
    before = selection(tap, project, env)
    bash(command, project, env)
    after = selection(tap, project, env)
    assert {name: after.get(name) for name in expected} == expected
    assert any(before.get(name) != state for name, state in expected.items())


def test_adding_a_rule_for_an_excluded_field_does_nothing(tmp_path) -> None:
    """What behaviour.md says of `meltano select tap-heroku-vendor app_info config`."""
    assert "adding `app_info.config` instead does nothing" in doc_text("behaviour.md")
    project, env = project_copy(tmp_path), meltano_env({})
    bash("meltano select tap-heroku-vendor app_info config", project, env)
    after = selection("tap-heroku-vendor", project, env)
    assert after["app_info.config"] == "excluded"


def test_documented_partner_select_variable(tmp_path) -> None:
    """tap-heroku-vendor.md's `TAP_HEROKU_VENDOR__SELECT=…`: every partner stream, no secret."""
    assert PARTNER_SELECT in doc_text("tap-heroku-vendor.md")
    project = project_copy(tmp_path)
    value = shlex.split(PARTNER_SELECT.split("=", 1)[1])[0]
    after = selection("tap-heroku-vendor", project,
                      meltano_env({**PARTNER, "TAP_HEROKU_VENDOR__SELECT": value}))
    streams = {name.split(".")[0] for name, state in after.items() if state == "selected"}
    assert streams == {"addons", "addon_attachments", "partner_apps", "app_domains", "app_collaborators"}
    assert after["addon_attachments.log_input_url"] == "excluded"
    assert all(state == "excluded" for name, state in after.items() if name.startswith("addon_config."))


def test_every_select_command_in_the_docs_is_tested() -> None:
    tested = {case[1] for case in CASES} | {"meltano select tap-heroku-vendor app_info config"}
    shown = set()
    for path in [*(REPO / "docs").glob("*.md"), REPO / "README.md"]:
        shown |= set(re.findall(r"`(meltano select [^`]+)`", " ".join(path.read_text().split())))
    assert shown <= tested, sorted(shown - tested)
