"""Issue #11: no acknowledged write lost under misuse or hostile input.

One test (or a few) per numbered item of the issue; each docstring names its item. Every test
here failed on the code before the fix: a second Lab was accepted, a failing deleteAll() lost
a concurrent acknowledged write, a lone surrogate reset the object, symlinks were followed,
crafted values decoded in quadratic time or came back as foreign types, a runaway statement
froze the lab, one corrupt alarm stopped the others, NaN alarms and fault arguments were
accepted, in-flight calls were unbounded, an interrupted close stayed half-done, "new" unique
ids repeated, and SQL could hide tables in ``_cf_`` or read ``dbstat``.
"""

from __future__ import annotations

import asyncio
import math
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import msgpack
import pytest

from durable_lab import (
    DurableObject,
    DurableObjectError,
    Lab,
    LabFolderError,
    OverloadedError,
    StorageCorruptError,
    now,
    values,
)
from durable_lab import sleep as lab_sleep
from durable_lab.sql import SqlError

ROOT = Path(__file__).resolve().parent.parent


class Box(DurableObject):
    """A KV-backed object with the calls the tests need."""

    async def put(self, key, value):
        self.ctx.storage.put(key, value)

    async def get(self, key):
        return await self.ctx.storage.get(key)

    async def keys(self):
        return list(await self.ctx.storage.list())

    async def increment(self):
        n = (await self.ctx.storage.get("n")) or 0
        self.ctx.storage.put("n", n + 1)
        return n + 1


class SqlBox(Box):
    pass


async def object_file(binding: str, name: str, folder: Path) -> Path:
    lab = Lab(storage="memory")
    try:
        return folder / binding / f"{lab.bind(binding, Box).idFromName(name).toString()}.sqlite"
    finally:
        await lab.close()


# -- 1. one owner per folder -------------------------------------------------------------------


async def test_item1_a_second_lab_on_the_same_folder_is_refused_naming_this_kernel(tmp_path):
    """Item 1: two Labs on one folder (a re-run cell) are refused, with the holder's pid and
    how to release it; once the first is closed the folder can be opened again."""
    first = Lab(tmp_path / "lab")
    stub = first.bind("BOX", Box).getByName("c")
    assert await stub.increment() == 1
    with pytest.raises(LabFolderError, match=rf"in use by another Lab in this process \(pid "
                                             rf"{os.getpid()}.*await lab\.close\(\)"):
        Lab(tmp_path / "lab")
    assert await stub.increment() == 2  # the refused lab changed nothing
    await first.close()
    async with Lab(tmp_path / "lab") as second:
        assert await second.bind("BOX", Box).getByName("c").increment() == 3


async def test_item1_a_lab_that_fails_to_start_releases_the_folder(tmp_path):
    """Item 1: a Lab whose construction fails after taking the lock lets go of the folder,
    even while a notebook keeps the traceback (and with it the half-made lab) alive."""
    with pytest.raises(ValueError, match="max_open") as caught:
        Lab(tmp_path / "lab", max_open_databases=0)
    assert caught.value.__traceback__ is not None
    async with Lab(tmp_path / "lab") as lab:
        assert await lab.bind("BOX", Box).getByName("c").increment() == 1


def test_item1_another_process_holds_the_folder_until_it_dies(tmp_path):
    """Item 1: a Lab in another process is named by pid; once that process is killed, its
    stale lock is taken over (the OS drops a dead process's flock)."""
    folder = tmp_path / "lab"
    script = textwrap.dedent(f"""
        import asyncio, sys
        sys.path.insert(0, {str(ROOT)!r})
        from durable_lab import Lab
        async def main():
            lab = Lab({str(folder)!r})
            print("ready", flush=True)
            await asyncio.sleep(60)
        asyncio.run(main())
    """)
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "ready"

        async def try_open() -> None:
            Lab(folder)

        with pytest.raises(LabFolderError, match=rf"in use by a Lab in process {proc.pid}"):
            asyncio.run(try_open())
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        proc.stdout.close()

    async def reopen() -> int:
        async with Lab(folder) as lab:
            return await lab.bind("BOX", Box).getByName("c").increment()

    assert asyncio.run(reopen()) == 1


