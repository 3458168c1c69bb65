"""A user's own Meltano project, outside this repository, as the README tells users to make it.

`meltano init` in an empty temporary folder, each tap added from its Hub-format definition in
plugins/extractors/ (pip_url pointing at the wheel scripts/bootstrap built, as a user would point
it at a git URL), `meltano install`, settings through `meltano config set` and secrets through
`.env`, then `meltano run tap-… target-jsonl` against the sandbox: every row a direct run of the
installed tap emits arrives in the JSONL files.
"""

from __future__ import annotations

import json
import os
import subprocess
import typing as t
from pathlib import Path

import pytest
import yaml

import isv_sandbox
from helpers import BIN, FAST_TAP, REPO, run_cli

pytestmark = pytest.mark.e2e

#: tap -> (sandbox vendor, sandbox settings, the streams a small run should fill)
USER_TAPS: dict[str, tuple[str, dict[str, t.Any], set[str]]] = {
    "tap-heroku-vendor": ("heroku", {"apps": 23, "page_size": 10}, {"apps", "app_info"}),
    "tap-marketplace": ("marketplace", {"licenses": 40, "transactions": 30},
                        {"licenses", "transactions"}),
    "tap-isvapp": ("isvapp", {"rate_limit_per_second": 500, "rate_limit_burst": 500,
                              "export_pending_seconds": 0.1}, {"salesforce_accounts", "exports"}),
}
#: Streams whose rows the run itself makes (ids and times of the exports it requests).
RUN_MADE = {"exports"}
#: target-jsonl as a user would add it without Meltano Hub.
TARGET_JSONL = {
    "name": "target-jsonl", "namespace": "target_jsonl", "pip_url": "target-jsonl==0.1.4",
    "executable": "target-jsonl",
    "settings": [{"name": "destination_path", "kind": "string"},
                 {"name": "do_timestamp_file", "kind": "boolean"}],
}


def _wheel() -> Path:
    wheels = sorted((REPO / "dist").glob("isv_revenue_taps-*.whl"))
    assert len(wheels) == 1, wheels
    return wheels[0]


@pytest.fixture(scope="module")
def user_project(tmp_path_factory) -> tuple[Path, dict[str, str]]:
    """A new Meltano project with the three taps and target-jsonl added and installed."""
    root = tmp_path_factory.mktemp("user-project")
    assert not root.resolve().is_relative_to(REPO)
    env = {**os.environ, "MELTANO_SEND_ANONYMOUS_USAGE_STATS": "false",
           "MELTANO_CLI_DISABLE_VERSION_CHECK": "true"}
    for name in list(env):  # nothing of this repository's own project leaks in
        if name.startswith(("TAP_", "TARGET_", "MELTANO_PROJECT_ROOT")):
            del env[name]

    def meltano(*args: str, cwd: Path) -> str:
        done = subprocess.run([str(BIN / "meltano"), *args], cwd=cwd, env=env,  # noqa: S603
                              capture_output=True, text=True, timeout=600, check=False)
        assert done.returncode == 0, f"meltano {' '.join(args)}:\n{done.stderr[-3000:]}"
        return done.stdout

    meltano("init", "project", "--no-usage-stats", cwd=root)
    project = root / "project"
    definitions = root / "definitions"
    definitions.mkdir()
    for tap in USER_TAPS:
        definition = yaml.safe_load((REPO / "plugins" / "extractors" / f"{tap}.yml").read_text())
        definition["pip_url"] = str(_wheel())  # where the user writes a git URL
        (definitions / f"{tap}.yml").write_text(yaml.safe_dump(definition))
        meltano("add", "--plugin-type", "extractor", "--from-ref", str(definitions / f"{tap}.yml"),
                tap, cwd=project)
    (definitions / "target-jsonl.yml").write_text(yaml.safe_dump(TARGET_JSONL))
    meltano("add", "--plugin-type", "loader", "--from-ref", str(definitions / "target-jsonl.yml"),
            "target-jsonl", cwd=project)
    meltano("install", cwd=project)
    return project, env


