"""The "Where the time went" panel (widgets/attribution_view.py), headless: the bars' source
data are the calls' breakdowns, the percentile table is theirs, and a click explains a call
and selects its delivery on the timeline."""

from __future__ import annotations

import asyncio

import pytest

import durable_lab
import widgets
from durable_lab import DurableObject, Lab
from durable_lab.attribution import PHASES
from durable_lab.workload import run_workload
from widgets.attribution_view import show_on_timeline


class Slow(DurableObject):
    async def write(self, n):
        for i in range(n):
            self.ctx.storage.put(f"k{i}", n)
        return n

    async def nap(self, seconds):
        await durable_lab.sleep(seconds)
        return seconds


def auto_lab(**options) -> Lab:
    lab = Lab(storage="memory", seed=1, clock="auto", **options)
    lab.bind("SLOW", Slow)
    return lab


async def test_bars_are_the_recent_calls_of_the_object_stacked_by_phase():
    lab = auto_lab(commit_latency=0.05)
    panel = widgets.where_time_went(lab, "SLOW:a", slowest=5)
    try:
        stub = lab.env.SLOW.getByName("a")
        await stub.write(3)
        await stub.nap(0.1)
        await lab.env.SLOW.getByName("b").nap(0.2)  # another object: not shown
        panel._feed.flush()
        data = panel.source.data
        assert list(data["call"]) == ["#2 nap", "#1 write"]  # most recent on top
        assert list(panel.figure.y_range.factors) == ["#1 write", "#2 nap"]
        assert data["output_gate"][1] == pytest.approx(50.0, abs=1e-3)
        assert data["io"][0] == pytest.approx(100.0, abs=1e-3)
        for i in range(2):
            assert sum(data[p][i] for p in PHASES) == pytest.approx(data["latency"][i])
        assert data["output_gate_pct"][1] == pytest.approx(100.0)
        # The table: phases with time, p50/p95/p99 in ms.
        table = panel.table.value
        assert 'data-calls="2"' in table
        assert 'data-phase="output_gate"' in table and 'data-phase="io"' in table
        assert 'data-phase="queued"' not in table
        assert panel.errors.outputs == ()
    finally:
        panel.close()
        await lab.close()


async def test_clicking_a_bar_explains_it_and_selects_its_delivery_on_the_timeline():
    lab = auto_lab(commit_latency=0.05)
    timeline = widgets.timeline(lab)
    panel = widgets.where_time_went(lab, "SLOW:a")
    try:
        stub = lab.env.SLOW.getByName("a")
        await stub.write(40)
        await stub.nap(0.1)
        for p in (timeline, panel):
            p._feed.flush()
        assert list(panel.source.data["delivery"]) == [2, 1]
        panel.source.selected.indices = [1]  # a tap on the "write" bar
        assert panel.selected is not None and panel.selected.delivery == 1
        assert "40 write(s) committed in one batch; commit_latency 50 ms" in panel.detail.value
        assert "selected on the timeline" in panel.detail.value
        # The timeline: stopped following, scrolled to delivery 1's events, which are selected.
        assert timeline.follow.value is False
        rows = timeline.segments.selected.indices
        assert rows and {timeline.segments.data["delivery"][i] for i in rows} == {1}
        lefts = [timeline.segments.data["left"][i] for i in rows]
        rights = [timeline.segments.data["right"][i] for i in rows]
        assert timeline.figure.x_range.start <= min(lefts)
        assert timeline.figure.x_range.end >= max(rights)
        assert timeline.figure.y_range.start < 1 < timeline.figure.y_range.end
        assert panel.errors.outputs == ()
        assert show_on_timeline(timeline, 999) is False  # never seen: says so
    finally:
        panel.close()
        timeline.close()
        await lab.close()


async def test_a_workload_result_shows_its_slowest_calls():
    lab = auto_lab(commit_latency=0.01)
    try:
        result = await run_workload(lab.env.SLOW, method="nap", args=lambda i, rng: (i / 1000,),
                                    clients=2, calls=10, objects=2, timing="lab")
        panel = widgets.where_time_went(lab, result=result, slowest=4)
        try:
            data = panel.source.data
            assert len(data["call"]) == 4
            expected = [c.breakdown.delivery for c in result.slowest(4)]
            assert list(data["delivery"]) == expected
            assert data["latency"] == sorted(data["latency"], reverse=True)
            assert all(label.startswith("#") and ".nap" in label for label in data["call"])
            assert "4 slowest calls" in panel.figure.title.text
            panel.source.selected.indices = [0]
            assert panel.selected.delivery == expected[0]
            assert "waiting on other I/O" in panel.detail.value
        finally:
            panel.close()
    finally:
        await lab.close()


async def test_without_a_target_it_follows_the_first_object_a_call_finishes_on():
    lab = auto_lab()
    panel = widgets.where_time_went(lab)
    try:
        assert 'data-calls="0"' in panel.table.value
        await lab.env.SLOW.getByName("z").nap(0.01)
        panel._feed.flush()
        assert panel.target == "SLOW:z"
        assert list(panel.source.data["method"]) == ["nap"]
    finally:
        panel.close()
        await lab.close()
        await asyncio.sleep(0)


def test_slowest_must_be_positive():
    with pytest.raises(ValueError, match="slowest must be an int >= 1"):
        widgets.WhereTimeWent(None, slowest=0)
