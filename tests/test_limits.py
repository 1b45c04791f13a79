"""Issue #19, items 6 to 11: the lab stays responsive and bounded under hostile input.

One test (or a few) per numbered item; each docstring names its item. Every test here failed
on the code before the fix: the runtime's own statements ran without the SQL time limit,
splitting SQL text was quadratic and outside the limit, the connection pool woke every waiter
on each release, every live SQLite-backed object kept its files open, ``Lab(network=...)``
took NaN round trips, and the recording, ``keep_recent_calls`` and an object's tasks grew
without bound.
"""

from __future__ import annotations

import asyncio
import math
import random
import re
import sqlite3

import pytest

from durable_lab import DurableObject, DurableObjectResetError, Lab, _sql_engine
from durable_lab._sql_engine import split_statements
from durable_lab.network import Network
from durable_lab.sql import SqlError

# -- 7. splitting SQL text into statements ----------------------------------------------------


def _split_by_prefixes(query: str) -> list[str]:
    """What the split must give: cut where sqlite3.complete_statement() of the text since the
    last cut is True (the quadratic definition), dropping statements with nothing in them."""

    def empty(chunk: str) -> bool:
        return not any(not s.isspace() and s != ";" for s in _strip_for_reference(chunk))

    statements: list[str] = []
    start = 0
    for pos, c in enumerate(query):
        if c == ";" and sqlite3.complete_statement(query[start : pos + 1]):
            if not empty(query[start : pos + 1]):
                statements.append(query[start : pos + 1])
            start = pos + 1
    if not empty(query[start:]):
        statements.append(query[start:])
    return statements


def _strip_for_reference(text: str) -> str:
    """``text`` with comments removed (quoted text kept as is)."""
    out: list[str] = []
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if c in "'\"`[":
            j = text.find("]" if c == "[" else c, i + 1)
            j = n if j < 0 else j + 1
            out.append("x")  # a quoted string is something, whatever it holds
            i = j
        elif text.startswith("--", i):
            j = text.find("\n", i)
            i = n if j < 0 else j + 1
        elif text.startswith("/*", i):
            j = text.find("*/", i + 2)
            i = n if j < 0 else j + 2
        else:
            out.append(c)
            i += 1
    return "".join(out)


_PIECES = [";", " ", "\n", "'", '"', "`", "[", "]", "--", "/*", "*/", "-", "/", "x",
           "SELECT 1", "CREATE", "TRIGGER", "TEMP", "temporary", "END", "BEGIN", "EXPLAIN",
           "é", "$a", "\t", "*"]


def test_item7_the_split_agrees_with_sqlite_complete_statement():
    """Item 7: the one-pass split cuts exactly where SQLite's own sqlite3_complete() says a
    statement is complete: strings, comments and trigger bodies hide their ``;``."""
    rnd = random.Random(19)
    for _ in range(20_000):
        query = "".join(rnd.choice(_PIECES) + rnd.choice(("", " "))
                        for _ in range(rnd.randint(0, 14)))
        assert split_statements(query) == _split_by_prefixes(query), query
    trigger = ("CREATE TRIGGER t AFTER INSERT ON a BEGIN INSERT INTO b VALUES (';'); "
               "DELETE FROM c; END; SELECT 1")
    assert split_statements(trigger) == [trigger[:-9], " SELECT 1"]


def test_item7_splitting_is_linear(monkeypatch):
    """Item 7: one statement holding 50,000 ``;`` (in a string) was split by asking
    sqlite3.complete_statement() about every prefix ending at a ``;``: 1.25 billion
    characters read for 50 KB of text. Now the text is read once."""
    scanned = 0
    real = sqlite3.complete_statement

    def counting(text: str) -> bool:
        nonlocal scanned
        scanned += len(text)
        return real(text)

    monkeypatch.setattr(_sql_engine.sqlite3, "complete_statement", counting)
    query = "SELECT '" + ";" * 50_000 + "' AS s; SELECT 2"
    assert split_statements(query) == [query[:-9], " SELECT 2"]
    assert scanned <= 4 * len(query)


def test_item7_splitting_obeys_the_deadline():
    """Item 7: the split runs inside the statement's time limit: it asks the deadline as it
    goes and stops once it has passed."""
    asked = 0

    def passed() -> bool:
        nonlocal asked
        asked += 1
        return asked >= 3

    with pytest.raises(TimeoutError):
        split_statements("SELECT 1" + ",1" * 20_000 + ";" + "; " * 20_000, passed)
    assert asked == 3


