"""Running `meltano` against a sandbox: the environment that points a tap at it."""

from __future__ import annotations

import json
import os
import typing as t
from pathlib import Path


def meltano_env(project: Path, tap: str, tap_config: dict[str, t.Any],
                extra: dict[str, str] | None = None) -> dict[str, str]:
    """This process's environment plus the tap's config as Meltano environment variables
    (every setting: the plugin definitions give each a kind Meltano passes as it is;
    ``project`` is no longer needed to tell which)."""
    env = {**os.environ, "MELTANO_CLI_DISABLE_VERSION_CHECK": "true",
           "MELTANO_SEND_ANONYMOUS_USAGE_STATS": "false", **(extra or {})}
    prefix = tap.upper().replace("-", "_")
    for key, value in tap_config.items():
        env[f"{prefix}_{key.upper()}"] = value if isinstance(value, str) else json.dumps(value)
    return env
