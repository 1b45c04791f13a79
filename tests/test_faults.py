"""Every injected fault: what it breaks, what the runtime still guarantees, how it is reported."""

from __future__ import annotations

import asyncio

import pytest

from durable_lab import DurableObject, DurableObjectError, DurableObjectResetError, Lab
from durable_lab.events import CommitFailed, FaultInjected, InstanceEvicted, InstanceReset


class Counter(DurableObject):
    constructed = 0

    def __init__(self, ctx, env):
        super().__init__(ctx, env)
        type(self).constructed += 1

    async def increment(self):
        n = (await self.ctx.storage.get("n")) or 0
        self.ctx.storage.put("n", n + 1)
        return n + 1

    async def value(self):
        return (await self.ctx.storage.get("n")) or 0

    async def slow(self):
        await asyncio.sleep(0.02)
        return "slow"

    async def schedule(self):
        self.ctx.storage.setAlarm(1)

    async def alarm(self, info):
        self.ctx.storage.put("alarm_runs", ((await self.ctx.storage.get("alarm_runs")) or 0) + 1)
        self.ctx.storage.put("last_retry", info.retryCount)

    async def get(self, key):
        return await self.ctx.storage.get(key)


@pytest.fixture(autouse=True)
def fresh():
    Counter.constructed = 0


@pytest.fixture
async def lab():
    lab = Lab(storage="memory", seed=11)
    yield lab
    await lab.close()


async def test_probabilistic_commit_failures_are_seeded_and_reproducible():
    outcomes = []
    for _ in range(2):
        lab = Lab(storage="memory", seed=3)
        ns = lab.bind("C", Counter)
        lab.faults.fail_commits(probability=0.3)
        results = []
        for i in range(20):
            try:
                results.append(await ns.getByName(f"o{i}").increment())
            except DurableObjectResetError:
                results.append("reset")
        outcomes.append(results)
        await lab.close()
    assert outcomes[0] == outcomes[1]
    assert 0 < outcomes[0].count("reset") < 20


async def test_delayed_commits_hold_replies_for_that_long(lab):
    lab_manual = Lab(storage="memory", clock="manual")
    try:
        stub = lab_manual.bind("C", Counter).getByName("x")
        lab_manual.faults.delay_commits(5, stub)
        call = stub.increment()
        await asyncio.sleep(0.01)
        assert not call.done()  # its commit waits 5 s of lab time
        lab_manual.clock.advance(5)
        assert await call == 1
    finally:
        await lab_manual.close()


async def test_failed_calls_are_retryable_and_never_reach_the_object(lab):
    stub = lab.bind("C", Counter).getByName("x")
    rec = lab.record()
    lab.faults.fail_calls(stub, times=2)
    for _ in range(2):
        with pytest.raises(DurableObjectError, match="Network connection lost") as info:
            await stub.increment()
        assert info.value.retryable
    assert await stub.increment() == 1  # the two lost calls never ran
    assert [e.fault for e in rec.of(FaultInjected)] == ["fail_calls"]


async def test_delayed_calls_arrive_later_in_order():
    lab = Lab(storage="memory", clock="manual")
    try:
        stub = lab.bind("C", Counter).getByName("x")
        lab.faults.delay_calls(1.0)
        calls = [stub.increment() for _ in range(3)]
        await asyncio.sleep(0.01)
        assert not any(c.done() for c in calls)
        lab.clock.advance(1.0)
        assert await asyncio.gather(*calls) == [1, 2, 3]
    finally:
        await lab.close()


async def test_a_failing_alarm_handler_is_retried():
    lab = Lab(storage="memory", clock="auto")
    try:
        stub = lab.bind("C", Counter).getByName("x")
        lab.faults.fail_next_alarm(stub)
        await stub.schedule()
        for _ in range(100):
            await asyncio.sleep(0.01)
            if await stub.get("alarm_runs"):
                break
        assert await stub.get("alarm_runs") == 1  # the injected failure ran no handler code
        assert await stub.get("last_retry") == 1  # the successful run was the first retry
    finally:
        await lab.close()


async def test_crash_resets_and_breaks_old_stubs(lab):
    ns = lab.bind("C", Counter)
    stub = ns.getByName("x")
    await stub.increment()
    in_flight = stub.slow()
    await asyncio.sleep(0.005)
    rec = lab.record()
    assert lab.faults.crash(stub) is True
    with pytest.raises(DurableObjectResetError, match="injected crash"):
        await in_flight
    with pytest.raises(DurableObjectResetError):
        await stub.value()
    assert await ns.getByName("x").value() == 1
    assert [e.reason for e in rec.of(InstanceReset)] == ["crashed"]


async def test_code_update_fault_keeps_stubs_working(lab):
    stub = lab.bind("C", Counter).getByName("x")
    await stub.increment()
    assert lab.faults.code_update("x") is True  # a name works as a target with one binding
    assert await stub.increment() == 2
    assert Counter.constructed == 2


async def test_evict_fault_reports_itself(lab):
    stub = lab.bind("C", Counter).getByName("x")
    await stub.increment()
    rec = lab.record()
    assert await lab.faults.evict("C:x") is True
    assert [e.kind for e in rec.events if e.kind in ("FaultInjected", "InstanceEvicted")] == [
        "FaultInjected", "InstanceEvicted"]
    assert rec.of(InstanceEvicted)[0].reason == "requested"


async def test_injected_commit_failures_are_marked(lab):
    stub = lab.bind("C", Counter).getByName("x")
    rec = lab.record()
    lab.faults.fail_next_commit(stub)
    with pytest.raises(DurableObjectResetError):
        await stub.increment()
    (failed,) = rec.of(CommitFailed)
    assert failed.injected is True


async def test_clear_disarms_everything(lab):
    stub = lab.bind("C", Counter).getByName("x")
    lab.faults.fail_commits(probability=1.0)
    lab.faults.delay_calls(0.5)
    assert len(lab.faults.armed()) == 2
    lab.faults.clear()
    assert lab.faults.armed() == []
    assert await stub.increment() == 1


async def test_bad_fault_arguments_are_refused(lab):
    lab.bind("A", Counter)
    lab.bind("B", Counter)
    with pytest.raises(ValueError, match="probability must be a number from 0 to 1"):
        lab.faults.fail_commits(probability=2)
    with pytest.raises(ValueError, match="ambiguous"):
        lab.faults.crash("x")
    with pytest.raises(ValueError, match="seconds must be a finite number >= 0"):
        lab.faults.delay_calls(-1)
