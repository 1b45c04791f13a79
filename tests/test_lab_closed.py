"""A closed lab says so: a clear error at once, a workload that refuses to run, and a LabClosed
event first on the stream (issue 9: "Run All" ends with ``await lab.close()``)."""

from __future__ import annotations

import asyncio

import pytest

import durable_lab
from durable_lab import (
    DurableObject,
    DurableObjectError,
    Lab,
    LabClosedError,
)
from durable_lab.check import error_kind
from durable_lab.events import FlushStarted, InstanceReset, LabClosed
from durable_lab.workload import run_workload


class Counter(DurableObject):
    async def increment(self):
        n = (await self.ctx.storage.get("n")) or 0
        self.ctx.storage.put("n", n + 1)
        return n + 1

    async def stuck(self):
        self.ctx.storage.put("started", True)
        await durable_lab.sleep(3600)  # still running when the lab closes
        self.ctx.storage.put("never", True)


async def test_a_call_on_a_closed_lab_raises_at_once_and_says_what_to_do():
    lab = Lab(storage="memory")
    stub = lab.bind("COUNTER", Counter).getByName("a")
    assert await stub.increment() == 1
    await lab.close()
    with pytest.raises(LabClosedError) as caught:
        stub.increment()  # not awaited: raised by the call itself
    text = str(caught.value)
    assert "the lab is closed" in text and "lab.close()" in text
    assert "Make a new Lab()" in text and "re-run the cell" in text
    # The types calls and bind() failed with before, so old except clauses still catch it.
    assert isinstance(caught.value, DurableObjectError)
    assert isinstance(caught.value, RuntimeError)
    assert error_kind(caught.value) == "closed"
    with pytest.raises(LabClosedError, match="the lab is closed"):
        lab.env.COUNTER.getByName("b")  # a new stub
    with pytest.raises(LabClosedError, match="the lab is closed"):
        lab.env.COUNTER.getByName("a")  # a stub of an object the lab knew
    with pytest.raises(LabClosedError, match="the lab is closed"):
        lab.bind("OTHER", Counter)


async def test_calls_in_flight_when_the_lab_closes_fail_with_lab_closed():
    lab = Lab(storage="memory")
    stub = lab.bind("COUNTER", Counter).getByName("a")
    call = asyncio.ensure_future(stub.stuck())
    await asyncio.sleep(0.01)
    await lab.close()
    with pytest.raises(LabClosedError, match="the lab is closed"):
        await call


async def test_a_workload_on_a_closed_lab_raises_instead_of_failing_every_call():
    lab = Lab(storage="memory")
    counter = lab.bind("COUNTER", Counter)
    first = await run_workload(counter, method="increment", clients=3, calls=12)
    assert len(first.ok_calls) == 12
    await lab.close()
    with pytest.raises(LabClosedError, match=r"run_workload\(\) cannot call COUNTER: the lab is "
                                               r"closed .*Make a new Lab\(\)"):
        await run_workload(counter, method="increment", clients=3, calls=120)


async def test_a_workload_cut_short_by_close_names_the_closed_lab_in_its_summary():
    lab = Lab(storage="memory", commit_latency=0.002)
    counter = lab.bind("COUNTER", Counter)
    run = asyncio.ensure_future(run_workload(counter, method="increment", clients=4, calls=400,
                                             objects=4))
    await asyncio.sleep(0.05)
    await lab.close()
    result = await run
    assert result.errors.get("closed", 0) > 0, result.summary()
    assert set(result.errors) == {"closed"}, result.errors
    assert "failed because the lab was closed during the run" in result.summary()
    assert "make a new Lab()" in result.summary()


async def test_lab_closed_comes_first_then_the_resets_of_each_live_object():
    lab = Lab(storage="memory", commit_latency=0.05)  # b's first write is still committing
    counter = lab.bind("COUNTER", Counter)
    a, b = counter.getByName("a"), counter.getByName("b")
    await a.increment()
    call = asyncio.ensure_future(b.stuck())
    await asyncio.sleep(0.01)
    lab.pause()
    rec = lab.record()
    await lab.close()
    rec.close()
    await asyncio.gather(call, return_exceptions=True)
    kinds = rec.kinds()
    assert kinds[0] == "LabClosed", kinds
    first = rec.events[0]
    assert isinstance(first, LabClosed) and first.object == "" and first.instances == 2
    assert kinds[1] == "Resumed", kinds  # close() lets a paused lab's commits land
    resets = rec.of(InstanceReset)
    assert [(e.object, e.reason) for e in resets] == [("COUNTER:a", "labClosed"),
                                                      ("COUNTER:b", "labClosed")]
    assert len(rec.of(LabClosed)) == 1
    # Only what docs/events.md lists for closing follows LabClosed.
    closing = {"LabClosed", "Resumed", "FlushStarted", "CommitDone", "ReplyReleased",
               "InstanceReset", "DeliveryFinished", "WebSocketClosed"}
    assert set(kinds) <= closing, set(kinds) - closing
    assert kinds.index("InstanceReset") > max(i for i, k in enumerate(kinds)
                                              if k in ("FlushStarted", "CommitDone"))
    await lab.close()  # idempotent: no second LabClosed
    assert "LabClosed" in durable_lab.events.__all__


def test_the_event_log_says_the_lab_closed_in_words():
    from durable_lab.tour import describe

    event = LabClosed(seq=1, time=0.0, instances=2)
    assert describe(event) == ("the lab is CLOSED (lab.close()): 2 live object(s) closing, "
                               "calls refused from now on")


async def test_a_call_queued_at_a_paused_gate_runs_out_during_close_and_nothing_follows_close():
    lab = Lab(storage="memory", commit_latency=0.5)  # long enough on a busy machine
    counter = lab.bind("COUNTER", Counter)
    a, b = counter.getByName("a"), counter.getByName("b")
    assert await a.increment() == 1
    stuck = asyncio.ensure_future(b.stuck())  # its first write is committing (0.5 s)...
    await asyncio.sleep(0.01)
    lab.pause()
    queued = a.increment()  # ...while this call waits at the paused gate
    rec = lab.record()
    await lab.close()
    at_close = len(rec.events)
    await asyncio.sleep(0.7)  # a batch flying at the reset would land (or fail) about now
    assert len(rec.events) == at_close, rec.kinds()[at_close:]
    kinds = rec.kinds()
    assert kinds[:2] == ["LabClosed", "Resumed"]
    reset = kinds.index("InstanceReset")
    assert "DeliveryStarted" in kinds[2:reset]  # the queued call started while closing
    # The batch its write formed was flying at the reset: it landed before close() returned.
    flying = [e for e in rec.of(FlushStarted) if e.object == "COUNTER:a"]
    assert len(flying) == 1, kinds
    assert [e.kind for e in rec.events
            if e.object == "COUNTER:a" and e.seq > flying[0].seq
            and e.kind in ("CommitDone", "CommitFailed")] == ["CommitDone"], kinds
    with pytest.raises(LabClosedError):
        await queued
    with pytest.raises(LabClosedError):
        await stuck
