"""Panels headless: real labs, real subscriptions; assert on widget traits and Bokeh data."""

from __future__ import annotations

import asyncio
import re
import time

import pytest
from lab_fixtures import Counter

import widgets
from durable_lab import Lab
from widgets import _feed
from widgets._base import time as _base_time
from widgets._reducers import ObjectsReducer, ObjectState, StorageReducer
from widgets.object_view import render_object_html


def _attr(html: str, name: str) -> str:
    m = re.search(rf'{name}="([^"]*)"', html)
    assert m, f"{name} not in {html[:200]}"
    return m.group(1)


async def test_dashboard_draws_a_run_and_closing_unsubscribes(lab):
    stub = lab.env.COUNTER.getByName("room-1")
    d = widgets.dashboard(lab, stub)
    assert lab.bus.subscriber_count == 1  # one feed for all seven panels
    await asyncio.gather(*[stub.increment() for _ in range(5)])
    d._feed.flush()
    view = d.object_view.html.value
    assert _attr(view, "data-object") == "COUNTER:room-1"
    assert _attr(view, "data-gate") == "open"
    assert "5 answered" in view
    assert set(d.timeline.segments.data["kind"]) >= {"queued", "running", "reply held"}
    assert len(d.timeline.markers.data["size"]) > 0  # commit markers with batch sizes
    assert 'data-state="committed"' in d.storage.html.value
    assert list(d.fleet.source.data["label"]) == ["COUNTER:room-1"]
    assert "events: <b>" in d.controls.status.value
    assert 'data-kind="ReplyReleased"' in d.event_log.html.value
    assert [p.errors.outputs for p in d.panels] == [()] * 7
    d.close()
    assert lab.bus.subscriber_count == 0
    assert d.closed and all(p.closed for p in d.panels)


async def test_rerunning_a_cell_replaces_the_previous_panel(lab):
    first = widgets.dashboard(lab)
    second = widgets.dashboard(lab)
    assert first.closed and not second.closed
    log = widgets.event_log(lab)  # another kind: both stay open, still one subscription
    assert not second.closed and lab.bus.subscriber_count == 1
    assert set(widgets.open_panels(lab)) == {"dashboard", "event_log"}
    second.close()
    assert lab.bus.subscriber_count == 1
    log.close()
    assert lab.bus.subscriber_count == 0
    assert widgets.open_panels(lab) == {}


async def test_the_feed_flushes_by_itself_at_most_25_times_a_second(lab):
    stub = lab.env.COUNTER.getByName("a")
    view = widgets.object_view(lab, stub)
    feed = view._feed
    assert feed.interval == pytest.approx(0.04)
    loop = asyncio.get_running_loop()
    started = loop.time()
    for _ in range(30):
        await stub.increment()
    # Drawn by a frame of its own (no flush by hand): wait for it, with a deadline (a redraw
    # waits Panel.min_interval after the last one; a loaded machine delays frames). Frames
    # that carry no event are not counted, so waiting longer does not change the count.
    for _ in range(100):
        await asyncio.sleep(0.04)
        if "30 answered" in view.html.value:
            break
    stats = feed.statistics()
    elapsed = loop.time() - started
    assert stats.buffered == 0 and stats.events > 300
    # 300+ events, and at most one frame per 40 ms of the time they took to come (a loaded
    # machine makes the 30 calls slower, so it may take more frames, never more per second).
    assert 1 <= stats.frames <= elapsed / 0.04 + 1, (stats.frames, elapsed)
    assert stats.frames < stats.events / 10  # frames are not per event
    assert "30 answered" in view.html.value
    view.close()
    assert feed.closed and not stats.dropped


