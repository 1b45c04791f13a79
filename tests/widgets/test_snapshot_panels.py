"""Panels opened late start from the truth (issue 17, item 1; docs/panels.md).

Every panel kind is opened at a dozen moments of a recorded run (tests/snapshot_run.py:
calls queueing, the gate held, storage awaited, a critical section, a call to another
object, batches in flight, held replies, a failed commit, a reset) and compared, at once and
at the end of the run, with the same panel opened before anything happened: no gap, no
double count. Headless: reducers and rendered HTML, no browser.
"""

from __future__ import annotations

import asyncio
import re
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/snapshot_run.py

from snapshot_run import Account, make_lab, moments

import widgets
from durable_lab import Lab
from durable_lab import events as ev
from widgets._reducers import ObjectsReducer
from widgets.controls import Controls
from widgets.dashboard import Dashboard
from widgets.fleet import FleetView
from widgets.metrics import Metrics
from widgets.object_view import ObjectView, render_object_html
from widgets.scheduler_panel import SchedulerPanel
from widgets.storage_view import StorageInspector
from widgets.timeline import Timeline
from widgets.watch import Watch

TARGET = "ACCOUNT:alice"

#: Every panel kind with a state of its own, opened on TARGET, not registered (so that many
#: of one kind can be open at once on one lab).
KINDS = {
    "object_view": lambda lab: ObjectView(lab, TARGET, register=False),
    "scheduler": lambda lab: SchedulerPanel(lab, TARGET, register=False),
    "controls": lambda lab: Controls(lab, TARGET, register=False),
    "storage": lambda lab: StorageInspector(lab, TARGET, register=False),
    "fleet": lambda lab: FleetView(lab, register=False),
    "timeline": lambda lab: Timeline(lab, TARGET, register=False),
    "metrics": lambda lab: Metrics(lab, register=False),
    # (its timeline is the Timeline above: left out, a Bokeh figure less per moment)
    "watch": lambda lab: Watch(lab, TARGET, timeline=False, scheduler=True, storage=True,
                               register=False),
    "dashboard": lambda lab: Dashboard(lab, TARGET, register=False),
}

_NOT_STATE = {"gate_waiting", "last_seq", "object_id", "dirty"}


def objects_state(r: ObjectsReducer) -> dict[str, Any]:
    """What an objects reducer knows, minus what is not the object's state: the last event
    number seen, the waiting count of the last gate event, who wrote a pending key (the
    runtime does not keep it: a late panel says 0)."""
    out: dict[str, Any] = {"paused": r.paused, "steps": r.steps, "last_step": r.last_step}
    for label, s in r.objects.items():
        if not s.last_seq:
            continue  # (an object no event described: only a late panel knows it)
        fields = {k: v for k, v in vars(s).items() if k not in _NOT_STATE} if hasattr(
            s, "__dict__") else {}
        fields["dirty"] = sorted(s.dirty)
        fields["released"] = list(s.released)
        out[label] = fields
    return out


def storage_state(r: Any) -> dict[str, Any]:
    """Keys pending and in flight, per object (the keys' history, committed, deleted, lost,
    failed, is only what a panel saw: a late one shows the stored keys from lab.peek)."""
    out = {label: {k: (ks.state, ks.batch if ks.state == "flushing" else 0)
                   for k, ks in table.items()
                   if ks.state in ("pending", "flushing")}
           for label, table in r.objects.items()}
    return {label: keys for label, keys in out.items() if keys}


def fleet_state(r: Any, labels: set[str]) -> dict[str, Any]:
    return {row.label: (row.queue, row.in_flight, row.status, row.done, row.resets, row.region)
            for row in r.rows.values() if row.label in labels}


def timeline_state(r: Any) -> dict[str, Any]:
    return {"lanes": {d: seg[0] for d, seg in r.open.items()},
            "gates": sorted(r.gates.open), "held": r.gates.held}


def state_of(kind: str, panel: Any, labels: set[str]) -> Any:
    """The state of a panel that must not depend on when it opened."""
    if kind in ("object_view", "scheduler", "controls"):
        return objects_state(panel.reducer)
    if kind == "storage":
        return storage_state(panel.reducer)
    if kind == "fleet":
        return fleet_state(panel.reducer, labels)
    if kind == "timeline":
        return timeline_state(panel.reducer)
    if kind == "metrics":
        return {k: v for k, v in panel.reducer.queues.items() if v}
    if kind == "watch":
        return objects_state(panel.objects), storage_state(panel.storage.reducer)
    return (objects_state(panel.objects), fleet_state(panel.fleet.reducer, labels),
            storage_state(panel.storage.reducer), timeline_state(panel.timeline.reducer),
            {k: v for k, v in panel.metrics.reducer.queues.items() if v})