class Splitter(DurableObject):
    async def run(self, query):
        return self.ctx.storage.sql.exec(query).toArray()


async def test_item7_exec_of_text_too_long_to_split_in_time_fails_with_the_time_limit(
        monkeypatch):
    """Item 7: when splitting takes longer than ``sql_time_limit`` (here: a deadline that has
    always passed), ``exec`` fails with the time-limit SqlError and the object keeps going."""
    async with Lab(storage="memory", sql_time_limit=0.5) as lab:
        stub = lab.bind("S", Splitter, sql=True).getByName("s")
        monkeypatch.setattr(_sql_engine.SqliteEngine, "_past_deadline", lambda self: True)
        with pytest.raises(SqlError, match=r"ran longer than 0\.5 s.*sql_time_limit"):
            await stub.run("SELECT 1;" * 10_000)
        assert await stub.run("SELECT 7 AS n") == [{"n": 7}]


# -- 10. Lab(network=...) ----------------------------------------------------------------------


class Echo(DurableObject):
    async def hello(self):
        return "hi"


@pytest.mark.parametrize("ms", [math.nan, math.inf, -math.inf, 1e300, 0, -1, 60_001])
def test_item10_round_trips_must_be_finite_positive_and_at_most_a_minute(ms):
    """Item 10: NaN, inf and 1e300 ms were accepted: calls then failed with an unrelated timer
    message or hung, and wait_idle() hung. The table is refused at Lab(), naming the pair."""
    with pytest.raises(ValueError, match=r"^the round trip between 'weur' and 'enam' must be a "
                                         r"number of milliseconds > 0 and <= 60000 \(a minute\), "
                                         rf"got {re.escape(repr(ms))}"):
        Lab(storage="memory", network={("weur", "enam"): ms})
    with pytest.raises(ValueError, match=r"^the round trip between 'weur' and 'enam'"):
        Network({("weur", "enam"): ms})
    assert Network({("weur", "enam"): 60_000}).rtt("weur", "enam") == 60.0


async def test_item10_a_call_that_cannot_be_sent_does_not_place_the_object():
    """Item 10: a first call refused by the network (its hint names a region the table has no
    round trip to) recorded the object's placement anyway: every later call failed the same
    way. Now the object stays unplaced, and the next call places it and is answered."""
    table = Network({("enam", "enam"): 4}, base=False)
    async with Lab(storage="memory", network=table, clock="auto") as lab:
        ns = lab.bind("E", Echo)
        with pytest.raises(ValueError, match=r"^unknown region 'weur'; regions of this "
                                             r"network: enam"):
            await ns.getByName("e", locationHint="weur").hello()
        assert lab.network.placements() == {}
        assert await ns.getByName("e").hello() == "hi"
        assert lab.network.placements() == {"E:e": "enam"}


def test_item10_table_shows_a_custom_region_with_the_pairs_it_has():
    """Item 10: ``table()`` raised for a custom region (it has round trips to a few regions
    only). Pairs the table lacks show as ``-``."""
    net = Network({("mars", "enam"): 1200})
    grid = net.table(["enam", "weur", "mars"])
    lines = grid.splitlines()
    assert lines[0].split() == ["enam", "weur", "mars"]
    assert lines[1].split() == ["enam", "10", "80", "1200"]
    assert lines[2].split() == ["weur", "80", "10", "-"]
    assert lines[3].split() == ["mars", "1200", "-", "10"]
    assert "mars" in net.table()
    with pytest.raises(ValueError, match=r"^unknown region 'venus'"):
        net.table(["enam", "venus"])


# -- 11. bounded recording, recent calls, tasks -------------------------------------------------


class Counter(DurableObject):
    async def increment(self):
        n = (await self.ctx.storage.get("n")) or 0
        self.ctx.storage.put("n", n + 1)
        return n + 1


