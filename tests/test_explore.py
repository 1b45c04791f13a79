"""durable_lab.explore: every schedule, checked against brute force.

The brute force here is written independently of explore.py: it enumerates every sequence of
``lab.choices()`` (plus "advance the clock to the next timer" while one is pending) in a fresh
lab per sequence, and collects what the calls returned. Exploration with the reduction must
reach exactly the same set of outcomes, and the same per-object histories.
"""

from __future__ import annotations

import asyncio

import pytest
from explore_objects import Counter, SlowCounter

import durable_lab
from durable_lab import DurableObject, Lab
from durable_lab.explore import Failed, Unfinished, explore

# -- the classes ---------------------------------------------------------------------------


class FixedCounter(DurableObject):
    async def increment(self):
        async def critical():
            n = (await self.ctx.storage.get("n")) or 0
            await durable_lab.sleep(1)
            self.ctx.storage.put("n", n + 1)
            return n + 1

        return await self.ctx.blockConcurrencyWhile(critical)


class Account(DurableObject):
    """A transfer reads its balance, pays into another account (another object), then writes."""

    async def transfer(self, to, amount):
        balance = await self.ctx.storage.get("balance")
        balance = 10 if balance is None else balance
        if balance < amount:
            return "refused"
        await self.env.ACCOUNT.getByName(to).deposit(amount)
        self.ctx.storage.put("balance", balance - amount)
        return balance - amount

    async def deposit(self, amount):
        balance = await self.ctx.storage.get("balance")
        balance = 10 if balance is None else balance
        self.ctx.storage.put("balance", balance + amount)
        return balance + amount


class Forever(DurableObject):
    async def wait(self):
        await asyncio.get_running_loop().create_future()  # nothing ever resolves it


# -- brute force -----------------------------------------------------------------------------


def _outcome(call):
    if not call.done() or call.cancelled():
        return Unfinished()
    if call.exception() is not None:
        return Failed(type(call.exception()).__name__, str(call.exception()))
    return call.result()


async def _run(bindings, workload, model, prefix):
    """Run one schedule: the option indexes of ``prefix``, then always option 0 to the end.
    Returns (outcome, history per object, the indexes taken, how many options each step had)."""
    lab = Lab(storage="memory", clock=durable_lab.ManualClock(start=1_700_000_000.0),
              model=model, record=True)
    lab.scheduler.note_paused_calls = False
    lab.pause()
    for name, cls in bindings.items():
        lab.bind(name, cls)
    calls = [asyncio.ensure_future(c) for c in workload(lab.env)]
    await lab.scheduler.settle()

    def options():
        found = list(lab.choices())
        due = lab.clock.next_timer()
        # The runtime's 30-second watchdogs are not the workload's timers: only a timer due
        # within 10 s of now is offered (the classes here sleep 1 s).
        if due is not None and due - lab.clock.now() < 10:
            found.append(due)
        return found

    taken, widths = [], []
    try:
        while True:
            now = options()
            if not now:
                break
            index = prefix[len(taken)] if len(taken) < len(prefix) else 0
            taken.append(index)
            widths.append(len(now))
            option = now[index]
            if isinstance(option, float):
                lab.clock.advance_to(option)
                await lab.scheduler.settle()
            else:
                await lab.choose(option)
        outcome = tuple(_outcome(c) for c in calls)
        per_object = {}
        for op in lab.history().operations:
            per_object.setdefault(op.object, []).append(
                (op.method, op.args, repr(op.outcome_text())))
        history = tuple(sorted((k, tuple(v)) for k, v in per_object.items()))
        return outcome, history, taken, widths
    finally:
        for c in calls:
            if not c.done():
                c.cancel()
        await lab.close()


async def brute_force(bindings, workload, model="gates"):
    """Every interleaving, one run each: (outcomes, per-object histories, schedules)."""
    outcomes, histories, schedules = set(), set(), 0
    stack = [[]]
    while stack:
        prefix = stack.pop()
        outcome, history, taken, widths = await _run(bindings, workload, model, prefix)
        schedules += 1
        outcomes.add(outcome)
        histories.add(history)
        for depth in range(len(prefix), len(taken)):
            for i in range(1, widths[depth]):
                stack.append([*taken[:depth], i])
    return outcomes, histories, schedules


