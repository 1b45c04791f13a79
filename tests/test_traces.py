"""The workerd trace scenarios of the spec (do-semantics.md), replayed on the lab.

Each test is named after the trace it ports and asserts the same order of steps and the same
results that real workerd produced. Timers inside objects are asyncio sleeps: awaiting one is
non-storage I/O, which ends the turn and opens the input gate.
"""

from __future__ import annotations

import asyncio
from typing import ClassVar

import pytest

from durable_lab import DurableObject, DurableObjectResetError
from durable_lab.events import CommitDone, FlushStarted, ReplyReleased


class Scenario(DurableObject):
    """One class with every scenario's handler; ``log`` is shared through the class."""

    log: ClassVar[list[str]] = []

    async def get_then_put(self, who):
        self.log.append(f"{who}:start")
        x = (await self.ctx.storage.get("x")) or 0
        self.ctx.storage.put("x", x + 1)
        self.log.append(f"{who}:end")
        return x + 1

    async def get_sleep_put(self, who):
        self.log.append(f"{who}:start")
        x = (await self.ctx.storage.get("x")) or 0
        await asyncio.sleep(0.01)
        self.ctx.storage.put("x", x + 1)
        self.log.append(f"{who}:end")
        return x + 1

    async def get_sync_put(self, who):
        self.log.append(f"{who}:start")
        x = (await self.ctx.storage.get("x")) or 0
        await self.ctx.storage.sync()
        self.ctx.storage.put("x", x + 1)
        self.log.append(f"{who}:end")
        return x + 1

    async def read(self):
        return await self.ctx.storage.get("x")


@pytest.fixture(autouse=True)
def fresh_log():
    Scenario.log = []
    yield


async def test_a_input_gate_serialises_get_then_put(lab):
    stub = lab.bind("S", Scenario).getByName("a")
    results = await asyncio.gather(stub.get_then_put("A"), stub.get_then_put("B"))
    assert Scenario.log == ["A:start", "A:end", "B:start", "B:end"]
    assert results == [1, 2]
    assert await stub.read() == 2


async def test_b_timer_between_get_and_put_interleaves_and_loses_an_update(lab):
    stub = lab.bind("S", Scenario).getByName("b")
    results = await asyncio.gather(stub.get_sleep_put("A"), stub.get_sleep_put("B"))
    assert Scenario.log[:2] == ["A:start", "B:start"]  # B ran during A's sleep
    assert results == [1, 1]
    assert await stub.read() == 1  # the lost update, exactly as on workerd


async def test_a2_sync_between_get_and_put_interleaves(lab):
    stub = lab.bind("S", Scenario).getByName("a2")
    await stub.get_then_put("warm")  # x = 1 committed; the key is now cached
    Scenario.log.clear()
    results = await asyncio.gather(stub.get_sync_put("A"), stub.get_sync_put("B"))
    assert Scenario.log[:2] == ["A:start", "B:start"]
    assert results == [2, 2]
    assert await stub.read() == 2  # disk flavours of the trace: sync() opens the gate


class Ctor(DurableObject):
    log: ClassVar[list[str]] = []

    def __init__(self, ctx, env):
        super().__init__(ctx, env)
        self.log.append("ctor-start")
        ctx.blockConcurrencyWhile(self._init)
        self.log.append("ctor-return")

    async def _init(self):
        self.log.append("ctor-bcw-start")
        await asyncio.sleep(0.01)
        self.log.append("ctor-bcw-end")

    async def hello(self, who):
        self.log.append(f"{who}:start")
        return who


async def test_c1_constructor_block_concurrency_while_runs_before_first_delivery(lab):
    Ctor.log = []
    stub = lab.bind("C", Ctor).getByName("c1")
    assert await asyncio.gather(stub.hello("A"), stub.hello("B")) == ["A", "B"]
    assert Ctor.log == ["ctor-start", "ctor-return", "ctor-bcw-start", "ctor-bcw-end",
                        "A:start", "B:start"]


class RequestBcw(DurableObject):
    log: ClassVar[list[str]] = []

    async def with_bcw(self, who):
        self.log.append(f"{who}:start")

        async def section():
            self.log.append(f"{who}:bcw-start")
            await asyncio.sleep(0.02)
            self.log.append(f"{who}:bcw-end")

        await self.ctx.blockConcurrencyWhile(section)
        self.log.append(f"{who}:end")

    async def without_bcw(self, who):
        self.log.append(f"{who}:start")
        await asyncio.sleep(0.02)
        self.log.append(f"{who}:end")

    async def quick(self, who):
        self.log.append(f"{who}:start")


async def test_c2_request_block_concurrency_while_keeps_others_out_until_caller_resumes(lab):
    RequestBcw.log = []
    stub = lab.bind("R", RequestBcw).getByName("c2")
    first = stub.with_bcw("A")
    await asyncio.sleep(0.005)  # A is inside its critical section now
    await asyncio.gather(first, stub.quick("B"))
    assert RequestBcw.log == ["A:start", "A:bcw-start", "A:bcw-end", "A:end", "B:start"]


async def test_c3_without_block_concurrency_while_others_run_during_the_sleep(lab):
    RequestBcw.log = []
    stub = lab.bind("R", RequestBcw).getByName("c3")
    first = stub.without_bcw("A")
    await asyncio.sleep(0.005)
    await asyncio.gather(first, stub.quick("B"))
    assert RequestBcw.log == ["A:start", "B:start", "A:end"]


class Writer(DurableObject):
    async def write(self, n):
        self.ctx.storage.put("n", n)
        return n

    async def write_many(self, n):
        for i in range(n):
            await self.ctx.storage.put(f"k{i}", i)
        return n

    async def notify(self, peer_name):
        self.ctx.storage.put("sent", True)
        peer = self.env.W.getByName(peer_name)
        await peer.receive("hello")

    async def receive(self, message):
        self.ctx.storage.put("got", message)

    async def read(self, key):
        return await self.ctx.storage.get(key)