async def test_a_costly_frame_is_followed_by_a_longer_rest(lab, monkeypatch):
    """Drawing takes at most a tenth of the kernel's time (_feed.FRAME_SHARE): after a frame
    that took 30 ms the frame loop waits 270 ms, not 40; after a cheap one, 40 ms. The
    frames' cost is simulated (a clock the listener moves), the loop's waits recorded."""
    clock = [100.0]
    monkeypatch.setattr(_feed.time, "perf_counter", lambda: clock[0])
    waits: list[float] = []
    real_sleep = asyncio.sleep

    async def sleep(seconds: float) -> None:
        waits.append(seconds)
        if len(waits) >= 4:
            feed._closed = True
        await real_sleep(0)

    monkeypatch.setattr(_feed.asyncio, "sleep", sleep)
    costs = iter([0.030, 0.001, 0.100])

    class Costly:
        skip_until = 0

        def consume(self, events: list) -> None:
            pass

        def render(self) -> None:
            clock[0] += next(costs, 0.0)

    feed = _feed.Feed(lab, autostart=False)
    feed.add(Costly())
    await feed._run()
    assert waits == [pytest.approx(0.04), pytest.approx(0.27), pytest.approx(0.04),
                     pytest.approx(0.9)]
    assert _feed.rest_after(0.002) == pytest.approx(0.04)
    feed._closed = False
    feed.close()


async def test_a_panel_rests_as_long_as_it_says_after_a_paced_draw(lab, monkeypatch):
    """Panel.render measures each paced draw (the frame loop at full speed) and asks the
    panel how long to rest after it (rest_after_draw: here 49 x the draw's 20 ms, as the
    timeline does at saturation), not just min_interval; explicit flushes draw at once."""
    from widgets._base import Panel

    clock = [500.0]
    monkeypatch.setattr(_base_time, "perf_counter", lambda: clock[0])
    draws: list[float] = []

    class Costly(Panel):
        kind = "costly-test-panel"
        min_interval = 0.1

        def apply(self, event) -> None:
            pass

        def draw(self) -> None:
            draws.append(clock[0])
            clock[0] += 0.020

        def rest_after_draw(self) -> float:
            return max(self.min_interval, self._draw_cost * 49.0)

    panel = Costly(lab, register=False)
    feed = panel._feed
    feed.in_frame_loop = True

    def frame_after(seconds: float) -> None:
        clock[0] += seconds
        panel._dirty = True
        panel.render()

    frame_after(1.0)  # first paced draw
    for _ in range(20):  # 0.5 s of frames 25 ms apart: min_interval alone would allow 4
        frame_after(0.025)
    assert len(draws) == 1
    frame_after(0.5)  # past 0.98 s since the draw
    assert len(draws) == 2
    feed.in_frame_loop = False  # an explicit flush draws at once
    frame_after(0.001)
    assert len(draws) == 3
    panel.close()


async def test_the_timeline_rests_longer_only_at_saturation(lab):
    """The timeline rests 49 times its last draw's cost only when a draw took a third of its
    rollover or more (saturation: thousands of segments); a lesson's few calls draw every
    min_interval."""
    stub = lab.env.COUNTER.getByName("a")
    tl = widgets.Timeline(lab, stub, rollover=60, register=False)
    await stub.increment()
    tl._feed.flush()
    tl._draw_cost = 0.05
    assert tl.reducer.rows_taken < 20 and tl.rest_after_draw() == tl.min_interval
    await asyncio.gather(*(stub.increment() for _ in range(30)))
    tl._feed.flush()
    assert tl.reducer.rows_taken >= 20
    tl._draw_cost = 0.05
    assert tl.rest_after_draw() == pytest.approx(0.05 * 49)
    tl.close()


async def test_feed_buffer_is_bounded(lab):
    # Only slow motion buffers more than a handful of events: bounded, the oldest dropped.
    feed = _feed.Feed(lab, max_buffer=10, autostart=False)
    feed.play_slowly(1.0)
    stub = lab.env.COUNTER.getByName("a")
    await stub.increment()
    s = feed.statistics()
    assert s.buffered == 10 and s.dropped > 0
    feed.close()
    assert lab.bus.subscriber_count == 0


