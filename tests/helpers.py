"""Running taps against the sandbox, in-process or through their console scripts."""

from __future__ import annotations

import base64
import datetime as dt
import io
import json
import logging
import os
import re
import signal
import subprocess
import sys
import tempfile
import typing as t
from contextlib import redirect_stderr, redirect_stdout
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


def catalog_selecting(tap_class: type, config: dict, names: t.Iterable[str] | None = None,
                      *, fields: t.Mapping[str, t.Iterable[str]] | None = None) -> dict:
    """A catalog from discovery with only ``names`` selected (None: as discovered), and
    ``fields`` ({stream: [field, …]}) selected explicitly (opting in to fields that are
    not selected by default)."""
    tap = tap_class(config=config, parse_env_config=False, validate_config=False)
    catalog = tap.catalog_dict
    wanted = set(names) if names is not None else None
    opted_in = {stream: set(names) for stream, names in (fields or {}).items()}
    for entry in catalog["streams"]:
        stream = entry["tap_stream_id"]
        for item in entry["metadata"]:
            if item["breadcrumb"] == [] and wanted is not None:
                item["metadata"]["selected"] = stream in wanted
            elif item["breadcrumb"][-1:] and item["breadcrumb"][-1] in opted_in.get(stream, ()):
                item["metadata"]["selected"] = True
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


def run_in_process(tap_class: t.Any, config: dict, *args: str, state: dict | None = None,
                   catalog: dict | None = None, debug: bool = False) -> SyncOutput:
    """The tap's command line (``TapX.cli``: logging setup, invoke, exit code), run in
    this process: what the console script does, without starting Python again.
    stdout and stderr are captured; the exit code is ``returncode``."""
    level = "DEBUG" if debug else "INFO"
    env_names = ("LOGLEVEL", f"{tap_class.name.upper().replace('-', '_')}_LOGLEVEL")
    saved_env = {name: os.environ.get(name) for name in env_names}
    root = logging.getLogger()
    saved_handlers, saved_level = root.handlers[:], root.level
    saved_signals = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    saved_hook = sys.excepthook
    stdout, stderr = io.StringIO(), io.StringIO()
    returncode = 0
    with tempfile.TemporaryDirectory() as tmp:
        arguments = ["--config", str(Path(tmp, "config.json")), *args]
        Path(tmp, "config.json").write_text(json.dumps(config))
        for name, value in (("state", state), ("catalog", catalog)):
            if value is not None:
                Path(tmp, f"{name}.json").write_text(json.dumps(value))
                arguments += [f"--{name}", str(Path(tmp, f"{name}.json"))]
        try:
            os.environ.update(dict.fromkeys(env_names, level))
            # Only the tap's own handler: pytest's capture handlers would format every
            # DEBUG record again (and that costs more than the run).
            root.handlers[:] = []
            with redirect_stdout(stdout), redirect_stderr(stderr):
                command = tap_class.cli  # sets up logging to this stderr; a click command
                try:
                    command.main(args=arguments, prog_name=tap_class.name,
                                 standalone_mode=False)
                except SystemExit as exit_:
                    code = exit_.code
                    returncode = code if isinstance(code, int) else (0 if code is None else 1)
        finally:
            root.handlers[:] = saved_handlers
            root.setLevel(saved_level)
            for sig, handler in saved_signals.items():
                signal.signal(sig, handler)
            sys.excepthook = saved_hook
            for name, value in saved_env.items():
                if value is None:
                    os.environ.pop(name, None)
                else:
                    os.environ[name] = value
    output = SyncOutput(parse_messages(stdout.getvalue()), stderr.getvalue(), returncode)
    output.stdout = stdout.getvalue()  # type: ignore[attr-defined]
    return output


_LOG_LINE_RE = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d+ \| (\w+)\s*\|")


def log_records(stderr: str) -> list[tuple[str, str]]:
    """(level, text) of each log record in a tap's stderr; a record's continuation lines
    (a traceback) belong to it. Text that is not part of any record is level ``""``."""
    records: list[tuple[str, str]] = []
    for line in stderr.splitlines():
        match = _LOG_LINE_RE.match(line)
        if match:
            records.append((match.group(1), line))
        elif records and records[-1][0]:
            records[-1] = (records[-1][0], records[-1][1] + "\n" + line)
        else:
            records.append(("", line))
    return records


def error_lines(stderr: str) -> list[str]:
    """The ERROR and CRITICAL records of a tap's stderr."""
    return [text for level, text in log_records(stderr) if level in ("ERROR", "CRITICAL")]


def tracebacks_shown(stderr: str) -> list[str]:
    """Tracebacks outside DEBUG records (what a user at the default level would see)."""
    return [text for level, text in log_records(stderr)
            if level != "DEBUG" and "Traceback (most recent call last)" in text]


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
