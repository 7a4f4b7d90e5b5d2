"""Named weight profiles, and where a write to one is kept so that every process serves it.

A trainer that writes ``PUT /v1/profiles/ppo`` and then scores with ``"profile": "ppo"`` must
get those weights from whichever worker (FGRM_WORKERS) or `fgrm serve` on the host answers, and
after a restart too. Three ways to hold them, chosen by `Settings` (`ScoringEngine` builds one):

- **SQLite** (`SqliteProfileStore`, the served default): one file in the state directory
  (`Settings.state_dir`), shared by every worker and every server on the host. A write is one
  transaction. Before each read a process asks SQLite whether another connection has committed
  since its last look (``PRAGMA data_version``, answered from the WAL index in shared memory,
  without reading the table: a few microseconds, `tests/service/test_profiles.py` measures it)
  and reloads the table only then, so the next request on every worker already sees a write:
  well inside the one second the configuration may lag, for one PRAGMA per request.
- **Read-only** (`Settings.read_only`, for clusters): profiles come only from the configuration
  files (a mounted ConfigMap, the same on every pod), nothing is stored, and writes are refused
  with `Forbidden`: a write to one pod of a Deployment would make the pods disagree.
- **Memory** (no store): in-process engines built in code (tests, benchmarks); writes stay in
  the process.

File profiles (the feedback-types file's ``[profiles.NAME]`` tables, then FGRM_PROFILES) are the
base; stored profiles override them by name. A stored profile is re-completed against the types
configured now: a type added since gets its configured weight, a type removed is dropped.
"""

from __future__ import annotations

import json
import logging
import re
import sqlite3
import threading
import time
import tomllib
from pathlib import Path
from typing import Callable, Mapping, Sequence

from service.config import Settings
from service.errors import Forbidden, InvalidInput, clip, quote
from service.mixing import check_weights

log = logging.getLogger("fgrm.profiles")

DEFAULT_PROFILE = "default"
MAX_PROFILE_NAME = 64
MAX_PROFILES = 256
PROFILE_NAME = re.compile(rf"[A-Za-z0-9_.-]{{1,{MAX_PROFILE_NAME}}}")
STORE_FILE = "profiles.sqlite3"
SCHEMA_VERSION = 1


def check_name(name: str) -> None:
    if not PROFILE_NAME.fullmatch(name):
        raise InvalidInput("name", f"profile names are 1-{MAX_PROFILE_NAME} of A-Z a-z 0-9 '-' '_' '.', "
                                   f"got {quote(name)}")


class SqliteProfileStore:
    """Profiles in one SQLite file (WAL mode) that several processes open at once.

    Not thread-safe by itself: `Profiles` calls it under its lock.
    """

    def __init__(self, path: Path, busy_timeout_s: float = 5.0):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        # isolation_level=None: transactions are written out (BEGIN IMMEDIATE below), so a
        # writer takes the write lock before it counts the profiles, not after
        self._db = sqlite3.connect(self.path, timeout=busy_timeout_s, isolation_level=None,
                                   check_same_thread=False)
        # WAL: readers never block the writer nor each other, and data_version is cheap
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("CREATE TABLE IF NOT EXISTS profiles (name TEXT PRIMARY KEY, weights TEXT NOT NULL, "
                         "updated_unix REAL NOT NULL)")
        self._db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
        self._seen: int | None = None

    def changed(self) -> bool:
        """Whether another connection (another worker or server) committed since `load`."""
        return self._db.execute("PRAGMA data_version").fetchone()[0] != self._seen

    def load(self) -> dict[str, dict[str, float]]:
        self._seen = self._db.execute("PRAGMA data_version").fetchone()[0]
        return self._rows()

    def put(self, name: str, weights: Mapping[str, float],
            admit: Callable[[set[str]], None]) -> dict[str, dict[str, float]]:
        """Write one profile; `admit(stored names)` may refuse it, inside the same transaction so
        that two workers cannot both add the 256th profile. Returns the table as committed."""
        self._db.execute("BEGIN IMMEDIATE")
        try:
            admit(set(self._rows()))
            self._db.execute("INSERT OR REPLACE INTO profiles VALUES (?, ?, ?)",
                             (name, json.dumps(dict(weights)), time.time()))
            self._db.execute("COMMIT")
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        return self.load()

    def _rows(self) -> dict[str, dict[str, float]]:
        out = {}
        for name, raw in self._db.execute("SELECT name, weights FROM profiles ORDER BY name"):
            try:
                weights = json.loads(raw)
                check_name(name)
            except (ValueError, InvalidInput):
                log.warning("profile store %s: skipping unreadable row %r", self.path, clip(str(name), 80))
                continue
            out[name] = weights
        return out

    def close(self) -> None:
        self._db.close()