async def test_at_full_speed_reducers_get_events_before_the_frame(lab):
    # Events wait at most REDUCE_EVERY events for the reducers, not a whole frame: a busy lab's
    # events die young instead of filling the garbage collector's old generations.
    feed = _feed.Feed(lab, autostart=False)
    got: list[int] = []

    class Counting:
        def consume(self, events):
            got.append(len(events))

        def render(self):
            pass

    feed.add(Counting())
    stub = lab.env.COUNTER.getByName("a")
    for _ in range(40):
        await stub.increment()
    s = feed.statistics()
    assert s.frames == 0 and s.buffered < _feed.REDUCE_EVERY and s.dropped == 0
    assert got and set(got) == {_feed.REDUCE_EVERY}  # handed over in batches, no frame yet
    handed_before_the_frame = sum(got)
    assert feed.flush() == handed_before_the_frame + s.buffered  # the rest, then one render
    assert got[-1] == s.buffered
    assert feed.statistics().buffered == 0
    feed.close()


async def test_step_button_takes_exactly_one_transition(lab):
    stub = lab.env.COUNTER.getByName("room-1")
    c = widgets.controls(lab, stub)
    c.pause.click()
    calls = [asyncio.ensure_future(stub.increment()) for _ in range(2)]
    await asyncio.sleep(0)
    before = lab.scheduler.steps_taken
    c.step.click()
    c.step.click()
    await asyncio.sleep(0.05)
    while c._tasks:
        await asyncio.gather(*c._tasks, return_exceptions=True)
    assert lab.scheduler.steps_taken == before + 2
    c._feed.flush()
    assert _attr(c.status.value, "data-steps") == str(before + 2)
    assert 'class="dl-choices"' in c.next_steps.value
    c.play.click()
    await asyncio.gather(*calls)
    assert not lab.paused
    c.close()


async def test_autoplay_steps_at_the_chosen_speed(lab):
    stub = lab.env.COUNTER.getByName("slow")
    c = widgets.controls(lab, stub)
    c.speed.value = 20.0
    c.play.click()
    assert lab.paused
    result = await asyncio.wait_for(stub.increment(), 5)
    assert result == 1 and lab.scheduler.steps_taken >= 3
    c.pause.click()
    assert c._autoplay is None
    c.speed.value = 0.0
    c.play.click()
    assert not lab.paused
    c.close()


async def test_fault_buttons_reset_the_object_and_the_view_shows_it(lab):
    stub = lab.env.COUNTER.getByName("room-1")
    d = widgets.dashboard(lab, stub)
    await stub.increment()
    d.controls.crash.click()
    d._feed.flush()
    view = d.object_view.html.value
    assert _attr(view, "data-status") == "reset"
    assert _attr(view, "data-resets") == "1"
    assert "crashed" in _attr(view, "data-reason")
    fresh = lab.env.COUNTER.getByName("room-1")
    assert await fresh.increment() == 2
    d.controls.fail_commit.click()
    with pytest.raises(Exception, match="reset"):
        await fresh.increment()
    d.controls.evict.click()
    await asyncio.sleep(0.01)
    d._feed.flush()
    assert _attr(d.object_view.html.value, "data-resets") == "2"
    d.controls.code_update.click()
    assert [p.errors.outputs for p in d.panels] == [()] * 7
    d.close()


async def test_callback_errors_show_in_the_panel(lab):
    c = widgets.controls(lab)  # nothing selected yet: a fault button must say so
    c.crash.click()
    (out,) = c.errors.outputs
    assert out["name"] == "stderr" and "no object selected" in out["text"]
    c.close()


async def test_selecting_another_object_refocuses_the_panels(lab):
    ns = lab.env.COUNTER
    d = widgets.dashboard(lab, ns.getByName("a"))
    await ns.getByName("a").increment()
    await ns.getByName("b").write_many(3)
    d._feed.flush()
    assert list(d.picker.options) == ["COUNTER:a", "COUNTER:b"]
    d.picker.value = "COUNTER:b"
    assert _attr(d.object_view.html.value, "data-object") == "COUNTER:b"
    assert 'data-object="COUNTER:b"' in d.storage.html.value
    assert d.controls.target == "COUNTER:b"
    d.fleet.source.selected.indices = [0]  # a tap on the grid
    assert d.target == "COUNTER:a"
    d.close()


class _EveryObject(ObjectsReducer):
    """A feed listener folding every object's events: what a dashboard's one object must
    agree with."""

    def render(self) -> None:
        pass


class _EveryKey(StorageReducer):
    """The same for the storage inspector: every object's keys."""

    def render(self) -> None:
        pass


def _in_flight(reducer: StorageReducer, label: str) -> list[tuple[str, str, int]]:
    """The keys not (yet) committed, as the inspector draws them."""
    return [(k, ks.state, ks.batch) for k, ks in reducer.rows(label)
            if ks.state not in ("committed", "deleted")]


def _seen(s: ObjectState) -> tuple:
    """What the object view draws (who wrote a pending key is not drawn: a snapshot does not
    know it)."""
    return (s.status, dict(s.mailbox), s.gate_holder, s.running, dict(s.awaiting),
            sorted(s.dirty), dict(s.batches), dict(s.held), s.finished, s.commits,
            s.last_batch)


async def test_a_dashboard_folds_its_object_only_and_a_new_pick_starts_from_now(lab):
    """The dashboard folds the selected object's events only (bench_watching: folding every
    object's was a third of its cost). Picking another object mid-run, with its events still
    buffered (slow motion, paused), starts that object from the lab's snapshot: the view then
    agrees with a reducer that folded everything, at every step after."""
    ns = lab.env.COUNTER
    d = widgets.dashboard(lab, ns.getByName("a"))
    everything, every_key = _EveryObject(), _EveryKey()
    d._feed.add(everything)
    d._feed.add(every_key)
    await ns.getByName("a").increment()
    await ns.getByName("b").write_many(3)
    d._feed.flush()
    assert list(d.objects.objects) == ["COUNTER:a"]  # b's events were skipped
    assert _seen(d.objects.get("COUNTER:a")) == _seen(everything.get("COUNTER:a"))
    lab.pause()
    calls = [asyncio.ensure_future(ns.getByName("b").increment()) for _ in range(3)]
    await asyncio.sleep(0)
    for _ in range(2):  # two calls admitted: n written, not flushed
        await lab.step()
    d.picker.value = "COUNTER:b"  # b's latest events not handed to the panels yet
    d._feed.flush()
    assert _seen(d.objects.get("COUNTER:b")) == _seen(everything.get("COUNTER:b"))
    assert not all(c.done() for c in calls)  # mid-run
    in_flight = []
    for _ in range(6):
        await lab.step()
        d._feed.flush()
        assert _seen(d.objects.get("COUNTER:b")) == _seen(everything.get("COUNTER:b"))
        assert (_in_flight(d.storage.reducer, "COUNTER:b")
                == _in_flight(every_key, "COUNTER:b"))
        in_flight += _in_flight(every_key, "COUNTER:b")
    assert in_flight  # the steps did show a write pending or flying
    assert list(d.storage.reducer.objects) == ["COUNTER:b"]
    lab.resume()
    assert sorted(await asyncio.gather(*calls)) == [1, 2, 3]
    await lab.wait_idle()
    d._feed.flush()
    assert _seen(d.objects.get("COUNTER:b")) == _seen(everything.get("COUNTER:b"))
    assert d.objects.get("COUNTER:b").finished == everything.get("COUNTER:b").finished == 4
    assert d.objects.steps == everything.steps == 8  # the steps of every object count
    assert _in_flight(d.storage.reducer, "COUNTER:b") == _in_flight(every_key, "COUNTER:b")
    assert d.storage.reducer.rows("COUNTER:b")[-1][1].state == "committed"
    d.close()


