"""Reducers: events in, rows and state out. No widgets here."""

from __future__ import annotations

import asyncio
import contextlib

import pytest
from lab_fixtures import Counter, two_increments

from durable_lab import Lab
from durable_lab import events as ev
from widgets._reducers import (
    FleetReducer,
    MetricsReducer,
    ObjectsReducer,
    ObjectState,
    StorageReducer,
    TimelineReducer,
    describe_event,
    fold,
)

OBJ = "COUNTER:room-1"


def _states_along(events):
    """The object view's state after each event (a copy of the fields a person sees)."""
    state = ObjectState(OBJ)
    seen = []
    for e in events:
        state.apply(e)
        seen.append((e.seq, e.kind, list(state.mailbox), state.gate_holder, state.running,
                     dict(state.awaiting), sorted(state.dirty), dict(state.batches),
                     sorted(state.held)))
    return seen


async def test_object_state_follows_the_worked_example_step_by_step():
    events = await two_increments()
    assert [e.kind for e in events][:3] == ["InputGateLocked", "DeliveryQueued", "DeliveryQueued"]
    seen = {seq: rest for seq, *rest in _states_along(events)}
    # 3: both calls queued behind the constructor, which holds the gate
    assert seen[3][1:3] == [[1, 2], "constructor"]
    # 9: delivery 1 awaits a storage read with the gate held
    assert seen[9][1:5] == [[2], "delivery 1", None, {1: "storage"}]
    # 10: the put runs on after the read: running again, key n dirty
    assert seen[10][3:6] == [1, {}, ["n"]]
    # 14: reply 1 held behind the output gate; 15: the batch flies with n, dirty emptied
    assert seen[14][7] == [1]
    assert seen[15][5:7] == [[], {1: ("n",)}]
    # 21: both replies held, batch 1 in flight, n dirty again for batch 2
    assert seen[21][5:8] == [["n"], {1: ("n",)}, [1, 2]]
    # the end: everything landed and released, gate open, mailbox empty
    last = seen[26]
    assert last[1:] == [[], "", None, {}, [], {}, []]


async def test_objects_reducer_keeps_one_state_per_object_and_counts():
    events = await two_increments()
    r = fold(ObjectsReducer(), events)
    s = r.get(OBJ)
    assert (s.status, s.incarnation, s.finished, s.commits, s.last_batch) == (
        "live", 1, 2, 2, (2, 1, True))
    assert [d for d, _ok in s.released] == [1, 2]
    assert r.get("COUNTER:nobody").status == "unknown"


def test_objects_reducer_is_bounded():
    r = ObjectsReducer(max_objects=3)
    for i in range(10):
        r.apply(ev.DeliveryQueued(seq=i + 1, time=0.0, object=f"C:{i}", delivery=i,
                                  kind_of_delivery="rpc", method="m", queue_length=1))
    assert list(r.objects) == ["C:7", "C:8", "C:9"]
    assert r.objects.forgotten == 7


async def test_reset_clears_the_instance_and_shows_a_banner(lab):
    stub = lab.env.COUNTER.getByName("room-1")
    await stub.increment()
    rec = lab.record()
    lab.faults.fail_next_commit(stub)
    with contextlib.suppress(Exception):
        await stub.increment()
    await lab.wait_idle()
    rec.close()
    s = fold(ObjectsReducer(), rec.events).get(OBJ)
    assert s.status == "reset"
    assert s.last_reset.startswith("outputGateBroken")
    assert s.last_fault.startswith("fail_commit")
    assert s.last_batch is not None and s.last_batch[2] is False
    assert (s.mailbox, s.held, s.dirty, s.gate_holder) == ({}, {}, {}, "")


async def test_stepping_is_counted(lab):
    stub = lab.env.COUNTER.getByName("room-1")
    rec = lab.record()
    lab.pause()
    call = asyncio.ensure_future(stub.increment())
    await lab.step()
    await lab.step()
    lab.resume()
    await call
    rec.close()
    r = fold(ObjectsReducer(), rec.events)
    assert r.steps == 2
    assert r.paused is False
    assert "constructor" in r.last_step or "admit" in r.last_step


async def test_timeline_lanes_and_commit_markers():
    events = await two_increments()
    tl = fold(TimelineReducer(only=OBJ), events)
    segs, marks = tl.take()
    lanes = {}
    for d, kind, left, right in zip(segs["delivery"], segs["kind"], segs["left"],
                                    segs["right"], strict=True):
        lanes.setdefault(d, []).append((kind, left, right))
        assert right > left
    assert [k for k, *_ in lanes[1]] == ["queued", "running", "awaiting storage", "running",
                                         "reply held"]
    assert [k for k, *_ in lanes[2]] == ["queued", "running", "reply held"]
    # delivery 2 was blocked at the input gate from seq 3 until it started at 16
    assert lanes[2][0][1:] == (3, 16)
    # one commit marker per batch, on the lane of the delivery whose write it carried
    assert list(zip(marks["delivery"], marks["batch"], marks["size"], strict=True)) == [
        (1, 1, 1), (2, 2, 1)]
    assert tl.open == {}
    assert tl.take() == ({k: [] for k in segs}, {k: [] for k in marks})


