"""The docs stand alone, and the commands they give for the sandbox and the demo work.

- No document of the repository (every tracked `*.md`) points outside it: every relative
  link and every backquoted path resolves to a file of the repository, and none names a
  local folder of a machine, a research note or a section of one ("§").
- docs/sandbox.md's block (`python -m isv_sandbox --help`, a sandbox on its own, a tap run
  against it) is run by bash as written, in a folder of its own with this `.venv`.
- `scripts/demo --help` prints its usage and exits 0 at once, without running the demo.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import time
from pathlib import Path

import pytest

from helpers import REPO

#: Names that point at material outside the repository (the project's research notes and
#: vendor document copies live beside it, not in it).
OUTSIDE = [
    (re.compile(r"(?<![\w.])/(?:work|tmp|home|Users)/"), "a local folder"),
    (re.compile(r"\bshared/(?:reference|seeds)\b"), "the project's research notes"),
    (re.compile(r"\bseed[ -]?0\d\d\b", re.IGNORECASE), "a vendor document copy by number"),
    (re.compile(r"§"), "a section of a document"),
]


def documents() -> list[Path]:
    listed = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "*.md"],  # noqa: S607
                            cwd=REPO, capture_output=True, text=True, check=True).stdout.split()
    paths = [REPO / name for name in listed if (REPO / name).is_file()]
    assert REPO / "README.md" in paths and REPO / "docs" / "sandbox.md" in paths
    return paths


def outside_references(path: Path) -> list[str]:
    """What in one document points outside the repository (or at nothing)."""
    text = path.read_text()
    found = [f"{what}: {m.group(0)!r}" for pattern, what in OUTSIDE for m in pattern.finditer(text)]
    targets = re.findall(r"\]\(([^)\s]+)\)", text)
    targets += [p for p in re.findall(r"`([^`\s]+)`", text) if p.endswith(".md") or "../" in p]
    for target in targets:
        if re.match(r"[a-z][a-z0-9+.-]*:", target) or target.startswith("#"):
            continue  # a URL (public, not a file) or an anchor in the same document
        file = target.split("#", 1)[0].rstrip("/")
        candidates = [(path.parent / file).resolve(), (REPO / file).resolve()]
        if not any(c.is_relative_to(REPO) and c.exists() for c in candidates):
            found.append(f"not a file of the repository: {target!r}")
    return found


def test_no_document_points_outside_the_repository() -> None:
    problems = {str(path.relative_to(REPO)): found for path in documents()
                if (found := outside_references(path))}
    assert not problems, problems


def test_the_check_finds_what_it_looks_for(tmp_path) -> None:
    """The examples issue 19 found (and others of their kinds) would fail the check."""
    doc = REPO / "docs" / "behaviour.md"
    for line in ["collected in `isvapp-heroku-api.md` §2", "as `../shared/reference/` describe it",
                 "see [the notes](../../shared/reference/README.md)", "(seed 002)",
                 "in /work/shared/seeds"]:
        probe = tmp_path / "docs" / "probe.md"
        probe.parent.mkdir(exist_ok=True)
        probe.write_text(f"Text {line}.\n")
        found = outside_references(probe)
        assert found, line
    assert not outside_references(doc)


def sandbox_block() -> str:
    text = (REPO / "docs" / "sandbox.md").read_text()
    blocks = re.findall(r"```bash\n(.*?)```", text, flags=re.S)
    runs = [block for block in blocks if "python -m isv_sandbox" in block]
    assert len(runs) == 1, blocks
    return runs[0]


@pytest.mark.e2e
def test_sandbox_on_its_own_as_documented(tmp_path) -> None:
    block = sandbox_block()
    assert ".venv/bin/python -m isv_sandbox --help" in block
    (tmp_path / ".venv").symlink_to(REPO / ".venv")  # "from the repository's root"
    env = {name: value for name, value in os.environ.items() if not name.startswith("TAP_")}
    done = subprocess.run(["bash", "-euo", "pipefail", "-c", block], cwd=tmp_path, env=env,  # noqa: S603, S607
                          capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    # --help: the usage, every sandbox and the settings of each.
    assert done.stdout.startswith("usage: python -m isv_sandbox"), done.stdout[:300]
    for name in ("heroku", "heroku_partner", "isvapp", "marketplace"):
        assert f"\n  {name} (for tap-" in done.stdout, name
    assert "apps=250" in done.stdout and "page_size=4000" in done.stdout
    # The sandbox printed a tap config that points at it, and the tap read every app from it.
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["api_url"].startswith("http://127.0.0.1:"), config
    records = [json.loads(line) for line in (tmp_path / "out.jsonl").read_text().splitlines()]
    apps = {r["record"]["resource_uuid"] for r in records if r["type"] == "RECORD" and r["stream"] == "apps"}
    assert len(apps) == 50  # --set apps=50, over three pages of 20
    assert any(r["type"] == "RECORD" and r["stream"] == "app_info" for r in records)


def test_sandbox_refuses_an_unknown_setting_in_one_line() -> None:
    done = subprocess.run([str(REPO / ".venv" / "bin" / "python"), "-m", "isv_sandbox", "heroku",  # noqa: S603
                           "--set", "aps=10"], capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 2
    assert "unknown heroku sandbox settings: ['aps']" in done.stderr
    assert "Traceback" not in done.stderr


def test_demo_help_prints_usage_without_running_the_demo(tmp_path) -> None:
    assert "`scripts/demo --help`" in (REPO / "docs" / "sandbox.md").read_text()
    started = time.monotonic()
    done = subprocess.run([str(REPO / "scripts" / "demo"), "--help"], cwd=tmp_path,  # noqa: S603
                          capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("usage: scripts/demo")
    assert "output/warehouse.duckdb" in done.stdout
    assert done.stderr == ""  # bootstrap says "==> …" on stderr when it runs
    assert time.monotonic() - started < 10
    wrong = subprocess.run([str(REPO / "scripts" / "demo"), "--quick"], cwd=tmp_path,  # noqa: S603
                           capture_output=True, text=True, timeout=60, check=False)
    assert wrong.returncode == 2
    assert "unknown argument: --quick" in wrong.stderr
