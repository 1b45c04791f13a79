"""History recording and checking: linearizability and lost updates (durable_lab.check)."""

from __future__ import annotations

import asyncio
import json
import random
import time

import pytest

from durable_lab import DurableObject, Lab
from durable_lab.check import (
    CounterModel,
    History,
    RegisterModel,
    error_kind,
    linearizable,
    lost_updates,
    recorded,
)

# -- helpers -----------------------------------------------------------------------------------


def call(h: History, client, method, args=(), result=None, obj="x", error=None):
    """A call that answers before the next one starts."""
    op = h.invoke(client, obj, method, args)
    if error is not None:
        h.fail(op, error)
    else:
        h.complete(op, result)
    return op


def ids(ops):
    return [op.id for op in ops]


# -- History -----------------------------------------------------------------------------------


def test_history_records_logical_and_wall_times():
    h = History()
    a = h.invoke("alice", "x", "increment", (1,))
    b = h.invoke("bob", "x", "increment", (1,))
    h.complete(b, 1)
    h.fail(a, RuntimeError("boom"))
    c = h.invoke("carol", "x", "value")
    assert (a, b, c) == (1, 2, 3)
    first, second, third = h.operations
    assert (first.invoke_time, first.return_time) == (1, 4)
    assert (second.invoke_time, second.return_time) == (2, 3)
    assert third.pending and third.return_time is None and third.latency is None
    assert first.failed and first.error is not None
    assert (first.error.type, first.error.message, first.error.kind) == ("RuntimeError", "boom",
                                                                         "local")
    assert second.ok and second.result == 1
    assert first.invoke_wall <= second.return_wall <= time.time()
    assert first.overlaps(second) and third.overlaps(first) is False
    assert h.objects() == ["x"] and h.op(2) is second
    assert "#2 client bob: x.increment(1) → 1 [t=2..3]" in str(h)
    with pytest.raises(ValueError, match="already answered"):
        h.complete(b, 2)
    with pytest.raises(KeyError):
        h.op(9)


def test_json_round_trip_keeps_everything_and_the_clock():
    h = History()
    call(h, "alice", "put", ("hello",), None, obj="r")
    call(h, 7, "put", ({"a": [1, 2]},), None, obj="r")
    call(h, "bob", "get", (), {"a": [1, 2]}, obj="r")
    call(h, "bob", "put", (3,), obj="r", error=RuntimeError("lost"))
    pending = h.invoke("carol", "r", "get")
    text = h.to_json()
    json.loads(text)  # plain JSON
    back = History.from_json(text)
    assert [op.to_dict() for op in back] == [op.to_dict() for op in h]
    assert back.op(2).client == 7 and back.op(2).args == ({"a": [1, 2]},)
    assert back.op(4).error.message == "lost" and back.op(pending).pending
    # The clock goes on after the last event, so new calls come after the old ones.
    new = back.invoke("dave", "r", "get")
    assert back.op(new).invoke_time > max(op.return_time or 0 for op in h)
    assert linearizable(back, "register").ok == linearizable(h, "register").ok is True


def test_json_keeps_values_json_cannot_hold_as_text():
    h = History()
    call(h, "a", "put", (b"\x00\x01",), None, obj="r")
    call(h, "a", "put", ({1, 2},), None, obj="r")
    back = History.from_json(h.to_json())
    assert back.op(1).args == ({"$bytes": "0001"},)
    assert back.op(2).args == ([1, 2],)


# -- linearizability: counters -----------------------------------------------------------------


def lost_update_history() -> History:
    """#1 inc(3) → 3, #2 inc(1) → 4, then #3 and #5 overlap and both return 5 (#4 reads 4)."""
    h = History()
    call(h, "a", "increment", (3,), 3)
    call(h, "a", "increment", (1,), 4)
    three = h.invoke("a", "x", "increment", (1,))
    four = h.invoke("b", "x", "value")
    five = h.invoke("c", "x", "increment", (1,))
    h.complete(three, 5)
    h.complete(four, 4)
    h.complete(five, 5)
    return h


def test_lost_update_is_named_in_plain_words():
    found = lost_updates(lost_update_history())
    assert len(found) == 1
    finding = found[0]
    assert (finding.a.id, finding.b.id, finding.read, finding.wrote) == (3, 5, 4, 5)
    assert finding.overlapping
    assert str(finding) == (
        "'x': calls #3 and #5 both read 4 and both wrote 5: one increment was lost")
    assert "1 lost update(s) on 1 object(s)" in str(found)
    assert "read-modify-write race" in found.explain()


