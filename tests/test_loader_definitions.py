"""plugins/loaders/: the loader definitions users add are the loaders this project measured.

Each definition has the `pip_url` of meltano.yml's loader (the versions the tests run, and
target-duckdb's `duckdb==1.0.0` pin that keeps every row), the measured settings as its
defaults, and declares every setting the loader reads, so that `meltano config set` knows
them all and the secrets are `sensitive`. The loaders are the ones scripts/bootstrap
installed into this repository's .meltano/.
"""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest
import yaml

from helpers import REPO

LOADERS = ("target-postgres", "target-duckdb")
#: Settings whose values hold credentials.
SECRETS = {
    "target-postgres": {"password", "sqlalchemy_url", "ssl_client_private_key", "ssh_tunnel"},
    "target-duckdb": {"token"},
}
JSON_KINDS = {"string": "string", "integer": "integer", "boolean": "boolean", "object": "object",
              "number": "decimal", "array": "array"}


def definition(loader: str) -> dict:
    return yaml.safe_load((REPO / "plugins" / "loaders" / f"{loader}.yml").read_text())


def project_loader(loader: str) -> dict:
    project = yaml.safe_load((REPO / "meltano.yml").read_text())
    return next(p for p in project["plugins"]["loaders"] if p["name"] == loader)


def installed_venv(loader: str) -> Path:
    venv = REPO / ".meltano" / "loaders" / loader / "venv"
    if not venv.is_dir():
        pytest.fail(f"{loader} is not installed in .meltano/ (scripts/bootstrap installs it)")
    return venv


@pytest.mark.parametrize("loader", LOADERS)
def test_definition_is_the_measured_loader(loader: str) -> None:
    defined, measured = definition(loader), project_loader(loader)
    for key in ("name", "namespace", "pip_url", "executable"):
        assert defined[key] == measured[key], key
    values = {s["name"]: s["value"] for s in defined["settings"] if "value" in s}
    # Where meltano.yml sets a setting for measured reasons, the definition's default is the same.
    for name in ("default_target_schema", "batch_size_rows", "validate_records", "use_copy",
                 "add_record_metadata"):
        if name in measured.get("config", {}):
            assert values.get(name) == measured["config"][name], name
    sensitive = {s["name"] for s in defined["settings"] if s.get("sensitive")}
    assert sensitive == SECRETS[loader]


def test_duckdb_definition_pins_the_duckdb_that_keeps_rows() -> None:
    assert "duckdb==1.0.0" in definition("target-duckdb")["pip_url"].split()


def test_postgres_definition_declares_every_setting_of_its_about() -> None:
    venv = installed_venv("target-postgres")
    about = json.loads(subprocess.run(  # noqa: S603
        [str(venv / "bin" / "target-postgres"), "--about", "--format=json"],
        capture_output=True, text=True, check=True, timeout=120).stdout)
    declared = {s["name"]: s for s in definition("target-postgres")["settings"]}
    for name, schema in about["settings"]["properties"].items():
        assert name in declared, f"target-postgres --about has {name}, the definition does not"
        types = [t for t in schema["type"] if t != "null"] if isinstance(schema["type"], list) else [schema["type"]]
        assert declared[name]["kind"] == JSON_KINDS[types[0]], name
    assert set(declared) == set(about["settings"]["properties"])
    # 0.8.1 refuses to start without a password, even under trust auth: the default is empty.
    assert declared["password"]["value"] == ""


def test_duckdb_definition_declares_every_setting_the_target_reads() -> None:
    """target-duckdb has no --about: the settings are the config keys its source reads."""
    source = installed_venv("target-duckdb").glob("lib/python*/site-packages/target_duckdb/*.py")
    read = {key for path in source
            for key in re.findall(r"config\.get\(\s*[\"']([a-z_]+)[\"']", path.read_text())}
    assert {"filepath", "default_target_schema", "batch_size_rows"} <= read
    declared = {s["name"] for s in definition("target-duckdb")["settings"]}
    assert declared == read - {"dbname"}  # `dbname`: an older name of `database`


#: target-duckdb 0.8.0's load of one batch (db_sync.py, `load_rows`): the rows as a CSV file
#: without a header, then a bare COPY. The two kinds of batch whose first row duckdb 1.1+
#: takes for a header (docs/loading.md): every column VARCHAR, and a first timestamp with a
#: time zone.
COPY_PROBE = r"""
import csv, json, sys, tempfile, duckdb
batches = {"all_varchar": ("a VARCHAR, b VARCHAR", [["x1", "y1"], ["x2", ""], ["x3", "y3"]]),
           "timestamp_with_zone": ("a BIGINT, b TIMESTAMP", [["1", "2025-01-01T08:15:00Z"],
                                                               ["2", "2025-01-02T08:15:00Z"]])}
loaded = {}
with tempfile.TemporaryDirectory() as folder:
    db = duckdb.connect()
    for name, (columns, rows) in batches.items():
        path = f"{folder}/{name}.csv"
        with open(path, "w") as f:
            writer = csv.writer(f, delimiter=",", quotechar='"', quoting=csv.QUOTE_MINIMAL)
            for row in rows:
                writer.writerow(row)
        db.execute(f"CREATE TABLE {name} ({columns})")
        db.execute("COPY {} FROM '{}' WITH (new_line '\\r\\n')".format(name, path))
        loaded[name] = [db.execute(f"SELECT count(*) FROM {name}").fetchone()[0], len(rows)]
print(json.dumps({"duckdb": duckdb.__version__, "loaded": loaded}))
"""


def test_installed_target_duckdb_keeps_the_first_row_of_every_batch() -> None:
    """The pinned duckdb reads the batches that duckdb 1.1+ (and 2.x) cut short in full."""
    venv = installed_venv("target-duckdb")
    source = next(venv.glob("lib/python*/site-packages/target_duckdb/db_sync.py")).read_text()
    assert "COPY {} FROM '{}' WITH (new_line '\\\\r\\\\n')" in source  # the statement probed below
    done = subprocess.run([str(venv / "bin" / "python"), "-c", COPY_PROBE],  # noqa: S603
                          capture_output=True, text=True, timeout=120, check=True)
    result = json.loads(done.stdout)
    assert result["duckdb"] == "1.0.0"
    for batch, (loaded, written) in result["loaded"].items():
        assert loaded == written, f"{batch}: duckdb {result['duckdb']} loaded {loaded} of {written} rows"
