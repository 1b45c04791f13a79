"""durable_lab.explore: eviction as a fault choice (``faults="evict"`` or ``faults=True``).

An idle object may be evicted at any step (its in-memory state dropped, storage kept, the next
call constructing it again), as Cloudflare evicts idle objects. A class that keeps its count in
a field and only writes it through is broken by that, and the shortest schedule says so.
"""

from __future__ import annotations

import pytest
from explore_objects import FieldCounter

import durable_lab
from durable_lab import DurableObject, Lab
from durable_lab.explore import FAULTS, explore


class LoadingCounter(DurableObject):
    """FieldCounter (explore_objects), fixed: the constructor loads the count before any
    call is admitted."""

    def __init__(self, ctx, env):
        super().__init__(ctx, env)
        self.n = 0
        ctx.blockConcurrencyWhile(self.load)

    async def load(self):
        self.n = (await self.ctx.storage.get("n")) or 0

    async def increment(self):
        self.n += 1
        self.ctx.storage.put("n", self.n)
        return self.n


class Visitor(DurableObject):
    """Increments a counter, waits a second (the counter is idle then), increments again."""

    async def twice(self, counter):
        stub = self.env.COUNTER.getByName(counter)
        first = await stub.increment()
        await durable_lab.sleep(1)
        second = await stub.increment()
        return [first, second]


def visit(env):
    return [env.VISITOR.getByName("v").twice("c")]


def counted_twice(lab, outcomes):
    return outcomes == [[1, 2]] or f"the visitor's increments returned {outcomes[0]}"


async def test_an_eviction_breaks_a_count_kept_in_a_field():
    plain = await explore({"COUNTER": FieldCounter, "VISITOR": Visitor}, visit,
                          invariant=counted_twice, progress=False)
    assert plain.ok and plain.complete  # without the fault, every schedule holds

    result = await explore({"COUNTER": FieldCounter, "VISITOR": Visitor}, visit,
                           invariant=counted_twice, faults="evict", progress=False)
    assert result.complete and not result.ok
    cx = result.counterexample
    assert cx.outcomes == [[1, 1]]  # after the eviction, the next increment returns 1
    evictions = [step for step in cx.steps if step.startswith("evict ")]
    assert evictions == [
        "evict COUNTER:c (it is idle: its in-memory state is dropped, storage is kept; the "
        "next call constructs it again)"]
    explained = cx.explain()
    assert "evict COUNTER:c" in explained
    assert "COUNTER:c: object EVICTED (requested)" in explained
    assert "FieldCounter constructed (incarnation 2)" in explained
    assert "the visitor's increments returned [1, 1]" in explained

    # The shortest: breadth-first finds no shorter one, and brute force agrees.
    first = await explore({"COUNTER": FieldCounter, "VISITOR": Visitor}, visit,
                          invariant=counted_twice, faults="evict", strategy="bfs",
                          progress=False)
    full = await explore({"COUNTER": FieldCounter, "VISITOR": Visitor}, visit,
                         invariant=counted_twice, faults="evict", strategy="dfs",
                         progress=False)
    assert len(first.counterexample.steps) == len(cx.steps) == len(full.counterexample.steps)
    assert full.outcomes == result.outcomes == {((1, 2),), ((1, 1),)}

    # It replays: a fresh lab driven through those steps gives the same answer.
    lab = await cx.replay()
    try:
        assert [op.result for op in lab.history().operations] == [[1, 1]]
        assert await lab.peek(lab.env.COUNTER.getByName("c")) == {"n": 1}  # storage kept
    finally:
        await lab.close()


async def test_the_fixed_class_survives_every_eviction():
    result = await explore({"COUNTER": LoadingCounter, "VISITOR": Visitor}, visit,
                           invariant=counted_twice, faults="evict", progress=False)
    assert result.ok and result.complete
    assert any(any(step[0] == "evict" for step in keys) for keys in result.schedule_keys)


async def test_a_busy_object_is_never_evicted():
    """Two calls made at once: the counter always has one queued or running until the end,
    so no eviction is offered and the search is the same as without the fault."""
    work = lambda env: [env.COUNTER.getByName("c").increment() for _ in range(2)]  # noqa: E731
    plain = await explore({"COUNTER": FieldCounter}, work, strategy="dfs", progress=False)
    evicting = await explore({"COUNTER": FieldCounter}, work, strategy="dfs", faults="evict",
                             progress=False)
    assert evicting.ok and evicting.complete
    assert evicting.schedule_keys == plain.schedule_keys


async def test_faults_takes_true_false_or_names():
    assert FAULTS == ("commit", "crash", "evict")
    work = lambda env: [env.COUNTER.getByName("c").increment()]  # noqa: E731
    for bad in ("explode", {"evict", "flood"}, 3, ()):
        with pytest.raises(ValueError, match=r"faults must be True, False, or names among "
                                             r"'commit', 'crash', 'evict' .*, got "):
            await explore({"COUNTER": FieldCounter}, work, faults=bad, progress=False)
    every = await explore({"COUNTER": FieldCounter, "VISITOR": Visitor}, visit,
                          invariant=counted_twice, faults=True, progress=False)
    kinds = {step[0] for keys in every.schedule_keys for step in keys}
    assert {"fault", "crash", "evict"} <= kinds


async def test_evict_now_evicts_only_an_idle_object():
    lab = Lab(storage="memory")
    try:
        lab.bind("COUNTER", FieldCounter)
        stub = lab.env.COUNTER.getByName("c")
        assert await stub.increment() == 1
        await lab.scheduler.settle()
        assert lab.faults.idle() == ["COUNTER:c"]
        lab.pause()
        call = stub.increment()  # queued at the paused gate: the object is not idle
        await lab.scheduler.settle()
        assert lab.faults.idle() == []
        with pytest.raises(ValueError, match=r"COUNTER:c has work in flight .* only an idle "
                                             r"object is evicted"):
            lab.faults.evict_now(stub)
        lab.resume()
        assert await call == 2
        await lab.scheduler.settle()
        assert lab.faults.evict_now(stub) is True
        assert lab.faults.evict_now(stub) is False  # not in memory any more
        assert await stub.increment() == 1  # the field is gone; storage held 2
        assert await lab.peek(stub) == {"n": 1}
    finally:
        await lab.close()