def _meltano_config_set(project: Path, env: dict[str, str], plugin: str, name: str, value: str) -> None:
    done = subprocess.run(  # noqa: S603
        [str(BIN / "meltano"), "config", "set", plugin, name, value], cwd=project, env=env,
        capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr[-2000:]


def _readme_select_line(tap: str) -> str:
    """The README's `meltano config set <tap> _select '…'` line, as written."""
    readme = (REPO / "README.md").read_text()
    lines = [line for line in readme.splitlines() if line.startswith(f"meltano config set {tap} _select ")]
    assert len(lines) == 1, lines
    return lines[0]


def _settings_of(tap: str) -> dict[str, dict[str, t.Any]]:
    definition = yaml.safe_load((REPO / "plugins" / "extractors" / f"{tap}.yml").read_text())
    return {s["name"]: s for s in definition["settings"]}


@pytest.mark.parametrize("tap", sorted(USER_TAPS))
def test_user_project_runs_every_row_into_jsonl(user_project, tap):
    project, env = user_project
    vendor, sandbox_settings, streams = USER_TAPS[tap]
    settings = _settings_of(tap)
    # What the tap emits, from a direct run against a sandbox of its own: a run changes what
    # some vendors list (ISVapp lists the exports a run requested).
    with isv_sandbox.start(vendor, **sandbox_settings) as server:
        direct = run_cli(tap, {**server.app.tap_config(), **FAST_TAP[vendor]})
        assert direct.returncode == 0, direct.stderr[-3000:]
    with isv_sandbox.start(vendor, **sandbox_settings) as server:
        config = {**server.app.tap_config(), **FAST_TAP[vendor]}

        # `meltano add --from-ref` drops a definition's `select` (Meltano keeps no extras from
        # it), so the README has users set it: its line for this tap, run as written, sets the
        # definition's default (the opt-in streams stay out).
        select = yaml.safe_load((REPO / "plugins" / "extractors" / f"{tap}.yml").read_text())["select"]
        readme_select = _readme_select_line(tap)
        done = subprocess.run(["bash", "-euo", "pipefail", "-c", readme_select], cwd=project,  # noqa: S603, S607
                              env={**env, "PATH": f"{BIN}{os.pathsep}{env.get('PATH', '')}"},
                              capture_output=True, text=True, timeout=120, check=False)
        assert done.returncode == 0, done.stderr[-2000:]
        extractors = {p["name"]: p for p in
                      yaml.safe_load((project / "meltano.yml").read_text())["plugins"]["extractors"]}
        assert extractors[tap]["select"] == select

        # Non-secret settings with `meltano config set`, secrets in .env, as the README says.
        secrets = {}
        for name, value in config.items():
            if settings[name].get("sensitive"):
                secrets[f"{tap.upper().replace('-', '_')}_{name.upper()}"] = value
                continue
            _meltano_config_set(project, env, tap, name,
                                value if isinstance(value, str) else json.dumps(value))
        with (project / ".env").open("a") as dotenv:
            dotenv.writelines(f"{key}={json.dumps(value) if not isinstance(value, str) else value}\n"
                              for key, value in secrets.items())
        assert secrets, f"{tap}: the sandbox config has no secret setting to put in .env"
        assert not any(str(v) in (project / "meltano.yml").read_text() for v in secrets.values())

        output = project / "output" / tap
        output.mkdir(parents=True)
        run = subprocess.run(  # noqa: S603
            [str(BIN / "meltano"), "run", tap, "target-jsonl"], cwd=project,
            env={**env, "TARGET_JSONL_DESTINATION_PATH": str(output),
                 "TARGET_JSONL_DO_TIMESTAMP_FILE": "false"},
            capture_output=True, text=True, timeout=600, check=False)
        assert run.returncode == 0, run.stderr[-4000:]

    loaded = {path.stem: [json.loads(line) for line in path.read_text().splitlines() if line]
              for path in output.glob("*.jsonl")}
    loaded = {stream: rows for stream, rows in loaded.items() if rows}
    assert streams <= set(loaded), sorted(loaded)
    assert set(loaded) == set(direct.records)
    for stream, rows in direct.records.items():
        assert len(loaded[stream]) == len(rows), stream
        def canonical(records: list[dict]) -> list[str]:
            return sorted(json.dumps(r, sort_keys=True) for r in records)
        if stream not in RUN_MADE:
            assert canonical(loaded[stream]) == canonical(rows), stream


# -- every setting from environment variables -----------------------------------------------------

#: Settings every tap has (the HTTP client's and the SDK's), each with a value other than its
#: default, as a containerised job would export them.
COMMON_ENV: dict[str, t.Any] = {
    "user_agent": "nightly-job/1.0", "request_timeout_seconds": 30.5, "max_retries": 2,
    "connect_retry_seconds": 1.5, "retry_backoff_seconds": 0.01, "max_retry_after_seconds": 5.5,
    "stream_maps": {}, "stream_map_config": {}, "faker_config": {"locale": "en_US"},
    "flattening_enabled": False, "flattening_max_depth": 1, "flattening_max_key_length": 255,
    "flattening_separator": "__", "log_metrics": True,
}
#: tap -> [(sandbox vendor, its settings, the tap's settings beyond the sandbox's)]: together
#: (``batch_config`` in a variant that is only tested, since target-jsonl takes no BATCH)
#: the variants give every setting of the tap (some exclude one another: one credential
#: kind, one taxonomy selector, developer_id or vendor_id, legacy or partner mode).
ENV_VARIANTS: dict[str, list[tuple[str, dict[str, t.Any], dict[str, t.Any]]]] = {
    "tap-isvapp": [
        ("isvapp", {"auth_mode": "api_key"}, {"export_taxonomy_ids": None,
                                              "export_taxonomy_level_ids": ["level-1"],
                                              "batch_config": "BATCH_CONFIG"}),
        ("isvapp", {}, {"export_taxonomy_ids": None, "export_taxonomy_item_ids": ["item-1"]}),
        ("isvapp", {}, {"requests_per_second": 400.5, "include_health_scores": False,
                        "include_subscriber_orgs": False,
                        "export_salesforce_account_ids": "ACCOUNT_IDS",
                        "export_poll_interval_seconds": 0.5, "export_timeout_seconds": 60.5,
                        "lookback_days": 2, "oauth_scopes": {"account": "identity"}}),
    ],
    "tap-marketplace": [
        ("marketplace", {}, {
            "start_date": "2026-01-01", "product_ids": ["a"], "include_atlassian_licenses": True,
            "with_data_insights": False, "use_async_exports": False,
            "export_poll_interval_seconds": 0.05, "export_timeout_seconds": 30.5,
            "marketing_attribution_lookback_days": 10, "feedback_lookback_days": 3,
            "aggregation": "week", "requests_per_second": 100.5, "report_lookback_days": 7,
            "report_history_days": 30, "search_keyword_sources": ["marketplace"],
            "partner_metrics_query": {"granularity": "MONTH",
                                      "metrics": {"metricFields": [{"name": "INSTALL_COUNT"}]}},
            "partner_metrics_page_periods": 3, "batch_config": "BATCH_CONFIG"}),
        ("marketplace", {}, {"developer_id": None, "vendor_id": "VENDOR_ID"}),
    ],
    "tap-heroku-vendor": [
        ("heroku", {}, {"api": "legacy", "page_size": 100, "requests_per_second": 50.5,
                        "rate_limit_reserve": 10, "rate_limit_refill_per_second": 1.25,
                        "batch_config": "BATCH_CONFIG"}),
        ("heroku_partner", {}, {"installs_file": "INSTALLS_FILE", "rate_limit_scope": "per_install",
                                "request_budget": 10_000, "full_refresh_nights": 3,
                                "concurrent_installs": 2, "etag_cache_file": "ETAG_CACHE_FILE"}),
    ],
}


def _forget_config(project: Path, tap: str, prefix: str) -> None:
    """The tap's settings out of meltano.yml and .env (another test may have put them there)."""
    meltano_yml = project / "meltano.yml"
    document = yaml.safe_load(meltano_yml.read_text())
    for plugin in document["plugins"]["extractors"]:
        if plugin["name"] == tap:
            plugin.pop("config", None)
    meltano_yml.write_text(yaml.safe_dump(document, sort_keys=False))
    dotenv = project / ".env"
    if dotenv.exists():
        dotenv.write_text("".join(line for line in dotenv.read_text().splitlines(keepends=True)
                                  if not line.startswith(f"{prefix}_")))


def _run_select(tap: str, config: dict[str, t.Any]) -> list[str]:
    """The definition's `select`; in Heroku's partner mode, its partner streams instead."""
    if config.get("api") == "partner":
        return ["addons.*", "addon_attachments.*", "partner_apps.*", "app_domains.*",
                "app_collaborators.*"]
    return yaml.safe_load((REPO / "plugins" / "extractors" / f"{tap}.yml").read_text())["select"]


def _env_value(value: t.Any) -> str:
    return value if isinstance(value, str) else json.dumps(value)


@pytest.mark.parametrize("tap", sorted(ENV_VARIANTS))
def test_every_setting_from_environment_variables(user_project, tap, tmp_path):
    """Every setting of the tap through an environment variable (numbers included, which
    Meltano 4.4.1 cannot pass as `decimal` settings), then `meltano invoke … --test` against
    the sandbox: Meltano writes them into the tap's config and the tap accepts every one;
    the last combination also runs into target-jsonl."""
    project, env = user_project
    prefix = tap.upper().replace("-", "_")
    _forget_config(project, tap, prefix)  # only the environment configures the tap here
    given: set[str] = set()
    for number, (vendor, sandbox_settings, overrides) in enumerate(ENV_VARIANTS[tap], 1):
        with isv_sandbox.start(vendor, **sandbox_settings) as server:
            config = {**server.app.tap_config(), **COMMON_ENV, **overrides}
            if config.get("export_salesforce_account_ids") == "ACCOUNT_IDS":
                config["export_salesforce_account_ids"] = [
                    a["salesforce_id"] for a in server.app.accounts[:3]]
            if config.get("vendor_id") == "VENDOR_ID":
                config["vendor_id"] = str(server.app.settings.vendor_id)
            if config.get("installs_file") == "INSTALLS_FILE":
                installs = tmp_path / "installs.jsonl"
                installs.write_text("".join(json.dumps(i) + "\n" for i in config["installs"][:1]))
                config["installs_file"] = str(installs)
            if config.get("etag_cache_file") == "ETAG_CACHE_FILE":
                config["etag_cache_file"] = str(tmp_path / "etags.sqlite")
            if config.get("batch_config") == "BATCH_CONFIG":
                config["batch_config"] = {
                    "encoding": {"format": "jsonl", "compression": "none"},
                    "storage": {"root": f"file://{tmp_path / 'batches'}", "prefix": "nightly-"}}
            config = {name: value for name, value in config.items() if value is not None}
            given |= set(config)
            run_env = {**env, **{f"{prefix}_{name.upper()}": _env_value(value)
                                 for name, value in config.items()}}
            done = subprocess.run(  # noqa: S603
                [str(BIN / "meltano"), "invoke", tap, "--test"], cwd=project, env=run_env,
                capture_output=True, text=True, timeout=300, check=False)
            assert done.returncode == 0, f"{vendor} {overrides}:\n{done.stderr[-4000:]}"
            assert "Connection test passed" in done.stderr
            assert "Unknown setting" not in done.stderr
            if number == len(ENV_VARIANTS[tap]):  # and a whole run, configured the same way
                output = tmp_path / "output"
                output.mkdir()
                run = subprocess.run(  # noqa: S603
                    [str(BIN / "meltano"), "run", tap, "target-jsonl"], cwd=project,
                    env={**run_env, "TARGET_JSONL_DESTINATION_PATH": str(output),
                         "TARGET_JSONL_DO_TIMESTAMP_FILE": "false",
                         f"{prefix}__SELECT": json.dumps(_run_select(tap, config))},
                    capture_output=True, text=True, timeout=600, check=False)
                assert run.returncode == 0, run.stderr[-4000:]
                assert f"{tap}: run complete:" in run.stderr
                assert any(path.stat().st_size for path in output.glob("*.jsonl"))
    assert given == set(_settings_of(tap)), "a setting no variant gives"
