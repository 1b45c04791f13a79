"""The SQL API of SQLite-backed objects (``lab.bind(..., sql=True)``), spec section 4.

Every test runs on both lab storages (``lab`` fixture): on "memory" the object's database is an
in-memory SQLite database, on "sqlite" a file, with the same behaviour.
"""

from __future__ import annotations

import asyncio
import sqlite3

import pytest

from durable_lab import DurableObject, DurableObjectResetError, Lab, values
from durable_lab._backends import SqliteBackend
from durable_lab.events import (
    CommitDone,
    CommitFailed,
    FlushStarted,
    InstanceReset,
    ReplyHeld,
    StorageOp,
    TurnEnded,
)
from durable_lab.sql import Row, SqlError


class Notes(DurableObject):
    """A SQLite-backed object whose handlers run whatever the test asks for."""

    def __init__(self, ctx, env):
        super().__init__(ctx, env)
        self.sql = ctx.storage.sql
        self.sql.exec("CREATE TABLE IF NOT EXISTS notes(id INTEGER PRIMARY KEY, body TEXT)")
        self.memory = 0

    async def run(self, query, *bindings):
        return self.sql.exec(query, *bindings).toArray()

    async def run_and_drop(self, query, *bindings):
        self.sql.exec(query, *bindings)  # the cursor is never read
        return "ok"

    async def one(self, query, *bindings):
        return dict(self.sql.exec(query, *bindings).one())

    async def error(self, query, *bindings):
        """The error exec() raises, as (type name, message)."""
        try:
            self.sql.exec(query, *bindings)
        except Exception as exc:
            return type(exc).__name__, str(exc)
        return None

    async def add(self, body):
        self.sql.exec("INSERT INTO notes(body) VALUES (?)", body)
        return self.sql.exec("SELECT count(*) AS n FROM notes").one().n

    async def add_with_kv(self, body, key, value):
        self.sql.exec("INSERT INTO notes(body) VALUES (?)", body)
        self.sql.exec("UPDATE notes SET body = body || '!' WHERE body = ?", body)
        self.ctx.storage.put(key, value)
        return "ok"

    async def add_unconfirmed_kv(self, key, value):
        self.ctx.storage.put(key, value, allowUnconfirmed=True)
        return "ok"

    async def add_sql_and_unconfirmed_kv(self, body, key, value):
        self.ctx.storage.put(key, value, allowUnconfirmed=True)
        self.sql.exec("INSERT INTO notes(body) VALUES (?)", body)
        return "ok"

    async def bodies(self):
        return [r["body"] for r in self.sql.exec("SELECT body FROM notes ORDER BY id")]

    async def kv(self, key):
        return await self.ctx.storage.get(key)

    async def size(self):
        return self.sql.databaseSize

    async def fill(self, n):
        self.sql.exec("CREATE TABLE IF NOT EXISTS big(x BLOB)")
        for _ in range(n):
            self.sql.exec("INSERT INTO big VALUES (?)", b"x" * 1000)
        return self.sql.databaseSize

    async def break_fk(self):
        self.sql.exec(
            "CREATE TABLE IF NOT EXISTS parent(id INTEGER PRIMARY KEY);"
            "CREATE TABLE IF NOT EXISTS child(id INTEGER PRIMARY KEY,"
            " parent INTEGER REFERENCES parent(id))"
        )
        self.sql.exec("PRAGMA defer_foreign_keys = ON")
        self.sql.exec("INSERT INTO child(parent) VALUES (42)")  # no parent 42: fails at COMMIT
        self.sql.exec("INSERT INTO notes(body) VALUES ('lost with the violation')")
        self.ctx.storage.put("k", "lost too")
        return "replied?"

    async def immediate_fk(self):
        self.sql.exec(
            "CREATE TABLE IF NOT EXISTS parent(id INTEGER PRIMARY KEY);"
            "CREATE TABLE IF NOT EXISTS child(id INTEGER PRIMARY KEY,"
            " parent INTEGER REFERENCES parent(id))"
        )
        try:
            self.sql.exec("INSERT INTO child(parent) VALUES (42)")
        except SqlError as exc:
            return str(exc)
        return None

    async def wipe(self):
        self.ctx.storage.put("before", 1)
        self.sql.exec("INSERT INTO notes(body) VALUES ('before')")
        await self.ctx.storage.deleteAll()
        tables = self.sql.exec(
            "SELECT name FROM sqlite_master WHERE name NOT LIKE '\\_cf\\_%' ESCAPE '\\'"
        ).toArray()
        return tables, await self.ctx.storage.get("before")

    async def cursor_after_delete_all(self):
        self.sql.exec("INSERT INTO notes(body) VALUES ('a'), ('b'), ('c')")
        cursor = self.sql.exec("SELECT body FROM notes")
        first = next(cursor)
        self.ctx.storage.deleteAll()
        try:
            next(cursor)
        except SqlError as exc:
            return first, str(exc)
        return first, None

    async def abort_after_write(self):
        self.sql.exec("INSERT INTO notes(body) VALUES ('aborted')")
        self.ctx.abort("stop")

    async def get_unknown(self):
        return await self.ctx.storage.get("never-written")

    async def set_memory(self, n):
        self.memory = n
        return n