# -- completeness ----------------------------------------------------------------------------

WORKLOADS = {
    "two increments": ({"C": Counter},
                       lambda env: [env.C.getByName("a").increment() for _ in range(2)]),
    "read-timer-write x2": ({"C": SlowCounter},
                            lambda env: [env.C.getByName("a").increment() for _ in range(2)]),
    "two objects, one call each": (
        {"C": Counter}, lambda env: [env.C.getByName(n).increment() for n in ("a", "b")]),
    "a transfer and a deposit": (
        {"ACCOUNT": Account},
        lambda env: [env.ACCOUNT.getByName("a").transfer("b", 7),
                     env.ACCOUNT.getByName("b").deposit(1)]),
}


@pytest.mark.parametrize("name", list(WORKLOADS))
async def test_dpor_reaches_every_outcome_brute_force_reaches(name):
    bindings, workload = WORKLOADS[name]
    outcomes, _, total = await brute_force(bindings, workload)
    result = await explore(bindings, workload, invariant=lambda lab, out: True, progress=False)
    assert result.complete and result.ok
    assert result.outcomes == {tuple(o) for o in outcomes}
    assert 1 <= result.schedules <= total
    full = await explore(bindings, workload, invariant=lambda lab, out: True, strategy="dfs",
                         progress=False)
    assert full.outcomes == result.outcomes
    assert full.schedules == total  # dfs is brute force: every interleaving, once


async def test_the_reduction_saves_runs_across_objects_and_keeps_every_history():
    bindings, workload = WORKLOADS["two objects, one call each"]
    _outcomes, histories, total = await brute_force(bindings, workload)
    seen = set()

    def note(lab, out):
        per_object = {}
        for op in lab.history().operations:
            per_object.setdefault(op.object, []).append(
                (op.method, op.args, repr(op.outcome_text())))
        seen.add(tuple(sorted((k, tuple(v)) for k, v in per_object.items())))
        return True

    result = await explore(bindings, workload, invariant=note, progress=False)
    assert seen == histories
    # a's and b's transitions commute: one schedule stands for all their interleavings.
    assert result.schedules == 1 and total > 100, (result.schedules, total)
    assert result.runs < total / 10


async def test_a_lost_update_is_found_with_its_shortest_schedule():
    bindings, workload = WORKLOADS["read-timer-write x2"]
    result = await explore(bindings, workload, progress=False)
    assert not result.ok and result.complete
    example = result.counterexample
    assert example is not None and sorted(example.outcomes) == [1, 1]
    bfs = await explore(bindings, workload, strategy="bfs", progress=False)
    assert bfs.counterexample is not None and not bfs.complete
    assert len(bfs.counterexample.steps) == len(example.steps)
    # No failing schedule is shorter: brute force (dfs) agrees on the length.
    full = await explore(bindings, workload, strategy="dfs", progress=False)
    assert len(full.counterexample.steps) == len(example.steps)
    assert 0 < result.failures < result.schedules
    text = example.explain()
    assert f"This schedule of {len(example.steps)} steps breaks the invariant" in text
    assert "awaits io: gate OPENS" in text  # what the step did, from the event stream
    assert "Why it fails:" in text and "increment() -> 1, increment() -> 1" in text
    assert ("In short: delivery 2 was admitted at C:a while delivery 1 waited for its I/O "
            "with the gate open.") in text


async def test_the_counterexample_replays_to_the_same_outcomes():
    bindings, workload = WORKLOADS["read-timer-write x2"]
    result = await explore(bindings, workload, progress=False)
    lab = await result.counterexample.replay()
    try:
        ops = lab.history().operations
        assert [op.result for op in ops] == [1, 1]
        assert lab.scheduler.steps_taken == len(
            [s for s in result.counterexample.steps if not s.startswith("let lab time")])
    finally:
        await lab.close()


async def test_the_fixed_class_holds_on_every_schedule():
    result = await explore({"C": FixedCounter},
                           lambda env: [env.C.getByName("a").increment() for _ in range(2)],
                           progress=False)
    assert result.ok and result.complete and result.counterexample is None
    assert "all" in str(result) and "schedules hold" in str(result)


async def test_without_gates_the_same_workload_has_no_choice_left():
    slow = {"C": SlowCounter}
    work = WORKLOADS["read-timer-write x2"][1]
    gates = await explore(slow, work, progress=False)
    naive = await explore(slow, work, model="none", progress=False)
    assert not naive.ok and naive.outcomes == {(1, 1)}
    assert (1, 2) in gates.outcomes and (1, 1) in gates.outcomes


# -- limits and bad input ------------------------------------------------------------------


async def test_max_schedules_stops_and_says_so():
    result = await explore({"C": Counter},
                           lambda env: [env.C.getByName("a").increment() for _ in range(3)],
                           max_schedules=10, progress=False)
    assert result.schedules == 10 and not result.complete
    assert "max_schedules=10" in result.stopped and "NOT complete" in str(result)


async def test_random_and_pct_are_never_complete_and_find_the_bug():
    bindings, workload = WORKLOADS["read-timer-write x2"]
    for strategy in ("random", "pct"):
        result = await explore(bindings, workload, strategy=strategy, max_schedules=200,
                               seed=3, progress=False)
        assert not result.complete
        assert not result.ok, strategy
        assert sorted(result.counterexample.outcomes) == [1, 1]


async def test_a_preemption_bound_cuts_schedules_and_says_so():
    bindings, workload = WORKLOADS["two increments"]
    full = await explore(bindings, workload, progress=False, strategy="dfs")
    bounded = await explore(bindings, workload, progress=False, bound=0)
    assert bounded.schedules < full.schedules and not bounded.complete
    assert "bound=0" in bounded.stopped


async def test_an_invariant_that_raises_is_reported_with_what_was_found():
    def broken(lab, outcomes):
        return 1 / 0

    result = await explore(*WORKLOADS["two increments"], invariant=broken, progress=False)
    assert not result.ok and not result.complete
    assert "the invariant raised ZeroDivisionError" in result.error
    assert result.schedules == 1 and result.counterexample is not None


async def test_an_assert_in_the_invariant_is_a_broken_invariant():
    def no_two(lab, outcomes):
        assert 2 not in outcomes, "someone saw 2"
        return True

    result = await explore(*WORKLOADS["two increments"], invariant=no_two, progress=False)
    assert not result.ok and result.error is None and result.complete
    assert "someone saw 2" in result.counterexample.reason


async def test_calls_that_never_finish_fail_the_schedule_and_the_labs_are_closed():
    result = await explore({"F": Forever}, lambda env: [env.F.getByName("x").wait()],
                           progress=False)
    assert not result.ok
    assert "calls never finished" in result.counterexample.reason
    assert result.counterexample.outcomes == [Unfinished()]
    # Every run's lab was closed: no object task of theirs is left on the loop.
    left = [t for t in asyncio.all_tasks() if "Forever" in repr(t)]
    assert not left, left


async def test_bad_arguments_are_refused_clearly():
    work = WORKLOADS["two increments"][1]
    with pytest.raises(ValueError, match="strategy must be one of"):
        await explore({"C": Counter}, work, strategy="smart")
    with pytest.raises(TypeError, match="bindings must be a non-empty dict"):
        await explore([Counter], work)
    with pytest.raises(ValueError, match="max_schedules must be an int >= 1"):
        await explore({"C": Counter}, work, max_schedules=0)
    with pytest.raises(TypeError, match="not an awaitable"):
        await explore({"C": Counter}, lambda env: [1], progress=False)
    with pytest.raises(TypeError, match="calls 0 and 1 are the same call"):
        await explore({"C": Counter}, lambda env: [env.C.getByName("a").increment()] * 2,
                      progress=False)