def test_lost_update_is_not_linearizable_and_the_culprit_is_the_second_answer():
    result = linearizable(lost_update_history(), "counter")
    assert not result.ok and result.status == "violation" and result.object == "x"
    assert result.culprit is not None and result.culprit.id == 5
    assert ids(result.counterexample) == [2, 3, 4, 5]  # context #2, overlapping #3 #4, culprit
    check = result.objects["x"]
    assert check.expected == [6]
    assert "call #5 increment(1) → 5 cannot be explained" in result.explanation
    assert "the counter was 5 when #5 could take effect, so it should have returned 6" in (
        result.explanation)
    assert "It overlapped with #3, #4" in result.explanation
    assert str(result).startswith("NOT linearizable. 'x' is not linearizable (counter model)")
    assert "#3 client a: x.increment(1) → 5" in result.explain()


def test_overlapping_calls_may_take_effect_in_either_order():
    h = History()
    a = h.invoke("a", "x", "increment", (1,))
    b = h.invoke("b", "x", "increment", (1,))
    r = h.invoke("c", "x", "value")
    h.complete(b, 1)  # started second, took effect first
    h.complete(r, 1)
    h.complete(a, 2)
    call(h, "c", "value", (), 2)
    result = linearizable(h)
    assert result.ok and result.status == "ok" and result.object == "x"
    assert ids(result.objects["x"].order) == [2, 3, 1, 4]
    assert not lost_updates(h)
    assert str(result).startswith("Linearizable: all 4 calls on 1 object(s)")


def test_stale_read_of_a_counter():
    h = History()
    call(h, "a", "increment", (1,), 1)
    call(h, "a", "increment", (1,), 2)
    call(h, "b", "value", (), 1)  # read after both increments finished: stale
    result = linearizable(h)
    assert not result.ok and result.culprit.id == 3
    assert "the counter was 2 when #3 could take effect, so it should have returned 2" in (
        result.explanation)
    assert "overlapped with no other call" in result.explanation
    assert ids(result.counterexample) == [2, 3]
    assert not lost_updates(h)  # a stale read is not a lost update


def test_failed_increment_may_or_may_not_have_happened():
    took_effect = History()
    call(took_effect, "a", "increment", (1,), 1)
    call(took_effect, "a", "increment", (1,), error=RuntimeError("reset"))
    call(took_effect, "b", "increment", (1,), 3)
    assert linearizable(took_effect).ok

    did_not = History()
    call(did_not, "a", "increment", (1,), 1)
    call(did_not, "a", "increment", (1,), error=RuntimeError("reset"))
    call(did_not, "b", "increment", (1,), 2)
    assert linearizable(did_not).ok

    never_answered = History()
    never_answered.invoke("a", "x", "increment", (5,))
    call(never_answered, "b", "value", (), 5)
    call(never_answered, "b", "value", (), 5)
    assert linearizable(never_answered).ok

    # ... but it cannot take effect before it started.
    too_early = History()
    call(too_early, "b", "value", (), 5)
    call(too_early, "a", "increment", (5,), error=RuntimeError("reset"))
    result = linearizable(too_early)
    assert not result.ok and result.culprit.id == 1
    assert "should have returned 0" in result.explanation


def test_custom_method_names_and_none_results():
    h = History()
    call(h, "a", "total", (), None)  # storage.get of a key never written
    call(h, "a", "add", (), None)  # an increment that returns nothing
    call(h, "a", "add", (2,), 3)
    call(h, "a", "total", (), 3)
    model = CounterModel(increment={"add"}, read="total")
    assert linearizable(h, model).ok
    with pytest.raises(ValueError, match="'total' is not a method of the counter model"):
        linearizable(h, "counter")


def test_two_objects_are_checked_separately():
    h = History()
    call(h, "a", "increment", (1,), 1, obj="good")
    call(h, "a", "increment", (1,), 1, obj="bad")
    call(h, "a", "increment", (1,), 1, obj="bad")
    call(h, "a", "increment", (1,), 2, obj="good")
    result = linearizable(h)
    assert not result.ok and result.object == "bad"
    assert result.objects["good"].ok and not result.objects["bad"].ok
    assert result.culprit.id == 3
    assert "Linearizable: 'good'" in result.explain()
    assert linearizable(h, object="good").ok
    findings = lost_updates(h)
    assert [(f.object, f.a.id, f.b.id) for f in findings] == [("bad", 2, 3)]
    assert not findings[0].overlapping
    assert "did not even overlap" in findings[0].explain()


