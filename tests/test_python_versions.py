"""The wheel on every supported Python: installed into a fresh venv of each of 3.10, 3.12 and
3.13 (the suite itself runs on 3.11), then --about, --discover and one full sync of each tap
against the sandbox, which must emit what the same sync on the suite's Python emits.

The venvs are kept under .venv-pythons/, one per wheel build, so a second run is quick; CI
starts from a clean clone and builds them.
"""

from __future__ import annotations

import glob
import hashlib
import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

import isv_sandbox
from helpers import BIN, FAST_TAP, REPO, SyncOutput, parse_messages

pytestmark = pytest.mark.e2e

OTHER_PYTHONS = ["3.10", "3.12", "3.13"]
TAP_VENDORS = {"tap-heroku-vendor": ("heroku", {"apps": 15, "page_size": 6}),
               "tap-marketplace": ("marketplace", {"licenses": 30, "transactions": 20}),
               "tap-isvapp": ("isvapp", {"rate_limit_per_second": 500, "rate_limit_burst": 500,
                                         "export_pending_seconds": 0.1})}
#: Streams whose rows the run itself makes (the exports a run requests).
RUN_MADE = {"exports"}


def _interpreter(version: str) -> str | None:
    pyenv_root = os.environ.get("PYENV_ROOT", str(Path.home() / ".pyenv"))
    found = sorted(glob.glob(f"{pyenv_root}/versions/{version}.*/bin/python"))
    return found[-1] if found else shutil.which(f"python{version}")


@pytest.fixture(scope="module", params=OTHER_PYTHONS)
def python_bin(request) -> Path:
    version = request.param
    interpreter = _interpreter(version)
    if interpreter is None:
        message = f"no Python {version} on this machine (pyenv or python{version} on PATH)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    wheel = next((REPO / "dist").glob("isv_revenue_taps-*.whl"))
    build = hashlib.sha1(wheel.read_bytes()).hexdigest()[:12]
    venv = REPO / ".venv-pythons" / f"{version}-{build}"
    if not (venv / ".complete").exists():
        shutil.rmtree(venv, ignore_errors=True)
        for stale in venv.parent.glob(f"{version}-*"):
            shutil.rmtree(stale, ignore_errors=True)
        subprocess.run([interpreter, "-m", "venv", str(venv)], check=True)  # noqa: S603
        install = subprocess.run(  # noqa: S603
            [str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet", str(wheel)],
            capture_output=True, text=True, check=False)
        assert install.returncode == 0, install.stderr[-3000:]
        (venv / ".complete").touch()
    return venv / "bin"


def _run(executable: Path, *args: str) -> SyncOutput:
    done = subprocess.run([str(executable), *args], capture_output=True, text=True,  # noqa: S603
                          timeout=300, check=False)
    out = SyncOutput(parse_messages(done.stdout), done.stderr, done.returncode)
    out.stdout = done.stdout  # type: ignore[attr-defined]
    return out


def _sync(bin_dir: Path, tap: str, tmp_path: Path) -> SyncOutput:
    vendor, settings = TAP_VENDORS[tap]
    with isv_sandbox.start(vendor, **settings) as server:
        config = tmp_path / f"{tap}-{bin_dir.parent.name}.json"
        config.write_text(json.dumps({**server.app.tap_config(), **FAST_TAP[vendor]}))
        return _run(bin_dir / tap, "--config", str(config))


@pytest.mark.parametrize("tap", sorted(TAP_VENDORS))
def test_wheel_runs_on_every_supported_python(python_bin, tap, tmp_path):
    version = _run(python_bin / "python", "-c", "import sys; print(sys.version)").stdout
    about = json.loads(_run(python_bin / tap, "--about", "--format=json").stdout)
    assert about["name"] == tap and about["version"] != "[could not be detected]", version

    discovered = _run(python_bin / tap, "--discover")
    assert discovered.returncode == 0, discovered.stderr[-2000:]
    assert json.loads(discovered.stdout)["streams"]

    there = _sync(python_bin, tap, tmp_path)
    here = _sync(BIN, tap, tmp_path)
    assert there.returncode == 0, f"Python {version}: {there.stderr[-3000:]}"
    assert here.returncode == 0, here.stderr[-3000:]
    assert there.records, f"Python {version}: {tap} emitted nothing"
    assert {s: len(r) for s, r in there.records.items()} == {s: len(r) for s, r in here.records.items()}
    for stream in set(here.records) - RUN_MADE:
        canonical = sorted(json.dumps(r, sort_keys=True) for r in here.records[stream])
        assert sorted(json.dumps(r, sort_keys=True) for r in there.records[stream]) == canonical, stream


#: Bookmark forms users write with ``meltano state set``; Python 3.10's ``fromisoformat``
#: reads neither ``Z`` nor ``+HHMM`` nor a fraction of other than 3 or 6 digits.
BOOKMARK_FORMS = {"2026-10-01T10:00:00Z": "2026-10-01T10:00:00+00:00",
                  "2026-10-01 10:00:00.12+0200": "2026-10-01T10:00:00.120000+02:00",
                  "2026-10-01T10:00:00.123456789-05:30": "2026-10-01T10:00:00.123456-05:30",
                  "2026-10-01T10:00": "2026-10-01T10:00:00+00:00",
                  "2026-10-01": "2026-10-01", "2026-10": "2026-10-01"}


def test_bookmark_forms_are_read_alike_on_every_python(python_bin: Path) -> None:
    """The installed wheel reads every bookmark form the same way on this Python."""
    script = ("import json, sys; from tap_common.bookmarks import parse_point; "
              "print(json.dumps({v: parse_point(v).isoformat() for v in json.loads(sys.argv[1])}))")
    done = subprocess.run([str(python_bin / "python"), "-c", script,  # noqa: S603
                           json.dumps(list(BOOKMARK_FORMS))],
                          capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    assert json.loads(done.stdout) == BOOKMARK_FORMS