async def test_progress_is_handed_to_the_callback():
    seen = []
    result = await explore(*WORKLOADS["two increments"], strategy="dfs", progress=seen.append)
    assert seen[-1].finished and seen[-1].schedules == result.schedules == 22
    assert seen[-1].line().startswith("explore: 22 schedules")


class Unconfirmed(DurableObject):
    """Answers before its write is durable (allowUnconfirmed): a failed commit loses it."""

    async def increment(self):
        n = (await self.ctx.storage.get("n")) or 0
        self.ctx.storage.put("n", n + 1, allowUnconfirmed=True)
        return n + 1

    async def value(self):
        return (await self.ctx.storage.get("n")) or 0


async def acknowledged_writes_kept(lab, outcomes):
    """An async invariant: the stored value covers every increment that answered."""
    answered = [o for o in outcomes if isinstance(o, int)]
    stored = await lab.env.C.getByName("a").value()
    if answered and stored < max(answered):
        return f"increment() answered {max(answered)} but the stored value is {stored}"
    return True


async def test_a_failing_commit_is_a_choice_with_faults_on():
    work = lambda env: [env.C.getByName("a").increment()]  # noqa: E731
    plain = await explore({"C": Unconfirmed}, work, invariant=acknowledged_writes_kept,
                          progress=False)
    assert plain.ok and plain.complete
    faulty = await explore({"C": Unconfirmed}, work, invariant=acknowledged_writes_kept,
                           faults=True, progress=False)
    assert not faulty.ok and faulty.complete
    example = faulty.counterexample
    assert any(step.startswith("fail the commit") for step in example.steps)
    assert example.outcomes == [1] and "stored value is 0" in example.reason


class Flaky(DurableObject):
    """Not deterministic: every other run of the class sleeps (a class attribute counts)."""

    runs = 0

    async def go(self):
        Flaky.runs += 1
        if Flaky.runs % 2:
            await durable_lab.sleep(1)
        return "done"


async def test_a_workload_that_is_not_deterministic_is_named_as_such():
    result = await explore({"F": Flaky}, lambda env: [env.F.getByName("x").go() for _ in range(3)],
                           invariant=lambda lab, out: True, progress=False)
    assert not result.ok and not result.complete
    assert "the same steps gave a different run" in result.error
    assert "must do the same thing every time" in result.error


async def test_a_workload_naming_a_missing_binding_is_refused_with_the_bindings():
    with pytest.raises(AttributeError, match="env has no binding 'NOPE'"):
        await explore({"C": Counter}, lambda env: [env.NOPE.getByName("a").increment()],
                      progress=False)


async def test_lab_record_calls_keeps_the_history_and_no_trace():
    lab = Lab(storage="memory", record="calls")
    try:
        stub = lab.bind("C", Counter).getByName("a")
        assert await stub.increment() == 1
        assert [op.result for op in lab.history().operations] == [1]
        with pytest.raises(RuntimeError, match="does not record its events"):
            lab.trace()
    finally:
        await lab.close()
    with pytest.raises(ValueError,
                       match=r"record must be False, True .* or 'calls' .*, got 'everything'"):
        Lab(storage="memory", record="everything")


async def test_a_crash_is_a_choice_with_faults_on_and_a_failed_call_may_not_count():
    work = lambda env: [env.C.getByName("a").increment()]  # noqa: E731
    plain = await explore({"C": Counter}, work, progress=False)
    faulty = await explore({"C": Counter}, work, faults=True, progress=False)
    assert plain.outcomes == {(1,)}
    crashed = [o for o in faulty.outcomes if isinstance(o[0], Failed)]
    assert crashed and all(o[0].error == "DurableObjectResetError" for o in crashed), \
        faulty.outcomes
    # A call that failed may or may not have taken effect: still linearizable.
    assert faulty.ok and faulty.complete and faulty.schedules > plain.schedules
