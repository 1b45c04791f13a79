"""The event stream: typed, immutable, ordered, free when nobody listens, safe when a listener
fails."""

from __future__ import annotations

import asyncio
import dataclasses

import pytest

from durable_lab import DurableObject, Lab, events


class Counter(DurableObject):
    async def inc(self):
        n = (await self.ctx.storage.get("n")) or 0
        self.ctx.storage.put("n", n + 1)
        return n + 1


async def workload(lab):
    ns = lab.bind("C", Counter)
    stubs = [ns.getByName(f"c{i}") for i in range(3)]
    await asyncio.gather(*(s.inc() for s in stubs for _ in range(3)))


async def test_events_are_slotted_records_numbered_in_order(memory_lab):
    rec = memory_lab.record()
    await workload(memory_lab)
    seqs = [e.seq for e in rec.events]
    assert seqs == list(range(seqs[0], seqs[0] + len(seqs)))
    event = rec.events[0]
    # Read-only by convention, not frozen (building a frozen dataclass cost twice as much:
    # bench/RESULTS-watching.txt); slotted, so a subscriber cannot hang data on a shared record.
    with pytest.raises(AttributeError):
        event.panel_note = "x"
    assert dataclasses.is_dataclass(event) and not hasattr(event, "__dict__")
    assert all(isinstance(e, events.RuntimeEvent) for e in rec.events)


async def test_no_subscriber_means_no_event_is_built(memory_lab, monkeypatch):
    built = []
    monkeypatch.setattr(memory_lab.bus, "emit", lambda *a, **k: built.append(a))
    assert memory_lab.bus.active is False
    await workload(memory_lab)
    assert built == []


async def test_a_failing_subscriber_does_not_break_the_runtime(memory_lab, caplog):
    def broken(event):
        raise RuntimeError("panel bug")

    sub = memory_lab.subscribe(broken)
    rec = memory_lab.record()
    await workload(memory_lab)
    assert len(memory_lab.bus.errors) > 0
    assert rec.events  # other subscribers still got everything
    sub.close()
    assert sub.closed and memory_lab.bus.subscriber_count == 1
    rec.close()
    assert memory_lab.bus.active is False


async def test_wake_at_calls_once_after_that_event_reached_every_subscriber(memory_lab):
    bus = memory_lab.bus
    rec = memory_lab.record()
    start = bus.seq
    woken = []  # (seq of the bus, seq of the last event the recorder holds) at each wake-up
    bus.wake_at(start + 5, lambda: woken.append((bus.seq, rec.events[-1].seq)))
    moved = []
    bus.wake_at(start + 3, lambda: moved.append(bus.seq))
    cancelled = []

    def never():
        cancelled.append(bus.seq)

    bus.wake_at(start + 2, never)
    bus.cancel_wake(never)
    await workload(memory_lab)
    assert bus.seq > start + 5
    assert woken == [(start + 5, start + 5)]  # once, after the recorder had event 5
    assert moved == [start + 3] and cancelled == []


async def test_wake_at_a_passed_event_wakes_at_the_next_and_asking_again_moves_it(memory_lab):
    bus = memory_lab.bus
    rec = memory_lab.record()
    await workload(memory_lab)
    now = bus.seq
    woken = []

    def wake():
        woken.append(bus.seq)

    bus.wake_at(now - 10, wake)  # passed: the next event
    bus.wake_at(now + 4, wake)  # the same callback again: moved, not added
    await workload(memory_lab)
    assert woken == [now + 4]
    rec.close()


async def test_a_failing_wake_up_is_kept_and_the_runtime_goes_on(memory_lab):
    bus = memory_lab.bus
    rec = memory_lab.record()

    def broken():
        raise RuntimeError("feed bug")

    bus.wake_at(bus.seq + 1, broken)
    await workload(memory_lab)
    assert any(exc.args == ("feed bug",) for _cb, exc in bus.errors)
    assert len(rec.events) > 20  # everything still emitted and delivered
    with pytest.raises(TypeError, match="wake_at\\(\\) takes a callable, got int"):
        bus.wake_at(1, 5)


async def test_every_delivery_is_queued_started_and_finished(memory_lab):
    rec = memory_lab.record()
    await workload(memory_lab)
    queued = {e.delivery for e in rec.of(events.DeliveryQueued)}
    started = {e.delivery for e in rec.of(events.DeliveryStarted)}
    finished = {e.delivery for e in rec.of(events.DeliveryFinished)}
    assert len(queued) == 9 and queued == started == finished


async def test_the_same_workload_gives_the_same_event_log():
    logs = []
    for _ in range(2):
        lab = Lab(storage="memory", seed=7)
        rec = lab.record()
        await workload(lab)
        await lab.close()
        logs.append([(e.kind, e.object, getattr(e, "delivery", None)) for e in rec.events])
    assert logs[0] == logs[1]


async def test_every_event_type_is_documented():
    from pathlib import Path

    doc = (Path(__file__).parents[1] / "docs" / "events.md").read_text()
    for name in events.__all__:
        assert f"`{name}`" in doc, f"{name} is missing from docs/events.md"


def _event_types():
    return [getattr(events, name) for name in events.__all__
            if isinstance(getattr(events, name), type)]


@pytest.mark.parametrize("event_type", _event_types(), ids=lambda t: t.__name__)
def test_building_by_position_gives_the_event_keywords_give(event_type):
    names = [f.name for f in dataclasses.fields(event_type)]
    values = [f"v{i}" for i in range(len(names))]  # distinct, so a field out of place shows
    by_position = events.build(event_type, *values)
    assert type(by_position) is event_type
    assert by_position == event_type(**dict(zip(names, values, strict=True)))
    with pytest.raises(TypeError):
        events.build(event_type, *values[:-1])  # no defaults by position: every field is given
