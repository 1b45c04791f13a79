"""durable_lab.explore: transitions of the same object that commute are run in one order only.

Each workload here has steps of ONE object that can happen in either order with the same
result (a reply released to a client against a flush, a commit, or object code that answered
nobody; a flush against object code that wrote nothing). The reduced search ("dpor") must
reach exactly what brute force ("dfs", every interleaving; tests/test_explore.py checks it
against an enumeration written independently) reaches: the same set of outcomes AND of
histories, where a history is each object's calls in the order their starts and answers
happened (so two answers swapped would show), and it must get there with fewer runs.
"""

from __future__ import annotations

import asyncio

import pytest
from explore_objects import Counter, FieldCounter, SlowCounter

import durable_lab
from durable_lab import DurableObject
from durable_lab.explore import _Effect, _independent, explore

# -- the classes -----------------------------------------------------------------------------


class Keys(DurableObject):
    """put(key) and get(key) on their own keys, confirmed or not, or waiting for the commit."""

    async def put(self, key, value):
        await self.ctx.storage.put(key, value)
        return value

    async def put_unconfirmed(self, key, value):
        self.ctx.storage.put(key, value, allowUnconfirmed=True)
        return value

    async def put_synced(self, key, value):
        self.ctx.storage.put(key, value)
        await self.ctx.storage.sync()
        return value

    async def get(self, key):
        return await self.ctx.storage.get(key)


class TwoTasks(DurableObject):
    """One call starts two tasks that each write (and read back) a key of their own."""

    async def both(self, a, b):
        async def write(key):
            await self.ctx.storage.put(key, 1)
            return await self.ctx.storage.get(key)

        got = await asyncio.gather(asyncio.ensure_future(write(a)),
                                   asyncio.ensure_future(write(b)))
        return sum(got)


class Relay(DurableObject):
    """A call that waits for another object's answer: that reply reaches outside."""

    async def go(self, other):
        return await self.env.R.getByName(other).touch()

    async def touch(self):
        n = (await self.ctx.storage.get("t")) or 0
        self.ctx.storage.put("t", n + 1)
        return n + 1


# -- what a run leaves -------------------------------------------------------------------------


def history_of(lab):
    """Each object's calls with where their start and answer fell among that object's events
    (ranks, not lab-wide ticks: steps of different objects commute by design)."""
    per_object = {}
    for op in lab.history().operations:
        per_object.setdefault(op.object, []).append(op)
    shape = []
    for label, ops in sorted(per_object.items()):
        times = sorted(t for op in ops for t in (op.invoke_time, op.return_time) if t is not None)
        rank = {t: i for i, t in enumerate(times)}
        shape.append((label, tuple(
            (op.method, op.args, rank[op.invoke_time],
             None if op.return_time is None else rank[op.return_time], op.status,
             repr(op.result), None if op.error is None else op.error.type) for op in ops)))
    return tuple(shape)


async def reached(bindings, workload, strategy, **options):
    """(result, the set of (outcomes, history) every finished schedule gave)."""
    seen = set()

    def note(lab, outcomes):
        seen.add((repr(outcomes), history_of(lab)))
        return True

    result = await explore(bindings, workload, invariant=note, strategy=strategy,
                           progress=False, **options)
    assert result.complete and result.ok, result
    return result, seen


WORKLOADS = {
    "three increments": (
        {"C": Counter}, lambda env: [env.C.getByName("a").increment() for _ in range(3)], {}),
    "put(a) and put(b) in two deliveries": (
        {"K": Keys}, lambda env: [env.K.getByName("x").put("a", 1),
                                  env.K.getByName("x").put("b", 2)], {}),
    "put(a), get(a), put(b)": (
        {"K": Keys}, lambda env: [env.K.getByName("x").put("a", 1),
                                  env.K.getByName("x").get("a"),
                                  env.K.getByName("x").put("b", 2)], {}),
    "an unconfirmed put, a get, a put": (
        {"K": Keys}, lambda env: [env.K.getByName("x").put_unconfirmed("a", 1),
                                  env.K.getByName("x").get("a"),
                                  env.K.getByName("x").put("b", 2)], {}),
    "a put that waits for sync(), a put, a get": (
        {"K": Keys}, lambda env: [env.K.getByName("x").put_synced("a", 1),
                                  env.K.getByName("x").put("b", 2),
                                  env.K.getByName("x").get("a")], {}),
    "two tasks on their own keys, twice": (
        {"T": TwoTasks}, lambda env: [env.T.getByName("x").both("a", "b"),
                                      env.T.getByName("x").both("c", "a")], {}),
    "a field shared by the code": (
        {"F": FieldCounter}, lambda env: [env.F.getByName("x").increment(),
                                   env.F.getByName("x").increment(),
                                   env.F.getByName("x").peek()], {}),
    "a call that waits for another object": (
        {"R": Relay}, lambda env: [env.R.getByName("a").go("b"),
                                   env.R.getByName("b").touch()], {}),
    "two increments, faults on": (
        {"C": Counter}, lambda env: [env.C.getByName("a").increment() for _ in range(2)],
        {"faults": True}),
}