class KvOnly(DurableObject):
    async def try_sql(self):
        try:
            self.ctx.storage.sql  # noqa: B018
        except RuntimeError as exc:
            return str(exc)
        return None


def notes(lab, name="n"):
    return lab.bind("NOTES", Notes, sql=True).getByName(name)


@pytest.fixture
async def slow_lab(tmp_path):
    """Commits take 20 ms, so in-flight commits and held replies can be observed."""
    lab = Lab(tmp_path / "slow", commit_latency=0.02)
    yield lab
    await lab.close()


# -- exec, cursors, bindings ---------------------------------------------------------------


async def test_create_insert_select_round_trip_with_sqlite_types(lab):
    stub = notes(lab)
    await stub.run("CREATE TABLE t(i INTEGER, r REAL, s TEXT, b BLOB, n)")
    await stub.run("INSERT INTO t VALUES (?, ?, ?, ?, ?)", 2**40, 1.5, "héllo", b"\x00\xff", None)
    assert await stub.run("SELECT * FROM t") == [
        {"i": 2**40, "r": 1.5, "s": "héllo", "b": b"\x00\xff", "n": None}
    ]


async def test_dml_takes_effect_without_reading_the_cursor(lab):
    stub = notes(lab)
    await stub.run_and_drop("INSERT INTO notes(body) VALUES ('eager')")
    await stub.run_and_drop("INSERT INTO notes(body) VALUES ('x') RETURNING id")
    assert await stub.bodies() == ["eager", "x"]


async def test_multiple_statements_run_in_order_and_the_cursor_is_the_last(lab):
    stub = notes(lab)
    rows = await stub.run(
        "CREATE TABLE m(a); INSERT INTO m VALUES (1); -- a comment; with a semicolon\n"
        "INSERT INTO m VALUES ('x;y'); SELECT a FROM m WHERE a <> ? ORDER BY a;", 1
    )
    assert rows == [{"a": "x;y"}]


async def test_only_the_last_of_several_statements_may_have_bindings(lab):
    stub = notes(lab)
    kind, message = await stub.error("INSERT INTO notes(body) VALUES (?); SELECT 1", "x")
    assert kind == "SqlError"
    assert message == (
        "When executing multiple SQL statements in a single call, only the last statement "
        "can have parameters."
    )


async def test_bindings_are_parameters_never_sql_text(lab):
    stub = notes(lab)
    attack = "x'); DROP TABLE notes; --"
    await stub.add(attack)
    assert await stub.bodies() == [attack]
    # (a bool crosses to workerd as a JavaScript boolean, bound as its text: issue #20)
    assert await stub.one("SELECT ? AS t, ? AS f, ? AS b", True, False, bytearray(b"ab")) == {
        "t": "true", "f": "false", "b": b"ab"}