class Profiles:
    """Named weight profiles, complete over the configured types; "default" always exists."""

    def __init__(self, defaults: Mapping[str, float], seed: Mapping[str, Mapping[str, object]] | None = None, *,
                 store: SqliteProfileStore | None = None, read_only: str | None = None):
        """`seed`: file profiles (the base). `store`: where writes go (None: this process's
        memory). `read_only`: when given, the message every write is refused with."""
        self.types = list(defaults)
        self._configured = dict(defaults)
        self._base: dict[str, dict[str, float]] = {DEFAULT_PROFILE: dict(defaults)}
        for name, weights in (seed or {}).items():
            check_name(name)
            self._base[name] = self._complete(check_weights(weights, self.types, f"profiles.{name}"))
        if len(self._base) > MAX_PROFILES:
            raise InvalidInput("profiles", f"{len(self._base)} profiles configured; the limit is {MAX_PROFILES}")
        self._store = store
        self._read_only = read_only
        self._written: dict[str, dict[str, float]] = {}  # stored (or, without a store, PUT) profiles
        self._lock = threading.Lock()
        if store is not None:
            self._written = self._from_store(store.load())

    @classmethod
    def from_files(cls, defaults: Mapping[str, float], paths: Sequence[Path | None], **kw) -> "Profiles":
        """Profiles from the ``[profiles.NAME]`` tables of TOML files (later files win), e.g.
        the feedback-types file itself and FGRM_PROFILES; `kw` as for the constructor."""
        seed: dict[str, Mapping[str, object]] = {}
        for path in paths:
            if path is None:
                continue
            with Path(path).open("rb") as fh:
                seed.update(tomllib.load(fh).get("profiles", {}))
        return cls(defaults, seed, **kw)

    @property
    def writable(self) -> bool:
        return self._read_only is None

    def check_writable(self) -> None:
        if self._read_only is not None:
            raise Forbidden(self._read_only)

    def all(self) -> dict[str, dict[str, float]]:
        with self._lock:
            return {k: dict(v) for k, v in self._current().items()}

    def get(self, name: str, field: str = "profile") -> dict[str, float]:
        with self._lock:
            current = self._current()
            if name not in current:
                raise InvalidInput(field, f"unknown profile {quote(name)}; known profiles: "
                                          f"{clip(', '.join(current), 400)}")
            return dict(current[name])

    def put(self, name: str, weights: Mapping[str, object], field: str = "weights") -> dict[str, float]:
        """Create or replace a profile; types it does not name keep their configured default."""
        self.check_writable()
        check_name(name)
        full = self._complete(check_weights(weights, self.types, field))

        def admit(written: set[str]) -> None:
            names = set(self._base) | written
            if name not in names and len(names) >= MAX_PROFILES:
                raise InvalidInput("name", f"this server already holds {MAX_PROFILES} profiles (the limit); "
                                           "replace one instead")

        with self._lock:
            if self._store is None:
                admit(set(self._written))
                self._written[name] = full
            else:
                self._written = self._from_store(self._store.put(name, full, admit))
            return dict(full)

    def resolve(self, weights: Mapping[str, object] | None, profile: str | None) -> dict[str, float]:
        """Effective weights: the profile's (default "default"), overridden per type by `weights`."""
        base = self.get(profile or DEFAULT_PROFILE)
        if weights:
            base.update(check_weights(weights, self.types))
        return base

    def close(self) -> None:
        if self._store is not None:
            self._store.close()

    def _current(self) -> dict[str, dict[str, float]]:
        """Base profiles overridden by written ones, after picking up other processes' writes."""
        if self._store is not None and self._store.changed():
            self._written = self._from_store(self._store.load())
        return {**self._base, **self._written}

    def _from_store(self, rows: Mapping[str, Mapping[str, object]]) -> dict[str, dict[str, float]]:
        out = {}
        for name, weights in rows.items():
            known = {k: v for k, v in weights.items() if k in self._configured}
            try:
                out[name] = self._complete(check_weights(known, self.types, f"profiles.{name}"))
            except InvalidInput as exc:  # written by hand, or by an older version: skip, don't fail
                log.warning("profile store: skipping profile %r: %s", name, exc.message)
        return out

    def _complete(self, checked: Mapping[str, float]) -> dict[str, float]:
        return {**self._configured, **checked}


def build_profiles(settings: Settings, defaults: Mapping[str, float], types_file: Path | None) -> Profiles:
    """The profiles a served engine uses: file profiles, plus the store `settings` choose."""
    files = [types_file, settings.profiles]
    if settings.read_only:
        named = ", ".join(str(p) for p in files if p is not None) or "none"
        return Profiles.from_files(defaults, files, read_only=(
            "profiles are read-only on this server (FGRM_READ_ONLY): they come from its configuration files "
            f"({named}); change them there (in a cluster: the ConfigMap) and roll the change out"))
    store = None if settings.state_dir is None else SqliteProfileStore(Path(settings.state_dir) / STORE_FILE)
    return Profiles.from_files(defaults, files, store=store)