async def test_item11_the_recording_stops_at_its_limit_and_keeps_a_consistent_prefix():
    """Item 11: ``record=True`` kept every call, event and transition (771 MB after 126k
    calls). ``Lab(record=N)`` keeps the first N calls, then stops recording with a warning:
    the history holds N calls, the events and transitions stop growing, the trace says it
    was cut short, and calls go on being answered."""
    async with Lab(storage="memory", record=5) as lab:
        stub = lab.bind("C", Counter).getByName("c")
        for _ in range(5):
            await stub.increment()
        events = len(lab.trace()["events"])
        transitions = len(lab.trace()["transitions"])
        assert not lab.recording_stopped
        with pytest.warns(RuntimeWarning, match=r"^the lab stopped recording at 5 calls, its "
                                                r"limit \(Lab\(record=\.\.\.\); True keeps "
                                                r"10,000\)"):
            assert await stub.increment() == 6
        for _ in range(20):
            await stub.increment()
        assert lab.recording_stopped
        trace = lab.trace()
        assert len(lab.history().operations) == 5 == len(trace["calls"])
        assert [op.result for op in lab.history().operations] == [1, 2, 3, 4, 5]
        assert trace["truncated"] is True
        assert len(trace["events"]) == events
        assert len(trace["transitions"]) == transitions
        assert await stub.increment() == 27


def test_item11_record_takes_true_false_or_a_number_of_calls():
    """Item 11: ``record`` is a switch or a limit (or "calls", for explore); anything else is
    refused naming what is allowed."""
    assert Lab(storage="memory", record=True).record_limit == 10_000
    assert Lab(storage="memory", record=250).record_limit == 250
    assert Lab(storage="memory", record="calls").record_limit == 10_000
    assert Lab(storage="memory").record_limit == 0
    for bad in (0, -1, 10**9, 1.5, "yes"):
        with pytest.raises(ValueError, match=r"^record must be False, True \(keep the first "
                                             r"10,000 calls\), an int from 1 to 10,000,000 .*"
                                             r" or 'calls' .*, got "):
            Lab(storage="memory", record=bad)


def test_item11_keep_recent_calls_has_a_ceiling():
    """Item 11: ``keep_recent_calls(10**9)`` was accepted (each kept call pins its arguments
    and result)."""
    lab = Lab(storage="memory")
    lab.keep_recent_calls(10_000)
    with pytest.raises(ValueError, match=r"^per_object must be an int from 0 to 10,000 "
                                         r"\(each kept call holds its arguments and its "
                                         r"result\), got 1000000000"):
        lab.keep_recent_calls(10**9)


class Bomb(DurableObject):
    async def explode(self):
        # (Hostile code keeps no reference to its tasks: the object owns them anyway.)
        async def grow():
            asyncio.create_task(grow())  # noqa: RUF006
            asyncio.create_task(grow())  # noqa: RUF006
            await asyncio.sleep(3600)

        asyncio.create_task(grow())  # noqa: RUF006
        await asyncio.sleep(3600)

    async def fan_out(self, n):
        async def one(i):
            return i

        return sum(await asyncio.gather(*(one(i) for i in range(n))))

    async def ping(self):
        return "pong"


async def test_item11_a_task_bomb_resets_its_object_not_the_lab():
    """Item 11: a task that starts two tasks that each start two... grew by tens of thousands
    of tasks a second with no limit. At ``Lab(max_tasks=N)`` unfinished tasks the object is
    reset with an error naming the limit; its tasks are cancelled; other objects, and the
    same object's next call, are fine."""
    async with Lab(storage="memory", max_tasks=500) as lab:
        ns = lab.bind("B", Bomb)
        bomb, other = ns.getByName("bomb"), ns.getByName("other")
        with pytest.raises(DurableObjectResetError,
                           match=r"^Durable Object reset: its code created more than 500 tasks "
                                 r"that had not finished, the lab's limit per object "
                                 r"\(Lab\(max_tasks=500\)\)") as info:
            await asyncio.wait_for(bomb.explode(), 10)
        assert info.value.reason == "exceededMemory"
        assert await other.fan_out(400) == sum(range(400))
        assert await ns.getByName("bomb").ping() == "pong"
        await asyncio.wait_for(lab.wait_idle(), 10)
        assert len(lab._tasks) == 0
    with pytest.raises(ValueError, match=r"^max_tasks must be an int from 1 to 1,000,000, "
                                         r"got 0"):
        Lab(storage="memory", max_tasks=0)


# -- 6. every statement the runtime runs obeys the time limit ---------------------------------

