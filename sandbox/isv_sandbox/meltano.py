"""Running `meltano` against a sandbox: the environment that points a tap at it."""

from __future__ import annotations

import json
import os
import typing as t
from pathlib import Path

import yaml


def decimal_settings(project: Path, tap: str) -> set[str]:
    """The tap's settings of kind ``decimal`` in the project's meltano.yml."""
    plugins = yaml.safe_load((project / "meltano.yml").read_text())["plugins"]["extractors"]
    plugin = next(p for p in plugins if p["name"] == tap)
    while "inherit_from" in plugin and "settings" not in plugin:  # tap-isvapp-batch
        plugin = next(p for p in plugins if p["name"] == plugin["inherit_from"])
    return {s["name"] for s in plugin.get("settings", []) if s.get("kind") == "decimal"}


def meltano_env(project: Path, tap: str, tap_config: dict[str, t.Any],
                extra: dict[str, str] | None = None) -> dict[str, str]:
    """This process's environment plus the tap's config as Meltano environment variables.

    Meltano 4.4.1 casts an environment variable of a ``decimal`` setting to ``Decimal``
    and then fails to write the tap's config ("Object of type Decimal is not JSON
    serializable"), so those settings are left at their defaults here.
    """
    env = {**os.environ, "MELTANO_CLI_DISABLE_VERSION_CHECK": "true",
           "MELTANO_SEND_ANONYMOUS_USAGE_STATS": "false", **(extra or {})}
    prefix = tap.upper().replace("-", "_")
    decimals = decimal_settings(project, tap)
    for key, value in tap_config.items():
        if key not in decimals:
            env[f"{prefix}_{key.upper()}"] = value if isinstance(value, str) else json.dumps(value)
    return env