async def test_timeline_keeps_the_newest_rows_the_plot_would_keep():
    """keep=N (the panel's rollover): the rows handed over are the newest N an unbounded
    reducer would hand over, formatted the same; older ones are dropped before formatting."""
    async with Lab(storage="memory", seed=1) as lab:
        counters = lab.bind("COUNTER", Counter)
        stubs = [counters.getByName(f"c{i}") for i in range(3)]
        rec = lab.record()
        await asyncio.gather(*(s.increment() for s in stubs for _ in range(20)))
        await lab.wait_idle()
        rec.close()
    everything = fold(TimelineReducer(), rec.events).take()
    kept = fold(TimelineReducer(keep=7), rec.events).take()
    assert len(everything[0]["delivery"]) > 100 and len(everything[1]["delivery"]) > 7
    for rows_all, rows_kept in zip(everything, kept, strict=True):
        assert rows_kept == {name: column[-7:] for name, column in rows_all.items()}
    with pytest.raises(ValueError, match="keep must be a number of rows >= 1"):
        TimelineReducer(keep=0)


async def test_timeline_open_rows_reach_the_latest_event():
    events = await two_increments()
    tl = fold(TimelineReducer(), events[:9])  # delivery 1 awaits storage, 2 queued
    rows = tl.open_rows()
    assert dict(zip(rows["delivery"], rows["kind"], strict=True)) == {
        1: "awaiting storage", 2: "queued"}
    assert all(r >= 9 for r in rows["right"])
    other = fold(TimelineReducer(only="COUNTER:other"), events)
    assert other.take()[0]["delivery"] == []


async def test_storage_pending_flushing_committed(lab):
    stub = lab.env.COUNTER.getByName("s")
    rec = lab.record()
    await stub.write_many(3)
    rec.close()
    sr = StorageReducer()
    states = []
    for e in rec.events:
        sr.apply(e)
        states.append(sr.counts("COUNTER:s"))
    assert {"pending": 3} in states
    assert {"flushing": 3} in states
    assert states[-1] == {"committed": 3}
    assert [k for k, _ in sr.rows("COUNTER:s")] == ["item:0", "item:1", "item:2"]


def test_storage_deletes_losses_and_bounds():
    sr = StorageReducer(max_keys=2)
    o = "C:x"
    def op(seq, op, *keys):
        return ev.StorageOp(seq=seq, time=0.0, object=o, delivery=1, op=op, keys=keys,
                            cache="write")
    sr.apply(op(1, "put", "a"))
    sr.apply(op(2, "delete", "b"))
    sr.apply(ev.FlushStarted(seq=3, time=0.0, object=o, batch=1, puts=("a",), deletes=("b",),
                             delete_all=False, gated=True))
    sr.apply(ev.CommitDone(seq=4, time=0.0, object=o, batch=1, keys=2, duration=0.0))
    assert {k: s.state for k, s in sr.rows(o)} == {"a": "committed", "b": "deleted"}
    sr.apply(op(5, "put", "c"))  # bounded: "a" was touched least recently
    assert [k for k, _ in sr.rows(o)] == ["c", "b"]
    sr.apply(op(6, "put", "d"))
    sr.apply(ev.FlushStarted(seq=7, time=0.0, object=o, batch=2, puts=("d",), deletes=(),
                             delete_all=False, gated=True))
    sr.apply(op(8, "put", "e"))
    sr.apply(ev.InstanceReset(seq=9, time=0.0, object=o, reason="crashed", error="",
                              stubs_broken=True, lost_writes=1))
    assert sr.counts(o) == {"lost": 1, "flushing": 1}  # the flying batch may still land


async def test_fleet_queue_and_load(lab):
    ns = lab.env.COUNTER
    rec = lab.record()
    hot = ns.getByName("hot")
    await asyncio.gather(*[hot.increment() for _ in range(20)],
                         ns.getByName("cold").increment())
    rec.close()
    fleet = FleetReducer()
    max_queue = 0
    for e in rec.events:
        fleet.apply(e)
        row = fleet.rows.get("COUNTER:hot")
        max_queue = max(max_queue, row.queue if row else 0)
    fleet.tick(smoothing=1.0)
    rows = {r.label: r for r in fleet.visible()}
    assert max_queue == 20
    assert (rows["COUNTER:hot"].done, rows["COUNTER:hot"].queue, rows["COUNTER:hot"].load) == (
        20, 0, 20.0)
    assert rows["COUNTER:cold"].done == 1
    fleet.tick(smoothing=1.0)
    assert rows["COUNTER:hot"].load == 0.0


