"""Recording a run (history, trace) and replaying it: same code matches, changed code diverges."""

from __future__ import annotations

import asyncio
import json

import pytest

from durable_lab import DurableObject, Lab
from durable_lab.check import linearizable, lost_updates


class Counter(DurableObject):
    async def increment(self, by=1):
        n = (await self.ctx.storage.get("n")) or 0
        self.ctx.storage.put("n", n + by)
        return n + by

    async def value(self):
        return (await self.ctx.storage.get("n")) or 0


class SleepyCounter(Counter):
    async def increment(self, by=1):
        n = (await self.ctx.storage.get("n")) or 0
        await asyncio.sleep(0)  # an extra turn boundary: the code changed
        self.ctx.storage.put("n", n + by)
        return n + by


class OffByOne(Counter):
    async def increment(self, by=1):
        n = (await self.ctx.storage.get("n")) or 0
        self.ctx.storage.put("n", n + by + 1)
        return n + by


async def recorded_run(model="gates", cls=Counter):
    lab = Lab(storage="memory", seed=5, model=model, record=True, clock="manual")
    ns = lab.bind("C", cls)
    stubs = [ns.getByName("a"), ns.getByName("b")]
    await asyncio.gather(*(s.increment() for s in stubs for _ in range(4)))
    await stubs[0].increment(by=10)
    await lab.wait_idle()
    trace = lab.trace()
    history = lab.history()
    await lab.close()
    return trace, history


async def test_the_same_seed_and_workload_give_an_identical_event_log():
    first, _ = await recorded_run()
    second, _ = await recorded_run()
    # A manual clock stands still, so even times and durations agree: the logs are identical
    # except for the clock's starting point (the real time when each lab was made).
    strip = [{k: v for k, v in e.items() if k != "time"} for e in first["events"]]
    assert strip == [{k: v for k, v in e.items() if k != "time"} for e in second["events"]]
    assert first["transitions"] == second["transitions"]


async def test_trace_is_json_and_records_calls_and_transitions():
    trace, history = await recorded_run()
    text = json.dumps(trace)
    assert json.loads(text) == trace
    assert len(trace["calls"]) == 9 == len(history)
    kinds = {t["kind"] for t in trace["transitions"]}
    assert {"constructor", "admit", "reply"} <= kinds


async def test_replay_of_unchanged_code_matches():
    trace, _ = await recorded_run()
    result = await Lab.replay(trace, {"C": Counter})
    assert result.ok, str(result)
    assert result.calls_replayed == 9


async def test_replay_finds_the_classes_by_name_when_not_given():
    trace, _ = await recorded_run()
    assert trace["bindings"]["C"]["class"] == "Counter"
    result = await Lab.replay(trace)
    assert result.ok, str(result)


async def test_replay_reports_the_first_divergence_when_turns_change():
    trace, _ = await recorded_run()
    result = await Lab.replay(trace, {"C": SleepyCounter})
    assert not result.ok
    assert "expected to" in result.divergence


async def test_replay_reports_a_changed_result():
    trace, _ = await recorded_run()
    result = await Lab.replay(trace, {"C": OffByOne})
    assert not result.ok
    assert "answered" in result.divergence and "instead of" in result.divergence


async def test_history_proves_the_none_model_wrong_and_the_gates_model_right():
    class Slow(Counter):
        async def increment(self, by=1):
            n = (await self.ctx.storage.get("n")) or 0
            await self.ctx.storage.put("n", n + by)
            return n + by

    for model, should_be_ok in (("gates", True), ("none", False)):
        lab = Lab(storage="memory", model=model, record=True)
        stub = lab.bind("C", Slow).getByName("x")
        await asyncio.gather(*(stub.increment() for _ in range(6)))
        history = lab.history()
        await lab.close()
        verdict = linearizable(history, "counter")
        assert verdict.ok is should_be_ok, (model, str(verdict))
        assert bool(lost_updates(history)) is not should_be_ok


def test_history_without_record_is_a_clear_error():
    lab = Lab(storage="memory")
    with pytest.raises(RuntimeError, match="Lab\\(record=True\\)"):
        lab.history()
