"""On-disk cache keyed by file content.

One SQLite file holds namespaced key -> bytes entries (records of the decode pass,
thumbnails, out-of-fold predictions...) and a stat index ``(path, size, mtime_ns) ->
sha1`` so that a re-run does not even read unchanged files. Only the main process
writes; values are written in transactions, so an interrupted run leaves a valid
cache that the next run resumes from.
"""

from __future__ import annotations

import hashlib
import os
import sqlite3
import threading
from collections.abc import Iterable, Mapping
from pathlib import Path

SCHEMA = """
CREATE TABLE IF NOT EXISTS kv (ns TEXT NOT NULL, key TEXT NOT NULL, value BLOB NOT NULL,
                               PRIMARY KEY (ns, key));
CREATE TABLE IF NOT EXISTS stat (path BLOB PRIMARY KEY, size INTEGER NOT NULL,
                                 mtime_ns INTEGER NOT NULL, sha1 TEXT NOT NULL);
"""


def key_of(*parts: object) -> str:
    """A stable short key for a tuple of options (repr-based, so keep parts simple)."""
    return hashlib.sha1(repr(parts).encode("utf-8", "surrogateescape")).hexdigest()


class Cache:
    """A small key-value store in ``<root>/cache.sqlite``."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.path = self.root / "cache.sqlite"
        self._lock = threading.Lock()
        self._db = sqlite3.connect(self.path, timeout=60, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.executescript(SCHEMA)
        self._db.commit()

    # -- key/value -------------------------------------------------------------------
    def get(self, ns: str, key: str) -> bytes | None:
        with self._lock:
            row = self._db.execute("SELECT value FROM kv WHERE ns=? AND key=?", (ns, key)).fetchone()
        return None if row is None else bytes(row[0])

    def get_many(self, ns: str, keys: Iterable[str]) -> dict[str, bytes]:
        keys = list(dict.fromkeys(keys))
        out: dict[str, bytes] = {}
        with self._lock:
            for i in range(0, len(keys), 500):
                chunk = keys[i : i + 500]
                q = f"SELECT key, value FROM kv WHERE ns=? AND key IN ({','.join('?' * len(chunk))})"
                for k, v in self._db.execute(q, (ns, *chunk)):
                    out[k] = bytes(v)
        return out

    def put(self, ns: str, key: str, value: bytes) -> None:
        self.put_many(ns, {key: value})

    def put_many(self, ns: str, items: Mapping[str, bytes]) -> None:
        with self._lock, self._db:
            self._db.executemany(
                "INSERT OR REPLACE INTO kv (ns, key, value) VALUES (?, ?, ?)",
                [(ns, k, sqlite3.Binary(v)) for k, v in items.items()],
            )

    def keys(self, ns: str) -> set[str]:
        with self._lock:
            return {k for (k,) in self._db.execute("SELECT key FROM kv WHERE ns=?", (ns,))}

    # -- stat index --------------------------------------------------------------------
    def lookup_stats(self, entries: Iterable[tuple[str, int, int]]) -> dict[str, str]:
        """Map absolute path -> sha1 for entries whose size and mtime are unchanged."""
        entries = list(entries)
        found: dict[str, str] = {}
        with self._lock:
            for i in range(0, len(entries), 500):
                chunk = entries[i : i + 500]
                q = f"SELECT path, size, mtime_ns, sha1 FROM stat WHERE path IN ({','.join('?' * len(chunk))})"
                params = [os.fsencode(e[0]) for e in chunk]
                rows = {bytes(p): (s, m, h) for p, s, m, h in self._db.execute(q, params)}
                for p, s, m in chunk:
                    r = rows.get(os.fsencode(p))
                    if r is not None and r[0] == s and r[1] == m:
                        found[p] = r[2]
        return found

    def remember_stats(self, entries: Iterable[tuple[str, int, int, str]]) -> None:
        with self._lock, self._db:
            self._db.executemany(
                "INSERT OR REPLACE INTO stat (path, size, mtime_ns, sha1) VALUES (?, ?, ?, ?)",
                [(os.fsencode(p), s, m, h) for p, s, m, h in entries],
            )

    def close(self) -> None:
        with self._lock:
            self._db.close()
