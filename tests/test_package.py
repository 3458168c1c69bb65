"""The product as users install it: the built wheel and sdist, --about, the plugin definitions,
and the capabilities the taps declare (each one exercised here or named where it is)."""

from __future__ import annotations

import json
import subprocess
import sys
import tarfile
import tomllib
import zipfile
from pathlib import Path

import pytest

from helpers import BIN, REPO, config_for, run_cli

TAPS = ["tap-heroku-vendor", "tap-isvapp", "tap-marketplace"]
VERSION = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"]
#: Each declared capability and the tests that exercise it.
DECLARED_CAPABILITIES = {
    "about": "test_about_reports_the_installed_version",
    "catalog": "helpers.run_cli(catalog=...) in every per-tap suite",
    "discover": "test_wheel_holds_every_schema_the_taps_discover",
    "state": "tests/test_resume.py",
    "stream-maps": "test_stream_maps_apply_to_the_output",
    "schema-flattening": "test_schema_flattening_flattens_nested_objects",
    "batch": "tests/test_batch.py",
}


def _built(pattern: str) -> Path:
    found = sorted((REPO / "dist").glob(pattern))
    assert len(found) == 1, f"expected one dist/{pattern} (scripts/bootstrap builds it): {found}"
    return found[0]


def test_wheel_holds_every_schema_the_taps_discover(tmp_path):
    wheel = zipfile.ZipFile(_built(f"isv_revenue_taps-{VERSION}-py3-none-any.whl"))
    names = set(wheel.namelist())
    source_schemas = {str(p.relative_to(REPO)) for p in REPO.glob("tap_*/schemas/*.json")}
    assert source_schemas, "no schema files in the source tree"
    assert source_schemas <= names, sorted(source_schemas - names)
    # The sandbox is a test tool, not part of the product.
    assert not [n for n in names if n.startswith("isv_sandbox")]
    assert {n.split("/")[0] for n in names if not n.endswith(".dist-info/RECORD")} >= {
        "tap_common", "tap_heroku_vendor", "tap_isvapp", "tap_marketplace"}
    assert any(n.endswith(".dist-info/licenses/LICENSE") or n.endswith(".dist-info/LICENSE")
               for n in names)
    # Discovery from the installed executables needs every one of those files.
    for tap in TAPS:
        out = run_cli(tap, {}, "--discover")
        assert out.returncode == 0, out.stderr[-2000:]
        streams = json.loads(out.stdout)["streams"]
        assert streams and all(s["schema"]["properties"] for s in streams)


def test_sdist_holds_the_sources_and_schemas():
    with tarfile.open(_built(f"isv_revenue_taps-{VERSION}.tar.gz")) as sdist:
        names = {name.split("/", 1)[1] for name in sdist.getnames() if "/" in name}
    source_schemas = {str(p.relative_to(REPO)) for p in REPO.glob("tap_*/schemas/*.json")}
    assert source_schemas <= names, sorted(source_schemas - names)
    assert {"LICENSE", "pyproject.toml", "README.md"} <= names


def test_wheel_metadata_for_a_package_index():
    wheel = zipfile.ZipFile(_built("isv_revenue_taps-*.whl"))
    metadata = next(wheel.read(n).decode() for n in wheel.namelist() if n.endswith("/METADATA"))
    assert "Requires-Python: >=3.10" in metadata
    for python in ("3.10", "3.11", "3.12", "3.13"):
        assert f"Classifier: Programming Language :: Python :: {python}" in metadata
    assert "Project-URL: Source," in metadata
    assert "Keywords:" in metadata
    assert "License-Expression: MIT" in metadata


@pytest.mark.parametrize("tap", TAPS)
def test_about_reports_the_installed_version(tap):
    about = json.loads(run_cli(tap, {}, "--about", "--format=json").stdout)
    assert about["version"] == VERSION
    assert sorted(about["capabilities"]) == sorted(DECLARED_CAPABILITIES)
    assert set(about["supported_python_versions"]) >= {"3.10", "3.11", "3.12", "3.13"}


@pytest.mark.parametrize("tap", TAPS)
def test_about_markdown_renders_as_markdown(tap):
    markdown = run_cli(tap, {}, "--about", "--format=markdown").stdout
    lines = markdown.splitlines()
    assert lines[0] == f"# `{tap}`"
    # An indented line outside a table or list is a code block in Markdown.
    assert not [line for line in lines if line.startswith("    ")], markdown[:500]
    assert "## Settings" in markdown


def test_plugin_definitions_and_meltano_yml_agree_with_about():
    check = subprocess.run(  # noqa: S603
        [sys.executable, str(REPO / "scripts" / "plugin_definitions.py"), "--check", "--bin", str(BIN)],
        capture_output=True, text=True, check=False)
    assert check.returncode == 0, check.stdout[-3000:] + check.stderr[-1000:]


def test_stream_maps_apply_to_the_output(heroku):
    server = heroku(apps=6, page_size=4)
    config = config_for(server, stream_maps={
        "apps": {"name": None, "plan_upper": "plan.upper() if plan else None"},
        "app_info": None,
    })
    out = run_cli("tap-heroku-vendor", config)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "app_info" not in out.records
    assert len(out.records["apps"]) == 6
    for record, app in zip(out.records["apps"], server.app.apps):
        assert "name" not in record
        assert record["plan_upper"] == (app["plan"].upper() if app["plan"] else None)


def test_schema_flattening_flattens_nested_objects(heroku):
    server = heroku(apps=5, page_size=5)
    config = config_for(server, flattening_enabled=True, flattening_max_depth=1)
    out = run_cli("tap-heroku-vendor", config)
    assert out.returncode == 0, out.stderr[-2000:]
    records = out.records["apps"]
    assert len(records) == 5
    assert "resource" not in out.schemas["apps"]["properties"]
    for record, app in zip(records, server.app.apps):
        assert "resource" not in record
        assert record["resource__uuid"] == app["resource"]["uuid"]
