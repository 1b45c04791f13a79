"""Turns and the input gate: what gets in, when, and in which order."""

from __future__ import annotations

import asyncio
from typing import ClassVar

import pytest

from durable_lab import DurableObject, Lab
from durable_lab.events import DeliveryStarted, TurnEnded


class Log(DurableObject):
    log: ClassVar[list[str]] = []

    def quick_sync(self, who):
        self.log.append(who)
        return who

    async def quick(self, who):
        self.log.append(who)
        return who

    async def hits_and_puts(self, n):
        self.ctx.storage.put("x", 0)
        for _ in range(n):
            x = await self.ctx.storage.get("x")  # a hit: the key was just written
            await self.ctx.storage.put("x", x + 1)  # already finished: no turn boundary
        return await self.ctx.storage.get("x")

    async def call_other_between(self, who):
        x = (await self.ctx.storage.get("x")) or 0
        await self.env.L.getByName("elsewhere").quick(f"{who}:ping")
        self.ctx.storage.put("x", x + 1)
        return x + 1

    async def sleeper(self, who):
        self.log.append(f"{who}:start")
        await asyncio.sleep(0.01)
        self.log.append(f"{who}:end")

    async def long_section(self, who):
        self.log.append(f"{who}:start")

        async def section():
            self.log.append(f"{who}:cs-start")
            await asyncio.sleep(0.05)
            self.log.append(f"{who}:cs-end")

        await self.ctx.blockConcurrencyWhile(section)
        self.log.append(f"{who}:end")


@pytest.fixture(autouse=True)
def fresh_log():
    Log.log = []


async def test_deliveries_run_one_at_a_time_in_arrival_order(lab):
    stub = lab.bind("L", Log).getByName("fifo")
    calls = [stub.quick(str(i)) if i % 2 else stub.quick_sync(str(i)) for i in range(20)]
    assert await asyncio.gather(*calls) == [str(i) for i in range(20)]
    assert Log.log == [str(i) for i in range(20)]


async def test_awaiting_finished_futures_does_not_end_the_turn(lab):
    stub = lab.bind("L", Log).getByName("hits")
    rec = lab.record()
    assert await stub.hits_and_puts(50) == 50
    assert rec.of(TurnEnded) == []  # 100 awaits, all of finished futures: one single turn
    assert len(rec.of(DeliveryStarted)) == 1


async def test_call_to_another_object_opens_the_gate_and_can_lose_an_update(lab):
    stub = lab.bind("L", Log).getByName("rpc-between")
    results = await asyncio.gather(stub.call_other_between("A"), stub.call_other_between("B"))
    assert results == [1, 1]  # B read x while A was waiting for the other object


async def test_continuation_reenters_through_the_gate_behind_a_critical_section(lab):
    stub = lab.bind("L", Log).getByName("reenter")
    a = stub.sleeper("A")
    await asyncio.sleep(0.002)  # A is asleep (its turn ended, the gate is open)
    b = stub.long_section("B")  # B's critical section outlasts A's timer
    await asyncio.gather(a, b)
    assert Log.log == ["A:start", "B:start", "B:cs-start", "B:cs-end", "B:end", "A:end"]


async def test_turn_boundaries_are_reported_with_the_gate_state(lab):
    class Mixed(DurableObject):
        async def run(self):
            await self.ctx.storage.get("missing")  # miss: gate held
            await asyncio.sleep(0)  # a bare yield: gate opens
            await asyncio.sleep(0.001)  # a timer: gate opens
            return "done"

    stub = lab.bind("M", Mixed).getByName("turns")
    rec = lab.record()
    assert await stub.run() == "done"
    ends = [(e.awaiting, e.gate_held) for e in rec.of(TurnEnded)]
    assert ends == [("storage", True), ("yield", False), ("io", False)]


async def test_block_concurrency_while_outside_object_code_is_refused(memory_lab):
    class Leaky(DurableObject):
        def keep_ctx(self):
            type(self).ctx_seen = self.ctx

    stub = memory_lab.bind("LK", Leaky).getByName("x")
    await stub.keep_ctx()

    async def nothing():
        return None

    with pytest.raises(RuntimeError, match="must be called from this object's own code"):
        Leaky.ctx_seen.blockConcurrencyWhile(nothing)


async def test_block_concurrency_while_nested_too_deeply_is_catchable(memory_lab):
    class Deep(DurableObject):
        async def dive(self):
            reached = []

            async def level():
                reached.append(len(reached) + 1)
                try:
                    await self.ctx.blockConcurrencyWhile(level)
                except RuntimeError as exc:
                    reached.append(str(exc))

            await self.ctx.blockConcurrencyWhile(level)
            return reached[-2], reached[-1]

        async def alive(self):
            return "alive"

    stub = memory_lab.bind("D", Deep).getByName("deep")
    assert await stub.dive() == (64, "blockConcurrencyWhile() calls are nested too deeply.")
    assert await stub.alive() == "alive"  # caught: no reset, the same stub still works


async def test_block_concurrency_while_returns_the_callbacks_value(lab):
    class Init(DurableObject):
        def __init__(self, ctx, env):
            super().__init__(ctx, env)
            self.loaded = None
            ctx.blockConcurrencyWhile(self.load)

        async def load(self):
            self.loaded = (await self.ctx.storage.get("config")) or "default"

        async def config(self):
            value = await self.ctx.blockConcurrencyWhile(self._double)
            return self.loaded, value

        def _double(self):
            return 21 * 2

    stub = lab.bind("I", Init).getByName("init")
    assert await stub.config() == ("default", 42)


async def test_queue_limit_answers_overloaded_instead_of_growing():
    lab = Lab(storage="memory", max_queue=3)
    try:
        stub = lab.bind("L", Log).getByName("busy")
        calls = [stub.sleeper(str(i)) for i in range(6)]
        results = await asyncio.gather(*calls, return_exceptions=True)
        refused = [r for r in results if isinstance(r, Exception)]
        assert len(refused) == 3
        assert all(getattr(r, "overloaded", False) for r in refused)
        assert "Too many requests queued" in str(refused[0])
    finally:
        await lab.close()


async def test_each_lab_is_independent():
    one, two = Lab(storage="memory"), Lab(storage="memory")
    try:
        a = one.bind("L", Log).getByName("same")
        b = two.bind("L", Log).getByName("same")

        class Count(DurableObject):
            async def inc(self):
                n = (await self.ctx.storage.get("n")) or 0
                self.ctx.storage.put("n", n + 1)
                return n + 1

        ca = one.bind("C", Count).getByName("x")
        cb = two.bind("C", Count).getByName("x")
        assert [await ca.inc(), await ca.inc(), await cb.inc()] == [1, 2, 1]
        assert a.id == b.id  # same name and namespace name: same id, but separate state
    finally:
        await one.close()
        await two.close()