async def test_a_binding_of_another_type_is_a_type_error_naming_it(lab):
    stub = notes(lab)
    kind, message = await stub.error("SELECT ?", [1, 2])
    assert kind == "TypeError" and "list" in message
    kind, message = await stub.error("SELECT ?", 2**63)  # a BigInt, as Pyodide passes it
    assert kind == "TypeError" and message.startswith("Cannot convert a BigInt value to a number")
    kind, message = await stub.error("SELECT ?, ?", 1)
    assert kind == "SqlError" and "bindings" in message


async def test_one_returns_a_row_with_attribute_access_and_refuses_zero_or_many(lab):
    class Probe(Notes):
        async def probe(self):
            row = self.sql.exec("SELECT 'Hello, World!' AS greeting").one()
            assert isinstance(row, Row) and row["greeting"] == row.greeting
            errors = []
            for query in ("SELECT 1 WHERE 0", "SELECT 1 UNION ALL SELECT 2"):
                try:
                    self.sql.exec(query).one()
                except SqlError as exc:
                    errors.append(str(exc))
            return row.greeting, errors

    stub = lab.bind("P", Probe, sql=True).getByName("p")
    greeting, errors = await stub.probe()
    assert greeting == "Hello, World!"
    assert errors == [
        "Expected exactly one result from SQL query, but got no results.",
        "Expected exactly one result from SQL query, but got multiple results.",
    ]


async def test_raw_column_names_rows_read_and_rows_written(lab):
    class Probe(Notes):
        async def probe(self):
            self.sql.exec("INSERT INTO notes(body) VALUES ('a'), ('b'), ('c')")
            written = self.sql.exec("UPDATE notes SET body = upper(body)").rowsWritten
            cursor = self.sql.exec("SELECT id, body, body AS again FROM notes ORDER BY id")
            names = cursor.columnNames
            first = cursor.next()
            raw = cursor.raw().toArray()  # shares the position: the rest
            end = cursor.next()
            assert first.done is False and end.done is True  # attribute access, as on Cloudflare
            # Row is a dict subclass: convert it to cross a stub.
            return written, names, dict(first), raw, cursor.rowsRead, dict(end)

    stub = lab.bind("P", Probe, sql=True).getByName("p")
    written, names, first, raw, rows_read, end = await stub.probe()
    assert written == 3
    assert names == ["id", "body", "again"]
    assert first == {"done": False, "value": {"id": 1, "body": "A", "again": "A"}}
    assert raw == [[2, "B", "B"], [3, "C", "C"]]
    assert rows_read == 3
    assert end == {"done": True, "value": None}


async def test_database_size_grows(lab):
    stub = notes(lab)
    before = await stub.size()
    after = await stub.fill(50)
    assert before > 0 and after > before + 40_000


async def test_sql_errors_carry_sqlite_messages(lab):
    stub = notes(lab)
    assert await stub.error("SELECT * FROM missing") == (
        "SqlError", "no such table: missing: SQLITE_ERROR")
    assert await stub.immediate_fk() == (
        "FOREIGN KEY constraint failed: SQLITE_CONSTRAINT (extended: "
        "SQLITE_CONSTRAINT_FOREIGNKEY)")


# -- guard rails ---------------------------------------------------------------------------


@pytest.mark.parametrize("statement", [
    "BEGIN", "BEGIN TRANSACTION", "COMMIT", "ROLLBACK", "SAVEPOINT s", "RELEASE s",
    "SELECT 1; BEGIN IMMEDIATE",
])
async def test_transaction_statements_are_refused(lab, statement):
    stub = notes(lab)
    kind, message = await stub.error(statement)
    assert kind == "SqlError"
    assert message.startswith(
        "To execute a transaction, please use the state.storage.transaction() or "
        "state.storage.transactionSync() APIs instead of the SQL BEGIN TRANSACTION or "
        "SAVEPOINT statements."
    )


