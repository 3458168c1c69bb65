"""The README's "Add the taps to your own Meltano project", run as written.

Its first bash block (a tap, DuckDB and PostgreSQL, trust auth with the definition's
empty default password) is run by bash in an empty folder outside the repository.
Two things differ from a user's machine, neither of them in the commands: the definitions'
URL prefix is a local folder holding the same definitions, with the extractors' `pip_url` at
the wheel scripts/bootstrap built (as tests/test_user_project.py does), and the environment
points the tap at the Marketplace sandbox (`TAP_MARKETPLACE_API_URL`) and target-postgres at
the test database (`TARGET_POSTGRES_DATABASE`; the environment overrides `meltano.yml`). The
sandbox is started with the README's example username, developer id and API token. The rows
that arrive in DuckDB and in PostgreSQL must be, per stream, as many as the tap's own output.
The second block (a PostgreSQL password) is run in that project: the password lands in `.env`.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

import isv_sandbox
from helpers import BIN, REPO, run_cli
from test_meltano_e2e import PG, postgres_connection

pytestmark = [pytest.mark.e2e, pytest.mark.postgres]

SECTION = "## Add the taps to your own Meltano project"
#: Where the README's definitions come from on a user's machine.
DEFINITIONS_URL = "https://raw.githubusercontent.com/isv-revenue/isv-revenue-taps/main/plugins/"
#: A small Marketplace data set with more than one row in every stream the README's run loads.
SANDBOX = {"licenses": 40, "transactions": 30}


def readme_blocks() -> list[str]:
    """The bash blocks of the README's own-project section, in order."""
    readme = (REPO / "README.md").read_text()
    section = readme[readme.index(SECTION):]
    section = section[:section.index("\n## ", len(SECTION))]
    return re.findall(r"```bash\n(.*?)```", section, flags=re.S)


def readme_value(block: str, setting: str) -> str:
    """The value a `meltano config set tap-marketplace <setting> …` line of the block sets."""
    for line in block.splitlines():
        words = shlex.split(line, comments=True)
        if words[:4] == ["meltano", "config", "set", "tap-marketplace"] and words[4] == setting:
            return words[5]
    raise AssertionError(f"the README sets no tap-marketplace {setting}")


def readme_secret(block: str, variable: str) -> str:
    match = re.search(rf"^echo '{variable}=([^']+)' >> \.env", block, flags=re.M)
    assert match, f"the README puts no {variable} in .env"
    return match.group(1)


def _wheel() -> Path:
    wheels = sorted((REPO / "dist").glob("isv_revenue_taps-*.whl"))
    assert len(wheels) == 1, wheels
    return wheels[0]


def local_definitions(folder: Path) -> Path:
    """plugins/ as the README's URL serves it, the extractors' pip_url at the built wheel."""
    shutil.copytree(REPO / "plugins", folder)
    for path in (folder / "extractors").glob("*.yml"):
        definition = yaml.safe_load(path.read_text())
        definition["pip_url"] = str(_wheel())  # where the definition has the git URL
        path.write_text(yaml.safe_dump(definition))
    return folder


def test_readme_select_lines_are_the_definitions_defaults() -> None:
    """The `_select` lines the README gives for every tap are its definition's `select`."""
    text = "\n".join(readme_blocks())
    for tap in ("tap-isvapp", "tap-heroku-vendor", "tap-marketplace"):
        definition = yaml.safe_load((REPO / "plugins" / "extractors" / f"{tap}.yml").read_text())
        match = re.search(rf"^meltano config set {tap} _select '(.+)'$", text, flags=re.M)
        assert match, f"the README sets no _select for {tap}"
        assert yaml.safe_load(match.group(1)) == definition["select"], tap


def test_readme_user_project_loads_every_row_into_duckdb_and_postgres(tmp_path_factory) -> None:
    duckdb = pytest.importorskip("duckdb")
    connection = postgres_connection()
    block = readme_blocks()[0]
    credentials = {"username": readme_value(block, "username"),
                   "developer_id": readme_value(block, "developer_id"),
                   "api_token": readme_secret(block, "TAP_MARKETPLACE_API_TOKEN")}
    root = tmp_path_factory.mktemp("readme-user")
    assert not root.resolve().is_relative_to(REPO)
    definitions = local_definitions(root / "definitions")
    script = block.replace(DEFINITIONS_URL, f"{definitions}/")
    assert DEFINITIONS_URL not in script

    with isv_sandbox.start("marketplace", **SANDBOX, **credentials) as server:
        direct = run_cli("tap-marketplace", server.app.tap_config())
        assert direct.returncode == 0, direct.stderr[-3000:]
    expected = {stream: len(rows) for stream, rows in direct.records.items()}
    assert len(expected) > 10 and all(expected.values()), expected

    connection.execute('DROP SCHEMA IF EXISTS "tap_marketplace" CASCADE')
    workdir = root / "work"
    workdir.mkdir()
    env = {name: value for name, value in os.environ.items()
           if not name.startswith(("TAP_", "TARGET_", "MELTANO_"))}
    with isv_sandbox.start("marketplace", **SANDBOX, **credentials) as server:
        assert server.app.tap_config() == {**credentials, "api_url": server.app.tap_config()["api_url"]}
        env.update({
            "PATH": f"{BIN}{os.pathsep}{env.get('PATH', '')}",  # `meltano` as the user installed it
            "MELTANO_SEND_ANONYMOUS_USAGE_STATS": "false", "MELTANO_CLI_DISABLE_VERSION_CHECK": "true",
            "TAP_MARKETPLACE_API_URL": server.app.tap_config()["api_url"],
            "TARGET_POSTGRES_DATABASE": PG["dbname"],
        })
        run = subprocess.run(["bash", "-euo", "pipefail", "-c", script], cwd=workdir, env=env,  # noqa: S603, S607
                             capture_output=True, text=True, timeout=1500, check=False)
    assert run.returncode == 0, run.stderr[-5000:]
    assert "Unknown setting" not in run.stdout + run.stderr  # every setting is declared
    project = workdir / "my-warehouse"
    assert credentials["api_token"] not in (project / "meltano.yml").read_text()

    with duckdb.connect(str(project / "output" / "warehouse.duckdb"), read_only=True) as db:
        in_duckdb = {stream: db.execute(f'SELECT count(*) FROM tap_marketplace."{stream}"').fetchone()[0]
                     for stream in expected}
    in_postgres = {stream: connection.execute(f'SELECT count(*) FROM tap_marketplace."{stream}"').fetchone()[0]
                   for stream in expected}
    assert in_duckdb == expected
    assert in_postgres == expected

    # The password block: a secret, so `meltano config set` puts it in .env, not meltano.yml.
    password_block = readme_blocks()[1]
    assert password_block.startswith("meltano config set target-postgres password "), password_block
    done = subprocess.run(["bash", "-euo", "pipefail", "-c", password_block], cwd=project, env=env,  # noqa: S603, S607
                          capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    password = shlex.split(password_block)[-1]
    assert f"TARGET_POSTGRES_PASSWORD='{password}'" in (project / ".env").read_text() or \
        f"TARGET_POSTGRES_PASSWORD={password}" in (project / ".env").read_text()
    assert password not in (project / "meltano.yml").read_text()