async def test_item1_two_labs_racing_no_longer_lose_increments(tmp_path):
    """Item 1, the reported symptom: increments acknowledged through two labs on one folder
    came back [1, 2, 2, 3] and the disk held 3. Only one lab can be open now."""
    folder = tmp_path / "lab"
    lab = Lab(folder)
    stub = lab.bind("BOX", Box).getByName("c")
    acked = [await stub.increment()]
    with pytest.raises(LabFolderError):
        Lab(folder)
    acked += [await stub.increment() for _ in range(3)]
    await lab.close()
    async with Lab(folder) as again:
        assert await again.bind("BOX", Box).getByName("c").get("n") == max(acked) == 4


# -- 2. deleteAll() on SQLite is all or nothing ---------------------------------------------


class Shop(DurableObject):
    def __init__(self, ctx, env):
        super().__init__(ctx, env)
        sql = ctx.storage.sql
        sql.exec("CREATE TABLE IF NOT EXISTS notes (body TEXT)")
        sql.exec("CREATE TABLE IF NOT EXISTS parent (id INTEGER PRIMARY KEY)")
        sql.exec("CREATE TABLE IF NOT EXISTS child (id INTEGER PRIMARY KEY, "
                 "p INTEGER NOT NULL REFERENCES parent(id) ON DELETE SET NULL)")

    async def setup(self):
        sql = self.ctx.storage.sql
        sql.exec("INSERT INTO notes VALUES ('kept')")
        sql.exec("INSERT INTO parent VALUES (1)")
        sql.exec("INSERT INTO child VALUES (1, 1)")

    async def add(self, key):
        self.ctx.storage.put(key, "acked")

    async def wipe(self):
        self.ctx.storage.deleteAll()

    async def state(self):
        sql = self.ctx.storage.sql
        tables = [r["name"] for r in sql.exec(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE '\\_cf\\_%' "
            "ESCAPE '\\' ORDER BY name")]
        return {"tables": tables,
                "notes": [r["body"] for r in sql.exec("SELECT body FROM notes")],
                "kv": await self.ctx.storage.list()}


async def test_item2_a_failing_sqlite_delete_all_changes_nothing_and_loses_no_ack(tmp_path):
    """Item 2: deleteAll() that fails half-way (ON DELETE SET NULL into a NOT NULL column)
    raises, drops nothing, and the concurrent acknowledged add() survives a restart."""
    folder = tmp_path / "lab"
    async with Lab(folder, commit_latency=0.05) as lab:
        stub = lab.bind("SHOP", Shop, sql=True).getByName("s")
        await stub.setup()
        add = asyncio.ensure_future(stub.add("x"))   # its commit takes 50 ms
        await asyncio.sleep(0.01)                     # the wipe runs meanwhile
        with pytest.raises(SqlError, match=r"^deleteAll\(\) failed and changed nothing: "
                                           r"NOT NULL constraint failed"):
            await stub.wipe()
        await add                                     # acknowledged
        assert await stub.state() == {"tables": ["child", "notes", "parent"],
                                      "notes": ["kept"], "kv": {"x": "acked"}}
    async with Lab(folder) as again:
        stub = again.bind("SHOP", Shop, sql=True).getByName("s")
        assert await stub.state() == {"tables": ["child", "notes", "parent"],
                                      "notes": ["kept"], "kv": {"x": "acked"}}
        await stub.add("y")  # the object is usable


class Guarded(DurableObject):
    """A drop that cascades into a trigger that raises: deleteAll() cannot finish."""

    def __init__(self, ctx, env):
        super().__init__(ctx, env)
        sql = ctx.storage.sql
        sql.exec("CREATE TABLE IF NOT EXISTS notes (body TEXT)")
        sql.exec("CREATE TABLE IF NOT EXISTS parent (id INTEGER PRIMARY KEY)")
        sql.exec("CREATE TABLE IF NOT EXISTS child (id INTEGER PRIMARY KEY, "
                 "p INTEGER REFERENCES parent(id) ON DELETE CASCADE)")
        sql.exec("CREATE TRIGGER IF NOT EXISTS keep BEFORE DELETE ON child "
                 "BEGIN SELECT RAISE(ABORT, 'children are kept'); END")

    async def setup(self):
        self.ctx.storage.sql.exec("INSERT INTO notes VALUES ('kept'); INSERT INTO parent "
                                  "VALUES (1); INSERT INTO child VALUES (1, 1)")
        self.ctx.storage.put("k", "v")

    async def wipe_then_write(self):
        try:
            self.ctx.storage.deleteAll()
        except SqlError as exc:
            self.ctx.storage.put("after", str(exc))
            return str(exc)
        return "wiped"

    async def state(self):
        sql = self.ctx.storage.sql
        return {"notes": sql.exec("SELECT count(*) AS n FROM notes").one().n,
                "child": sql.exec("SELECT count(*) AS n FROM child").one().n,
                "kv": sorted(await self.ctx.storage.list())}


