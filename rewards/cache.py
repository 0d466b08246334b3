"""Persistent result cache: SQLite (WAL) keyed by what determines a score.

The key hashes the task's content, the reward config, the tool versions and the candidate as the
scorer sees it: the extracted code when extraction succeeds, otherwise the raw completion (whose
text shapes the FORMAT_ERROR message). Extracted code is compared after :func:`normalise_layout`,
which drops indentation and trailing blanks but keeps every line: a newline ends a ``//`` comment or
a `` `define``, so collapsing newlines (or spaces inside a line, which may sit in a string literal)
could give two different designs one key. Completions the scorer rejects before extraction (empty,
longer than ``max_completion_chars``) get keys of their own, so a long reasoning trace around a
cached design still gets its RESOURCE_LIMIT.

``INFRA_ERROR`` and ``INVALID_INPUT`` results are never stored: they say nothing about the candidate.
Each result is committed as soon as it is computed, so a server killed mid-batch keeps everything it
finished; with ``synchronous=NORMAL`` a commit survives a process crash (not a power cut).

The file is bounded by ``max_entries``: past it, the oldest results (by when they were stored) are
deleted, checked every ``evict_every`` writes, so a long run's cache does not grow without limit.
"""

from __future__ import annotations

import hashlib
import json
import logging
import sqlite3
import threading
import time
from collections.abc import Iterable
from pathlib import Path

from rewards.config import RewardConfig
from rewards.extract import Extraction
from rewards.types import RewardResult, Status

log = logging.getLogger(__name__)

KEY_SCHEMA = "rtlforge-cache-v3"
"""Changes whenever the scorer's flow changes what a result holds (v3: synthesis maps with ABC once)."""
UNCACHEABLE = frozenset({Status.INFRA_ERROR, Status.INVALID_INPUT})
_SQL_CHUNK = 500  # stays under SQLite's bound-parameter limit
DEFAULT_MAX_ENTRIES = 2_000_000  # a few KB each: some GB at most


_BLANKS = " \t\r"  # Verilog whitespace at line ends; not str.strip(): a non-breaking space is an error


def normalise_layout(code: str) -> str:
    """``code`` without indentation or trailing blanks, line for line (so tool line numbers still hold).

    Lines that end in a backslash, and the line after each, stay verbatim: they continue a macro or
    a string, where blanks can be content.
    """
    lines = code.split("\n")
    out = []
    continued = False
    for line in lines:
        verbatim = continued or line.rstrip(_BLANKS).endswith("\\")
        out.append(line if verbatim else line.strip(_BLANKS))
        continued = line.endswith("\\")
    return "\n".join(out)


def candidate_fingerprint(completion: str, config: RewardConfig, extraction: Extraction | None) -> str:
    """What of ``completion`` the score depends on, as a short string (see the module docstring).

    ``extraction`` is :func:`rewards.extract.extract_verilog` of the completion, done once by the caller
    (:func:`rewards.engine.plan`); it is not looked at for completions rejected before extraction.
    """
    if not completion.strip():
        return "empty"
    if len(completion) > config.max_completion_chars:
        return f"too-long:{len(completion)}"
    if extraction is None or extraction.code is None:
        return "raw:" + hashlib.sha256(completion.encode("utf-8", "surrogatepass")).hexdigest()
    return "code:" + normalise_layout(extraction.code)


def cache_key(task_hash: str, fingerprint: str, config_hash: str, tools: str) -> str:
    """sha256 of everything that determines a RewardResult."""
    blob = json.dumps([KEY_SCHEMA, task_hash, config_hash, tools, fingerprint], ensure_ascii=False)
    return hashlib.sha256(blob.encode("utf-8", "surrogatepass")).hexdigest()


def tools_fingerprint(versions: dict[str, str], liberty: str | None) -> str:
    """Tool versions plus the liberty file used for PPA, as one stable string."""
    return json.dumps({"tools": versions, "liberty": liberty}, sort_keys=True)


