"""Conditional requests in partner mode: ``If-None-Match`` with the ETag of the last read.

The Platform API sends an ``ETag`` with every answer and answers ``304 Not Modified``
(no body) to a request whose ``If-None-Match`` repeats it. The ETags live in a local
SQLite file (``etag_cache_file``), not in the state: one per list read per install
would make the state grow with the installs.

A ``304`` emits no rows: the warehouse keeps the rows it loaded when that ETag was
stored. So an ETag may only be used once the rows it stands for are loaded, and that is
what the STATE says: each run writes its entries under a new *generation*, and the
final STATE of a run names its generation (``etag_generation``). A run starts by
deleting every entry of a later generation than its state's: those of a run whose rows
never reached the warehouse (killed, or its loader failed). A run without that key in
its state (the first one, or a full refresh) starts with an empty cache.

Only the list endpoints whose streams have no children use it (attachments, config,
domains, collaborators), and only when the whole list fits one page (an answer ``200``,
not ``206``): a parent's ``304`` would leave its children without their parent row.
The key holds the stream's selected fields too: selecting a field again reads it anew.
An ETag is kept only once its rows were emitted (a worker of ``concurrent_installs``
may read a list the run then reads through another install, or not at all).
"""

from __future__ import annotations

import hashlib
import sqlite3
import threading
import typing as t

#: Commit the cache file every this many new ETags (and at the end of the run).
COMMIT_EVERY = 1000
GENERATION_KEY = "etag_generation"


class EtagCache:
    def __init__(self, path: str, committed: int | None) -> None:
        self.connection = sqlite3.connect(path, check_same_thread=False)
        self.lock = threading.Lock()  # workers of concurrent installs share the file
        self.local = threading.local()
        self.connection.execute("CREATE TABLE IF NOT EXISTS etags (key TEXT PRIMARY KEY, "
                                "etag TEXT NOT NULL, generation INTEGER NOT NULL)")
        if committed is None:
            self.connection.execute("DELETE FROM etags")
        else:
            self.connection.execute("DELETE FROM etags WHERE generation > ?", (committed,))
        self.connection.commit()
        self.generation = (committed or 0) + 1
        self.pending = 0
        self.sent = 0
        self.not_modified = 0

    @staticmethod
    def key(stream_name: str, selected: t.Iterable[str], url: str) -> str:
        fields = hashlib.blake2b(",".join(sorted(selected)).encode(), digest_size=6).hexdigest()
        return f"{stream_name}|{fields}|{url}"

    def get(self, key: str) -> str | None:
        with self.lock:
            row = self.connection.execute("SELECT etag FROM etags WHERE key = ?", (key,)).fetchone()
        return row[0] if row else None

    def put(self, key: str, etag: str) -> None:
        with self.lock:
            self.connection.execute("INSERT OR REPLACE INTO etags VALUES (?, ?, ?)",
                                    (key, etag, self.generation))
            self.pending += 1
            if self.pending >= COMMIT_EVERY:
                self.connection.commit()
                self.pending = 0

    def defer(self, key: str, etag: str) -> None:
        """An ETag to keep once its rows are emitted (``keep``): a worker reading ahead
        may read a list whose rows the run then does not emit (an app read through
        another install), and its ETag must not make the next request a 304."""
        pending = getattr(self.local, "pending", None)
        if pending is None:
            pending = self.local.pending = []
        pending.append((key, etag))

    def take_deferred(self) -> list[tuple[str, str]]:
        pending = getattr(self.local, "pending", None) or []
        self.local.pending = []
        return pending

    def keep(self, etags: list[tuple[str, str]]) -> None:
        for key, etag in etags:
            self.put(key, etag)

    def drop(self, key: str) -> None:
        with self.lock:
            self.connection.execute("DELETE FROM etags WHERE key = ?", (key,))

    def flush(self) -> None:
        with self.lock:
            self.connection.commit()
            self.pending = 0