@pytest.mark.parametrize(("statement", "expected"), [
    ("SELECT * FROM _cf_KV", "no such table: _cf_KV: SQLITE_ERROR"),  # workerd hides them
    ("SELECT value FROM _CF_kv", "no such table: _CF_kv: SQLITE_ERROR"),
    ("CREATE TABLE _cf_x(a)", "not authorized: SQLITE_AUTH"),
    ("PRAGMA table_info(_cf_KV)", "not authorized: SQLITE_AUTH"),
    ("INSERT INTO _cf_METADATA VALUES ('alarm', x'00')", "no such table: _cf_METADATA"),
    ("DELETE FROM _cf_KV", "no such table: _cf_KV: SQLITE_ERROR"),
    ("DROP TABLE _cf_KV", "not authorized: SQLITE_AUTH"),
    ("CREATE INDEX i ON _cf_KV(value)", "not authorized: SQLITE_AUTH"),
    ("CREATE VIEW v AS SELECT * FROM _cf_KV; SELECT * FROM v", "no such table: _cf_KV"),
    ("CREATE TRIGGER tr AFTER INSERT ON notes BEGIN DELETE FROM _cf_KV; END;"
     "INSERT INTO notes(body) VALUES ('x')", "no such table: _cf_KV: SQLITE_ERROR"),
    ("ATTACH DATABASE ':memory:' AS other", "SQLITE_"),
    ("PRAGMA journal_mode=DELETE", "not authorized: SQLITE_AUTH"),
    ("CREATE TEMP TABLE tmp(a)", "not authorized: SQLITE_AUTH"),
])
async def test_reserved_cf_objects_and_unsafe_statements_are_refused(lab, statement, expected):
    stub = notes(lab)
    await stub.add_with_kv("x", "k", 1)  # _cf_KV exists from the first KV write on (as workerd)
    kind, message = await stub.error(statement)
    assert kind == "SqlError"
    assert expected in message


async def test_allowed_pragmas_work(lab):
    stub = notes(lab)
    assert await stub.run("PRAGMA foreign_keys") == [{"foreign_keys": 1}]
    # workerd refuses user_version (issue #20 trace sql_exec)
    assert (await stub.error("PRAGMA user_version"))[1] == "not authorized: SQLITE_AUTH"
    info = await stub.run("PRAGMA table_info(notes)")
    assert [c["name"] for c in info] == ["id", "body"]


async def test_kv_data_lives_in_the_hidden_cf_kv_table(lab):
    class Both(Notes):
        async def both(self):
            self.ctx.storage.put("k", {"v": 1})
            return self.sql.exec("SELECT name FROM sqlite_master WHERE name = '_cf_KV'").toArray()

    stub = lab.bind("B", Both, sql=True).getByName("b")
    assert await stub.both() == [{"name": "_cf_KV"}]
    assert await stub.kv("k") == {"v": 1}


async def test_kv_backed_class_has_no_sql_api(lab):
    stub = lab.bind("KV", KvOnly).getByName("k")
    message = await stub.try_sql()
    assert message.startswith(
        "This Durable Object is not backed by SQLite storage, so the SQL API is not available."
    )


# -- transactions, commits, output gate ----------------------------------------------------


async def test_sql_and_kv_writes_of_one_turn_are_one_commit(lab):
    stub = notes(lab)
    await stub.bodies()  # constructed; the CREATE TABLE is committed
    rec = lab.record()
    await stub.add_with_kv("hello", "k", 1)
    (flush,) = rec.of(FlushStarted)
    assert flush.puts == ("k",) and flush.gated
    assert len(rec.of(CommitDone)) == 1
    ops = [(e.op, e.cache) for e in rec.of(StorageOp)]
    assert ops == [("sql", "write"), ("sql", "write"), ("put", "write")]
    assert await stub.bodies() == ["hello!"]
    assert await stub.kv("k") == 1


async def test_read_only_statements_do_not_commit(lab):
    stub = notes(lab)
    await stub.bodies()
    rec = lab.record()
    await stub.bodies()
    await stub.run("SELECT 1")
    await stub.run("PRAGMA table_list")
    assert rec.of(FlushStarted) == []
    assert [e.cache for e in rec.of(StorageOp)] == ["hit", "hit", "hit"]


