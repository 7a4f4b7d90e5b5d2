"""The profile store in-process: two `Profiles` on one SQLite file stand for two workers (each
worker process opens its own connection, exactly as here); the real two-worker server is in
tests/service/test_profiles_served.py."""

from __future__ import annotations

import sqlite3
import threading
import time

import pytest

from service.config import Settings
from service.errors import Forbidden, InvalidInput
from service.profiles import MAX_PROFILES, STORE_FILE, Profiles, SqliteProfileStore, build_profiles

TYPES = {"a": 1.0, "b": 0.5}


def worker(path, types=TYPES, seed=None) -> Profiles:
    return Profiles(types, seed, store=SqliteProfileStore(path))


def test_a_write_on_one_worker_is_read_by_the_other_at_once(tmp_path):
    db = tmp_path / STORE_FILE
    w1, w2 = worker(db), worker(db)
    assert w2.get("default") == TYPES
    w1.put("ppo", {"a": 3})
    assert w2.get("ppo") == {"a": 3.0, "b": 0.5}  # the very next read, no waiting
    assert w2.resolve({"b": 0}, "ppo") == {"a": 3.0, "b": 0.0}
    w2.put("ppo", {"b": 2})  # replaced as a whole: "a" back to its configured weight
    assert w1.all()["ppo"] == {"a": 1.0, "b": 2.0}
    assert sqlite3.connect(db).execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_profiles_survive_a_restart_and_follow_the_configured_types(tmp_path):
    db = tmp_path / STORE_FILE
    w = worker(db)
    w.put("ppo", {"a": 3})
    w.close()
    # restarted with a type added and one removed: the stored profile is completed again
    again = worker(db, {"a": 1.0, "c": 0.25})
    assert again.get("ppo") == {"a": 3.0, "c": 0.25}


def test_stored_profiles_override_file_profiles_by_name(tmp_path):
    db = tmp_path / STORE_FILE
    w = worker(db, seed={"paper": {"a": 1, "b": 1}})
    assert w.get("paper") == {"a": 1.0, "b": 1.0}
    w.put("paper", {"b": 7})
    assert worker(db, seed={"paper": {"a": 1, "b": 1}}).get("paper") == {"a": 1.0, "b": 7.0}


def test_the_profile_limit_holds_across_workers(tmp_path):
    db = tmp_path / STORE_FILE
    w1, w2 = worker(db), worker(db)
    for i in range(MAX_PROFILES - 2):  # "default" is one of them
        w1.put(f"p{i}", {"a": 0.5})
    w2.put("last", {"a": 1})  # w2 has not read since: the count is taken inside the transaction
    with pytest.raises(InvalidInput) as err:
        w1.put("one-too-many", {"a": 1})
    assert err.value.as_dict() == {
        "kind": "invalid_input", "field": "name",
        "message": f"name: this server already holds {MAX_PROFILES} profiles (the limit); replace one instead"}
    w2.put("p0", {"a": 2})  # replacing one is always allowed
    with pytest.raises(InvalidInput) as err:
        w2.put("bad name!", {"a": 1})
    assert err.value.field == "name"


def test_concurrent_writers_lose_nothing(tmp_path):
    db = tmp_path / STORE_FILE
    workers = [worker(db) for _ in range(4)]

    def write(i, w):
        for j in range(10):
            w.put(f"w{i}-{j}", {"a": float(j)})

    threads = [threading.Thread(target=write, args=(i, w)) for i, w in enumerate(workers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for w in workers:
        assert len(w.all()) == 1 + 40


def test_the_per_request_freshness_check_is_cheap(tmp_path):
    """Why a check per request instead of a refresh timer: PRAGMA data_version costs microseconds
    (WAL index in shared memory), so every request sees the newest profiles for less than the
    cost of parsing its JSON. Measured here, bounded loosely for a busy CI machine."""
    w = worker(tmp_path / STORE_FILE)
    w.put("ppo", {"a": 3})
    n = 2000
    start = time.perf_counter()
    for _ in range(n):
        w.get("ppo")
    per_read = (time.perf_counter() - start) / n
    print(f"\nProfiles.get with the store's freshness check: {per_read * 1e6:.1f} us")
    assert per_read < 0.001


def test_read_only_refuses_writes_and_serves_the_files(tmp_path):
    profiles_file = tmp_path / "profiles.toml"
    profiles_file.write_text("[profiles.cluster]\na = 2.0\n")
    settings = Settings(read_only=True, state_dir=tmp_path / "state", profiles=profiles_file)
    p = build_profiles(settings, TYPES, None)
    assert p.get("cluster") == {"a": 2.0, "b": 0.5} and not p.writable
    with pytest.raises(Forbidden) as err:
        p.put("x", {"a": 1})
    assert err.value.as_dict() == {
        "kind": "forbidden",
        "message": "profiles are read-only on this server (FGRM_READ_ONLY): they come from its configuration "
                   f"files ({profiles_file}); change them there (in a cluster: the ConfigMap) and roll the "
                   "change out"}
    assert not (tmp_path / "state").exists()  # read-only root filesystems: nothing is written


def test_settings_choose_the_store(tmp_path):
    stored = build_profiles(Settings(state_dir=tmp_path), TYPES, None)
    stored.put("x", {"a": 2})
    assert (tmp_path / STORE_FILE).is_file()
    in_memory = build_profiles(Settings(), TYPES, None)  # built in code: nothing on disk
    in_memory.put("x", {"a": 2})
    assert build_profiles(Settings(), TYPES, None).all().keys() == {"default"}
