"""Driving objects with many clients (durable_lab.workload)."""

from __future__ import annotations

import asyncio

import pytest

from durable_lab import DurableObject, Lab
from durable_lab.check import History, linearizable, lost_updates
from durable_lab.workload import WorkloadResult, run_workload


class Counter(DurableObject):
    async def increment(self, by=1):
        n = (await self.ctx.storage.get("n")) or 0
        self.ctx.storage.put("n", n + by)
        return n + by

    async def value(self):
        return (await self.ctx.storage.get("n")) or 0

    async def picky(self, x):
        if x % 3 == 0:
            raise ValueError(f"{x} is a multiple of 3")
        return x

    async def slow(self, seconds=0.01):
        await asyncio.sleep(seconds)
        return "done"


class LossyCounter(Counter):
    async def increment(self, by=1):
        n = (await self.ctx.storage.get("n")) or 0
        await asyncio.sleep(0.001)  # the input gate opens: other increments run meanwhile
        self.ctx.storage.put("n", n + by)
        return n + by


async def test_hot_distribution_sends_most_calls_to_one_object(memory_lab):
    ns = memory_lab.bind("C", Counter)
    result = await run_workload(ns, method="increment", clients=4, calls=400, objects=5,
                                distribution="hot", skew=0.8, seed=1)
    counts = result.per_object
    assert list(counts) == ["obj-0", "obj-1", "obj-2", "obj-3", "obj-4"]
    assert sum(counts.values()) == 400 and len(result.calls) == 400
    assert counts["obj-0"] > 280  # about 320 expected
    assert all(counts[f"obj-{k}"] < 60 for k in range(1, 5))
    assert result.hot_object == "obj-0"
    # Each object's final value is the number of increments it received: nothing lost.
    for name, n in counts.items():
        assert await ns.getByName(name).value() == n


async def test_uniform_and_zipf_distributions(memory_lab):
    ns = memory_lab.bind("C", Counter)
    uniform = await run_workload(ns, method="value", clients=4, calls=800, objects=4, seed=2)
    assert all(150 < n < 250 for n in uniform.per_object.values()), uniform.per_object
    zipf = await run_workload(ns, method="value", clients=4, calls=800, objects=4,
                              distribution="zipf", seed=2)
    z = zipf.per_object
    # shares 1 : 1/2 : 1/3 : 1/4 -> about 384, 192, 128, 96
    assert z["obj-0"] > z["obj-1"] > z["obj-3"] and z["obj-0"] > 2 * z["obj-3"], z


async def test_same_seed_same_calls_for_every_client(memory_lab):
    ns = memory_lab.bind("C", Counter)

    def pick(i, rng):
        return (rng.randint(1, 9),)

    async def run(seed):
        return await run_workload(ns, method={"increment": 3, "value": 1},
                                  args={"increment": pick}, clients=3, per_client=20,
                                  objects=4, distribution="zipf", seed=seed)

    first, second, other = await run(7), await run(7), await run(8)
    for client in range(3):
        assert first.sequence(client) == second.sequence(client)
        assert len(first.sequence(client)) == 20
        done = [(c.object, c.method, c.args) for c in first.calls if c.client == client]
        assert done == first.sequence(client)  # the plan is what was actually sent
    assert [first.sequence(c) for c in range(3)] != [other.sequence(c) for c in range(3)]
    methods = {m for c in range(3) for _, m, _ in first.sequence(c)}
    assert methods == {"increment", "value"}
    assert all(args == () for c in range(3) for _, m, args in first.sequence(c) if m == "value")


async def test_rate_limits_each_client(memory_lab):
    ns = memory_lab.bind("C", Counter)
    result = await run_workload(ns, method="increment", clients=2, per_client=6, rate=50)
    # 6 calls at 50/s per client: the last one starts 5/50 = 0.1 s after the first.
    assert 0.09 <= result.duration < 1.5
    for client in range(2):
        starts = [c.start for c in result.calls if c.client == client]
        assert starts == sorted(starts)
        for k, start in enumerate(starts):
            assert start >= k / 50 - 0.005
    fast = await run_workload(ns, method="increment", clients=2, per_client=6)
    assert fast.duration < result.duration