_FOREVER = ("SELECT count(*) FROM (WITH RECURSIVE r(x) AS (SELECT 1 UNION ALL SELECT x + 1 "
            "FROM r) SELECT x FROM r)")


class Wiper(DurableObject):
    async def setup(self):
        sql = self.ctx.storage.sql
        sql.exec("CREATE TABLE p (id INTEGER PRIMARY KEY)")
        sql.exec("CREATE TABLE c (pid INTEGER REFERENCES p(id) ON DELETE CASCADE)")
        sql.exec("CREATE TABLE log (x)")
        sql.exec(f"CREATE TRIGGER slow AFTER DELETE ON c BEGIN INSERT INTO log {_FOREVER}; END")
        sql.exec("INSERT INTO p VALUES (1)")
        sql.exec("INSERT INTO c VALUES (1)")
        self.ctx.storage.put("kept", 1)
        return "ready"

    async def wipe(self):
        self.ctx.storage.deleteAll()
        return "wiped"

    async def kept(self):
        return await self.ctx.storage.get("kept")


_WIPE_SCRIPT = """
import asyncio, sys, time
sys.path.insert(0, {root!r}); sys.path.insert(0, {tests!r})
from durable_lab import Lab
from test_limits import Wiper
async def main():
    async with Lab({folder!r}, sql_time_limit=0.3) as lab:
        stub = lab.bind("W", Wiper, sql=True).getByName("w")
        print(await stub.setup())
        started = time.monotonic()
        try:
            print(await stub.wipe())
        except Exception as exc:
            print(type(exc).__name__, getattr(exc, "reason", ""), exc)
        print(f"after {{time.monotonic() - started:.1f}} s")
        print("kept", await lab.env.W.getByName("w").kept())
asyncio.run(main())
print("closed")
"""


@pytest.mark.slow
def test_item6_a_slow_trigger_run_by_the_runtimes_own_statement_is_interrupted(tmp_path):
    """Item 6: the runtime's own statements ran without the time limit. deleteAll() drops the
    user's tables; a cascade from a dropped table fires the user's trigger, which here never
    ends: the event loop froze for good (the test runs in a subprocess to survive that). Now
    the statement is interrupted at ``sql_time_limit``, the object is reset with an error
    naming the limit, its committed data is intact, and the lab closes."""
    import subprocess
    import sys
    from pathlib import Path

    import durable_lab

    script = _WIPE_SCRIPT.format(root=str(Path(durable_lab.__file__).parent.parent),
                                 tests=str(Path(__file__).parent), folder=str(tmp_path / "lab"))
    try:
        out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                             timeout=60)
    except subprocess.TimeoutExpired as exc:
        pytest.fail(f"the lab froze: {exc.stdout!r}")
    lines = out.stdout.splitlines()
    assert lines[0] == "ready", (out.stdout, out.stderr[-2000:])
    assert lines[1].startswith(
        "DurableObjectResetError exceededCpu Durable Object reset: a statement the runtime ran "
        "on its database ('DROP TABLE IF EXISTS \"p\"') ran longer than 0.3 s, the lab's limit "
        "for one statement (Lab(sql_time_limit=...)), and was interrupted"), lines
    assert float(lines[2].split()[1]) < 10
    assert lines[3:] == ["kept 1", "closed"], (out.stdout, out.stderr[-2000:])


class Box(DurableObject):
    async def put(self, key, value):
        self.ctx.storage.put(key, value)
        return "saved"

    async def get(self, key):
        return await self.ctx.storage.get(key)


async def test_item6_a_kv_commit_that_runs_too_long_is_interrupted(tmp_path, monkeypatch):
    """Item 6: on a KV-backed object a commit that never ended (a slow trigger in a tampered
    file) left ``put()`` unanswered and ``close()`` waiting forever. Every job of the SQLite
    backend now runs under ``sql_time_limit``: here a commit made endless on purpose fails,
    the caller gets the reset, the object's next call works, and the lab closes."""
    from durable_lab import _backends

    real = _backends._commit_sync
    endless = {"on": True}

    def slow_commit(db, *args):
        if endless["on"]:
            db.execute(_FOREVER).fetchall()
        return real(db, *args)

    monkeypatch.setattr(_backends, "_commit_sync", slow_commit)
    lab = Lab(tmp_path / "lab", sql_time_limit=0.3)
    stub = lab.bind("B", Box).getByName("b")
    with pytest.raises(DurableObjectResetError) as info:
        await asyncio.wait_for(stub.put("a", 1), 20)
    cause = info.value.__cause__
    assert "ran longer than 0.3 s, the lab's limit for one statement " \
           "(Lab(sql_time_limit=...)), and was interrupted" in str(cause), repr(cause)
    endless["on"] = False
    fresh = lab.env.B.getByName("b")
    assert await asyncio.wait_for(fresh.put("a", 2), 20) == "saved"
    assert await fresh.get("a") == 2
    await asyncio.wait_for(lab.close(), 20)


