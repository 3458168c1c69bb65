"""Serve a vendor sandbox: ``python -m isv_sandbox heroku --set apps=1000`` (or ``isv-sandbox …``).

Prints one JSON line with the tap config that points at it, then serves until killed.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import signal
import sys
import textwrap
import threading
from pathlib import Path

import isv_sandbox as sandbox


def settings_help() -> str:
    """Each sandbox's settings and their defaults, for --help."""
    lines = ["settings (--set NAME=VALUE), per sandbox, with their defaults:"]
    for vendor, (_, settings_class, tap) in sorted(sandbox.SANDBOXES.items()):
        fields = ", ".join(f"{f.name}={f.default!r}" if f.default is not dataclasses.MISSING else f.name
                           for f in dataclasses.fields(settings_class))
        lines += textwrap.wrap(f"{vendor} (for {tap}): {fields}", width=100,
                               initial_indent="  ", subsequent_indent="    ",
                               break_on_hyphens=False, break_long_words=False)
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    # `python -m isv_sandbox` and the `isv-sandbox` console script are the same program.
    prog = "python -m isv_sandbox" if Path(sys.argv[0]).name == "__main__.py" else "isv-sandbox"
    parser = argparse.ArgumentParser(prog=prog, description=__doc__, epilog=settings_help(),
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("vendor", choices=sorted(sandbox.SANDBOXES))
    parser.add_argument("--set", action="append", default=[], metavar="NAME=VALUE",
                        help="a sandbox setting; the value is read as JSON when it parses")
    args = parser.parse_args(argv)
    settings = {}
    for item in args.set:
        name, _, value = item.partition("=")
        try:
            settings[name] = json.loads(value)
        except json.JSONDecodeError:
            settings[name] = value
    try:
        server = sandbox.start(args.vendor, **settings)
    except (TypeError, ValueError) as exc:  # an unknown setting or a value of the wrong kind
        parser.error(str(exc))
    print(json.dumps(server.app.tap_config()), flush=True)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        stop.wait()
    except KeyboardInterrupt:
        pass
    server.stop()
    sys.exit(0)


if __name__ == "__main__":
    main()
