"""Object lifecycle: eviction (idle or requested), constructor re-runs, and lab.objects()."""

from __future__ import annotations

import asyncio

import pytest

from durable_lab import DurableObject, DurableObjectResetError, Lab
from durable_lab.events import InstanceConstructed, InstanceEvicted


class Session(DurableObject):
    constructed = 0

    def __init__(self, ctx, env):
        super().__init__(ctx, env)
        type(self).constructed += 1
        self.hits = 0

    async def visit(self):
        self.hits += 1
        total = (await self.ctx.storage.get("total")) or 0
        self.ctx.storage.put("total", total + 1)
        return {"in_memory": self.hits, "stored": total + 1}

    async def slow(self):
        await asyncio.sleep(0.02)
        return "done"

    async def hold_gate(self):
        async def cs():
            await asyncio.sleep(0.02)
        await self.ctx.blockConcurrencyWhile(cs)
        return "held"

    async def fail(self):
        async def boom():
            raise RuntimeError("x")
        await self.ctx.blockConcurrencyWhile(boom)


@pytest.fixture(autouse=True)
def fresh():
    Session.constructed = 0


async def test_idle_instances_are_evicted_after_the_idle_timeout():
    lab = Lab(storage="memory", clock="manual", idle_timeout=10)
    try:
        stub = lab.bind("S", Session).getByName("idle")
        rec = lab.record()
        assert await stub.visit() == {"in_memory": 1, "stored": 1}
        lab.clock.advance(9)
        await lab.wait_idle()
        assert await stub.visit() == {"in_memory": 2, "stored": 2}  # not yet: timer re-armed
        lab.clock.advance(10.5)
        await lab.wait_idle()
        assert [e.reason for e in rec.of(InstanceEvicted)] == ["idle"]
        assert await stub.visit() == {"in_memory": 1, "stored": 3}  # fields lost, storage kept
        assert Session.constructed == 2
        assert [e.incarnation for e in rec.of(InstanceConstructed)] == [1, 2]
    finally:
        await lab.close()


async def test_requested_eviction_waits_for_work_in_flight(lab):
    stub = lab.bind("S", Session).getByName("requested")
    await stub.visit()
    call = stub.slow()
    await asyncio.sleep(0.005)
    assert await lab.evict(stub) is True
    assert call.done() and call.result() == "done"  # finished before the eviction
    assert await stub.visit() == {"in_memory": 1, "stored": 2}
    assert await lab.evict(stub.id) is True
    assert await lab.evict(stub) is False  # not in memory any more


async def test_no_idle_timeout_means_no_automatic_eviction():
    lab = Lab(storage="memory", clock="manual")
    try:
        stub = lab.bind("S", Session).getByName("kept")
        await stub.visit()
        lab.clock.advance(3600)
        await lab.wait_idle()
        assert (await stub.visit())["in_memory"] == 2
    finally:
        await lab.close()


async def test_objects_lists_each_object_with_its_state(lab):
    ns = lab.bind("S", Session)
    live = ns.getByName("live")
    evicted = ns.getByName("evicted")
    broken = ns.getByName("broken")
    ns.getByName("never")
    await live.visit()
    await evicted.visit()
    await lab.evict(evicted)
    with pytest.raises(DurableObjectResetError):
        await broken.fail()
    infos = {info.name: info for info in await lab.objects()}
    assert {name: info.state for name, info in infos.items()} == {
        "live": "idle", "evicted": "evicted", "broken": "broken", "never": "not started",
    }
    assert infos["live"].stored_bytes > 0 and infos["never"].stored_bytes == 0
    assert infos["live"].incarnations == 1 and infos["live"].queue_length == 0


async def test_objects_shows_queue_length_of_a_busy_object(memory_lab):
    stub = memory_lab.bind("S", Session).getByName("busy")
    calls = [stub.hold_gate()] + [stub.visit() for _ in range(3)]
    await asyncio.sleep(0.005)
    (info,) = await memory_lab.objects()
    assert info.state == "live"
    assert info.queue_length == 3 and info.in_flight == 1  # three wait behind the section
    await asyncio.gather(*calls)