@pytest.mark.parametrize("name", list(WORKLOADS))
async def test_same_object_reduction_reaches_what_brute_force_reaches(name):
    bindings, workload, options = WORKLOADS[name]
    full, every = await reached(bindings, workload, "dfs", **options)
    reduced, kept = await reached(bindings, workload, "dpor", **options)
    assert kept == every  # the same outcomes, with the same histories
    assert reduced.outcomes == full.outcomes
    # Fewer runs: one object's reply released against its flush or commit, or its flush
    # against code that wrote nothing, is run in one order only.
    assert reduced.runs < full.runs, (reduced.runs, full.runs)
    # bfs uses the same relation: it must see the same too.
    _, seen_bfs = await reached(bindings, workload, "bfs", **options)
    assert seen_bfs == every


async def test_three_increments_on_one_object_need_a_third_of_the_runs():
    """The issue's 3-call counter: every one of its 1,470 interleavings is covered by 360
    schedules (453 runs, the others cut early), where all of them were needed before."""
    bindings, workload, _ = WORKLOADS["three increments"]
    full = await explore(bindings, workload, strategy="dfs", progress=False)
    reduced = await explore(bindings, workload, progress=False)
    assert full.schedules == 1_470 and full.complete and reduced.complete
    assert reduced.ok and full.ok and reduced.outcomes == full.outcomes
    assert reduced.runs * 3 < full.runs, (reduced.runs, full.runs)


async def test_without_gates_answers_stay_ordered_and_nothing_is_cut():
    """Under model="none" the only choices of one object are its answers (and the clock):
    two answers never commute (their order is the history), so nothing is saved, and every
    order of the answers is still there."""
    bindings, workload, _ = WORKLOADS["put(a) and put(b) in two deliveries"]
    full, every = await reached(bindings, workload, "dfs", model="none")
    reduced, kept = await reached(bindings, workload, "dpor", model="none")
    assert kept == every and len(every) == 2  # a answered first, or b
    assert reduced.runs == full.runs == 2


def test_the_relation_on_one_object():
    """What commutes on one object, and what does not (the footprints of _independent)."""
    reply = _Effect("K:x", False, answered=True)
    other_reply = _Effect("K:x", False, answered=True)
    flush = _Effect("K:x", False, pipeline="flush")
    commit = _Effect("K:x", False, pipeline="commit")
    reading_code = _Effect("K:x", False, code=True, wrote=False)
    writing_code = _Effect("K:x", False, code=True, wrote=True)
    answering_code = _Effect("K:x", False, code=True, answered=True, wrote=False)
    wide = _Effect("K:x", True)
    elsewhere = _Effect("K:y", False, code=True)
    assert _independent(reply, flush) and _independent(commit, reply)
    assert _independent(reply, reading_code) and _independent(writing_code, reply)
    assert _independent(reading_code, flush) and _independent(flush, reading_code)
    assert not _independent(reply, other_reply)  # the order of answers is the history
    assert not _independent(reply, answering_code)
    assert not _independent(reading_code, writing_code)  # the instance's memory, the gate
    assert not _independent(writing_code, flush) and not _independent(flush, writing_code)
    assert not _independent(commit, reading_code)  # the output gate, a sync() that waits
    assert not _independent(flush, commit)
    assert not _independent(wide, reply) and not _independent(reply, wide)
    assert _independent(elsewhere, writing_code)  # different objects, nothing outside


async def test_the_shortest_counterexample_is_as_short_as_brute_force_finds():
    """The lost update of the read-timer-write counter: dpor's shortest failing schedule has
    the length of dfs's (equivalent schedules have the same length), and bfs agrees."""

    work = lambda env: [env.C.getByName("a").increment() for _ in range(2)]  # noqa: E731
    full = await explore({"C": SlowCounter}, work, strategy="dfs", progress=False)
    reduced = await explore({"C": SlowCounter}, work, progress=False)
    first = await explore({"C": SlowCounter}, work, strategy="bfs", progress=False)
    assert not full.ok and not reduced.ok and not first.ok
    assert reduced.runs < full.runs
    lengths = {len(r.counterexample.steps) for r in (full, reduced, first)}
    assert lengths == {10}, lengths


async def test_kv_writes_counts_the_writes_that_change_the_cache():
    """What tells a step of code that wrote from one that did not: every put or delete that
    changes the cache, every alarm change and deleteAll counts; reads and a put of the same
    value again do not."""
    from durable_lab import Lab

    class Writes(DurableObject):
        async def run(self, step):
            storage = self.ctx.storage
            if step in ("put", "same again"):
                storage.put("a", 1)
            elif step == "put two":
                await storage.put({"b": 2, "c": 3})
            elif step == "read":
                await storage.get("a")
                await storage.list()
            elif step == "delete":
                await storage.delete("b")
            elif step == "alarm":
                await storage.setAlarm(durable_lab.now() * 1000 + 60_000)
            elif step == "delete all":
                await storage.deleteAll()
            return step

        async def alarm(self, *args):
            pass

    lab = Lab(storage="memory")
    try:
        lab.bind("W", Writes)
        stub = lab.env.W.getByName("x")
        seen = []
        for step in ("put", "same again", "put two", "read", "delete", "alarm", "delete all"):
            before = lab.statistics().kv_writes
            await stub.run(step)
            seen.append(lab.statistics().kv_writes - before)
        assert seen[:6] == [1, 0, 2, 0, 1, 1]
        assert seen[6] == 2  # deleteAll, and the alarm it deletes with it
    finally:
        await lab.close()