async def test_failed_commit_rolls_back_the_whole_turn_and_resets(lab):
    stub = notes(lab)
    await stub.add_with_kv("kept", "k", "old")
    lab.fail_next_commit(stub)
    rec = lab.record()
    with pytest.raises(DurableObjectResetError, match="Internal error in Durable Object storage"):
        await stub.add_with_kv("lost", "k", "new")
    assert rec.of(CommitFailed)[0].injected
    (reset,) = rec.of(InstanceReset)
    assert reset.reason == "outputGateBroken"
    fresh = notes(lab)
    assert await fresh.bodies() == ["kept!"]
    assert await fresh.kv("k") == "old"


async def test_deferred_foreign_key_violated_at_commit_resets_with_the_constraint_message(lab):
    stub = notes(lab)
    await stub.add("kept")
    with pytest.raises(DurableObjectResetError) as info:
        await stub.break_fk()
    assert str(info.value) == (
        "Durable Object was reset and rolled back to its last known good state because the "
        "application left the database in a state where constraints were violated: "
        "FOREIGN KEY constraint failed: SQLITE_CONSTRAINT (extended: "
        "SQLITE_CONSTRAINT_FOREIGNKEY)"
    )
    assert info.value.durableObjectReset is False  # workerd: no "broken." prefix
    with pytest.raises(DurableObjectResetError):
        await stub.bodies()  # the old stub stays broken
    fresh = notes(lab)
    assert await fresh.bodies() == ["kept"]
    assert await fresh.kv("k") is None
    assert await fresh.run("SELECT name FROM sqlite_master WHERE name = 'child'") == []


async def test_reply_waits_for_the_sql_commit(slow_lab):
    stub = notes(slow_lab)
    await stub.bodies()
    rec = slow_lab.record()
    await stub.add("x")
    (held,) = rec.of(ReplyHeld)
    assert held.seq < rec.of(CommitDone)[0].seq


async def test_unconfirmed_kv_write_alone_is_not_gated_but_a_sql_write_gates_it(slow_lab):
    stub = notes(slow_lab)
    await stub.bodies()
    rec = slow_lab.record()
    await stub.add_unconfirmed_kv("k", 1)
    assert rec.of(ReplyHeld) == []
    await slow_lab.wait_idle()  # (the reply may come before the commit starts: not gated)
    assert not rec.of(FlushStarted)[0].gated
    await slow_lab.wait_idle()
    rec = slow_lab.record()
    await stub.add_sql_and_unconfirmed_kv("y", "k", 2)
    assert len(rec.of(ReplyHeld)) == 1 and rec.of(FlushStarted)[0].gated


async def test_writes_made_while_a_commit_is_in_flight_start_their_own_transaction(slow_lab):
    """The implicit transaction commits at the end of its turn; commit_latency models the
    replication after it, so later writes never join a transaction whose commit is in flight
    (they used to: issue #10, row "B's writes join A's transaction")."""
    stub = notes(slow_lab)
    await stub.bodies()
    rec = slow_lab.record()
    first = stub.add("one")
    await asyncio.sleep(0.005)  # the commit of "one" is in flight (replicating)
    second = stub.add("two")
    assert await asyncio.gather(first, second) == [1, 2]
    assert len(rec.of(FlushStarted)) == 2 and len(rec.of(CommitDone)) == 2
    assert await stub.bodies() == ["one", "two"]


async def test_kv_get_of_an_unknown_key_is_synchronous(lab):
    stub = notes(lab)
    await stub.bodies()
    rec = lab.record()
    assert await stub.get_unknown() is None
    assert [e for e in rec.of(TurnEnded) if e.awaiting == "storage"] == []
    (op,) = rec.of(StorageOp)
    assert op.cache == "hit"