async def test_item2_a_delete_all_stopped_by_a_trigger_changes_nothing(lab):
    """Item 2: a drop refused by ON DELETE CASCADE into a trigger that raises: deleteAll()
    raises, nothing is dropped (notes, the first table, too), the object keeps running and
    its next write commits."""
    stub = lab.bind("G", Guarded, sql=True).getByName("g")
    await stub.setup()
    message = await stub.wipe_then_write()
    assert message.startswith("deleteAll() failed and changed nothing: children are kept")
    assert await stub.state() == {"notes": 1, "child": 1, "kv": ["after", "k"]}


# -- 3. lone surrogates are refused up front ---------------------------------------------------


class Writer(DurableObject):
    async def write(self, bad_key, bad_value):
        storage = self.ctx.storage
        storage.put("before", 1)
        errors = []
        for key, value in ((bad_key, 1), ("v", bad_value)):
            try:
                storage.put(key, value)
            except ValueError as exc:
                errors.append(str(exc))
        storage.put("after", 2)
        return errors

    async def read(self):
        return await self.ctx.storage.get(["before", "after"])

    async def bad_list(self):
        self.ctx.storage.list(prefix="a\ud800")


@pytest.mark.parametrize("sql", [False, True], ids=["kv", "sqlite-backed"])
async def test_item3_a_lone_surrogate_is_refused_at_put_and_nothing_is_lost(lab, sql):
    """Item 3: put("\\ud800", 1) is a ValueError at the call; the other writes of that turn
    (and the object) survive, where a failing commit used to reset the object."""
    stub = lab.bind("W", Writer, sql=sql).getByName("w")
    errors = await stub.write("\ud800", ["ok", "x\udc00"])
    assert len(errors) == 2
    assert "lone surrogate" in errors[0] and "'\\ud800'" in errors[0]
    assert "lone surrogate" in errors[1]
    assert await stub.read() == {"after": 2, "before": 1}
    with pytest.raises(ValueError, match=r"list\(\) option prefix .* lone surrogate"):
        await stub.bad_list()


async def test_item3_id_from_name_with_a_lone_surrogate_is_a_clear_value_error(lab):
    """The minor item: idFromName("\\ud800") raises a ValueError naming the problem, not a raw
    UnicodeEncodeError."""
    ns = lab.bind("W", Writer)
    with pytest.raises(ValueError, match=r"^idFromName\(\) takes a name that is valid Unicode"):
        ns.idFromName("room-\ud800")
    with pytest.raises(ValueError, match="lone surrogate"):
        ns.getByName("\udfff")


# -- 4. the lab folder is a boundary -----------------------------------------------------------


def _outside_db(path: Path) -> bytes:
    db = sqlite3.connect(path)
    db.execute("CREATE TABLE secrets (v TEXT)")
    db.execute("INSERT INTO secrets VALUES ('mine')")
    db.commit()
    db.close()
    return path.read_bytes()


