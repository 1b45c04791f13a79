"""The three concurrency models, side by side: the same class, the same workload."""

from __future__ import annotations

import asyncio

import pytest

from durable_lab import DurableObject, Lab
from durable_lab.events import ReplyHeld


class Counter(DurableObject):
    async def increment(self):
        n = (await self.ctx.storage.get("n")) or 0
        await self.ctx.storage.put("n", n + 1)
        return n + 1

    async def slow_increment(self):
        n = (await self.ctx.storage.get("n")) or 0
        await asyncio.sleep(0.005)
        await self.ctx.storage.put("n", n + 1)
        return n + 1

    async def unawaited_put(self, value):
        self.ctx.storage.put("n", value)
        return "ok"

    async def value(self):
        return (await self.ctx.storage.get("n")) or 0


async def run(model, method, calls=10, tmp_path=None, **lab_options):
    lab = Lab(storage="memory", model=model, **lab_options)
    try:
        stub = lab.bind("C", Counter).getByName("x")
        results = await asyncio.gather(*(getattr(stub, method)() for _ in range(calls)))
        return sorted(results), await stub.value()
    finally:
        await lab.close()


async def test_plain_get_then_put_loses_updates_only_without_gates():
    gated = await run("gates", "increment")
    naive = await run("none", "increment")
    serial = await run("serial", "increment")
    assert gated == (list(range(1, 11)), 10)
    assert serial == (list(range(1, 11)), 10)
    results, final = naive
    assert final < 10  # lost updates
    assert len(set(results)) < 10  # several calls read the same old value


async def test_serial_model_keeps_even_timers_inside_one_delivery():
    gated = await run("gates", "slow_increment", calls=5)
    serial = await run("serial", "slow_increment", calls=5)
    assert gated[1] < 5  # the timer opens the input gate: trace b
    assert serial == ([1, 2, 3, 4, 5], 5)


async def test_naive_model_acknowledges_a_write_that_then_fails():
    lab = Lab(storage="memory", model="none")
    try:
        stub = lab.bind("C", Counter).getByName("x")
        rec = lab.record()
        lab.fail_next_commit(stub)
        assert await stub.unawaited_put(42) == "ok"  # acknowledged...
        await lab.wait_idle()
        assert await stub.value() == 0  # ...and lost, with no reset and no error to the caller
        assert [e.kind for e in rec.events if e.kind in ("CommitFailed", "InstanceReset")] == [
            "CommitFailed"]
        assert rec.of(ReplyHeld) == []
    finally:
        await lab.close()


async def test_gates_model_refuses_to_acknowledge_the_same_failed_write():
    lab = Lab(storage="memory", model="gates")
    try:
        stub = lab.bind("C", Counter).getByName("x")
        lab.fail_next_commit(stub)
        with pytest.raises(Exception, match="storage write caused object to be reset"):
            await stub.unawaited_put(42)
    finally:
        await lab.close()


async def test_serial_block_concurrency_while_from_a_delivery_does_not_deadlock():
    class Init(DurableObject):
        def __init__(self, ctx, env):
            super().__init__(ctx, env)
            self.ready = False
            ctx.blockConcurrencyWhile(self.setup)

        async def setup(self):
            await asyncio.sleep(0.001)
            self.ready = True

        async def again(self):
            async def cs():
                await asyncio.sleep(0.001)
                return "inside"
            return self.ready, await self.ctx.blockConcurrencyWhile(cs)

    lab = Lab(storage="memory", model="serial")
    try:
        stub = lab.bind("I", Init).getByName("x")
        assert await asyncio.wait_for(stub.again(), 2) == (True, "inside")
    finally:
        await lab.close()


def test_unknown_model_is_refused():
    with pytest.raises(ValueError, match="model must be one of 'gates', 'none', 'serial'"):
        Lab(storage="memory", model="actors")