async def test_abort_rolls_back_the_open_transaction(lab):
    stub = notes(lab)
    await stub.add("kept")
    with pytest.raises(DurableObjectResetError, match="stop"):
        await stub.abort_after_write()
    assert await notes(lab).bodies() == ["kept"]


# -- deleteAll, persistence ----------------------------------------------------------------


async def test_delete_all_wipes_sql_tables_and_kv(lab):
    stub = notes(lab)
    await stub.add("x")
    tables, before = await stub.wipe()
    assert tables == [] and before is None
    fresh = notes(lab, "n")
    assert await fresh.run("SELECT count(*) AS n FROM notes") == [{"n": 0}]  # re-created


async def test_a_cursor_open_across_delete_all_fails_instead_of_reading_a_dropped_table(lab):
    stub = notes(lab)
    first, error = await stub.cursor_after_delete_all()
    assert first == {"body": "a"}
    assert "deleteAll" in error


async def test_sql_state_persists_across_labs_on_the_same_folder(tmp_path):
    async with Lab(tmp_path / "p") as lab:
        await notes(lab).add("durable")
        await notes(lab).add_with_kv("also", "k", [1, 2])
    async with Lab(tmp_path / "p") as lab:
        assert await notes(lab).bodies() == ["durable", "also!"]
        assert await notes(lab).kv("k") == [1, 2]


async def test_kv_rows_use_the_backend_file_layout_and_encoding(tmp_path):
    async with Lab(tmp_path / "f") as lab:
        stub = notes(lab)
        await stub.add_with_kv("x", "k", {"a": (1, 2)})
        object_id = stub.id.toString()
    path = tmp_path / "f" / "NOTES" / f"{object_id}.sqlite"
    db = sqlite3.connect(path)
    try:
        (mode,) = db.execute("PRAGMA journal_mode").fetchone()
        (data,) = db.execute("SELECT value FROM _cf_KV WHERE key = 'k'").fetchone()
    finally:
        db.close()
    assert mode == "wal"
    assert values.decode(data) == {"a": (1, 2)}
    backend = SqliteBackend(tmp_path / "f")
    try:
        assert await backend.read(("NOTES", object_id), ["k"]) == {"k": data}
    finally:
        await backend.aclose()


async def test_memory_lab_database_survives_an_instance_reset(memory_lab):
    stub = notes(memory_lab)
    await stub.add("kept")
    with pytest.raises(DurableObjectResetError):
        await stub.abort_after_write()
    assert await notes(memory_lab).bodies() == ["kept"]


async def test_a_paused_lab_steps_through_the_sql_commit():
    lab = Lab(storage="memory", seed=1)
    lab.pause()
    try:
        stub = notes(lab)
        call = stub.add("stepped")
        kinds = []
        while not call.done():
            await lab.scheduler.settle()
            if call.done():
                break
            kinds.append(lab.choices()[0].kind)
            assert await lab.step() is not None
        assert call.result() == 1
        # The constructor's CREATE TABLE is committed at the end of its turn, before the call
        # is admitted ("flush"); its confirmation ("commit") may come after the admission;
        # then the call's own transaction: commit, confirmation, reply.
        assert kinds == ["constructor", "flush", "admit", "commit", "flush", "commit", "reply"]
        lab.resume()
    finally:
        await lab.close()


async def test_offline_metadata_write_reaches_the_next_instance(lab):
    from durable_lab._sql_engine import offline_set_metadata

    class Meta(Notes):
        async def alarm_meta(self):
            return (await self.ctx._instance.cache.load_metadata()).get("alarm")

    ns = lab.bind("OFF", Meta, sql=True)
    stub = ns.getByName("o")
    assert await stub.alarm_meta() is None
    stub._host.instance.evict(reason="idle")  # no live instance now
    data = values.encode(1e15)
    offline_set_metadata(lab, stub._host, "alarm", data)
    assert await stub.alarm_meta() == data
    stub._host.instance.evict(reason="idle")
    offline_set_metadata(lab, stub._host, "alarm", None)
    assert await stub.alarm_meta() is None
