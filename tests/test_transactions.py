"""``storage.transaction()`` on both engines, ``transactionSync()`` on SQLite (spec 3.8, 4.4, 4.5).

The transaction tests run four ways: KV-backed and SQLite-backed classes, each on the memory
and the SQLite lab storage (``engine`` x ``lab`` fixtures).
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import ClassVar

import pytest

from durable_lab import DurableObject, DurableObjectResetError, values
from durable_lab.events import CommitDone, FlushStarted, InstanceReset


class Boom(Exception):
    pass


class Bank(DurableObject):
    """Accounts in KV storage; every handler uses storage.transaction()."""

    log: ClassVar[list[str]] = []

    def __init__(self, ctx, env):
        super().__init__(ctx, env)
        self.calls = 0

    async def seed(self, **balances):
        self.ctx.storage.put(balances)
        return "ok"

    async def balances(self):
        return await self.ctx.storage.list()

    async def transfer(self, src, dst, amount, fail=False):
        self.calls += 1

        async def move(txn):
            a = await txn.get(src)
            b = await txn.get(dst)
            txn.put(src, a - amount)
            txn.put(dst, b + amount)
            if fail:
                raise Boom("insufficient funds")
            return a - amount

        return await self.ctx.storage.transaction(move)

    async def transfer_and_catch(self, src, dst, amount):
        try:
            await self.transfer(src, dst, amount, fail=True)
        except Boom as exc:
            return f"caught: {exc}", self.calls
        return "no error", self.calls

    async def reads_see_own_writes(self):
        async def body(txn):
            txn.put("x", 1)
            txn.put({"y": 2, "z": 3})
            deleted = await txn.delete("z")
            missing = await txn.delete("never")
            got = await txn.get(["x", "y", "z", "a"])
            listed = await txn.list()
            return deleted, missing, got, listed

        return await self.ctx.storage.transaction(body)

    async def roll_back_explicitly(self):
        async def body(txn):
            txn.put("r", "discarded")
            txn.rollback()
            txn.rollback()  # idempotent
            errors = []
            for op in (lambda: txn.put("r", 1), lambda: txn.get("r"), lambda: txn.list()):
                try:
                    op()
                except RuntimeError as exc:
                    errors.append(str(exc))
            return errors

        errors = await self.ctx.storage.transaction(body)
        return errors, await self.ctx.storage.get("r")

    async def delete_all_inside(self):
        async def body(txn):
            try:
                txn.deleteAll()
            except RuntimeError as exc:
                return str(exc)
            return None

        return await self.ctx.storage.transaction(body)

    async def use_after_commit(self):
        kept = []

        async def body(txn):
            kept.append(txn)
            return "done"

        await self.ctx.storage.transaction(body)
        try:
            kept[0].put("late", 1)
        except RuntimeError as exc:
            return str(exc)
        return None

    async def slow_transaction(self):
        async def body(txn):
            self.log.append("txn:start")
            await asyncio.sleep(0.02)  # other deliveries are still kept out
            txn.put("slow", 1)
            self.log.append("txn:end")
            return "txn"

        result = await self.ctx.storage.transaction(body)
        self.log.append("caller:resumed")
        return result

    async def ping(self):
        self.log.append("ping")
        return "pong"

    async def sync_fn(self, value):
        return self.ctx.storage.transactionSync(lambda: value)


ENGINES = ["kv", "sqlite"]


@pytest.fixture(params=ENGINES)
def bank(request, lab):
    """A stub of Bank, KV-backed or SQLite-backed."""
    Bank.log = []
    return lab.bind("BANK", Bank, sql=request.param == "sqlite").getByName("b")


async def test_transaction_commits_and_returns_the_closure_value(lab, bank):
    await bank.seed(alice=10, bob=0)
    rec = lab.record()
    assert await bank.transfer("alice", "bob", 3) == 7
    assert await bank.balances() == {"alice": 7, "bob": 3}
    (flush,) = rec.of(FlushStarted)
    assert set(flush.puts) == {"alice", "bob"}  # both writes in one flush


async def test_a_raising_closure_rolls_back_reraises_and_does_not_reset(lab, bank):
    await bank.seed(alice=10, bob=0)
    rec = lab.record()
    with pytest.raises(Boom, match="insufficient funds"):
        await bank.transfer("alice", "bob", 3, fail=True)
    assert rec.of(InstanceReset) == []
    assert await bank.balances() == {"alice": 10, "bob": 0}  # the same stub still works
    # The object caught it itself, and its in-memory state survived.
    assert await bank.transfer_and_catch("alice", "bob", 1) == ("caught: insufficient funds", 2)
    assert await bank.balances() == {"alice": 10, "bob": 0}


async def test_txn_reads_see_its_own_writes(bank):
    await bank.seed(a=0)
    deleted, missing, got, listed = await bank.reads_see_own_writes()
    assert (deleted, missing) == (True, False)
    assert got == {"a": 0, "x": 1, "y": 2}
    assert listed == {"a": 0, "x": 1, "y": 2}
    assert await bank.balances() == {"a": 0, "x": 1, "y": 2}


async def test_txn_rollback_discards_writes_and_later_txn_calls_raise(bank):
    errors, stored = await bank.roll_back_explicitly()
    assert errors == [
        "Cannot put() on rolled back transaction",
        "Cannot get() on rolled back transaction",
        "Cannot list() on rolled back transaction",
    ]
    assert stored is None


async def test_delete_all_is_refused_inside_a_transaction(bank):
    assert await bank.delete_all_inside() == "Cannot call deleteAll() within a transaction"


async def test_txn_used_after_commit_raises(bank):
    assert await bank.use_after_commit() == (
        "Cannot call put() on transaction that has already committed: did you move `txn` "
        "outside of the closure?"
    )


async def test_other_deliveries_wait_until_the_transaction_and_its_caller_are_done(bank):
    slow = bank.slow_transaction()
    await asyncio.sleep(0.005)  # the transaction is running (sleeping inside its closure)
    ping = bank.ping()
    assert await asyncio.gather(slow, ping) == ["txn", "pong"]
    assert Bank.log == ["txn:start", "txn:end", "caller:resumed", "ping"]


async def test_kv_backed_class_has_no_transaction_sync(lab):
    stub = lab.bind("KVB", Bank).getByName("k")
    with pytest.raises(RuntimeError, match=r"^Durable Object is not backed by SQL\.$"):
        await stub.sync_fn(1)


# -- SQLite-only: transactionSync, savepoints, SQL inside transaction() -----------------------


class Ledger(DurableObject):
    def __init__(self, ctx, env):
        super().__init__(ctx, env)
        self.sql = ctx.storage.sql
        self.sql.exec("CREATE TABLE IF NOT EXISTS entries(id INTEGER PRIMARY KEY, note TEXT)")

    def _add(self, note):
        self.sql.exec("INSERT INTO entries(note) VALUES (?)", note)

    async def notes(self):
        return [r["note"] for r in self.sql.exec("SELECT note FROM entries ORDER BY id")]

    async def sync_commit(self):
        def body():
            self._add("one")
            self.ctx.storage.put("k", "v")
            return "value"

        return self.ctx.storage.transactionSync(body)

    async def sync_rollback(self):
        def body():
            self._add("rolled back")
            self.ctx.storage.put("k", "rolled back")
            raise Boom("no")

        try:
            self.ctx.storage.transactionSync(body)
        except Boom as exc:
            return str(exc), await self.ctx.storage.get("k")
        return None

    async def sync_nested(self):
        def inner():
            self._add("inner")
            raise Boom("inner fails")

        def outer():
            self._add("outer")
            with contextlib.suppress(Boom):
                self.ctx.storage.transactionSync(inner)
            self._add("outer again")
            return "outer ok"

        return self.ctx.storage.transactionSync(outer)

    async def sync_async_fn(self):
        async def body():
            return 1

        try:
            self.ctx.storage.transactionSync(body)
        except TypeError as exc:
            return str(exc)
        return None

    async def sync_delete_all(self):
        try:
            self.ctx.storage.transactionSync(self.ctx.storage.deleteAll)
        except RuntimeError as exc:
            return str(exc)
        return None

    async def kv(self, key):
        return await self.ctx.storage.get(key)

    async def txn_with_sql(self, fail):
        async def body(txn):
            self._add("in txn")  # ctx.storage.sql belongs to the transaction on SQLite
            self.ctx.storage.put("via-storage", 1)
            txn.put("via-txn", 2)
            await asyncio.sleep(0)
            if fail:
                raise Boom("undo")
            return "committed"

        try:
            return await self.ctx.storage.transaction(body)
        except Boom as exc:
            return f"raised {exc}"

    async def nested_transactions(self):
        async def inner(txn):
            self._add("inner")
            raise Boom("inner")

        async def outer(txn):
            self._add("outer")
            with contextlib.suppress(Boom):
                await self.ctx.storage.transaction(inner)
            return "outer"

        return await self.ctx.storage.transaction(outer)

    async def rollback_outer_while_nested_runs(self):
        async def inner(txn, outer_txn):
            try:
                outer_txn.rollback()
            except RuntimeError as exc:
                return str(exc)
            return None

        async def outer(txn):
            return await self.ctx.storage.transaction(lambda t: inner(t, txn))

        return await self.ctx.storage.transaction(outer)

    async def call_out_inside(self, other):
        async def body(txn):
            txn.put("before-call", 1)
            return await other.notes()  # an outgoing call while the transaction is open

        return await self.ctx.storage.transaction(body)


def ledger(lab, name="l"):
    return lab.bind("LEDGER", Ledger, sql=True).getByName(name)


async def test_transaction_sync_commits_with_the_turn_and_returns_the_value(lab):
    stub = ledger(lab)
    await stub.notes()
    rec = lab.record()
    assert await stub.sync_commit() == "value"
    assert len(rec.of(CommitDone)) == 1
    assert await stub.notes() == ["one"]
    assert await stub.kv("k") == "v"


async def test_transaction_sync_rolls_back_and_reraises(lab):
    stub = ledger(lab)
    assert await stub.sync_rollback() == ("no", None)
    assert await stub.notes() == []


async def test_transaction_sync_nests(lab):
    stub = ledger(lab)
    assert await stub.sync_nested() == "outer ok"
    assert await stub.notes() == ["outer", "outer again"]


async def test_transaction_sync_refuses_an_async_function_and_delete_all(lab):
    stub = ledger(lab)
    assert "synchronous" in await stub.sync_async_fn()
    assert await stub.sync_delete_all() == "Cannot call deleteAll() within a transaction"


async def test_sqlite_transaction_includes_sql_and_storage_calls(lab):
    stub = ledger(lab)
    assert await stub.txn_with_sql(fail=True) == "raised undo"
    assert await stub.notes() == []
    assert await stub.kv("via-storage") is None and await stub.kv("via-txn") is None
    assert await stub.txn_with_sql(fail=False) == "committed"
    assert await stub.notes() == ["in txn"]
    assert await stub.kv("via-storage") == 1 and await stub.kv("via-txn") == 2


async def test_nested_sqlite_transactions_roll_back_only_the_inner_one(lab):
    stub = ledger(lab)
    assert await stub.nested_transactions() == "outer"
    assert await stub.notes() == ["outer"]
    assert await stub.rollback_outer_while_nested_runs() == (
        "Cannot roll back an outer transaction while a nested transaction is still running."
    )


async def test_an_outgoing_call_inside_a_sqlite_transaction_does_not_deadlock(tmp_path):
    from durable_lab import Lab

    lab = Lab(tmp_path / "x", commit_latency=0.01)
    a, b = ledger(lab, "a"), ledger(lab, "b")
    await b.notes()
    try:
        result = await asyncio.wait_for(a.call_out_inside(b), 2)
    except TimeoutError:
        pytest.fail("the outgoing call waited for the commit of its own open transaction")
    assert result == []
    await lab.close()


async def test_kv_engine_writes_through_ctx_storage_are_not_part_of_the_transaction(lab):
    class Mixed(DurableObject):
        async def run(self):
            async def body(txn):
                self.ctx.storage.put("outside", 1)
                txn.put("inside", 1)
                raise Boom("x")

            with contextlib.suppress(Boom):
                await self.ctx.storage.transaction(body)
            return await self.ctx.storage.get(["outside", "inside"])

    stub = lab.bind("MIXED", Mixed).getByName("m")
    assert await stub.run() == {"outside": 1}


async def test_a_failed_commit_after_a_transaction_still_resets(lab, bank):
    await bank.seed(alice=10, bob=0)
    lab.fail_next_commit(bank)
    with pytest.raises(DurableObjectResetError):
        await bank.transfer("alice", "bob", 3)


async def test_sync_inside_a_sqlite_transaction_does_not_wait_for_itself():
    from durable_lab import Lab

    class Syncer(Ledger):
        async def txn_sync(self):
            async def body(txn):
                txn.put("k", 1)
                await self.ctx.storage.sync()
                return "synced"

            return await self.ctx.storage.transaction(body)

    lab = Lab(storage="memory")
    stub = lab.bind("SYNCER", Syncer, sql=True).getByName("s")
    try:
        result = await asyncio.wait_for(stub.txn_sync(), 2)
    except TimeoutError:
        pytest.fail("sync() inside transaction() waited for its own transaction")
    assert result == "synced"
    await lab.close()


# -- the metadata seam (alarms are built on it), on both engines ----------------------------


class Meta(DurableObject):
    committed: ClassVar[list[dict]] = []

    def __init__(self, ctx, env):
        super().__init__(ctx, env)
        self.cache = ctx._instance.cache
        self.cache.on_commit.append(Meta.committed.append)

    async def set_alarm(self, data, with_put=True):
        self.cache.set_metadata("alarm", data, confirmed=True)
        if with_put:
            self.ctx.storage.put("k", data)
        return "ok"

    async def alarm_value(self):
        return (await self.cache.load_metadata()).get("alarm")

    async def wipe(self):
        self.ctx.storage.deleteAll()
        return "ok"

    async def set_alarm_in_failed_sync_txn(self, data):
        def body():
            self.cache.set_metadata("alarm", data, confirmed=True)
            raise Boom("no")

        with contextlib.suppress(Boom):
            self.ctx.storage.transactionSync(body)
        return await self.alarm_value()


@pytest.fixture(params=ENGINES)
def meta(request, lab):
    Meta.committed = []
    return lab.bind("META", Meta, sql=request.param == "sqlite").getByName("m")


# Alarm times as the alarm scheduler stores them (encoded epoch ms), far in the future.
T1 = values.encode(1e15)
T2 = values.encode(2e15)


async def test_metadata_commits_with_the_turn_and_reaches_on_commit(lab, meta):
    assert await meta.alarm_value() is None
    await meta.set_alarm(T1)
    assert Meta.committed == [{"alarm": T1}]
    assert await meta.alarm_value() == T1
    lab.fail_next_commit(meta)
    with pytest.raises(DurableObjectResetError):
        await meta.set_alarm(T2)
    fresh = lab.env.META.getByName("m")
    assert await fresh.alarm_value() == T1  # rolled back with the failed commit
    await fresh.wipe()
    assert await fresh.alarm_value() is None  # deleteAll deletes the alarm
    assert Meta.committed[-1] == {"alarm": None}


async def test_metadata_is_rolled_back_with_a_transaction_sync(lab):
    Meta.committed = []
    stub = lab.bind("META", Meta, sql=True).getByName("m")
    await stub.set_alarm(T1)
    assert await stub.set_alarm_in_failed_sync_txn(T2) == T1