# -- 8. a fair connection pool, O(1) per release ----------------------------------------------


def _oid(i: int) -> str:
    return f"{i:064x}"


async def test_item8_a_release_wakes_one_waiter_not_all(tmp_path):
    """Item 8: every release woke every waiter (each looked again and most waited again): 200
    commits through 2 connections made ~20,000 passes through the pool. A freed slot now goes
    to the first waiter only: a few passes per operation."""
    from durable_lab._backends import SqliteBackend

    backend = SqliteBackend(tmp_path / "db", max_open=2)
    passes = 0
    real = backend._check_open

    def counting() -> None:
        nonlocal passes
        passes += 1
        real()

    backend._check_open = counting  # type: ignore[method-assign]
    n = 200
    await asyncio.gather(*(backend.commit(("NS", _oid(i)), delete_all=False,
                                          puts={"k": b"v"}, deletes=(), metadata={})
                           for i in range(n)))
    assert backend.statistics().commits == n
    assert passes <= 3 * n, passes
    assert backend.statistics().open_connections <= 2
    await backend.aclose()


async def test_item8_a_freed_slot_goes_to_the_first_waiter_not_to_a_newcomer(tmp_path):
    """Item 8: the pool was unfair: a slot freed while others waited could be taken by an
    operation that arrived after them (it found the connection idle before the woken waiter
    ran). Now the slot is handed to the first waiter at the release, and a newcomer queues."""
    from durable_lab._backends import SqliteBackend

    backend = SqliteBackend(tmp_path / "db", max_open=1)
    path = backend._path(("NS", _oid(0)))
    held = await backend._acquire(("NS", _oid(0)), path, create=True)
    assert held is not None
    first = asyncio.ensure_future(backend._acquire(("NS", _oid(1)),
                                                   backend._path(("NS", _oid(1))), create=True))
    await asyncio.sleep(0.01)
    assert not first.done()
    backend._release(held)
    # A newcomer, in the same step as the release (before the waiter could run).
    newcomer = backend._acquire(("NS", _oid(2)), backend._path(("NS", _oid(2))), create=True)
    newcomer.send(None)
    assert ("NS", _oid(2)) not in backend._pool  # it waits; it took no slot
    newcomer.close()
    entry = await asyncio.wait_for(first, 10)
    assert entry is not None and entry.key == ("NS", _oid(1))
    backend._release(entry)
    await backend.aclose()


# -- 9. a bounded number of open databases ------------------------------------------------------

_FD_SCRIPT = """
import asyncio, json, os, resource, sys
sys.path.insert(0, {root!r}); sys.path.insert(0, {tests!r})
_, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, ({limit}, hard))
from durable_lab import Lab
from test_limits import Counter
async def main():
    out = {{}}
    lab = Lab({folder!r})
    sql = lab.bind("S", Counter, sql=True)
    kv = lab.bind("K", Counter)
    for name, ns in (("sql", sql), ("kv", kv)):
        got = await asyncio.gather(*(ns.getByName(f"o{{i}}").increment() for i in range({n})),
                                   return_exceptions=True)
        out[name] = sum(1 for g in got if g == 1)
        out[name + "_errors"] = sorted({{repr(g)[:120] for g in got if g != 1}})[:3]
    out["fds"] = len(os.listdir("/proc/self/fd"))
    out["max_open"] = lab.max_open_databases
    other = Lab({folder!r} + "-2")
    out["other"] = await other.bind("K", Counter).getByName("x").increment()
    await other.close()
    await lab.close()
    again = Lab({folder!r})
    sql, kv = again.bind("S", Counter, sql=True), again.bind("K", Counter)
    out["sql_again"] = sum([await sql.getByName(f"o{{i}}").increment() == 2 for i in range({n})])
    out["kv_again"] = sum([await kv.getByName(f"o{{i}}").increment() == 2 for i in range({n})])
    await again.close()
    print(json.dumps(out))
asyncio.run(main())
"""