@pytest.mark.parametrize("sql", [False, True], ids=["kv", "sqlite-backed"])
async def test_item4_a_symlinked_database_is_refused_and_the_outside_file_untouched(
        tmp_path, sql):
    """Item 4: a symlink in the lab folder used to make bind() switch an outside SQLite file
    to WAL and add _cf_ tables, and a put() wrote into it. Now it is refused, naming the path,
    and the outside file is byte for byte the same."""
    outside = tmp_path / "outside.sqlite"
    before = _outside_db(outside)
    folder = tmp_path / "lab"
    target = await object_file("BOX", "c", folder)
    target.parent.mkdir(parents=True)
    target.symlink_to(outside)
    async with Lab(folder, clock="manual") as lab:
        stub = lab.bind("BOX", SqlBox if sql else Box, sql=sql).getByName("c")
        await lab.wait_idle()
        with pytest.raises((DurableObjectError, LabFolderError)) as caught:
            await stub.put("k", 1)  # KV: the commit fails; SQLite-backed: the put itself
        chain = []
        error: BaseException | None = caught.value
        while error is not None:
            chain.append(str(error))
            error = error.__cause__
        assert any(f"{target} is a symlink" in text for text in chain), chain
        with pytest.raises(LabFolderError, match="is a symlink"):
            await lab.bind("BOX", SqlBox if sql else Box, sql=sql).getByName("c").get("k")
        with pytest.raises(LabFolderError, match="is a symlink"):  # the panels' readers too
            lab.tables(stub) if sql else await lab.peek(stub)
    assert outside.read_bytes() == before
    assert not Path(str(outside) + "-wal").exists()


async def test_item4_a_symlinked_binding_folder_is_refused_at_bind(tmp_path):
    """Item 4: a binding folder that is a link out of the lab folder is refused by bind()."""
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    folder = tmp_path / "lab"
    folder.mkdir()
    (folder / "BOX").symlink_to(elsewhere, target_is_directory=True)
    async with Lab(folder) as lab:
        with pytest.raises(LabFolderError, match=rf"{folder / 'BOX'} is a symlink"):
            lab.bind("BOX", Box)
    assert list(elsewhere.iterdir()) == []


async def test_item4_a_database_the_lab_did_not_create_is_never_written(tmp_path):
    """Item 4: a regular SQLite file with tables but no _cf_KV is someone else's: refused."""
    folder = tmp_path / "lab"
    target = await object_file("BOX", "c", folder)
    target.parent.mkdir(parents=True)
    before = _outside_db(target)
    async with Lab(folder) as lab:
        stub = lab.bind("BOX", Box).getByName("c")
        with pytest.raises(LabFolderError, match="is not a durable_lab database"):
            await stub.get("k")
    assert target.read_bytes() == before


# -- 5 and 9. bounded, validated decoding ------------------------------------------------------


def _colliding_set_bytes(bits: int = 12) -> bytes:
    """A set of 2**bits tuples of -1/-2 (hash(-1) == hash(-2)): every item hashes alike."""
    items = [[-1 - ((i >> b) & 1) for b in range(bits)] for i in range(2 ** bits)]
    tuples = [{msgpack.ExtType(1, b""): t} for t in items]
    return msgpack.packb({msgpack.ExtType(2, b""): tuples})


def _write_raw(path: Path, rows: dict[object, object]) -> None:
    db = sqlite3.connect(path)
    db.executemany("INSERT OR REPLACE INTO _cf_KV (key, value) VALUES (?, ?)", list(rows.items()))
    db.commit()
    db.close()


CORRUPT = {
    "format": b"\xc1",
    "truncated": b"\x92\x01",
    "timestamp": msgpack.packb(msgpack.Timestamp(1, 0)),
    "marker-in-list": msgpack.packb([msgpack.ExtType(1, b"")]),
    "container-of-int": msgpack.packb({msgpack.ExtType(1, b""): 5}),
    "unknown-ext": msgpack.packb(msgpack.ExtType(42, b"x")),
    "text-not-bytes": "a str in the value column",
    "unhashable-key": b"\x81\x91\x01\x02",
    # (longer than any value the 128 KiB limit lets in: Latin-1 text encodes up to 2x its
    # V8 size)
    "too-big": values.encode("x" * 300_000),
}


