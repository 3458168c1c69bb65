"""Where a rotated refresh token goes, so that it is never lost silently.

Heroku's docs assume a refresh token stays valid; an OAuth server may still answer a
refresh-token grant with a new ``refresh_token`` and stop honouring the old one. The tap
then uses the new token for the rest of the run and:

* when the install came from ``installs_file``, writes the new token into that file
  (at once, unless the file was written less than a second ago; at the latest when the
  run ends, stopped or not): a temporary file in the same directory with the file's own
  mode and owner, then ``os.replace``, so a reader sees the old file or the new one,
  never half of one;
* otherwise (the ``installs`` setting, which the tap cannot change; or a file it cannot
  write), remembers the install, and the run ends non-zero with one line naming every
  such install, after emitting what it could.

A new token is registered with the redactor the moment it is received; nothing here
ever prints one.
"""

from __future__ import annotations

import contextlib
import os
import stat
import tempfile
import time
import typing as t
from pathlib import Path

import orjson

from tap_common.redact import REDACTOR

if t.TYPE_CHECKING:
    import logging


#: Rotations within this many seconds of a write wait for the next write (or the end of
#: the run): a file of thousands of installs is not rewritten once per install.
WRITE_INTERVAL_SECONDS = 1.0


class RotatedTokens:
    """The refresh tokens Heroku replaced during this run, and which could not be stored."""

    def __init__(self, installs_file: str | None, logger: logging.Logger) -> None:
        self.installs_file = Path(installs_file) if installs_file else None
        self.logger = logger
        self.stored: list[str] = []
        #: resource uuid -> why its new refresh token is not stored
        self.unsaved: dict[str, str] = {}
        #: resource uuid -> (old, new): rotated, to be written to installs_file
        self.pending: dict[str, tuple[str, str]] = {}
        self._written_at = -WRITE_INTERVAL_SECONDS

    def rotated(self, resource_uuid: str, old: str, new: str, *, from_file: bool) -> None:
        """Heroku issued ``new`` in place of ``old`` for ``resource_uuid``."""
        REDACTOR.add_secret(new)
        if not from_file or self.installs_file is None:
            self.unsaved[resource_uuid] = "given in the `installs` setting"
            self.logger.warning(
                "partner mode: Heroku issued a new refresh token for add-on resource %s, "
                "given in the `installs` setting, which the tap cannot update; the run will "
                "end with an error naming it", resource_uuid)
            return
        first_old = self.pending.get(resource_uuid, (old, new))[0]
        self.pending[resource_uuid] = (first_old, new)
        if time.monotonic() - self._written_at >= WRITE_INTERVAL_SECONDS:
            self.write()

    def write(self) -> None:
        """Write the pending new tokens into installs_file (at the latest at the end of
        the run, stopped or not)."""
        if not self.pending or self.installs_file is None:
            return
        pending, self.pending = self.pending, {}
        try:
            replaced = replace_refresh_tokens(self.installs_file, pending)
        except OSError as exc:
            replaced = set()
            reason = f"installs_file cannot be written: {exc.strerror or type(exc).__name__}"
        else:
            reason = "its line in installs_file changed during the run"
        self._written_at = time.monotonic()
        for resource_uuid in sorted(pending):
            if resource_uuid in replaced:
                self.stored.append(resource_uuid)
                self.logger.info("partner mode: Heroku issued a new refresh token for add-on "
                                 "resource %s; written to installs_file", resource_uuid)
            else:
                self.unsaved[resource_uuid] = reason
                self.logger.warning("partner mode: the new refresh token of add-on resource "
                                    "%s is not stored (%s)", resource_uuid, reason)

    def failure_line(self, stream_name: str) -> str | None:
        """The run's error line when a new token is known only to this process."""
        if not self.unsaved:
            return None
        listed = ", ".join(f"{uuid} ({why})" for uuid, why in sorted(self.unsaved.items()))
        return (f"{stream_name}: Heroku issued new refresh tokens for {len(self.unsaved)} "
                f"add-on resource(s) that the tap could not store: {listed}. The old tokens "
                "may no longer work, so these installs' tokens must be updated in your installs "
                "store (re-authorize them); give installs in `installs_file` (writable by the "
                "tap) to have new tokens written back")


def replace_refresh_tokens(path: Path, rotated: t.Mapping[str, tuple[str, str]]) -> set[str]:
    """Rewrite each line of a rotated install that still holds its old token with the new
    one, atomically, keeping every other line byte for byte. The uuids replaced."""
    target = path.resolve()  # a symlinked file is updated where it lives
    lines = target.read_bytes().splitlines(keepends=True)
    replaced: set[str] = set()
    for number, line in enumerate(lines):
        if not line.strip():
            continue
        try:
            item = orjson.loads(line)
        except orjson.JSONDecodeError:
            continue
        if not isinstance(item, dict) or not isinstance(item.get("resource_uuid"), str):
            continue
        resource_uuid = item["resource_uuid"].strip().lower()
        old, new = rotated.get(resource_uuid, (None, None))
        token = item.get("refresh_token")
        if old is not None and isinstance(token, str) and token.strip() == old:
            item["refresh_token"] = new
            ending = line[len(line.rstrip(b"\r\n")):] or b"\n"
            lines[number] = orjson.dumps(item) + ending
            replaced.add(resource_uuid)
    if replaced:
        write_atomically(target, b"".join(lines))
    return replaced


def write_atomically(target: Path, content: bytes) -> None:
    """``content`` in place of ``target``: a temporary file beside it with the same mode
    (and owner, where allowed), flushed to disk, then renamed over it."""
    info = target.stat()
    handle, temporary = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.",
                                         suffix=".tmp")
    try:
        os.fchmod(handle, stat.S_IMODE(info.st_mode))
        with contextlib.suppress(PermissionError):  # only root may give a file away
            os.fchown(handle, info.st_uid, info.st_gid)
        with os.fdopen(handle, "wb") as file:
            file.write(content)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise
