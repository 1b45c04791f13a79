"""Tests of durable_lab._backends: MemoryBackend and SqliteBackend behave identically.

The behaviour tests are written once and run against both backends (the ``backend`` fixture);
the SQLite-only tests (files, pool, persistence, daemon threads) follow.
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
import subprocess
import sys
import tempfile
import textwrap
import threading
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from durable_lab import _backends
from durable_lab._backends import (
    BackendStatistics,
    MemoryBackend,
    SqliteBackend,
    StorageBackend,
)
from durable_lab._sql_driver import sqlite3 as lab_sqlite3  # (the errors of the lab's SQLite)
from durable_lab.errors import StorageError

REPO_ROOT = Path(__file__).resolve().parent.parent
NS = "COUNTER"


def oid(n: int) -> str:
    return f"{n:064x}"


A = (NS, oid(1))
B = (NS, oid(2))
C = (NS, oid(3))


async def commit(b, key=A, *, delete_all=False, puts=None, deletes=(), metadata=None):
    await b.commit(
        key, delete_all=delete_all, puts=puts or {}, deletes=deletes, metadata=metadata or {}
    )


async def lst(b, key=A, *, start=None, end=None, reverse=False, limit=None):
    return await b.list(key, start=start, end=end, reverse=reverse, limit=limit)


@pytest.fixture(params=["memory", "sqlite"])
async def backend(request, tmp_path):
    b = MemoryBackend() if request.param == "memory" else SqliteBackend(tmp_path / "data")
    yield b
    await b.aclose()


@pytest.fixture
def count_connects(monkeypatch):
    """Count the aiosqlite connections SqliteBackend opens (each is given a connector)."""
    calls: list[str] = []
    real = _backends._connector

    def counting(database, *args):
        calls.append(str(database))
        return real(database, *args)

    monkeypatch.setattr(_backends, "_connector", counting)
    return calls


# ---------------------------------------------------------------------------------------------
# Behaviour, both backends
# ---------------------------------------------------------------------------------------------


async def test_satisfies_protocol(backend):
    assert isinstance(backend, StorageBackend)
    assert isinstance(backend.statistics(), BackendStatistics)


async def test_round_trip_put_read_delete(backend):
    big = bytes(range(256)) * 512  # 128 KiB, Cloudflare's value limit
    await commit(backend, puts={"a": b"1", "b": b"2", "empty": b"", "big": big})
    got = await backend.read(A, ["a", "b", "empty", "big", "missing"])
    assert got == {"a": b"1", "b": b"2", "empty": b"", "big": big}
    assert type(got["empty"]) is bytes and type(got["a"]) is bytes

    await commit(backend, puts={"a": b"one"}, deletes=["b", "never-existed"])
    assert await backend.read(A, ["a", "b"]) == {"a": b"one"}
    assert await lst(backend) == [("a", b"one"), ("big", big), ("empty", b"")]
    # another object is untouched
    assert await backend.read(B, ["a"]) == {}


async def test_unknown_object_reads_empty(backend):
    assert await backend.read(A, ["x"]) == {}
    assert await lst(backend) == []
    assert await backend.read_metadata(A) == {}
    assert await backend.stored_size(A) == 0
    assert backend.stored_objects(NS) == []


UNICODE_KEYS = ["", "A", "a", "b", "ba", "z", "é", "日本", "\uff61", "\U0001f600", "\x00x"]


async def test_list_ranges_reverse_limit_unicode_order(backend):
    puts = {k: k.encode() + b"!" for k in UNICODE_KEYS}
    await commit(backend, puts=puts)
    # code point order: U+FF61 sorts before U+1F600 (in UTF-16 order it would be after)
    expected = sorted(UNICODE_KEYS)
    assert expected.index("\uff61") < expected.index("\U0001f600")
    rows = await lst(backend)
    assert [k for k, _ in rows] == expected
    assert all(v == k.encode() + b"!" for k, v in rows)

    assert [k for k, _ in await lst(backend, reverse=True)] == expected[::-1]
    assert [k for k, _ in await lst(backend, start="b")] == [k for k in expected if k >= "b"]
    assert [k for k, _ in await lst(backend, end="b")] == [k for k in expected if k < "b"]
    assert [k for k, _ in await lst(backend, start="b", end="é")] == ["b", "ba", "z"]
    assert [k for k, _ in await lst(backend, start="b", end="é", reverse=True)] == [
        "z",
        "ba",
        "b",
    ]
    assert [k for k, _ in await lst(backend, start="b", limit=2)] == ["b", "ba"]
    # reverse + limit takes the LARGEST keys of the range
    assert [k for k, _ in await lst(backend, end="é", reverse=True, limit=2)] == ["z", "ba"]
    assert [k for k, _ in await lst(backend, limit=3)] == expected[:3]
    assert await lst(backend, limit=0) == []
    assert await lst(backend, start="z", end="b") == []  # empty range
    assert await lst(backend, start="b", end="b") == []
    assert [k for k, _ in await lst(backend, start="bb")] == [k for k in expected if k >= "bb"]


async def test_delete_all_keeps_metadata_and_applies_puts_after(backend):
    await commit(backend, puts={"a": b"1", "b": b"2"}, metadata={"alarm": b"123"})
    await commit(backend, delete_all=True, puts={"c": b"3"})
    assert await lst(backend) == [("c", b"3")]
    assert await backend.read(A, ["a", "b", "c"]) == {"c": b"3"}
    assert await backend.read_metadata(A) == {"alarm": b"123"}
    await commit(backend, delete_all=True)
    assert await lst(backend) == []
    assert await backend.stored_size(A) == 0
    assert await backend.read_metadata(A) == {"alarm": b"123"}


async def test_metadata_upsert_and_delete(backend):
    await commit(backend, metadata={"alarm": b"1", "other": b"x"})
    assert await backend.read_metadata(A) == {"alarm": b"1", "other": b"x"}
    await commit(backend, metadata={"alarm": b"2", "other": None, "absent": None})
    assert await backend.read_metadata(A) == {"alarm": b"2"}
    # metadata is not KV data
    assert await lst(backend) == []
    assert await backend.read(A, ["alarm"]) == {}
    assert await backend.stored_size(A) == 0


async def test_stored_size_counts_utf8_key_bytes_and_value_bytes(backend):
    await commit(backend, puts={"é": b"12345", "a": b"", "日本": b"xy"})
    assert await backend.stored_size(A) == (2 + 5) + (1 + 0) + (6 + 2)
    await commit(backend, puts={"é": b"1"}, deletes=["日本"])
    assert await backend.stored_size(A) == (2 + 1) + (1 + 0)
    await commit(backend, metadata={"m": b"x" * 100})
    assert await backend.stored_size(A) == 4


async def test_invalid_commit_raises_and_changes_nothing(backend):
    await commit(backend, puts={"a": b"1", "b": b"2"}, metadata={"m": b"m"})
    before = (await lst(backend), await backend.read_metadata(A), await backend.stored_size(A))
    commits_before = backend.statistics().commits

    with pytest.raises(TypeError, match="must be bytes"):
        await commit(
            backend,
            delete_all=True,
            puts={"c": b"3", "d": "not bytes"},
            metadata={"m": None},
        )
    with pytest.raises(ValueError, match="both put and delete"):
        await commit(backend, puts={"a": b"9"}, deletes=["a"])
    with pytest.raises(ValueError, match="lone surrogate"):
        await commit(backend, delete_all=True, puts={"ok": b"1", "\ud800": b"2"})
    with pytest.raises(TypeError, match="must be bytes or None"):
        await commit(backend, puts={"z": b"1"}, metadata={"m": 5})

    after = (await lst(backend), await backend.read_metadata(A), await backend.stored_size(A))
    assert after == before
    assert backend.statistics().commits == commits_before


def all_operations(backend, key):
    """Every async operation on ``key``, as zero-argument coroutine functions."""
    return [
        lambda: backend.read(key, ["a"]),
        lambda: lst(backend, key),
        lambda: commit(backend, key, puts={"a": b"1"}),
        lambda: backend.read_metadata(key),
        lambda: backend.stored_size(key),
    ]


BAD_NAMESPACES = ["", "1abc", "a-b", "../x", "a/b", "a.b", None]
BAD_IDS = ["", "AB" * 32, oid(1)[:-1], oid(1) + "0", "../" + oid(1)[3:], oid(1)[:-1] + "\n",
           oid(1)[:-1] + "g", 12]


@pytest.mark.parametrize("bad_ns", BAD_NAMESPACES)
async def test_invalid_namespace_is_rejected(backend, bad_ns):
    key = (bad_ns, oid(1))
    for op in all_operations(backend, key):
        with pytest.raises(ValueError, match="must be a Python identifier"):
            await op()
    with pytest.raises(ValueError, match="must be a Python identifier"):
        backend.stored_objects(bad_ns)


@pytest.mark.parametrize("bad_id", BAD_IDS)
async def test_invalid_object_id_is_rejected(backend, bad_id, tmp_path):
    key = (NS, bad_id)
    for op in all_operations(backend, key):
        with pytest.raises(ValueError, match="exactly 64 lowercase hexadecimal"):
            await op()
    assert backend.stored_objects(NS) == []
    assert backend.statistics().commits == 0


async def test_stored_objects_lists_exactly_the_written_ids(backend):
    ids = [oid(n) for n in (5, 3, 0xFFFF, 2**255)]
    for i in ids:
        await commit(backend, (NS, i), puts={"k": b"v"})
    await commit(backend, ("OTHER", oid(7)), puts={"k": b"v"})
    await commit(backend, (NS, oid(9)), metadata={"alarm": b"1"})  # metadata counts as data
    await backend.read((NS, oid(8)), ["k"])  # reading does not create
    assert backend.stored_objects(NS) == sorted([*ids, oid(9)])
    assert backend.stored_objects("OTHER") == [oid(7)]
    assert backend.stored_objects("NOBODY") == []


async def test_operations_after_aclose_raise_storage_error(backend):
    await commit(backend, puts={"a": b"1"})
    await backend.aclose()
    await backend.aclose()  # idempotent
    for op in all_operations(backend, A):
        with pytest.raises(StorageError, match="storage backend is closed"):
            await op()
    with pytest.raises(StorageError, match="storage backend is closed"):
        backend.stored_objects(NS)


async def test_statistics_count_commits_and_reads(backend):
    s0 = backend.statistics()
    assert (s0.commits, s0.reads) == (0, 0)
    await commit(backend, puts={"a": b"1"})
    await commit(backend, puts={"b": b"1"})
    await backend.read(A, ["a"])
    await lst(backend)
    await backend.read(B, ["a"])  # an object without data still counts as a read
    s1 = backend.statistics()
    assert (s1.commits, s1.reads) == (2, 3)
    with pytest.raises(dataclass_frozen_error()):
        s1.commits = 5


def dataclass_frozen_error():
    import dataclasses

    return dataclasses.FrozenInstanceError


async def test_concurrent_commits_and_reads_on_one_object(backend):
    async def writer(i: int) -> None:
        await commit(backend, puts={f"k{i:03}": str(i).encode()})

    async def reader() -> None:
        rows = await lst(backend)
        # every read sees a prefix-closed, fully committed state: values match their keys
        assert all(v == str(int(k[1:])).encode() for k, v in rows)

    await asyncio.gather(*(writer(i) for i in range(100)), *(reader() for _ in range(20)))
    rows = await lst(backend)
    assert [k for k, _ in rows] == [f"k{i:03}" for i in range(100)]


# ---------------------------------------------------------------------------------------------
# Model-based: random commit sequences give the same results on both backends and a dict model
# ---------------------------------------------------------------------------------------------

_keys = st.sampled_from(["", "a", "aa", "ab", "b", "é", "z", "\uff61", "\U0001f600", "日"])
_values = st.binary(max_size=8)
_commit_st = st.fixed_dictionaries(
    {
        "delete_all": st.booleans(),
        "puts": st.dictionaries(_keys, _values, max_size=4),
        "deletes": st.lists(_keys, max_size=3),
        "metadata": st.dictionaries(st.sampled_from(["m1", "m2"]), st.none() | _values),
    }
)
_list_st = st.tuples(st.none() | _keys, st.none() | _keys, st.booleans(),
                     st.none() | st.integers(0, 5))


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(commits=st.lists(_commit_st, min_size=1, max_size=6), queries=st.lists(_list_st, max_size=4))
def test_backends_agree_with_a_dict_model(commits, queries):
    async def scenario(folder: str) -> None:
        backends = [MemoryBackend(), SqliteBackend(folder, max_open=2)]
        kv: dict[str, bytes] = {}
        meta: dict[str, bytes] = {}
        try:
            for c in commits:
                deletes = [k for k in c["deletes"] if k not in c["puts"]]
                if c["delete_all"]:
                    kv.clear()
                kv.update(c["puts"])
                for k in deletes:
                    kv.pop(k, None)
                for k, v in c["metadata"].items():
                    if v is None:
                        meta.pop(k, None)
                    else:
                        meta[k] = v
                for b in backends:
                    await b.commit(A, delete_all=c["delete_all"], puts=c["puts"],
                                   deletes=deletes, metadata=c["metadata"])
            model_size = sum(len(k.encode()) + len(v) for k, v in kv.items())
            for b in backends:
                assert await lst(b) == sorted(kv.items())
                assert await b.read_metadata(A) == meta
                assert await b.stored_size(A) == model_size
                assert await b.read(A, ["a", "zz", "é"]) == {
                    k: kv[k] for k in ["a", "zz", "é"] if k in kv
                }
                for start, end, reverse, limit in queries:
                    rows = sorted(
                        (k, v) for k, v in kv.items()
                        if (start is None or k >= start) and (end is None or k < end)
                    )
                    if reverse:
                        rows.reverse()
                    if limit is not None:
                        rows = rows[:limit]
                    got = await lst(b, start=start, end=end, reverse=reverse, limit=limit)
                    assert got == rows, (b, start, end, reverse, limit)
        finally:
            for b in backends:
                await b.aclose()

    with tempfile.TemporaryDirectory() as folder:
        asyncio.run(scenario(folder))


# ---------------------------------------------------------------------------------------------
# SqliteBackend only
# ---------------------------------------------------------------------------------------------


@pytest.fixture
async def sqlite_backend(tmp_path):
    b = SqliteBackend(tmp_path / "data")
    yield b
    await b.aclose()


async def test_sqlite_layout_schema_and_pragmas(sqlite_backend, tmp_path):
    await commit(sqlite_backend, puts={"a": b"1"}, metadata={"m": b"2"})
    path = tmp_path / "data" / NS / f"{oid(1)}.sqlite"
    assert path.is_file()
    db = sqlite3.connect(path)
    try:
        tables = dict(db.execute("SELECT name, sql FROM sqlite_master WHERE type = 'table'"))
        assert set(tables) == {"_cf_KV", "_cf_METADATA"}
        assert "WITHOUT ROWID" in tables["_cf_KV"]
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert db.execute("SELECT key, value FROM _cf_KV").fetchall() == [("a", b"1")]
        assert db.execute("SELECT key, value FROM _cf_METADATA").fetchall() == [("m", b"2")]
    finally:
        db.close()


async def test_sqlite_lazy_creation(sqlite_backend, tmp_path, count_connects):
    assert await sqlite_backend.read(A, ["a"]) == {}
    assert await lst(sqlite_backend) == []
    assert await sqlite_backend.read_metadata(A) == {}
    assert await sqlite_backend.stored_size(A) == 0
    assert not (tmp_path / "data").exists()
    assert count_connects == []
    assert sqlite_backend.statistics().open_connections == 0
    await commit(sqlite_backend, puts={"a": b"1"})
    assert (tmp_path / "data" / NS / f"{oid(1)}.sqlite").is_file()
    assert len(count_connects) == 1


async def test_sqlite_persistence_across_backends(tmp_path):
    first = SqliteBackend(tmp_path)
    try:
        await commit(first, puts={"a": b"1", "é": b"2"}, metadata={"alarm": b"9"})
        await commit(first, B, puts={"x": b"y"})
        await commit(first, deletes=["a"])
    finally:
        await first.aclose()
    second = SqliteBackend(tmp_path)
    try:
        assert await lst(second) == [("é", b"2")]
        assert await second.read_metadata(A) == {"alarm": b"9"}
        assert await second.read(B, ["x"]) == {"x": b"y"}
        assert second.stored_objects(NS) == [oid(1), oid(2)]
    finally:
        await second.aclose()


async def test_sqlite_failure_part_way_rolls_back(tmp_path, monkeypatch):
    b = SqliteBackend(tmp_path)
    try:
        await commit(b, puts={"a": b"1", "b": b"2"}, metadata={"m": b"old"})
        # The metadata upsert is the LAST statement of the transaction: by the time it fails,
        # delete_all, the puts and the deletes have all been executed.
        monkeypatch.setattr(_backends, "_SQL_PUT_METADATA",
                            "INSERT INTO no_such_table VALUES (?, ?)")
        with pytest.raises(StorageError) as info:
            await commit(b, delete_all=True, puts={"c": b"3"}, deletes=["a"],
                         metadata={"m": b"new"})
        assert isinstance(info.value.__cause__, lab_sqlite3.Error)
        assert "no_such_table" in str(info.value.__cause__)
        assert await lst(b) == [("a", b"1"), ("b", b"2")]
        assert await b.read_metadata(A) == {"m": b"old"}
        assert b.statistics().commits == 1
        monkeypatch.undo()
        # the connection was left outside any transaction: the next commit works
        await commit(b, puts={"d": b"4"}, metadata={"m": b"newer"})
        assert await lst(b) == [("a", b"1"), ("b", b"2"), ("d", b"4")]
    finally:
        await b.aclose()
    again = SqliteBackend(tmp_path)  # and the disk agrees
    try:
        assert await lst(again) == [("a", b"1"), ("b", b"2"), ("d", b"4")]
        assert await again.read_metadata(A) == {"m": b"newer"}
    finally:
        await again.aclose()


async def test_sqlite_corrupt_database_raises_storage_error(sqlite_backend, tmp_path):
    path = tmp_path / "data" / NS / f"{oid(1)}.sqlite"
    path.parent.mkdir(parents=True)
    path.write_bytes(b"this is not a database" * 100)
    with pytest.raises(StorageError, match="cannot open") as info:
        await sqlite_backend.read(A, ["a"])
    assert isinstance(info.value.__cause__, lab_sqlite3.DatabaseError)
    assert sqlite_backend.statistics().open_connections == 0
    # the failed slot was released: other objects still work
    await commit(sqlite_backend, B, puts={"a": b"1"})
    assert await sqlite_backend.read(B, ["a"]) == {"a": b"1"}


async def test_sqlite_concurrent_first_operations_open_one_connection(
    sqlite_backend, count_connects
):
    await asyncio.gather(
        *(commit(sqlite_backend, puts={f"k{i}": b"v"}) for i in range(30)),
        *(sqlite_backend.read(A, ["k0"]) for _ in range(10)),
    )
    assert len(count_connects) == 1
    assert sqlite_backend.statistics().open_connections == 1
    assert len(await lst(sqlite_backend)) == 30


async def test_sqlite_pool_bound_under_concurrent_commits(tmp_path):
    b = SqliteBackend(tmp_path, max_open=8)
    seen: list[int] = []
    done = asyncio.Event()

    async def monitor() -> None:
        while not done.is_set():
            seen.append(b.statistics().open_connections)
            await asyncio.sleep(0)

    async def work(n: int) -> None:
        key = (NS, oid(n))
        await commit(b, key, puts={"n": str(n).encode(), "x": b"x" * n})
        await commit(b, key, puts={"again": b"1"}, metadata={"m": str(n).encode()})

    mon = asyncio.create_task(monitor())
    try:
        await asyncio.gather(*(work(n) for n in range(200)))
        done.set()
        await mon
        assert max(seen) <= 8
        assert max(seen) == 8  # the pool was actually used in parallel
        assert len(seen) > 100  # the monitor did observe the run
        for n in range(200):
            key = (NS, oid(n))
            assert await b.read(key, ["n", "x", "again"]) == {
                "n": str(n).encode(), "x": b"x" * n, "again": b"1"
            }
            assert await b.read_metadata(key) == {"m": str(n).encode()}
            assert b.statistics().open_connections <= 8
        assert b.stored_objects(NS) == sorted(oid(n) for n in range(200))
        assert b.statistics().commits == 400
    finally:
        done.set()
        await b.aclose()
    assert b.statistics().open_connections == 0


async def test_sqlite_lru_evicts_least_recently_used_idle_connection(tmp_path, count_connects):
    b = SqliteBackend(tmp_path, max_open=2)
    try:
        await commit(b, A, puts={"k": b"a"})
        await commit(b, B, puts={"k": b"b"})
        await b.read(A, ["k"])  # A is now more recently used than B
        await commit(b, C, puts={"k": b"c"})  # evicts B
        assert len(count_connects) == 3
        assert await b.read(A, ["k"]) == {"k": b"a"}  # still open
        assert len(count_connects) == 3
        assert await b.read(B, ["k"]) == {"k": b"b"}  # reopened, evicting C
        assert len(count_connects) == 4
        assert b.statistics().open_connections == 2
    finally:
        await b.aclose()


async def test_sqlite_busy_connection_is_not_closed_and_others_wait(tmp_path, monkeypatch):
    b = SqliteBackend(tmp_path, max_open=1)
    gate = threading.Event()
    real_commit = _backends._commit_sync

    def slow_commit(db, *args):
        assert gate.wait(10)
        return real_commit(db, *args)

    try:
        await commit(b, B, puts={"k": b"b"})
        monkeypatch.setattr(_backends, "_commit_sync", slow_commit)
        slow = asyncio.create_task(commit(b, A, puts={"k": b"a"}))  # evicts B, then blocks
        for _ in range(20):
            await asyncio.sleep(0.005)
        reader = asyncio.create_task(b.read(B, ["k"]))  # needs the only slot: must wait
        for _ in range(20):
            await asyncio.sleep(0.005)
        assert not slow.done() and not reader.done()
        assert b.statistics().open_connections == 1
        gate.set()
        await slow
        assert await reader == {"k": b"b"}
        monkeypatch.undo()
        assert await b.read(A, ["k"]) == {"k": b"a"}
        assert b.statistics().open_connections == 1
    finally:
        gate.set()
        await b.aclose()


async def test_sqlite_aclose_waits_for_operations_in_flight(tmp_path):
    b = SqliteBackend(tmp_path)
    task = asyncio.create_task(commit(b, puts={"a": b"1"}))
    await asyncio.sleep(0)  # the commit has started (reserved its connection)
    await b.aclose()
    await task  # it was allowed to finish
    assert b.statistics().open_connections == 0
    with pytest.raises(StorageError, match="closed"):
        await b.read(A, ["a"])
    again = SqliteBackend(tmp_path)
    try:
        assert await again.read(A, ["a"]) == {"a": b"1"}
    finally:
        await again.aclose()


async def test_sqlite_rejects_bad_max_open(tmp_path):
    with pytest.raises(ValueError, match="max_open"):
        SqliteBackend(tmp_path, max_open=0)


EXIT_SCRIPT = textwrap.dedent(
    """
    import asyncio, sys
    from durable_lab._backends import SqliteBackend

    LAB = None  # a global reference, as a notebook keeps one: never closed

    async def main():
        global LAB
        LAB = SqliteBackend(sys.argv[1])
        for n in range(3):
            await LAB.commit(("COUNTER", f"{n:064x}"), delete_all=False,
                             puts={"k": b"v%d" % n}, deletes=(), metadata={})
        print("committed", LAB.statistics().open_connections, flush=True)

    asyncio.run(main())
    """
)


def test_sqlite_unclosed_backend_does_not_hang_interpreter_exit(tmp_path):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [str(REPO_ROOT), *filter(None, [os.environ.get("PYTHONPATH")])])}
    proc = subprocess.run(
        [sys.executable, "-c", EXIT_SCRIPT, str(tmp_path)],
        capture_output=True, text=True, timeout=20, env=env,
    )
    assert proc.returncode == 0, proc.stderr
    assert "committed 3" in proc.stdout

    async def check() -> None:
        b = SqliteBackend(tmp_path)
        try:
            for n in range(3):
                assert await b.read((NS, f"{n:064x}"), ["k"]) == {"k": b"v%d" % n}
        finally:
            await b.aclose()

    asyncio.run(check())