@pytest.mark.parametrize("sql", [False, True], ids=["kv", "sqlite-backed"])
async def test_item5_9_corrupt_values_raise_one_error_naming_object_and_key(tmp_path, sql):
    """Items 5 and 9: damaged or crafted stored values raise StorageCorruptError naming the
    object and the key (not FormatError(''), StackError(''), TypeError, a msgpack Timestamp
    or a marker object), reads of other keys still work, and the object is not reset."""
    folder = tmp_path / "lab"
    cls = SqlBox if sql else Box
    async with Lab(folder) as lab:
        await lab.bind("BOX", cls, sql=sql).getByName("c").put("good", 1)
    path = await object_file("BOX", "c", folder)
    rows = dict(CORRUPT)
    if sql:
        rows["too-big"] = values.encode("x" * 4_500_000)
    _write_raw(path, rows)
    async with Lab(folder) as lab:
        stub = lab.bind("BOX", cls, sql=sql).getByName("c")
        for key in rows:
            with pytest.raises(StorageCorruptError,
                               match=rf"^BOX:c: the stored value of key '{key}' cannot be read"):
                await stub.get(key)
        assert await stub.get("good") == 1
        with pytest.raises(StorageCorruptError):
            await stub.keys()  # list() decodes every value
        assert await stub.increment() == 1  # not reset, still writable


async def test_item5_a_colliding_set_is_refused_in_linear_time(tmp_path):
    """Item 5: a set whose items all hash alike made decoding quadratic (0.9 MB: 19-41 s,
    every other object stalled). It is refused before it is built."""
    data = _colliding_set_bytes(14)  # 16,384 colliding tuples
    started = time.perf_counter()
    with pytest.raises(StorageCorruptError, match="share a hash value"):
        values.decode(data)
    assert time.perf_counter() - started < 0.5
    with pytest.raises(ValueError, match="share one hash value"):
        values.encode({tuple(-1 - ((i >> b) & 1) for b in range(6)) for i in range(64)})


@pytest.mark.parametrize("sql", [False, True], ids=["kv", "sqlite-backed"])
async def test_item9_a_blob_key_makes_list_raise_storage_corrupt_error(tmp_path, sql):
    """Item 9: a BLOB key written into _cf_KV broke KV list() (str vs bytes) and came back as
    bytes from SQL list(). Both raise StorageCorruptError naming the object."""
    folder = tmp_path / "lab"
    cls = SqlBox if sql else Box
    async with Lab(folder) as lab:
        await lab.bind("BOX", cls, sql=sql).getByName("c").put("good", 1)
    _write_raw(await object_file("BOX", "c", folder), {b"blob-key": values.encode(1)})
    async with Lab(folder) as lab:
        stub = lab.bind("BOX", cls, sql=sql).getByName("c")
        with pytest.raises(StorageCorruptError, match=r"holds a key that is not text"):
            await stub.keys()
        assert await stub.get("good") == 1


# -- 6. a runaway SQL statement is stopped ------------------------------------------------------


RUNAWAY = ("WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 100000000)"
           " SELECT {what} FROM c")


class Runaway(DurableObject):
    async def count(self):
        return self.ctx.storage.sql.exec(RUNAWAY.format(what="count(*)")).one()["count(*)"]

    async def rows(self):
        return len(self.ctx.storage.sql.exec(RUNAWAY.format(what="x")).toArray())

    async def ok(self):
        self.ctx.storage.sql.exec("CREATE TABLE IF NOT EXISTS t (x)")
        self.ctx.storage.sql.exec("INSERT INTO t VALUES (1)")
        return self.ctx.storage.sql.exec("SELECT count(*) AS n FROM t").one().n


@pytest.mark.parametrize("call", ["count", "rows"])
async def test_item6_a_runaway_statement_is_interrupted_and_the_object_stays_usable(tmp_path,
                                                                                 call):
    """Item 6: a runaway WITH RECURSIVE froze the lab. It now fails that call with a clear
    SqlError once Lab(sql_time_limit) has passed, and the object keeps working."""
    async with Lab(tmp_path / "lab", sql_time_limit=0.2) as lab:
        stub = lab.bind("R", Runaway, sql=True).getByName("r")
        started = time.perf_counter()
        with pytest.raises(SqlError, match=r"^SQL statement interrupted: it ran longer than "
                                           r"0\.2 s.*Lab\(sql_time_limit=\.\.\.\)"):
            await getattr(stub, call)()
        assert time.perf_counter() - started < 3
        assert await stub.ok() == 1