@pytest.mark.slow
def test_item9_many_objects_at_once_stay_within_a_low_file_limit(tmp_path):
    """Item 9: every live SQLite-backed object kept its database open (three descriptors):
    under ``ulimit -n 1024`` the 339th object failed, and KV commits and new labs after it.
    Scaled down: under a limit of 160 descriptors, 300 SQLite-backed and 300 KV-backed new
    objects called at once all answer, another lab still works, and every object reopens
    with its value."""
    import json
    import subprocess
    import sys
    from pathlib import Path

    import durable_lab

    n = 300
    script = _FD_SCRIPT.format(root=str(Path(durable_lab.__file__).parent.parent),
                               tests=str(Path(__file__).parent), limit=160, n=n,
                               folder=str(tmp_path / "lab"))
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["max_open"] == 10  # 160 // 16
    assert (result["sql"], result["kv"]) == (n, n), result
    assert result["fds"] < 100, result
    assert result["other"] == 1
    assert (result["sql_again"], result["kv_again"]) == (n, n), result


class Settings(DurableObject):
    async def configure(self):
        sql = self.ctx.storage.sql
        sql.exec("PRAGMA foreign_keys=OFF")
        sql.exec("PRAGMA case_sensitive_like=ON")
        sql.exec("CREATE TABLE IF NOT EXISTS t (x)")
        sql.exec("INSERT INTO t VALUES (1), (2), (3)")
        self.rows = sql.exec("SELECT x FROM t ORDER BY x")
        return next(self.rows)["x"]

    async def settings(self):
        sql = self.ctx.storage.sql
        return (sql.exec("PRAGMA foreign_keys").one()["foreign_keys"],
                sql.exec("SELECT 'a' LIKE 'A' AS same").one()["same"])

    async def rest(self):
        return [row["x"] for row in self.rows]

    async def touch(self):
        self.ctx.storage.put("k", 1)
        return "ok"


async def test_item9_a_database_closed_for_room_reopens_with_its_settings(tmp_path):
    """Item 9: with ``max_open_databases=1`` opening another object's database closes the
    least recently used quiet one; its next call reopens it with the settings its SQL made
    (``PRAGMA foreign_keys``, ``case_sensitive_like``). A database with a cursor still being
    read is not quiet: it stays open and the cursor goes on."""
    async with Lab(tmp_path / "lab", max_open_databases=1) as lab:
        ns = lab.bind("S", Settings, sql=True)
        a, b = ns.getByName("a"), ns.getByName("b")
        assert await a.configure() == 1
        assert await b.touch() == "ok"  # a's cursor is not finished: a stays open
        assert lab.open_databases.closed_for_room == 0
        assert await a.rest() == [2, 3]
        assert await b.touch() == "ok"
        assert await a.settings() == (0, 0)  # b made room: a was closed, then reopened
        assert lab.open_databases.closed_for_room >= 1
        assert await b.touch() == "ok"
        assert await a.settings() == (0, 0)
        assert len(lab.open_databases) == 1


async def test_item8_waiting_for_a_pooled_connection_does_not_count_as_slow_storage(tmp_path):
    """Item 8: in a burst, commits queued for one of the lab's pooled connections tripped the
    output gate's 30 s limit ("storage operation exceeded timeout", 87 % of 10,000 calls
    reset). Waiting for the lab's own connection is not the object's storage being slow (on
    Cloudflare each object's storage is its own): the 30 s count from when the commit gets
    one."""
    async with Lab(tmp_path / "lab", clock="manual", max_open_databases=1) as lab:
        backend = lab.backend._backend
        ns = lab.bind("B", Box)
        busy = ("B", ns.idFromName("busy").toString())
        held = await backend._acquire(busy, backend._path(busy), create=True)
        call = asyncio.ensure_future(ns.getByName("b").put("a", 1))
        for _ in range(50):
            await asyncio.sleep(0.01)
        assert backend.queued(("B", ns.idFromName("b").toString()))
        lab.clock.advance(31)
        await asyncio.sleep(0.05)
        assert not call.done()
        backend._release(held)
        assert await asyncio.wait_for(call, 10) == "saved"
        assert await ns.getByName("b").get("a") == 1