async def test_metrics_stream_rows_with_rollover():
    async with Lab(storage="memory", seed=1, clock="manual") as lab:
        lab.bind("COUNTER", Counter)
        m = widgets.metrics(lab)
        m.sample = 0.0  # draw at every flush
        m.rollover = 5
        stub = lab.env.COUNTER.getByName("m")
        for n in (1, 50, 2, 3, 4, 5, 6, 7):
            await stub.write_many(n)
            lab.clock.advance(1.0)  # the next call in another interval of lab time
            m._feed.flush(force=True)
        # The newest intervals only, and the end of the last one (where its step ends).
        assert len(m.rates.data["t"]) == 5
        assert list(m.rates.data["t"])[-2:] == [7.0, 7.25]  # seconds of lab time
        assert sorted(m.latency.data["writes"]) == [1, 2, 3, 4, 5, 6, 7, 50]
        # (only the first two committed: the later calls rewrote values already stored)
        assert sum(m.batches.data["count"]) == m.reducer.commits == 2
        m.close()


def test_object_html_shows_every_part_of_the_state():
    s = ObjectState("C:x", status="live", incarnation=1, mailbox={3: "inc", 4: "inc"},
                    gate_holder="delivery 2", running=2, methods={2: "inc"},
                    awaiting={1: "io"}, dirty={"n": 2}, batches={1: ("a", "b")},
                    held={1: 1}, last_batch=(1, 2, True))
    html = render_object_html(s)
    for part in ("#3 inc", "#4 inc", "CLOSED", "delivery 2", "#2 inc", "#1 awaits io",
                 "n", "batch 1: a, b (2)", "#1 waits for 1 commit", "batch 1 landed", "2 keys"):
        assert part in html, part
    assert _attr(html, "data-mailbox") == "2"
    many = ObjectState("C:y", mailbox={i: "m" for i in range(40)})
    assert "+30 more" in render_object_html(many)


async def test_panel_event_log_filter(lab):
    from durable_lab import events as ev

    log = widgets.EventLog(lab, register=False)
    log.consume([ev.Paused(seq=1, time=0.0, reason="requested"),
                 ev.CommitDone(seq=2, time=0.0, object="C:x", batch=1, keys=2, duration=0.0)])
    log.filter.value = "commit"
    assert [e.seq for e in log.matching()] == [2]
    assert "commit #1 durable" in log.html.value
    log.close()


async def test_the_event_log_keeps_the_latest_events_and_filters_them(lab):
    """The log keeps the latest ``keep`` events (1,000 by default: see widgets/event_log.py),
    in order, and its filter finds an object's among them."""
    log = widgets.EventLog(lab, keep=40, register=False)
    assert widgets.EventLog.__init__.__kwdefaults__["keep"] == 1000
    rec = lab.record()
    stub = lab.env.COUNTER.getByName("a")
    for _ in range(6):
        await stub.increment()
    await lab.env.COUNTER.getByName("b").write_many(2)
    log._feed.flush()
    assert len(rec.events) > 40
    assert list(log.events) == list(rec.events)[-40:]
    log.filter.value = "COUNTER:b"
    assert log.matching() and {e.object for e in log.matching()} == {"COUNTER:b"}
    rec.close()
    log.close()


async def test_a_closed_dashboard_leaves_no_widget_open(lab):
    """Closing a dashboard closes every widget it made, their layout and style widgets too
    (ipywidgets makes one of each per widget and Widget.close() leaves them registered: 97
    per dashboard were left behind, and a lesson re-run many times kept them all)."""
    from ipywidgets.widgets import widget as ipw

    stub = lab.env.COUNTER.getByName("a")
    widgets.dashboard(lab, stub).close()  # (the first one also makes what is made once)
    before = set(ipw._instances)
    board = widgets.dashboard(lab, stub)
    await stub.increment()
    board._feed.flush()
    assert len(set(ipw._instances) - before) > 100
    board.close()
    assert set(ipw._instances) - before == set()