async def test_d1_reply_is_released_only_after_the_flush(lab):
    stub = lab.bind("W", Writer).getByName("d1")
    rec = lab.record()
    assert await stub.write(5) == 5
    kinds = [e.kind for e in rec.of(FlushStarted, CommitDone, ReplyReleased)]
    assert kinds == ["FlushStarted", "CommitDone", "ReplyReleased"]


async def test_d1_n_writes_in_one_turn_are_one_commit(lab):
    stub = lab.bind("W", Writer).getByName("d1n")
    rec = lab.record()
    await stub.write_many(100)
    flushes = rec.of(FlushStarted)
    assert len(flushes) == 1
    assert len(flushes[0].puts) == 100
    assert len(rec.of(CommitDone)) == 1


async def test_d3_outgoing_call_waits_for_the_callers_flush(lab):
    ns = lab.bind("W", Writer)
    rec = lab.record()
    await ns.getByName("sender").notify("peer")
    sender_commit = next(e for e in rec.events
                         if isinstance(e, CommitDone) and e.object == "W:sender")
    peer_start = next(e for e in rec.events
                      if e.kind == "DeliveryStarted" and e.object == "W:peer")
    assert sender_commit.seq < peer_start.seq  # put → flush confirmed → peer receives
    assert await ns.getByName("peer").read("got") == "hello"


async def test_d5_failed_commit_breaks_the_reply_and_resets_to_committed_state(lab):
    ns = lab.bind("W", Writer)
    stub = ns.getByName("d5")
    await stub.write(1)
    lab.fail_next_commit(stub)
    with pytest.raises(DurableObjectResetError) as info:
        await stub.write(2)
    assert info.value.durableObjectReset
    assert "Internal error in Durable Object storage write" in str(info.value)
    # The old stub stays broken; a new stub sees exactly the committed state.
    with pytest.raises(DurableObjectResetError):
        await stub.read("n")
    assert await ns.getByName("d5").read("n") == 1


async def test_d6_unconfirmed_write_is_acknowledged_before_it_is_durable(lab):
    class Fast(DurableObject):
        async def write(self, n):
            self.ctx.storage.put("n", n, allowUnconfirmed=True)
            return n

        async def read(self):
            return await self.ctx.storage.get("n")

    ns = lab.bind("F", Fast)
    stub = ns.getByName("d6")
    rec = lab.record()
    lab.fail_next_commit(stub)
    assert await stub.write(7) == 7  # acknowledged: the output gate did not wait
    await lab.wait_idle()
    assert [e.kind for e in rec.events if e.kind in ("ReplyReleased", "ReplyHeld")] == []
    assert any(e.kind == "InstanceReset" for e in rec.events)  # the failure still resets
    assert await ns.getByName("d6").read() is None  # and the write is gone


class Breaks(DurableObject):
    log: ClassVar[list[str]] = []
    constructions = 0

    def __init__(self, ctx, env):
        super().__init__(ctx, env)
        type(self).constructions += 1
        self.memory = "warm"

    async def set_memory(self, value):
        self.memory = value

    async def get_memory(self):
        return self.memory

    async def bcw_throw(self):
        self.ctx.storage.put("before", 1)
        await self.ctx.storage.sync()
        self.ctx.storage.put("unawaited", 2)

        async def boom():
            raise ValueError("bcw exploded")

        await self.ctx.blockConcurrencyWhile(boom)
        self.log.append("never")

    async def slow(self):
        # Long enough to still be in flight when the critical section throws, even when the
        # SQLite commit that sync() waits for is slow on a loaded machine (the reset cancels it).
        await asyncio.sleep(2)
        return "slow"

    async def read(self, key):
        return await self.ctx.storage.get(key)


async def test_f_block_concurrency_while_throw_resets_the_object(lab):
    Breaks.log = []
    Breaks.constructions = 0
    ns = lab.bind("B", Breaks)
    old = ns.getByName("f")
    await old.set_memory("changed")
    a = old.bcw_throw()
    b = old.slow()  # queued during the critical section
    for fut in (a, b):
        with pytest.raises(DurableObjectResetError, match=r"^bcw exploded$") as info:
            await fut
        assert info.value.durableObjectReset
        assert not info.value.remote
    with pytest.raises(DurableObjectResetError, match=r"^bcw exploded$"):  # C: old stub
        await old.get_memory()
    new = ns.getByName("f")  # D: a new stub gets a fresh instance
    assert await new.get_memory() == "warm"
    assert Breaks.constructions == 2
    assert await new.read("before") == 1
    assert await new.read("unawaited") == 2  # committed before the critical section ran
    with pytest.raises(DurableObjectResetError):  # E: the old stub is still broken
        await old.get_memory()
    assert Breaks.log == []


class CtorThrows(DurableObject):
    constructions = 0

    def __init__(self, ctx, env):
        super().__init__(ctx, env)
        type(self).constructions += 1
        if type(self).constructions == 1:
            async def boom():
                raise RuntimeError("first construction fails")
            ctx.blockConcurrencyWhile(boom)

    async def hello(self):
        return "hi"


async def test_f2_constructor_block_concurrency_while_throw_then_new_stub_reconstructs(lab):
    CtorThrows.constructions = 0
    ns = lab.bind("CT", CtorThrows)
    stub = ns.getByName("f2")
    results = await asyncio.gather(stub.hello(), stub.hello(), return_exceptions=True)
    assert all(isinstance(r, DurableObjectResetError) for r in results)
    assert await ns.getByName("f2").hello() == "hi"
    assert CtorThrows.constructions == 2
