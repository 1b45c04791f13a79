"""Issue 17: the panels tell lab time, and plots come from events, not wall-clock samples.

Real labs (manual, auto and real clocks), the panels headless: assertions on reducer state and
on the Bokeh sources the browser draws.
"""

from __future__ import annotations

import asyncio
import itertools
import re

import numpy as np
import pytest
from lab_fixtures import Counter

import durable_lab
import widgets
from durable_lab import DurableObject, Lab
from durable_lab.workload import run_workload
from widgets._reducers import MetricsReducer, TimelineReducer, fold
from widgets.attribution_view import show_on_timeline
from widgets.metrics import log_ticks
from widgets.timeline import fit_labels


class Room(DurableObject):
    async def post(self, user, text):
        count = (await self.ctx.storage.get("count")) or 0
        self.ctx.storage.put(f"msg:{count:06}", f"{user}: {text}")
        self.ctx.storage.put("count", count + 1)
        return count + 1


class Report(DurableObject):
    async def slow_report(self):
        async def work():
            await durable_lab.sleep(5)  # slow I/O inside the critical section
            return "report"
        return await self.ctx.blockConcurrencyWhile(work)

    async def ping(self):
        return "pong"


class Reminder(DurableObject):
    async def remind_in(self, seconds):
        self.ctx.storage.setAlarm((durable_lab.now() + seconds) * 1000)

    async def alarm(self, alarm_info):
        self.ctx.storage.put("fired", True)


def _percentiles(m) -> dict[str, float]:
    html = m.percentiles.value
    return {q: float(v) for q, v in re.findall(r"(p50|p95|p99) <b>([0-9.]+)</b>", html)}


def _attr(html: str, name: str) -> str:
    found = re.search(rf'{name}="([^"]*)"', html)
    assert found, f"{name} not in {html[:200]}"
    return found.group(1)


def _draw(panel) -> None:
    """Everything the lab emitted, folded and drawn now (as the next frame would)."""
    panel._feed.flush(force=True)
    if hasattr(panel, "_last_sample"):
        panel._last_sample = 0.0
    panel.refresh()


# -- 1. time is the lab's time ------------------------------------------------------------------