async def test_errors_are_recorded_not_raised(memory_lab):
    ns = memory_lab.bind("C", Counter)
    result = await run_workload(ns, method="picky", clients=3, calls=30,
                                args=lambda i, rng: (i,), seed=0)
    failed = [c.args[0] for c in result.failed_calls]
    assert failed == list(range(0, 30, 3))
    assert result.errors == {"remote": 10} and result.error_types == {"ValueError": 10}
    assert len(result.ok_calls) == 20
    assert all(c.result == c.args[0] for c in result.ok_calls)
    bad = next(c for c in result.calls if not c.ok)
    assert bad.error_kind == "remote" and "multiple of 3" in str(bad.error)
    assert "failed 10 (remote 10)" in result.summary()


async def test_overload_and_timeouts_are_counted():
    async with Lab(storage="memory", max_queue=1) as lab:
        ns = lab.bind("C", Counter)
        crowd = await run_workload(ns, method="slow", clients=8, per_client=2, args=(0.01,))
        assert crowd.errors.get("overloaded", 0) >= 1
        assert crowd.errors.get("overloaded", 0) + len(crowd.ok_calls) == 16
        assert {c.result for c in crowd.ok_calls} == {"done"}

        waiting = await run_workload(ns, method="slow", clients=1, per_client=2, args=(0.3,),
                                     timeout=0.02, objects=1, names=["sleepy"])
        assert waiting.errors == {"timeout": 2}
        assert all(c.latency < 0.2 for c in waiting.calls)
        await lab.wait_idle()


async def test_history_recording_feeds_the_checks(memory_lab):
    good = memory_lab.bind("GOOD", Counter)
    h = History()
    result = await run_workload(good, method={"increment": 4, "value": 1},
                                args={"increment": (1,)}, clients=6, per_client=25,
                                objects=2, history=h, seed=4)
    assert len(h) == 150 and all(op.ok for op in h)
    assert sorted(h.objects()) == ["obj-0", "obj-1"]
    for record in result.calls:
        op = h.op(record.op)
        assert (op.client, op.object, op.method, op.args, op.result) == (
            record.client, record.object, record.method, record.args, record.result)
    assert linearizable(h).ok
    assert not lost_updates(h)

    lossy = memory_lab.bind("LOSSY", LossyCounter)
    h2 = History()
    await run_workload(lossy, method="increment", args=(1,), clients=6, per_client=10,
                       objects=2, history=h2, seed=4)
    findings = lost_updates(h2)
    assert findings and all(f.a.result == f.b.result for f in findings)
    verdict = linearizable(h2)
    assert not verdict.ok and verdict.culprit is not None
    assert verdict.culprit.object == verdict.object


async def test_summary_rows_and_percentiles(memory_lab):
    ns = memory_lab.bind("C", Counter)
    result = await run_workload(ns, method="increment", clients=3, calls=31, objects=3)
    assert isinstance(result, WorkloadResult)
    assert result.p50 is not None and result.p90 is not None and result.p99 is not None
    assert 0 < result.p50 <= result.p90 <= result.p99
    assert result.throughput > 0
    rows = result.to_rows()
    assert len(rows) == 31 and [r["call"] for r in rows] == list(range(31))
    assert {"client", "object", "args", "result", "error", "error_kind", "start", "end",
            "latency"} <= set(rows[0])
    assert [r["client"] for r in rows[:4]] == [0, 1, 2, 0]  # calls are dealt round-robin
    assert sum(1 for r in rows if r["client"] == 0) == 11
    text = result.summary()
    assert "31 calls of increment from 3 client(s) on 3 object(s)" in text
    assert "p50" in text and "obj-0" in text and str(result) == text


async def test_bad_parameters_are_refused(memory_lab):
    ns = memory_lab.bind("C", Counter)
    with pytest.raises(ValueError, match="exactly one of"):
        await run_workload(ns, method="increment", calls=3, per_client=3)
    with pytest.raises(TypeError, match="no public method 'nope'"):
        await run_workload(ns, method="nope", calls=3)
    with pytest.raises(ValueError, match="distribution"):
        await run_workload(ns, method="increment", calls=3, distribution="pareto")
    with pytest.raises(ValueError, match="share"):
        await run_workload(ns, method="increment", calls=3, distribution="hot", skew=2)
    with pytest.raises(TypeError, match="must return a tuple"):
        await run_workload(ns, method="increment", calls=3, args=lambda i, rng: 1)