async def test_metrics_latency_vs_writes_and_batches(lab):
    stub = lab.env.COUNTER.getByName("m")
    rec = lab.record()
    for n in (1, 10, 100):
        await stub.write_many(n)
    await stub.value()
    rec.close()
    m = fold(MetricsReducer(), rec.events)
    assert m.answered == 3  # the last call finished, its reply not held: not yet known...
    m.settle()  # ... until nothing more of its step can come
    assert m.answered == 4
    points = m.take_points()
    assert [(w, method) for w, _ms, method, _ in points] == [
        (1, "write_many"), (10, "write_many"), (100, "write_many"), (0, "value")]
    assert all(ms >= 0 for _, ms, _, _ in points)
    assert m.batch_hist[0] == 1 and m.batch_hist[4] == 1 and m.batch_hist[6] == 1
    # All in one interval of lab time (a memory lab is fast): 4 calls, 3 commits, each counted.
    assert m.take_rows() == []
    t, calls, commits, depth, busiest = m.open_row()
    assert (t, calls * m.interval, commits * m.interval) == (0.0, 4, 3)
    assert depth >= 1 and busiest >= 1  # each call queued (for a moment)


async def test_metrics_follow_one_call_in_n_once_calls_outnumber_the_dots(lab):
    stubs = [lab.env.COUNTER.getByName(f"busy-{i}") for i in range(4)]
    rec = lab.record()
    await asyncio.gather(*(s.write_many(2) for s in stubs for _ in range(100)))
    rec.close()
    m = MetricsReducer()
    m.DOTS_PER_TAKE = 20
    m.consume(list(rec.events))
    first = m.take_points()
    assert len(first) == 400 and m.answered == 400  # at first every call is followed
    assert m.follow_every == 20  # 400 answered since the last take, 20 dots wanted
    m.consume(list(rec.events))  # as many calls again (the same deliveries, played again)
    second = m.take_points()
    assert m.answered == 800  # every call still counted for the rates
    assert 18 <= len(second) <= 22  # one followed in 20
    assert all(w == 2 and ms >= 0 and method == "write_many" for w, ms, method, _ in second)


async def test_describe_event_covers_every_event_type():
    events = await two_increments()
    texts = [describe_event(e) for e in events]
    assert texts[1] == "call 1 (increment) queued, 1 waiting"
    assert texts[0] == "input gate CLOSED, held by constructor (0 waiting)"  # the panel's word
    assert texts[4] == "input gate OPEN: constructor released it (2 waiting)"
    assert describe_event(ev.Resumed(seq=1, time=0.0)) == ""


async def test_writing_the_same_value_again_is_not_left_pending(lab):
    stub = lab.env.COUNTER.getByName("same")
    await stub.write_many(3)
    rec = lab.record()
    await stub.write_many(3)  # the same values: the cache drops the writes
    await stub.increment()  # the next batch forms
    rec.close()
    sr = fold(StorageReducer(), rec.events)
    assert sr.counts("COUNTER:same") == {"committed": 1}  # n; the item:* no-ops dropped
    s = fold(ObjectsReducer(), rec.events).get("COUNTER:same")
    assert s.dirty == {}


async def test_an_unchanged_put_is_never_pending_nor_lost_after_close():
    # Issue 9: put() of an unchanged value is skipped by the runtime (no flush, no commit); the
    # panel showed those keys pending forever and, after lab.close(), "lost".
    lab = Lab(storage="memory", seed=1)
    stub = lab.bind("COUNTER", Counter).getByName("same")
    rec = lab.record()
    await stub.write_many(3)
    await stub.write_many(3)  # the same values again, and no other write after them
    await lab.close()
    rec.close()
    assert [e.cache for e in rec.events if e.kind == "StorageOp"] == ["write"] * 3 + [
        "unchanged"] * 3
    assert sum(e.kind == "FlushStarted" for e in rec.events) == 1
    sr = fold(StorageReducer(), rec.events)
    assert sr.counts("COUNTER:same") == {"committed": 3}
    s = fold(ObjectsReducer(), rec.events).get("COUNTER:same")
    assert s.dirty == {}
    assert s.status == "closed" and s.last_reset == ""  # closing is not a reset banner


def test_a_reset_that_lost_nothing_turns_no_pending_key_into_lost():
    sr = StorageReducer()
    o = "C:x"
    sr.apply(ev.StorageOp(seq=1, time=0.0, object=o, delivery=1, op="put", keys=("a",),
                          cache="write"))
    sr.apply(ev.FlushStarted(seq=2, time=0.0, object=o, batch=1, puts=("a",), deletes=(),
                             delete_all=False, gated=True))
    sr.apply(ev.CommitDone(seq=3, time=0.0, object=o, batch=1, keys=1, duration=0.0))
    # "a" again and a new "b", both shown pending; no flush comes before the reset, and the
    # runtime says it lost nothing (older runtimes reported no-op puts as writes like these)
    for seq, key in ((4, "a"), (5, "b")):
        sr.apply(ev.StorageOp(seq=seq, time=0.0, object=o, delivery=2, op="put", keys=(key,),
                              cache="write"))
    assert sr.counts(o) == {"pending": 2}
    sr.apply(ev.InstanceReset(seq=6, time=0.0, object=o, reason="labClosed", error="",
                              stubs_broken=True, lost_writes=0))
    assert {k: s.state for k, s in sr.rows(o)} == {"a": "committed"}