def test_item6_keyboard_interrupt_stops_a_runaway_statement(tmp_path):
    """Item 6: SIGINT (Jupyter's interrupt) during a runaway statement stops it with
    KeyboardInterrupt, long before the time limit (sqlite3 swallows a KeyboardInterrupt
    raised in the progress handler; the engine raises it again)."""
    script = textwrap.dedent(f"""
        import asyncio, os, signal, sys, threading, time
        sys.path.insert(0, {str(ROOT)!r})
        sys.path.insert(0, {str(ROOT / "tests")!r})
        from durable_lab import Lab
        from test_hostile_input import Runaway
        async def main():
            lab = Lab({str(tmp_path / "lab")!r}, sql_time_limit=60)
            stub = lab.bind("R", Runaway, sql=True).getByName("r")
            # ipykernel raises KeyboardInterrupt on SIGINT while a cell runs (asyncio.run's
            # own handler would only cancel the main task): do as it does.
            signal.signal(signal.SIGINT, signal.default_int_handler)
            threading.Timer(0.5, os.kill, (os.getpid(), signal.SIGINT)).start()
            await stub.count()
        started = time.perf_counter()
        try:
            asyncio.run(main())
        except KeyboardInterrupt:
            print(f"interrupted after {{time.perf_counter() - started:.1f}} s")
    """)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         timeout=60)
    assert out.stdout.startswith("interrupted after"), (out.stdout, out.stderr[-2000:])
    assert float(out.stdout.split()[2]) < 10


# -- 7 and 8. alarms --------------------------------------------------------------------------


class Reminder(DurableObject):
    async def remind(self, seconds):
        self.ctx.storage.setAlarm(now() * 1000 + seconds * 1000)

    async def alarm(self, info):
        self.ctx.storage.put("fired", True)

    async def fired(self):
        return await self.ctx.storage.get("fired")

    async def when(self):
        return await self.ctx.storage.getAlarm()

    async def set_raw(self, when):
        self.ctx.storage.setAlarm(when)


async def test_item7_one_corrupt_alarm_does_not_stop_the_others(tmp_path):
    """Item 7: after a reopen, one corrupt stored alarm stopped every alarm of the binding
    (0 of 6 fired). Now the five others fire; the bad one is reported and only that
    object's getAlarm() raises StorageCorruptError."""
    folder = tmp_path / "lab"
    names = [f"r{i}" for i in range(6)]
    async with Lab(folder, clock="manual") as lab:
        ns = lab.bind("REM", Reminder)
        for name in names:
            await ns.getByName(name).remind(60)
    bad = await object_file("REM", "r2", folder)
    db = sqlite3.connect(bad)
    db.execute("UPDATE _cf_METADATA SET value = ? WHERE key = 'alarm'", (b"\xc1",))
    db.commit()
    db.close()
    async with Lab(folder, clock="manual") as lab:
        ns = lab.bind("REM", Reminder)
        await lab.wait_idle()
        bad_label = f"REM:{bad.stem[:8]}"  # loaded from the file: the name is not known yet
        assert [label for label, _ in lab.alarms.errors] == [bad_label]
        lab.clock.advance(120)
        await lab.wait_idle()
        fired = {name: await ns.getByName(name).fired() for name in names}
        assert fired == {name: (True if name != "r2" else None) for name in names}
        with pytest.raises(StorageCorruptError, match=r"^REM:r2: the stored alarm cannot be read"):
            await ns.getByName("r2").when()


@pytest.mark.parametrize("when", [math.nan, math.inf, -math.inf, 1e300])
async def test_item8_set_alarm_refuses_non_finite_times(when):
    """Item 8: setAlarm(nan) / setAlarm(inf) were accepted (getAlarm() gave nan, and an auto
    clock became NaN for every object). They are a ValueError at the call."""
    async with Lab(storage="memory", clock="auto") as lab:
        stub = lab.bind("REM", Reminder).getByName("r")
        with pytest.raises(ValueError, match=r"^setAlarm\(\) takes a finite time"):
            await stub.set_raw(when)
        assert await stub.when() is None
        await lab.wait_idle()
        assert math.isfinite(lab.clock.now())


# -- 10. calls in flight are bounded ----------------------------------------------------------


class Sleeper(DurableObject):
    async def nap(self):
        await lab_sleep(10)
        return "up"