async def test_every_panel_opened_at_any_moment_agrees_with_one_that_watched_from_the_start(
        tmp_path):
    # In memory: the run is the same every time (with SQLite's I/O thread, the moments would
    # depend on the machine's load; a commit held across slow panel openings could even
    # outlast the output gate's 30 s). Batches are in flight between the flush and commit
    # steps of the paused part.
    lab = make_lab(tmp_path, memory=True)
    early = {kind: make(lab) for kind, make in KINDS.items()}
    feed = early["object_view"]._feed
    # No drawing: this test is about what the panels know (a hundred panels drawing every
    # frame would be most of its time). Events reach them through the feed as always.
    feed.stop()
    late: list[tuple[str, str, Any]] = []
    count = [0]

    def labels() -> set[str]:
        return {label for label, s in early["object_view"].reducer.objects.items()
                if s.last_seq}

    def at(moment: str) -> None:
        count[0] += 1
        # A dozen moments and more, spread over the whole run, the reset among them.
        if count[0] % 4 != 1 and "crash" not in moment and moment != "failing commit, pass 2":
            return
        feed._reduce()  # the early panels are up to date: they saw every event
        for kind, make in KINDS.items():
            panel = make(lab)
            assert panel.start is not None and panel.start.seq == lab.bus.seq
            got, expected = state_of(kind, panel, labels()), state_of(kind, early[kind], labels())
            assert got == expected, f"{kind} opened {moment}: {got} != {expected}"
            late.append((moment, kind, panel))

    try:
        await moments(lab, at)
        feed._reduce()
        moments_opened = {moment for moment, _, _ in late}
        assert len(moments_opened) >= 12
        # They went on from their start: every later event once, none twice, none missed.
        for moment, kind, panel in late:
            assert state_of(kind, panel, labels()) == state_of(kind, early[kind], labels()), (
                f"{kind} opened {moment}, at the end")
            assert panel.errors.outputs == ()
        assert early["object_view"].state.finished > 10 and early["object_view"].state.resets
    finally:
        for _, _, panel in late:
            panel.close()
        for panel in early.values():
            panel.close()
        await lab.close()


def _attr(html: str, name: str) -> str:
    m = re.search(rf'{name}="([^"]*)"', html)
    assert m, f"{name} not in {html[:300]}"
    return m.group(1)


async def test_lesson_02_a_panel_opened_while_calls_wait_shows_them(memory_lab):
    """The object view and the scheduler opened after two calls queued on a paused lab agree:
    two in the mailbox, two admissions offered."""
    lab = memory_lab
    lab.bind("ACCOUNT", Account)
    lab.scheduler.note_paused_calls = False
    stub = lab.env.ACCOUNT.getByName("alice")
    lab.pause()
    calls = [asyncio.ensure_future(stub.deposit(n)) for n in (1, 2)]
    await lab.step()  # the constructor
    view = widgets.object_view(lab, stub)
    scheduler = widgets.scheduler(lab, stub)
    view.refresh()
    scheduler.refresh()
    html = view.html.value
    assert _attr(html, "data-mailbox") == "2"
    assert "Mailbox (2)" in html and "2 waiting in the mailbox" in html
    assert "#1 deposit" in html and "#2 deposit" in html
    offered = [b.description for b in scheduler.buttons.children if hasattr(b, "description")]
    assert sum("admit delivery" in text for text in offered) == 2
    # Admitting one moves it from the mailbox to the gate, in the same frame.
    await lab.step()
    view._feed.flush()
    assert _attr(view.html.value, "data-mailbox") == "1"
    lab.resume()
    assert await asyncio.gather(*calls) == [1, 3]
    view._feed.flush()
    assert _attr(view.html.value, "data-mailbox") == "0"
    assert "2 answered" in view.html.value
    view.close()
    scheduler.close()


async def test_no_frame_shows_a_delivery_queued_and_holding_the_gate(tmp_path):
    """Lesson 02 in slow motion: panels see events one at a time. The InputGateLocked of a
    delivery's first admission takes it out of the mailbox and makes its turn the running
    one, before its DeliveryStarted (which comes one step of the runtime later)."""
    lab = make_lab(tmp_path)
    recorded = lab.record()
    try:
        await moments(lab, lambda _m: None, free_passes=10)
    finally:
        await lab.close()
    reducer = ObjectsReducer()
    checked = 0
    for e in recorded.events:
        reducer.apply(e)
        if not isinstance(e, ev.InputGateLocked) or not e.holder.startswith("delivery "):
            continue
        s = reducer.get(e.object)
        d = int(e.holder.split(" ")[1])
        assert d not in s.mailbox, f"#{d} in the mailbox and holding the gate at event {e.seq}"
        assert s.running == d or d in s.awaiting, (e.seq, s.running, s.awaiting)
        html = render_object_html(s)
        assert _attr(html, "data-running") in (str(d), "0")
        checked += 1
    assert checked >= 15


async def test_lesson_03_the_reset_banner_counts_the_lost_deposit(memory_lab):
    lab = memory_lab
    lab.bind("ACCOUNT", Account)
    stub = lab.env.ACCOUNT.getByName("alice")
    view = widgets.object_view(lab, stub)
    await stub.deposit(100)
    lab.fail_next_commit(stub)
    try:
        await stub.deposit(50)
    except Exception as exc:  # the caller is told: never a false acknowledgement
        assert "storage write" in str(exc)
    else:
        raise AssertionError("the deposit whose commit failed was acknowledged")
    await lab.wait_idle()
    view._feed.flush()
    html = view.html.value
    assert "outputGateBroken: 2 uncommitted write(s) lost" in html
    assert "0 uncommitted" not in html and "unflushed" not in html
    # A panel opened after the reset says the same.
    late = ObjectView(lab, stub, register=False)
    late.refresh()
    assert "outputGateBroken: 2 uncommitted write(s) lost" in late.html.value
    late.close()
    view.close()


async def test_a_panel_on_a_lab_closed_before_it_opened_has_no_snapshot():
    lab = Lab(storage="memory")
    await lab.close()
    view = ObjectView(lab, None, register=False)
    assert view.start is None and view.skip_until == 0
    view.close()