def test_equal_results_with_different_steps_are_still_a_lost_update():
    h = History()
    a = h.invoke("a", "x", "increment", (2,))
    b = h.invoke("b", "x", "increment", (1,))
    h.complete(a, 5)
    h.complete(b, 5)
    (finding,) = lost_updates(h)
    assert finding.read is None
    assert "calls #1 increment(2) and #2 increment(1) both returned 5" in str(finding)


# -- linearizability: registers ----------------------------------------------------------------


def test_stale_read_of_a_register():
    h = History()
    call(h, "a", "put", (1,), None, obj="r")
    call(h, "a", "put", (2,), None, obj="r")
    call(h, "b", "get", (), 1, obj="r")
    result = linearizable(h, "register")
    assert not result.ok
    assert result.culprit.id == 3 and ids(result.counterexample) == [2, 3]
    assert "the register was 2 when #3 could take effect, so it should have returned 2" in (
        result.explanation)


def test_register_reads_during_a_write_see_old_or_new():
    h = History()
    call(h, "a", "write", ([1, 2],), "ok", obj="r")
    w = h.invoke("a", "r", "write", ({"v": 3},))
    call(h, "b", "read", (), {"v": 3}, obj="r")
    call(h, "c", "read", (), {"v": 3}, obj="r")
    h.complete(w, None)
    assert linearizable(h, "register").ok

    h2 = History()
    call(h2, "a", "put", (1,), None, obj="r")
    w = h2.invoke("a", "r", "put", (2,))
    call(h2, "b", "get", (), 2, obj="r")
    call(h2, "c", "get", (), 1, obj="r")  # new then old: not allowed
    h2.complete(w, None)
    result = linearizable(h2, "register")
    assert not result.ok and result.culprit.id == 4


def test_register_failed_write_is_optional():
    h = History()
    call(h, "a", "put", (1,), None, obj="r")
    call(h, "a", "put", (2,), obj="r", error=RuntimeError("reset"))
    call(h, "b", "get", (), 2, obj="r")
    assert linearizable(h, "register").ok
    call(h, "b", "get", (), 3, obj="r")
    assert not linearizable(h, RegisterModel()).ok


# -- search size -------------------------------------------------------------------------------


def random_counter_history(n, concurrency, seed, lose=None, fail_every=0):
    """Calls take effect at their answer; ``lose`` makes that call report a value one short."""
    rng = random.Random(seed)
    h = History()
    value = 0
    active = []
    made = 0
    while made < n or active:
        if made < n and (not active or (len(active) < concurrency and rng.random() < 0.6)):
            kind = "increment" if rng.random() < 0.7 else "value"
            active.append((h.invoke(f"c{len(active)}", "x", kind, (1,) if kind == "increment"
                                    else ()), kind))
            made += 1
        else:
            token, kind = active.pop(rng.randrange(len(active)))
            if kind == "increment":
                value += 1
                if fail_every and token % fail_every == 0:
                    h.fail(token, RuntimeError("reset"))
                    continue
                h.complete(token, value - 1 if token == lose else value)
            else:
                h.complete(token, value)
    return h


def test_hundreds_of_calls_check_quickly():
    started = time.perf_counter()
    good = random_counter_history(400, 8, seed=1, fail_every=13)
    assert linearizable(good).ok
    lose = next(op.id for op in good if op.id >= 200 and op.method == "increment")
    bad = random_counter_history(400, 8, seed=1, lose=lose)
    result = linearizable(bad)
    assert not result.ok and result.culprit.id == lose
    assert time.perf_counter() - started < 5


def test_a_search_over_budget_says_so():
    result = linearizable(random_counter_history(200, 8, seed=3, lose=101), max_nodes=10)
    assert result.status == "unknown" and not result.ok and result.culprit is None
    assert "too large to check" in str(result) and "max_nodes=10" in str(result)


# -- recorded stubs and real runs --------------------------------------------------------------