class ResultCache:
    """RewardResults by cache key in one SQLite file (``path=None``: in memory, for one process).

    Thread-safe: one connection guarded by a lock (SQLite serialises writers anyway). Several
    processes may share a file; WAL lets readers proceed while one writes. ``max_entries`` (None or
    0 = unbounded) caps the number of stored results; the oldest are evicted first.
    """

    def __init__(
        self, path: str | Path | None, max_entries: int | None = DEFAULT_MAX_ENTRIES, evict_every: int = 1000
    ) -> None:
        if max_entries is not None and max_entries < 0:
            raise ValueError(f"cache max_entries must be >= 0 (0 = unbounded), got {max_entries}")
        self.max_entries = max_entries or None
        self.evict_every = max(1, evict_every)
        self._writes = 0
        self.evicted = 0
        self.path = str(path) if path is not None else ":memory:"
        if path is not None:
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        try:
            self._db = sqlite3.connect(self.path, check_same_thread=False, timeout=30.0, isolation_level=None)
            if path is not None:
                self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.execute(
                "CREATE TABLE IF NOT EXISTS results (key TEXT PRIMARY KEY, result TEXT NOT NULL, created REAL)"
            )
            self._db.execute("CREATE INDEX IF NOT EXISTS results_created ON results (created)")
        except sqlite3.Error as exc:
            raise OSError(
                f"cannot open the result cache {self.path}: {exc}. Pass another --cache path "
                "or remove the damaged file"
            ) from exc
        self.hits = 0
        self.misses = 0

    def get_many(self, keys: Iterable[str]) -> dict[str, RewardResult]:
        """Cached results for those of ``keys`` that are stored (marked ``cached=True``)."""
        wanted = list(dict.fromkeys(keys))
        found: dict[str, RewardResult] = {}
        with self._lock:
            for start in range(0, len(wanted), _SQL_CHUNK):
                chunk = wanted[start : start + _SQL_CHUNK]
                marks = ",".join("?" * len(chunk))
                rows = self._db.execute(f"SELECT key, result FROM results WHERE key IN ({marks})", chunk)
                for key, blob in rows:
                    result = RewardResult.from_dict(json.loads(blob))
                    result.cached = True
                    found[key] = result
            self.hits += len(found)
            self.misses += len(wanted) - len(found)
        return found

    def put(self, key: str, result: RewardResult) -> bool:
        """Store ``result`` under ``key`` and commit; returns False (storing nothing) for uncacheable ones."""
        if result.status in UNCACHEABLE:
            return False
        record = result.to_dict()
        record["cached"] = False
        blob = json.dumps(record, ensure_ascii=False)
        try:
            with self._lock:
                self._db.execute("INSERT OR REPLACE INTO results VALUES (?, ?, ?)", (key, blob, time.time()))
                self._writes += 1
                if self.max_entries and (self._writes - 1) % self.evict_every == 0:
                    self._evict()
        except sqlite3.Error as exc:
            log.error(
                "result cache %s: write failed (%s); the result is returned but not cached", self.path, exc
            )
            return False
        return True

    def _evict(self) -> None:
        """Delete the oldest results beyond ``max_entries`` (caller holds the lock)."""
        excess = self._db.execute("SELECT COUNT(*) FROM results").fetchone()[0] - self.max_entries
        if excess > 0:
            self._db.execute(
                "DELETE FROM results WHERE key IN (SELECT key FROM results ORDER BY created, rowid LIMIT ?)",
                (excess,),
            )
            self.evicted += excess
            log.info(
                "result cache %s: evicted the %d oldest results (max %d)", self.path, excess, self.max_entries
            )

    def __len__(self) -> int:
        with self._lock:
            return self._db.execute("SELECT COUNT(*) FROM results").fetchone()[0]

    def hit_ratio(self) -> float:
        total = self.hits + self.misses
        return self.hits / total if total else 0.0

    def close(self) -> None:
        with self._lock:
            self._db.close()
