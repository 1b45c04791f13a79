"""A write that changes nothing is skipped, and the event stream says so (issue 9): its
``StorageOp`` has ``cache="unchanged"`` and no flush or commit follows for it."""

from __future__ import annotations

from durable_lab import DurableObject
from durable_lab.events import CommitDone, FlushStarted, StorageOp


class Store(DurableObject):
    async def put(self, key, value):
        self.ctx.storage.put(key, value)

    async def put_many(self, entries):
        self.ctx.storage.put(entries)

    async def put_unconfirmed(self, key, value):
        self.ctx.storage.put(key, value, allowUnconfirmed=True)

    async def delete(self, key):
        return await self.ctx.storage.delete(key)

    async def in_transaction(self, key, value):
        async def write(txn):
            txn.put(key, value)
        await self.ctx.storage.transaction(write)

    async def read(self, key):
        return await self.ctx.storage.get(key)


async def ops_of(lab, call) -> tuple[list[tuple[str, tuple[str, ...], str]], int, int]:
    rec = lab.record()
    await call
    await lab.wait_idle()
    rec.close()
    ops = [(e.op, e.keys, e.cache) for e in rec.of(StorageOp)]
    return ops, len(rec.of(FlushStarted)), len(rec.of(CommitDone))


async def test_the_same_value_again_is_unchanged_and_commits_nothing(lab):
    stub = lab.bind("STORE", Store).getByName("s")
    assert await ops_of(lab, stub.put("k", [1, 2])) == ([("put", ("k",), "write")], 1, 1)
    assert await ops_of(lab, stub.put("k", [1, 2])) == ([("put", ("k",), "unchanged")], 0, 0)
    assert await ops_of(lab, stub.put_unconfirmed("k", [1, 2])) == (
        [("put", ("k",), "unchanged")], 0, 0)
    assert await ops_of(lab, stub.in_transaction("k", [1, 2])) == (
        [("transaction", ("k",), "unchanged")], 0, 0)
    assert await ops_of(lab, stub.put_many({"k": [1, 2]})) == (
        [("put", ("k",), "unchanged")], 0, 0)
    assert await ops_of(lab, stub.put("k", [1, 3])) == ([("put", ("k",), "write")], 1, 1)


async def test_deleting_a_key_known_absent_is_unchanged(lab):
    stub = lab.bind("STORE", Store).getByName("s")
    await stub.put("k", 1)
    assert await ops_of(lab, stub.delete("k")) == ([("delete", ("k",), "write")], 1, 1)
    assert await ops_of(lab, stub.delete("k")) == ([("delete", ("k",), "unchanged")], 0, 0)


async def test_a_put_where_only_some_keys_change_is_a_write_of_those_keys(lab):
    stub = lab.bind("STORE", Store).getByName("s")
    await stub.put_many({"a": 1, "b": 2})
    rec = lab.record()
    await stub.put_many({"a": 1, "b": 3})
    await lab.wait_idle()
    rec.close()
    assert [(e.keys, e.cache) for e in rec.of(StorageOp)] == [(("a", "b"), "write")]
    assert [e.puts for e in rec.of(FlushStarted)] == [("b",)]  # "a" was left out
    assert await stub.read("b") == 3


def test_the_event_log_says_an_unchanged_put_commits_nothing():
    from durable_lab.tour import describe

    event = StorageOp(seq=1, time=0.0, delivery=3, op="put", keys=("n",), cache="unchanged")
    assert describe(event) == ("call 3: put(n) -> unchanged (the same as the cache holds: "
                               "nothing to commit)")