async def test_metrics_show_lab_clock_latency_with_the_network_trips():
    """Lesson 10: calls of 10-230 ms of lab time on an auto clock read as such, not 0.0."""
    world = Lab(storage="memory", seed=1, clock="auto", network="cloudflare-regions")
    rooms = world.bind("ROOMS", Room)
    m = widgets.metrics(world)
    try:
        await world.client("wnam").env.ROOMS.getByName("global").post("founder", "first!")
        result = await run_workload(rooms, method="post", args=("m", "hi"), clients=10,
                                    per_client=4, names=["global"],
                                    regions=["wnam", "weur", "apac-ne", "sam", "oc"],
                                    timing="lab")
        _draw(m)
        shown = _percentiles(m)
        lab_ms = sorted(c.latency * 1000 for c in result.calls)
        assert shown["p50"] == pytest.approx(lab_ms[len(lab_ms) // 2], abs=0.1)
        assert shown["p50"] >= 100  # 145 ms: most regions cross an ocean twice
        assert max(m.latency.data["ms"]) == pytest.approx(max(lab_ms), abs=0.01)
        assert min(m.latency.data["ms"]) == pytest.approx(10.0, abs=0.01)  # wnam's local trip
        assert int(_attr(m.percentiles.value, "data-answered")) == 41  # every call, exactly
    finally:
        m.close()
        await world.close()


async def test_rates_are_per_interval_of_lab_time_on_a_manual_clock():
    async with Lab(storage="memory", seed=1, clock="manual") as lab:
        stub = lab.bind("COUNTER", Counter).getByName("c")
        m = widgets.metrics(lab)
        for _ in range(10):
            await stub.increment()
        lab.clock.advance(2.0)  # seven empty intervals of 0.25 s, then 5 calls
        for _ in range(5):
            await stub.increment()
        lab.clock.advance(0.25)
        await stub.value()
        _draw(m)
        # (the last row closes the last interval's step: the same values, at its end)
        data = {k: list(v)[:-1] for k, v in m.rates.data.items()}
        assert list(m.rates.data["t"])[-1] == 2.5
        by_t = dict(zip(data["t"], data["calls_per_s"], strict=True))
        assert by_t[0.0] == 10 / 0.25  # ten calls in the first quarter second of lab time
        assert by_t[0.25] == 0.0 and by_t[1.75] == 0.0  # the gap: its first and last interval
        assert by_t[2.0] == 5 / 0.25
        assert by_t[2.25] == 1 / 0.25  # the open interval, the last call counted at once
        assert sum(v * 0.25 for v in data["calls_per_s"]) == 16
        assert len(data["t"]) == 5  # an empty stretch is two rows, not one per interval
        # The axis is lab seconds since the panel opened, whatever the wall clock did.
        assert m._f1.x_range.start == 0.0 and m._f1.x_range.end >= 2.5
        m.close()


async def test_the_latest_call_is_counted_without_waiting_for_another_event():
    """Lesson 04 counted "35 calls after 36": the last call's reply was not held, and the
    reducer waited for the next event to know."""
    async with Lab(storage="memory", seed=1) as lab:
        stub = lab.bind("COUNTER", Counter).getByName("c")
        m = widgets.metrics(lab)
        await stub.increment()
        for _ in range(35):
            await stub.value()  # reads only: nothing to commit, the reply is not held
        _draw(m)
        assert _attr(m.percentiles.value, "data-calls") == "36"
        assert _attr(m.percentiles.value, "data-answered") == "36"
        m.close()


async def test_a_late_frame_draws_fewer_dots_but_its_percentiles_count_every_call():
    """Lesson 06 under load (CI): 400 calls answered before the first frame came. The plot
    drew every second dot; the percentiles then spoke of "200 recent calls, a sample"
    although every call had been followed."""
    async with Lab(storage="memory", seed=1, commit_latency=0.001) as lab:
        stub = lab.bind("COUNTER", Counter).getByName("c")
        m = widgets.metrics(lab)
        m._last_sample = float("inf")  # no frame until _draw: all 400 answered first
        await asyncio.gather(*(stub.increment() for _ in range(400)))
        _draw(m)
        html = m.percentiles.value
        assert "latency of 400 recent calls (ms of lab time)" in html, html
        assert len(m.latency.data["ms"]) == 200  # the plot: one dot in two
        m._last_sample = float("inf")
        # The next 400 calls came while the reducer followed one in two: a sample, said so.
        await asyncio.gather(*(stub.increment() for _ in range(400)))
        _draw(m)
        html = m.percentiles.value
        assert "latency of 600 recent calls (ms of lab time, a sample)" in html, html
        m.close()


async def test_timeline_on_lab_time_gives_distance_its_width():
    """Lesson 10: a post from Amsterdam to Tokyo (230 ms round trip) is 23 times as wide as
    Tokyo's own (10 ms); the object's work between the trips is a sliver."""
    lab = Lab(storage="memory", seed=1, clock="auto", network="cloudflare-regions")
    lab.bind("ROOMS", Room)
    view = widgets.watch(lab, lab.env.ROOMS.getByName("tokyo"), x="time")
    tl = view.timeline
    try:
        assert tl.x == "time" and tl.figure.xaxis[0].axis_label == "lab time (ms)"
        for region in ("apac-ne", "weur"):
            await lab.client(region).env.ROOMS.getByName("tokyo").post(region, "hello")
        _draw(tl)
        data = tl.segments.data
        trips: dict[int, list[float]] = {}
        for d, kind, left, right in zip(data["delivery"], data["kind"], data["t_left"],
                                        data["t_right"], strict=True):
            if kind == "network":
                trips.setdefault(int(d), []).append(right - left)
        (tokyo, amsterdam) = sorted(trips)
        assert sum(trips[tokyo]) == pytest.approx(10.0, abs=0.01)
        assert sum(trips[amsterdam]) == pytest.approx(230.0, abs=0.01)
        # The glyphs draw the lab-time columns, outlined so the zero-width work still shows.
        assert tl.figure.renderers[0].glyph.left == "t_left"
        assert tl.figure.renderers[0].glyph.line_alpha == 1.0
        work = [right - left for d, k, left, right in zip(data["delivery"], data["kind"],
                                                          data["t_left"], data["t_right"],
                                                          strict=True)
                if int(d) == amsterdam and k != "network"]
        assert work and max(work) < 1.0  # the sliver: no lab time on an auto clock
        # The window follows lab time: the whole of both calls is in view.
        assert tl.figure.x_range.start <= 0.0 and tl.figure.x_range.end >= 240.0
    finally:
        view.close()
        await lab.close()


async def test_the_x_axis_toggle_repoints_the_glyphs_and_loses_nothing(lab):
    stub = lab.env.COUNTER.getByName("a")
    tl = widgets.timeline(lab, stub)
    assert tl.x == "events"
    await asyncio.gather(*(stub.increment() for _ in range(3)))
    _draw(tl)
    rows = len(tl.segments.data["delivery"])
    tl.x_axis.value = "time"  # the toggle in the panel
    glyph = tl.figure.renderers[0].glyph
    assert (glyph.left, glyph.right) == ("t_left", "t_right")
    assert tl.gate_figure.renderers[0].glyph.left == "t_left"
    assert len(tl.segments.data["delivery"]) == rows
    # Lab time is ms since the timeline opened: small and non-negative on a real clock.
    assert 0 <= min(tl.segments.data["t_left"]) <= max(tl.segments.data["t_right"]) < 60_000
    tl.x_axis.value = "events"
    assert tl.figure.renderers[0].glyph.left == "left"
    with pytest.raises(ValueError, match="x must be one of"):
        widgets.timeline(lab, stub, x="seconds")
    tl.close()


async def test_where_time_went_scrolls_a_lab_time_timeline_in_its_units():
    async with Lab(storage="memory", seed=1, clock="manual") as lab:
        stub = lab.bind("REPORT", Report).getByName("r")
        tl = widgets.timeline(lab, stub, x="time")
        report = asyncio.ensure_future(stub.slow_report())
        await lab.scheduler.settle()
        lab.clock.advance(5)
        await report
        _draw(tl)
        assert show_on_timeline(tl, 1)
        x_range = tl.figure.x_range
        # The call spans 5,000 ms of lab time; the view shows it with a margin in ms.
        assert x_range.start < 0 and 5000 < x_range.end < 6000
        assert tl.figure.yaxis[0].major_label_overrides[1] == "1 slow_report"  # lane in view
        tl.close()


# -- 2. nothing is missed by sampling ---------------------------------------------------------


async def test_a_burst_of_400_calls_at_one_object_shows_its_queue():
    """Lesson 06: "the queue-depth plot shows that one queue". A 0.3 s burst falls between
    four-a-second samples; per interval of lab time its highest depth is kept."""
    async with Lab(storage="memory", seed=1, commit_latency=0.002) as lab:
        stub = lab.bind("COUNTER", Counter).getByName("hot")
        m = widgets.metrics(lab)
        m._feed.stop()  # no frame during the burst: only what the events say counts
        await asyncio.gather(*(stub.increment() for _ in range(400)))
        await lab.wait_idle()
        _draw(m)
        assert m.reducer.depth == 0  # drained: a sample taken now would say 0
        depth = np.asarray(m.rates.data["queue_depth"])
        busiest = np.asarray(m.rates.data["max_queue"])
        assert depth.max() >= 390 and busiest.max() >= 390  # the one queue, nearly all 400
        calls = np.asarray(m.rates.data["calls_per_s"][:-1]) * m.reducer.interval
        assert round(calls.sum()) == 400  # every call counted in its interval
        assert m._f2.y_range.end >= depth.max()  # and the axis shows it
        m.close()


async def test_lesson_06s_hot_object_queue_shows_on_the_queue_depth_plot():
    """The lesson's own workload: 8 clients, 400 increments, 90 % at one object."""
    async with Lab(storage="memory", seed=1, commit_latency=0.002) as hot:
        counters = hot.bind("COUNTER", Counter)
        m = widgets.metrics(hot)
        await run_workload(counters, method="increment", clients=8, calls=400, objects=8,
                           distribution="hot", skew=0.9, seed=1)
        _draw(m)
        busiest = list(m.rates.data["max_queue"])
        assert max(busiest) >= 5  # the hot object's queue (8 clients: at most 7-8 waiting)
        assert not m._empty[1].visible
        m.close()


def test_queue_depth_per_interval_is_the_highest_reached_in_it():
    from durable_lab import events as ev

    def queued(seq, t, d, q):
        return ev.DeliveryQueued(seq=seq, time=t, object="C:a", delivery=d,
                                 kind_of_delivery="rpc", method="m", queue_length=q)

    def started(seq, t, d):
        return ev.DeliveryStarted(seq=seq, time=t, object="C:a", delivery=d, method="m")

    events = [queued(i, 0.01 * i, i, i) for i in range(1, 6)]  # up to 5 within 0.05 s
    events += [started(5 + i, 0.06 + 0.01 * i, i) for i in range(1, 6)]  # drained by 0.11 s
    events += [queued(20, 0.6, 9, 1)]
    m = fold(MetricsReducer(interval=0.25, origin=0.0), events)
    rows = m.take_rows()
    assert rows[0][0] == 0.0 and rows[0][3] == 5.0 and rows[0][4] == 5.0
    assert rows[1][0] == 0.25 and rows[1][3] == 0.0  # nothing queued in 0.25-0.5
    assert m.open_row()[0] == 0.5 and m.open_row()[3] == 1.0


# -- 3. what the plots draw -------------------------------------------------------------------


async def test_awaiting_io_inside_a_critical_section_is_drawn_gate_held():
    """Lesson 06: no yellow "awaiting io (gate open)" while blockConcurrencyWhile holds the
    gate; the section is one red span and the ping waits grey."""
    async with Lab(storage="memory", seed=1, clock="manual") as lab:
        stub = lab.bind("REPORT", Report).getByName("r")
        tl = widgets.timeline(lab, stub)
        report = asyncio.ensure_future(stub.slow_report())
        await lab.scheduler.settle()
        lab.clock.advance(1)
        ping = asyncio.ensure_future(stub.ping())
        await lab.scheduler.settle()
        lab.clock.advance(4)
        await asyncio.gather(report, ping)
        _draw(tl)
        seg = tl.segments.data
        gates = tl.gate_spans.data
        section = [(left, right) for lane, label, left, right in zip(
            gates["lane"], gates["label"], gates["left"], gates["right"], strict=True)
            if lane == "input gate" and label == "critical"]
        assert len(section) == 1
        s_left, s_right = section[0]
        kinds_inside = {k for k, left, right in zip(seg["kind"], seg["left"], seg["right"],
                                                     strict=True)
                        if left < s_right and right > s_left}
        assert "awaiting io" not in kinds_inside
        assert "awaiting io, gate held" in kinds_inside and "queued" in kinds_inside
        tl.close()


async def test_a_failed_commit_is_red_and_labelled_failed(lab):
    """Lesson 03: the failed commit is not a blue "commit in flight" span."""
    stub = lab.env.COUNTER.getByName("acct")
    await stub.increment()
    tl = widgets.timeline(lab, stub)
    lab.faults.fail_next_commit(stub)
    with pytest.raises(Exception):  # noqa: B017 - the reset's error, whatever its class
        await stub.increment()
    _draw(tl)
    gates = tl.gate_spans.data
    commits = [(kind, label) for lane, kind, label in zip(gates["lane"], gates["kind"],
                                                          gates["label"], strict=True)
               if lane == "commit"]
    assert commits and commits[-1][0] == "commit failed" and "failed" in commits[-1][1]
    from widgets._theme import GATE_COLORS
    assert GATE_COLORS["commit failed"] == "#d62728"
    assert "✗ failed" in list(tl.markers.data["label"])
    # Its commit marker is red too, not the green diamond of a commit that landed: the
    # diamonds' colour comes from the "ok" column (0: the palette's first colour, red).
    marks = tl.markers.data
    failed = [bool(ok) for ok, label in zip(marks["ok"], marks["label"], strict=True)
              if label == "✗ failed"]
    assert failed == [False]
    diamonds = [r.glyph for r in tl.figure.renderers
                if getattr(r.glyph, "marker", None) == "diamond"]
    fill = diamonds[0].fill_color
    assert fill["field"] == "ok" and list(fill["transform"].palette) == ["#d62728", "#2ca02c"]
    tl.close()


async def test_an_alarm_lane_is_named_alarm():
    """Lesson 05: the lane of an alarm delivery says so."""
    async with Lab(storage="memory", seed=1, clock="manual") as lab:
        stub = lab.bind("REMINDERS", Reminder).getByName("ada")
        tl = widgets.timeline(lab, stub)
        await stub.remind_in(30)
        lab.clock.advance(30)
        await lab.wait_idle()
        _draw(tl)
        names = tl.reducer.names
        alarm = [d for d, name in names.items() if name == "alarm"]
        assert alarm
        labels = tl.figure.yaxis[0].major_label_overrides
        assert labels[alarm[0]] == f"{alarm[0]} alarm"
        assert labels[1] == "1 remind_in"
        tl.close()


async def test_the_delivery_lanes_range_follows_the_lanes_in_use(lab):
    stub = lab.env.COUNTER.getByName("a")
    tl = widgets.timeline(lab, stub)
    await asyncio.gather(stub.increment(), stub.increment())
    _draw(tl)
    y = tl.figure.y_range
    assert (y.start, y.end) == (0.5, 3.5)  # two lanes: not 0.5-16.5 squashed at the bottom
    assert list(tl.figure.yaxis[0].ticker.ticks) == [1, 2, 3]
    await asyncio.gather(*(stub.increment() for _ in range(40)))
    _draw(tl)
    assert y.end == 42.5 and y.end - y.start == tl.lanes  # the newest 16 lanes
    tl.close()


def test_gate_labels_are_thinned_to_those_that_fit():
    # Ten spans 1 unit wide next to each other: at 10 px a unit none fits "#38" (3 chars).
    lefts = list(range(10))
    rights = [x + 1 for x in lefts]
    texts = ["#3", "#38", "#4"] * 3 + ["#5"]
    assert fit_labels(lefts, rights, texts, 0, 10, 100) == []
    # At 100 px a unit each one fits inside its own span and after the previous one.
    assert fit_labels(lefts, rights, texts, 0, 10, 1000) == list(range(10))
    # Wide spans that overlap in x: the second starts before the first label ends.
    assert fit_labels([0, 0.5], [10, 10], ["#1", "#2"], 0, 10, 100) == [0]


async def test_busy_gate_lanes_never_draw_overlapping_labels(lab):
    stub = lab.env.COUNTER.getByName("a")
    tl = widgets.timeline(lab, stub)
    await asyncio.gather(*(stub.increment() for _ in range(60)))
    _draw(tl)
    labels = tl.gate_labels.data
    x_range = tl.figure.x_range
    per_px = (x_range.end - x_range.start) / (tl.width_px - 110)
    for lane in ("input gate", "commit"):
        xs = sorted((x, text) for x, on, text in zip(labels["x"], labels["lane"],
                                                     labels["label"], strict=True) if on == lane)
        assert xs, f"no label at all on {lane}"
        for (x1, t1), (x2, _t2) in itertools.pairwise(xs):
            assert (x2 - x1) / per_px >= len(t1) * 6.5  # the next starts after this one ends
    tl.close()


def test_log_axis_ticks_are_decades_only():
    major, minor = log_ticks(1650)
    assert major == [1.0, 10.0, 100.0, 1000.0, 10000.0]
    assert 2.0 in minor and 5000.0 in minor and 1.0 not in minor


async def test_the_batch_histogram_labels_only_decades(lab):
    m = widgets.metrics(lab)
    stub = lab.env.COUNTER.getByName("a")
    for _ in range(40):
        await stub.increment()
    _draw(m)
    ticker = m._f3.yaxis[0].ticker
    assert list(ticker.ticks) == [1.0, 10.0, 100.0, 1000.0]  # 40 commits: range up to 120
    assert m._f3.y_range.end == 120
    m.close()


def test_the_timeline_reducer_keeps_both_coordinates():
    from durable_lab import events as ev

    events = [ev.DeliveryQueued(seq=1, time=100.0, object="C:a", delivery=1,
                                kind_of_delivery="rpc", method="m", queue_length=1),
              ev.DeliveryStarted(seq=2, time=100.5, object="C:a", delivery=1, method="m"),
              ev.DeliveryFinished(seq=3, time=100.5, object="C:a", delivery=1, ok=True)]
    tl = fold(TimelineReducer(origin=100.0), events)
    seg, _ = tl.take()
    assert seg["kind"] == ["queued", "running"]
    assert seg["left"] == [1, 2] and seg["t_left"] == [0.0, 500.0]
    assert seg["t_right"] == [500.0, 500.0]  # the turn took no lab time: zero width, kept
    assert seg["right"] == [2, 3]  # on the event axis each is at least an event wide
    gates = fold(TimelineReducer(origin=100.0), [
        ev.InputGateLocked(seq=1, time=100.0, object="C:a", holder="delivery 1", waiting=0),
        ev.InputGateUnlocked(seq=1, time=100.0, object="C:a", holder="delivery 1", waiting=0),
    ]).gates.take()
    assert gates["right"] == [1.6] and gates["t_right"] == [0.0]  # MIN_EVENT_WIDTH; true time