class LossyCounter(DurableObject):
    """get, then a timer (the input gate opens), then put: concurrent calls lose updates."""

    async def increment(self, by=1):
        n = (await self.ctx.storage.get("n")) or 0
        await asyncio.sleep(0.001)
        self.ctx.storage.put("n", n + by)
        return n + by

    async def value(self):
        return (await self.ctx.storage.get("n")) or 0

    async def explode(self):
        raise ValueError("no")


class SafeCounter(LossyCounter):
    """get then put in one turn: the input gate keeps other calls out."""

    async def increment(self, by=1):
        n = (await self.ctx.storage.get("n")) or 0
        self.ctx.storage.put("n", n + by)
        return n + by


async def test_recorded_stub_writes_calls_errors_and_answers(memory_lab):
    h = History()
    stub = recorded(memory_lab.bind("C", SafeCounter).getByName("room"), h, client="alice")
    assert await stub.increment(2) == 2
    with pytest.raises(ValueError, match="no"):
        await stub.explode()
    with pytest.raises(TypeError, match="does not implement"):
        stub.nope()
    first, second, third = h.operations
    assert (first.client, first.object, first.method, first.args, first.result) == (
        "alice", "room", "increment", (2,), 2)
    assert second.failed and second.error.kind == "remote" and second.error.type == "ValueError"
    assert third.failed and third.error.kind == "local"
    assert [op.invoke_time for op in h] == [1, 3, 5]


async def test_two_concurrent_lossy_increments_are_caught(memory_lab):
    h = History()
    ns = memory_lab.bind("C", LossyCounter)
    a = recorded(ns.getByName("room"), h, client="a")
    b = recorded(ns.getByName("room"), h, client="b")
    assert await asyncio.gather(a.increment(1), b.increment(1)) == [1, 1]
    findings = lost_updates(h)
    assert [(f.a.id, f.b.id) for f in findings] == [(1, 2)]
    assert str(findings[0]) == (
        "'room': calls #1 and #2 both read 0 and both wrote 1: one increment was lost")
    result = linearizable(h)
    assert not result.ok and result.object == "room"
    assert result.culprit.id in (1, 2) and ids(result.counterexample) == [1, 2]


async def drive(ns, clients: int, calls: int, history: History) -> list[int]:
    async def client(number: int) -> list[int]:
        stub = recorded(ns.getByName("room"), history, client=number)
        seen = []
        for k in range(calls):
            seen.append(await stub.increment(1))
            if k % 3 == number % 3:
                await stub.value()
        return seen

    per_client = await asyncio.gather(*(client(c) for c in range(clients)))
    return [v for seen in per_client for v in seen]


async def test_real_run_of_a_lossy_counter_fails_both_checks():
    async with Lab(storage="memory") as lab:
        h = History()
        results = await drive(lab.bind("C", LossyCounter), clients=6, calls=5, history=h)
        assert len(set(results)) < len(results)  # the ground truth: equal answers
        findings = lost_updates(h)
        assert findings
        for finding in findings:
            assert finding.a.method == finding.b.method == "increment"
            assert finding.a.result == finding.b.result == finding.wrote == finding.read + 1
            assert finding.a.id != finding.b.id
        verdict = linearizable(h)
        assert not verdict.ok and verdict.status == "violation" and verdict.object == "room"
        assert verdict.culprit.method == "increment"
        assert verdict.culprit in verdict.counterexample
        duplicated = {f.wrote for f in findings}
        assert verdict.culprit.result in duplicated


async def test_real_run_of_a_gated_counter_passes_both_checks():
    async with Lab(storage="memory") as lab:
        h = History()
        results = await drive(lab.bind("C", SafeCounter), clients=6, calls=5, history=h)
        assert sorted(results) == list(range(1, 31))
        assert lost_updates(h) == []
        verdict = linearizable(h)
        assert verdict.ok, verdict.explain()
        assert len(verdict.objects["room"].order) == len(h)


def test_error_kinds_follow_cloudflare_flags():
    from durable_lab import DurableObjectResetError, OverloadedError

    assert error_kind(OverloadedError()) == "overloaded"
    assert error_kind(DurableObjectResetError("gone", reason="evicted")) == "reset"
    remote = ValueError("x")
    remote.remote = True
    assert error_kind(remote) == "remote"
    assert error_kind(TimeoutError()) == "timeout"
    assert error_kind(KeyError("k")) == "local"