async def test_item10_calls_awaiting_io_count_against_max_in_flight():
    """Item 10: max_queue bounded only calls waiting for their first admission; 10,000 calls
    awaiting a timer were all accepted. Lab(max_in_flight) bounds them all."""
    async with Lab(storage="memory", clock="manual", max_in_flight=50) as lab:
        stub = lab.bind("S", Sleeper).getByName("s")
        naps = [asyncio.ensure_future(stub.nap()) for _ in range(50)]
        await asyncio.sleep(0.05)  # every one is admitted and awaits the lab clock
        with pytest.raises(OverloadedError, match=r"Too many requests in flight: 50 calls .* "
                                                  r"Lab\(max_in_flight=50\)") as caught:
            await stub.nap()
        assert caught.value.overloaded is True
        lab.clock.advance(10)
        assert await asyncio.gather(*naps) == ["up"] * 50
        late = asyncio.ensure_future(stub.nap())  # room again
        await asyncio.sleep(0.01)
        lab.clock.advance(10)
        assert await late == "up"
    assert Lab(storage="memory").max_in_flight == 5000


# -- 11. close completes ----------------------------------------------------------------------


async def test_item11_an_interrupted_close_is_finished_by_the_next_one(tmp_path):
    """Item 11: a close() interrupted part-way (Jupyter's interrupt cancels the cell) left an
    instance and a connection open, and a second close() returned at once. The second close()
    now finishes the job: objects stopped, connections closed, the folder released."""
    folder = tmp_path / "lab"
    lab = Lab(folder, commit_latency=0.3)
    stub = lab.bind("BOX", Box).getByName("c")
    await stub.put("a", 1)
    write = asyncio.ensure_future(stub.put("b", 2))  # its commit takes 300 ms
    await asyncio.sleep(0.01)
    closing = asyncio.ensure_future(lab.close())
    await asyncio.sleep(0.05)
    closing.cancel()  # the interrupt
    with pytest.raises(asyncio.CancelledError):
        await closing
    assert lab.closed
    await lab.close()
    await write  # acknowledged: its commit landed before close finished
    assert lab.objects is not None and all(h.instance is None for h in lab._hosts.values())
    assert lab.backend.statistics().open_connections == 0
    async with Lab(folder) as again:  # the lock was released
        assert await again.bind("BOX", Box).getByName("c").get("b") == 2


async def test_item11_a_close_that_failed_part_way_is_redone(tmp_path, monkeypatch):
    """Item 11: a close whose task stopped with an error is redone from the start by the next
    call (every step can be repeated)."""
    lab = Lab(tmp_path / "lab")
    await lab.bind("BOX", Box).getByName("c").put("a", 1)
    real = lab.backend.aclose
    calls = []

    async def failing_once() -> None:
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("disk went away")
        await real()

    monkeypatch.setattr(lab.backend, "aclose", failing_once, raising=False)
    with pytest.raises(RuntimeError, match="disk went away"):
        await lab.close()
    await lab.close()
    assert len(calls) == 2
    assert lab.backend.statistics().open_connections == 0
    async with Lab(tmp_path / "lab") as again:
        assert await again.bind("BOX", Box).getByName("c").get("a") == 1


# -- 12. unique ids stay unique across sessions -----------------------------------------------


async def test_item12_new_unique_id_does_not_repeat_an_earlier_sessions_id(tmp_path):
    """Item 12: with seed= and path=, newUniqueId() after a restart returned the id of the
    previous session's cart, with its items. Each session of a folder now draws new ids;
    a seeded session stays reproducible."""
    folder = tmp_path / "lab"
    async with Lab(folder, seed=1) as lab:
        first = lab.bind("CART", Box).newUniqueId()
        await lab.env.CART.get(first).put("item", "old cart's item")
    async with Lab(folder, seed=1) as lab:
        assert lab.session == 1
        second = lab.bind("CART", Box).newUniqueId()
        assert second != first
        assert await lab.env.CART.get(second).get("item") is None
        assert lab.env.CART.idFromString(second.toString()) == second
    async with Lab(tmp_path / "other", seed=1) as fresh:  # a fresh folder: the same ids
        assert fresh.bind("CART", Box).newUniqueId() == first
    replay = tmp_path / "replay"
    for _ in range(2):
        async with Lab(replay, seed=1) as lab:
            lab.bind("CART", Box)
    async with Lab(replay, seed=1) as lab:  # session 2 of another folder
        third = lab.bind("CART", Box).newUniqueId()
    assert third not in (first, second)


