"""Write coalescing and the output gate: n writes, one commit; no reply before its writes land."""

from __future__ import annotations

import asyncio
from typing import ClassVar

import pytest

from durable_lab import DurableObject, Lab
from durable_lab.events import CommitDone, FlushStarted, ReplyHeld, ReplyReleased


class Store(DurableObject):
    async def write(self, key, value):
        self.ctx.storage.put(key, value)
        return value

    async def write_unconfirmed(self, key, value):
        self.ctx.storage.put(key, value, allowUnconfirmed=True)
        return value

    async def write_twice(self, key):
        self.ctx.storage.put(key, 1)
        self.ctx.storage.put(key, 2)
        self.ctx.storage.delete("other")
        return "ok"

    async def read(self, key):
        return await self.ctx.storage.get(key)

    async def read_only(self):
        return "no writes"

    async def write_then_read_back(self, key, value):
        self.ctx.storage.put(key, value)
        return await self.ctx.storage.get(key)  # before any commit: from the cache

    async def same_value(self, key, value):
        self.ctx.storage.put(key, value)
        return value


@pytest.fixture
async def slow_lab(tmp_path):
    """Commits take 20 ms, so batches and held replies are easy to observe."""
    lab = Lab(tmp_path / "slow", commit_latency=0.02)
    yield lab
    await lab.close()


async def test_all_writes_of_a_turn_are_one_atomic_batch_with_last_value_winning(lab):
    stub = lab.bind("S", Store).getByName("batch")
    rec = lab.record()
    await stub.write_twice("k")
    (flush,) = rec.of(FlushStarted)
    assert flush.puts == ("k",) and flush.deletes == ("other",)
    assert await stub.read("k") == 2


async def test_flush_in_flight_absorbs_later_writes_into_the_next_batch(slow_lab):
    stub = slow_lab.bind("S", Store).getByName("absorb")
    rec = slow_lab.record()
    first = stub.write("k1", 1)
    await asyncio.sleep(0.005)  # flush 1 is in flight now
    later = [stub.write("k2", 2), stub.write("k3", 3)]
    await asyncio.gather(first, *later)
    flushes = rec.of(FlushStarted)
    assert [f.puts for f in flushes] == [("k1",), ("k2", "k3")]
    done_1 = rec.of(CommitDone)[0]
    assert done_1.seq < flushes[1].seq  # one flush at a time, in order


async def test_reply_waits_for_writes_made_before_it_even_by_another_delivery(slow_lab):
    stub = slow_lab.bind("S", Store).getByName("shared-gate")
    rec = slow_lab.record()
    writer = stub.write("k", 1)
    reader = stub.read_only()  # made no writes, but its reply comes after the writer's put
    await asyncio.gather(writer, reader)
    held = {e.delivery for e in rec.of(ReplyHeld)}
    assert len(held) == 2
    commit = rec.of(CommitDone)[0]
    released = rec.of(ReplyReleased)
    assert all(r.seq > commit.seq for r in released)


async def test_reply_does_not_wait_for_writes_made_after_it(slow_lab):
    stub = slow_lab.bind("S", Store).getByName("only-before")
    rec = slow_lab.record()
    first = stub.write("a", 1)
    await asyncio.sleep(0.005)  # first's reply is held by commit 1; commit 1 is in flight
    second = stub.write("b", 2)  # goes into commit 2
    await asyncio.gather(first, second)
    first_release = rec.of(ReplyReleased)[0]
    commits = rec.of(CommitDone)
    assert len(commits) == 2
    assert commits[0].seq < first_release.seq < commits[1].seq


async def test_allow_unconfirmed_reply_does_not_wait_for_the_commit(slow_lab):
    stub = slow_lab.bind("S", Store).getByName("unconfirmed")
    rec = slow_lab.record()
    assert await stub.write_unconfirmed("k", 1) == 1
    assert rec.of(CommitDone) == []  # acknowledged before it is durable
    assert rec.of(ReplyHeld) == []
    await slow_lab.wait_idle()
    assert len(rec.of(CommitDone)) == 1
    assert await stub.read("k") == 1


async def test_read_your_writes_before_the_commit(slow_lab):
    stub = slow_lab.bind("S", Store).getByName("ryw")
    assert await stub.write_then_read_back("k", {"v": 1}) == {"v": 1}


async def test_writing_the_same_value_again_commits_nothing(lab):
    stub = lab.bind("S", Store).getByName("noop")
    await stub.same_value("k", [1, 2])
    rec = lab.record()
    await stub.same_value("k", [1, 2])
    assert rec.of(FlushStarted) == []


async def test_every_call_makes_exactly_one_commit_whatever_n(lab):
    class Many(DurableObject):
        async def put_n(self, n):
            for i in range(n):
                await self.ctx.storage.put(f"k{i}", i)

    stub = lab.bind("M", Many).getByName("n")
    for n in (1, 10, 100, 1000):
        rec = lab.record()
        await stub.put_n(n)
        rec.close()
        assert len(rec.of(CommitDone)) == 1, n


async def test_sync_waits_for_the_commit_and_lets_others_in(slow_lab):
    class Syncer(DurableObject):
        log: ClassVar[list[str]] = []

        async def write_and_sync(self):
            self.ctx.storage.put("k", 1)
            self.log.append("put")
            await self.ctx.storage.sync()
            self.log.append("synced")

        async def other(self):
            self.log.append("other")

    stub = slow_lab.bind("Y", Syncer).getByName("sync")
    rec = slow_lab.record()
    a = stub.write_and_sync()
    b = stub.other()
    await asyncio.gather(a, b)
    assert Syncer.log == ["put", "other", "synced"]
    assert len(rec.of(CommitDone)) == 1
