"""Serve a vendor sandbox: ``isv-sandbox heroku --set apps=1000`` (or ``heroku_partner``).

Prints one JSON line with the tap config that points at it, then serves until killed.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading

import isv_sandbox as sandbox


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="isv-sandbox", description=__doc__)
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
    server = sandbox.start(args.vendor, **settings)
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