# -- 13. SQL guard rails ----------------------------------------------------------------------


class Sneaky(DurableObject):
    def __init__(self, ctx, env):
        super().__init__(ctx, env)
        ctx.storage.sql.exec("CREATE TABLE IF NOT EXISTS t (x)")

    async def run(self, query):
        return self.ctx.storage.sql.exec(query).toArray()

    async def tables(self):
        return [r["name"] for r in self.ctx.storage.sql.exec(
            "SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")]


@pytest.mark.parametrize(("query", "message"), [
    ("ALTER TABLE t RENAME TO _cf_hidden", r"'_cf_hidden' starts with _cf_, a prefix reserved"),
    ('ALTER TABLE t RENAME TO "_CF_Hidden"', r"'_CF_Hidden' starts with _cf_"),
    ("SELECT name, pgsize FROM dbstat", r"dbstat would show the runtime's own tables"),
    ("SELECT fts3_tokenizer('simple')", r"fts3_tokenizer\(\) is refused"),
    ("SELECT randomblob(900000000)", r"string or blob too big"),
    ("SELECT zeroblob(900000000)", r"string or blob too big"),
    ("SELECT replace(hex(zeroblob(1000000)), '0', '00000')", r"string or blob too big"),
])
async def test_item13_sql_guard_rails(lab, query, message):
    """Item 13: renaming a table into _cf_ (it then escaped deleteAll()), dbstat (it showed
    _cf_KV's size), fts3_tokenizer (it leaked a pointer) and huge blobs or strings made by
    functions are refused; the object keeps working and its tables are unchanged."""
    stub = lab.bind("SQ", Sneaky, sql=True).getByName("s")
    with pytest.raises(SqlError, match=message):
        await stub.run(query)
    # (no _cf_ table: this object never used the KV API or an alarm, as on workerd)
    assert await stub.tables() == ["t"]
    assert await stub.run("ALTER TABLE t RENAME TO renamed") == []
    assert await stub.tables() == ["renamed"]


async def test_item13_printf_cannot_build_a_huge_string(lab):
    """Item 13: printf() with a huge width is bounded by the same 4 MiB limit (SQLite gives
    NULL instead of building 900 MB)."""
    stub = lab.bind("SQ", Sneaky, sql=True).getByName("s")
    assert await stub.run("SELECT printf('%.*c', 900000000, 'x') AS r") == [{"r": None}]
    assert await stub.run("SELECT length(printf('%.*c', 1000, 'x')) AS n") == [{"n": 1000}]


# -- 14. fault arguments ----------------------------------------------------------------------


@pytest.mark.parametrize("times", [0, -1, "x", True, 1.5])
async def test_item14_bad_fault_counts_are_refused_and_arm_nothing(lab, times):
    """Item 14: fail_next_commit(times=0 or -1) still failed a commit, times="x" failed every
    later commit. Now they are refused and nothing is armed."""
    stub = lab.bind("BOX", Box).getByName("c")
    for arm in (lab.faults.fail_next_commit, lab.faults.fail_next_alarm):
        with pytest.raises(ValueError, match=r"^times must be an int >= 1, got "):
            arm(stub, times=times)
    with pytest.raises(ValueError, match=r"^times must be an int >= 1 \(or None"):
        lab.faults.fail_calls(stub, times=times)
    assert lab.faults.armed() == []
    assert await stub.increment() == 1
    assert await stub.increment() == 2


@pytest.mark.parametrize("seconds", [math.nan, math.inf, -1, True])
async def test_item14_non_finite_fault_delays_are_refused(lab, seconds):
    """Item 14: delay_commits(nan) / (inf) were accepted."""
    with pytest.raises(ValueError, match=r"^seconds must be a finite number >= 0"):
        lab.faults.delay_commits(seconds)
    with pytest.raises(ValueError, match=r"^seconds must be a finite number >= 0"):
        lab.faults.delay_calls(seconds)
    assert lab.faults.armed() == []
