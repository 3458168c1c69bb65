"""Singer message output with orjson, flushed when it matters rather than per record.

The SDK's default writer encodes with simplejson and flushes stdout after every
message; on a million-row export that is most of the tap's time. Records are
buffered by stdout and flushed before every STATE message, so a target never sees a
bookmark ahead of the records it covers.

A stream's SCHEMA message is written once per run, and again only when it changes.
The SDK sends a child stream's SCHEMA before syncing the children of every parent
record (3,001 SCHEMA lines for 3,000 Heroku apps), and some targets treat every
SCHEMA as the end of a batch: target-duckdb loads its buffered rows on each one, one
COPY per parent. The Singer spec lets a target keep a stream's schema until a new one
arrives, so an identical repeat carries nothing.
"""

from __future__ import annotations

import datetime
import decimal
import sys
import typing as t

import orjson
from singer_sdk.singerlib.encoding.base import GenericSingerWriter
from singer_sdk.singerlib.encoding.simple import Message, RecordMessage, SchemaMessage, StateMessage

_OPTIONS = orjson.OPT_APPEND_NEWLINE | orjson.OPT_NON_STR_KEYS
#: The last STATE line written (as written: the state dict itself keeps changing).
_last_state: bytes | None = None
#: Called before every STATE line: what must reach the target before a bookmark does
#: (batch files still open, tap_common.batch).
_before_state: list[t.Callable[[], None]] = []


def _default(value: t.Any) -> t.Any:
    if isinstance(value, decimal.Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, datetime.date):
        return value.isoformat()
    return str(value)


class OrjsonSingerWriter(GenericSingerWriter[bytes, Message]):
    """Writes Singer messages as compact JSON lines; a repeated SCHEMA is left out."""

    def __init__(self, *args: t.Any, **kwargs: t.Any) -> None:
        super().__init__(*args, **kwargs)
        #: The SCHEMA line last written per stream (one writer per tap, i.e. per run).
        self._schema_lines: dict[str, bytes] = {}

    def serialize_message(self, message: Message) -> bytes:
        return orjson.dumps(message.to_dict(), default=_default, option=_OPTIONS)

    def write_message(self, message: Message) -> None:
        global _last_state  # noqa: PLW0603
        if type(message) is RecordMessage:
            write_record(message.stream, message.record, message.version, message.time_extracted)
            return
        line = self.serialize_message(message)
        if type(message) is SchemaMessage:
            if self._schema_lines.get(message.stream) == line:
                return
            self._schema_lines[message.stream] = line
        elif type(message) is StateMessage:
            for announce in list(_before_state):
                announce()
            _last_state = line
        _write(line, flush=True)


def before_every_state(callback: t.Callable[[], None]) -> None:
    """Call ``callback`` before every STATE line from now on (once per callback)."""
    if callback not in _before_state:
        _before_state.append(callback)


def dumps_record(record: dict) -> bytes:
    """One record as a JSON line (a batch file's line)."""
    return orjson.dumps(record, default=_default, option=_OPTIONS)


def write_batch(stream: str, encoding: dict, manifest: list[str]) -> None:
    """One BATCH message, left in stdout's buffer like a RECORD (the STATE after it
    flushes it)."""
    _write(orjson.dumps({"type": "BATCH", "stream": stream, "encoding": encoding,
                         "manifest": manifest}, option=_OPTIONS), flush=False)


def forget_last_state() -> None:
    """A new run starts: no STATE written yet."""
    global _last_state  # noqa: PLW0603
    _last_state = None


def write_last_state_again() -> bool:
    """Write the last STATE line once more, after every record written so far (what a
    run that is stopped ends with). False if no STATE was written yet."""
    if _last_state is None:
        sys.stdout.flush()
        return False
    _write(_last_state, flush=True)
    return True


def write_record(stream: str, record: dict, version: int | None,
                 time_extracted: datetime.datetime | None) -> None:
    """One RECORD line, left in stdout's buffer (the next STATE flushes it)."""
    envelope = {"type": "RECORD", "stream": stream, "record": record,
                "time_extracted": time_extracted}
    if version is not None:
        envelope["version"] = version
    line = orjson.dumps(envelope, default=_default, option=_OPTIONS)
    out = getattr(sys.stdout, "buffer", None)
    if out is None:
        _write(line, flush=False)
    else:
        out.write(line)


def _write(line: bytes, *, flush: bool) -> None:
    out = getattr(sys.stdout, "buffer", None)
    if out is None:  # stdout replaced by a text stream (tests, in-process runners)
        sys.stdout.write(line.decode())
    else:
        out.write(line)
    if flush:
        sys.stdout.flush()
