"""Running taps against the sandbox, in-process or through their console scripts."""

from __future__ import annotations

import base64
import datetime as dt
import io
import json
import os
import subprocess
import sys
import tempfile
import typing as t
from contextlib import redirect_stdout
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent

#: Retry quickly in tests; the sandbox's own clocks are settings too.
FAST_RETRIES = {"retry_backoff_seconds": 0.01, "max_retries": 4}
FAST_EXPORTS = {"export_poll_interval_seconds": 0.02, "export_timeout_seconds": 10}

_TODAY = dt.datetime.now(dt.timezone.utc).date()
#: ISVapp's latest completed month, pinned so tests do not depend on the day of month.
LAST_MONTH = (_TODAY.replace(day=1) - dt.timedelta(days=1)).strftime("%Y-%m")

#: Sandbox settings per vendor that keep tests fast (generous limits, exports at once).
FAST_SANDBOX: dict[str, dict[str, t.Any]] = {
    "isvapp": {"rate_limit_per_second": 500, "rate_limit_burst": 500,
               "export_pending_seconds": 0.1, "latest_completed_month": LAST_MONTH},
}
#: Tap settings per vendor that match FAST_SANDBOX.
FAST_TAP: dict[str, dict[str, t.Any]] = {
    "heroku": FAST_RETRIES,
    "heroku_partner": FAST_RETRIES,
    "isvapp": {**FAST_RETRIES, "requests_per_second": 400, "export_poll_interval_seconds": 0.05},
    "marketplace": {**FAST_RETRIES, **FAST_EXPORTS},
}


def config_for(server: t.Any, **overrides: t.Any) -> dict:
    """The tap config that points at ``server``, with fast retries and polling."""
    return {**server.app.tap_config(), **FAST_TAP[server.vendor], **overrides}


@dataclass
class SyncOutput:
    """The Singer messages of one run, sorted by kind."""

    messages: list[dict]
    stderr: str = ""
    returncode: int = 0
    records: dict[str, list[dict]] = field(default_factory=dict)
    states: list[dict] = field(default_factory=list)
    schemas: dict[str, dict] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for message in self.messages:
            kind = message.get("type")
            if kind == "RECORD":
                self.records.setdefault(message["stream"], []).append(message["record"])
            elif kind == "STATE":
                self.states.append(message["value"])
            elif kind == "SCHEMA":
                self.schemas[message["stream"]] = message["schema"]

    @property
    def final_state(self) -> dict:
        return self.states[-1] if self.states else {}

    def keys(self, stream: str, *fields: str) -> list[tuple]:
        return [tuple(r.get(f) for f in fields) for r in self.records.get(stream, [])]


def parse_messages(text: str) -> list[dict]:
    """Singer messages: one JSON object per line (other output, like --about, is skipped)."""
    return [json.loads(line) for line in text.splitlines()
            if line.startswith('{"type"')]


def sync(tap_class: type, config: dict, *, state: dict | None = None,
         catalog: dict | None = None, streams: t.Iterable[str] | None = None) -> SyncOutput:
    """Run a sync in this process and capture what it writes to stdout."""
    tap = tap_class(config=config, state=state, catalog=catalog, parse_env_config=False)
    if streams is not None:
        select_only(tap, set(streams))
    buffer = io.StringIO()
    with redirect_stdout(buffer):
        tap.sync_all()
    return SyncOutput(parse_messages(buffer.getvalue()))


def select_only(tap: t.Any, names: set[str]) -> None:
    """Deselect every stream not in ``names`` (parents of selected children still run)."""
    for stream in tap.streams.values():
        stream.selected = stream.name in names


def catalog_selecting(tap_class: type, config: dict, names: t.Iterable[str]) -> dict:
    """A catalog from discovery with only ``names`` selected."""
    tap = tap_class(config=config, parse_env_config=False, validate_config=False)
    catalog = tap.catalog_dict
    wanted = set(names)
    for entry in catalog["streams"]:
        selected = entry["tap_stream_id"] in wanted
        for item in entry["metadata"]:
            if item["breadcrumb"] == []:
                item["metadata"]["selected"] = selected
    return catalog


def run_cli(executable: str, config: dict, *args: str, state: dict | None = None,
            catalog: dict | None = None, env: dict | None = None,
            timeout: float = 300) -> SyncOutput:
    """Run an installed console script (``tap-heroku-vendor`` …) as users do."""
    with tempfile.TemporaryDirectory() as tmp:
        config_path = Path(tmp, "config.json")
        config_path.write_text(json.dumps(config))
        command = [str(BIN / executable), "--config", str(config_path), *args]
        if state is not None:
            Path(tmp, "state.json").write_text(json.dumps(state))
            command += ["--state", str(Path(tmp, "state.json"))]
        if catalog is not None:
            Path(tmp, "catalog.json").write_text(json.dumps(catalog))
            command += ["--catalog", str(Path(tmp, "catalog.json"))]
        process = subprocess.run(  # noqa: S603
            command, capture_output=True, text=True, timeout=timeout,
            env={**os.environ, **(env or {})}, check=False,
        )
    output = SyncOutput(parse_messages(process.stdout), process.stderr, process.returncode)
    output.stdout = process.stdout  # type: ignore[attr-defined]
    return output


def run_at_debug(executable: str, config: dict, **kwargs: t.Any) -> SyncOutput:
    """``run_cli`` with every logger at DEBUG, for the no-secret-in-logs tests."""
    level = {f"{executable.upper().replace('-', '_')}_LOGLEVEL": "DEBUG", "LOGLEVEL": "DEBUG"}
    return run_cli(executable, config, env=level, **kwargs)


def basic_auth_value(user: str, password: str) -> str:
    """What an ``Authorization: Basic`` header carries for these credentials."""
    return base64.b64encode(f"{user}:{password}".encode()).decode()


def last_error_line(stderr: str) -> str:
    lines = [line for line in stderr.splitlines() if "ERROR" in line or "CRITICAL" in line]
    return lines[-1] if lines else ""