async def test_building_the_dashboard_twice_leaves_one_subscription(lab):
    """A re-run cell: the second dashboard replaces the first; events reach only the new one."""
    stub = lab.env.COUNTER.getByName("room-1")
    first = widgets.dashboard(lab, stub)
    await stub.increment()
    first._feed.flush()
    second = widgets.dashboard(lab, stub)
    assert first.closed and all(p.closed for p in first.panels)
    assert lab.bus.subscriber_count == 1
    assert second._feed is first._feed  # the same feed, still subscribed
    # the new dashboard and its seven panels, none of the old ones
    assert second._feed.statistics().listeners == 8
    assert set(second._feed.listeners) == {second, *second.panels}
    assert widgets.open_panels(lab) == {"dashboard": second}
    await asyncio.gather(*[stub.increment() for _ in range(3)])
    second._feed.flush()
    # It started from the lab's snapshot (1 answered before it opened), then counted 3 more.
    assert "4 answered" in second.object_view.html.value
    assert [p.errors.outputs for p in (second, *second.panels)] == [()] * 8
    second.close()
    assert lab.bus.subscriber_count == 0


async def test_dashboard_without_target_follows_the_first_object_without_errors(lab):
    ns = lab.env.COUNTER
    d = widgets.dashboard(lab)  # no target: the picker starts empty
    await ns.getByName("a").increment()
    d._feed.flush()
    await ns.getByName("b").increment()
    await ns.getByName("c").write_many(2)
    d._feed.flush()
    d._feed.flush(force=True)
    assert d.target == "COUNTER:a" and d.picker.value == "COUNTER:a"
    assert set(d.picker.options) == {"COUNTER:a", "COUNTER:b", "COUNTER:c"}
    assert d.error_count == 0 and d.errors.outputs == ()
    d.close()


def test_repeated_errors_do_not_grow_the_error_output(lab):
    c = widgets.controls(lab)
    for _ in range(500):
        c.show_error(ValueError("the same error every frame"))
    for i in range(100):
        c.show_error(ValueError(f"error {i}"))
    assert c.error_count == 600
    assert len(c.errors.outputs) <= 21
    assert "error 99" in c.errors.outputs[-1]["text"]
    c.close()


async def test_panels_folding_inside_object_code_start_no_task_of_that_object():
    # The feed hands events to the panels every 64 events, from whichever runtime step emitted
    # the 64th: here a put() inside the object's own method. A dashboard opened without a
    # target picks that object then, and its storage inspector starts reading the object's
    # values: that read must stay the panel's, not become a task of the object (the runtime
    # adopts tasks created while object code runs, and gates them).
    from durable_lab import DurableObject, Lab
    from durable_lab.events import InputGateLocked

    class Writer(DurableObject):
        async def burst(self):
            for i in range(100):
                self.ctx.storage.put(f"k{i}", i)
            return 1

    lab = Lab(storage="memory", seed=1)
    ns = lab.bind("W", Writer)
    board = widgets.dashboard(lab)
    rec = lab.record()
    assert await ns.getByName("a").burst() == 1
    await asyncio.sleep(0.1)
    holders = [e.holder for e in rec.of(InputGateLocked)]
    assert holders and not any("task" in h for h in holders), holders
    assert board.storage.target == "W:a"
    board.close()
    await lab.close()


async def test_the_end_of_a_cell_draws_what_the_frame_loop_left_for_later(lab):
    # At full speed a panel redraws at most every min_interval; a state that lasts only from
    # one cell to the next (Run All) must still be drawn: IPython's post_run_cell flushes.
    stub = lab.env.COUNTER.getByName("a")
    view = widgets.object_view(lab, stub)
    feed = view._feed
    feed.stop()  # no frames of its own: only the cell's end may draw
    await stub.increment()
    feed.in_frame_loop = True
    view._last_draw = time.perf_counter()  # drawn a moment ago: the frame loop would wait
    feed.flush()
    assert "1 answered" not in view.html.value
    feed.in_frame_loop = False
    _feed._flush_live_feeds()
    assert "1 answered" in view.html.value
    view.close()
