"""BATCH messages: a stream's records written to JSON Lines files, one message per file.

With ``batch_config`` set, the SDK asks each stream for its batches (``Stream.get_batches``,
the hook it documents for this) instead of writing RECORD messages. Its own batcher
encodes with simplejson and always gzips at level 9, about twice the time of the taps'
RECORD path; here a file is written with orjson, uncompressed (``compression: none``, for
a loader on the same machine) or gzip at level 1 (for files that travel to a stage).

A batch file holds what the RECORD messages would have carried: the selected properties
after the stream map, one record per line. The STATE written after a BATCH message never
covers a record that is not in a file already announced: when a stream must write its
state mid-batch (an export in flight), the open file is closed and announced first.

Files of earlier runs are deleted when a stream starts writing its first batch of a
run: the pipeline that read them has ended (a loader reads a BATCH file before it takes
the next message, and Meltano starts a run only after the previous one ended).
"""

from __future__ import annotations

import gzip
import logging
import re
import typing as t
import uuid

import fsspec
import orjson

from tap_common.writer import before_every_state, dumps_record, write_batch

if t.TYPE_CHECKING:
    from tap_common._sdk import BaseBatchFileEncoding, BatchConfig

#: Records per file unless ``batch_config.batch_size`` says otherwise.
DEFAULT_BATCH_SIZE = 100_000
#: gzip level 1: a third of level 9's time for files 10-15 % larger.
GZIP_LEVEL = 1
#: Lines joined into one write (a write per line costs more than encoding it).
_LINES_PER_WRITE = 2048
logger = logging.getLogger(__name__)


def file_stem(tap_name: str, stream: str) -> str:
    """The start of every batch file name of one tap's stream."""
    return f"{tap_name}--{stream}-"


class BatchFiles:
    """The batch files of one stream in one run, written one at a time."""

    def __init__(self, batch_config: BatchConfig, *, tap_name: str, stream: str) -> None:
        self.config = batch_config
        self.encoding: BaseBatchFileEncoding = batch_config.encoding
        compression = (self.encoding.compression or "none").lower()
        if compression not in ("gzip", "none"):
            msg = (f"{stream}: batch_config.encoding.compression {compression!r} is not "
                   "supported (gzip or none)")
            raise ValueError(msg)
        if self.encoding.format != "jsonl":
            msg = (f"{stream}: batch_config.encoding.format {self.encoding.format!r} is not "
                   "supported (jsonl; see docs/loading.md on Parquet)")
            raise ValueError(msg)
        self.gzip = compression == "gzip"
        self.stream = stream
        self.encoding_dict = {"format": "jsonl", "compression": compression}
        self.batch_size = int(getattr(batch_config, "batch_size", 0) or DEFAULT_BATCH_SIZE)
        self.stem = file_stem(tap_name, stream)
        self.run = f"{self.stem}{uuid.uuid4().hex}-"
        self.number = 0
        self.count = 0
        self._file: t.Any = None
        self._name = ""

    @property
    def storage(self) -> t.Any:
        return self.config.storage

    def _filesystem(self) -> tuple[t.Any, str]:
        """The storage root's filesystem (fsspec: local, s3, gcs …) and path, created."""
        fs, root = fsspec.core.url_to_fs(self.storage.root, **(self.storage.params or {}))
        fs.makedirs(root, exist_ok=True)
        return fs, root.rstrip("/")

    def delete_earlier_runs(self) -> int:
        """Delete this stream's files that earlier runs left in the storage root."""
        pattern = re.compile(re.escape((self.storage.prefix or "") + self.stem)
                             + r"[0-9a-f]{32}-\d+\.jsonl(\.gz)?$")
        fs, root = self._filesystem()
        old = [path for path in fs.ls(root, detail=False)
               if pattern.match(str(path).rsplit("/", 1)[-1])]
        for path in old:
            fs.rm(path)
        return len(old)

    def add(self, record: dict) -> list[str] | None:
        """Write one record; the manifest of the file it completed, if it did."""
        if self._file is None:
            self._open()
        lines = self._lines
        lines.append(dumps_record(record))
        if len(lines) >= _LINES_PER_WRITE:
            self._file.write(b"".join(lines))
            lines.clear()
        self.count += 1
        if self.count >= self.batch_size:
            return self.close()
        return None

    def _open(self) -> None:
        if not self.number:
            deleted = self.delete_earlier_runs()
            if deleted:
                logger.info("%s: deleted %d batch file(s) of earlier runs", self.stream, deleted)
        self.number += 1
        before_every_state(announce_open_files)
        _open.append(self)
        suffix = ".jsonl.gz" if self.gzip else ".jsonl"
        self._name = f"{self.storage.prefix or ''}{self.run}{self.number}{suffix}"
        fs, root = self._filesystem()
        self._raw = fs.open(f"{root}/{self._name}", "wb")
        self._file = (gzip.GzipFile(fileobj=self._raw, mode="wb", compresslevel=GZIP_LEVEL)
                      if self.gzip else self._raw)
        self._lines: list[bytes] = []
        self.count = 0

    def close(self) -> list[str] | None:
        """Close the open file (if any); its manifest, or None if nothing was written."""
        if self._file is None:
            return None
        if self._lines:
            self._file.write(b"".join(self._lines))
            self._lines.clear()
        self._file.close()
        if not self._raw.closed:
            self._raw.close()
        self._file = None
        if self in _open:
            _open.remove(self)
        if not self.count:
            return None
        return [self.storage.get_url(self._name)]


#: The open batch files of this run, announced before every STATE.
_open: list[BatchFiles] = []


def announce_open_files() -> None:
    """Close every open batch file and write its BATCH message (before a STATE)."""
    while _open:
        files = _open.pop()
        manifest = files.close()
        if manifest:
            write_batch(files.stream, files.encoding_dict, manifest)


def loads_lines(data: bytes) -> list[dict]:
    """The records of a batch file's bytes (for tests and benchmarks)."""
    if data[:2] == b"\x1f\x8b":
        data = gzip.decompress(data)
    return [orjson.loads(line) for line in data.splitlines() if line]
