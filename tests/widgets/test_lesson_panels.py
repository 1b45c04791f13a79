"""The panels lessons use: the clickable scheduler, the gate lanes, slow motion, the focused
``watch`` panel, and the defects the issue listed (failed replies in red, held-reply counts,
lab closed, projector scale). Headless: real labs, assertions on widget traits and Bokeh data."""

from __future__ import annotations

import asyncio
import re

from lab_fixtures import Counter, two_increments

import widgets
from durable_lab import DurableObject, Lab
from widgets._reducers import GateLanes, ObjectState, StorageReducer, fold
from widgets.object_view import render_object_html


def _attr(html: str, name: str) -> str:
    m = re.search(rf'{name}="([^"]*)"', html)
    assert m, f"{name} not in {html[:300]}"
    return m.group(1)


async def test_a_click_on_a_transition_takes_exactly_that_one(lab):
    stub = lab.env.COUNTER.getByName("a")
    panel = widgets.scheduler(lab, stub)
    lab.pause()
    calls = [asyncio.ensure_future(stub.increment()) for _ in range(2)]
    await lab.step()  # the constructor
    await lab.scheduler.settle()
    panel.refresh()
    buttons = [b for b in panel.buttons.children if "dl-choice-button" in b._dom_classes]
    assert len(buttons) == 2, [b.description for b in buttons]  # both calls may be admitted
    assert all("admit" in b.description for b in buttons)
    before = lab.scheduler.steps_taken
    second = buttons[1].description
    buttons[1].click()  # the learner admits the second call first
    for _ in range(50):
        await asyncio.sleep(0.01)
        if panel.clicks:
            break
    assert lab.scheduler.steps_taken == before + 1
    assert panel.last_taken in second
    panel.refresh()
    assert _attr(panel.status.value, "data-steps") == str(before + 1)
    # The clicked call was admitted: only the other one is left to admit.
    admits = [c.description for c in lab.choices() if c.kind == "admit"]
    assert len(admits) <= 1 and all(a not in second for a in admits)
    lab.resume()
    assert sorted(await asyncio.gather(*calls)) == [1, 2]
    panel.close()


async def test_a_stale_click_is_refused_in_words_not_taken(lab):
    stub = lab.env.COUNTER.getByName("a")
    panel = widgets.scheduler(lab, stub)
    lab.pause()
    call = asyncio.ensure_future(stub.increment())
    await lab.scheduler.settle()
    panel.refresh()
    key = panel._shown[0]
    await lab.step()  # someone else took it (the Step button, a cell)
    steps = lab.scheduler.steps_taken
    assert await panel.take(key) is None
    assert lab.scheduler.steps_taken == steps
    assert "no longer possible" in panel.status.value
    lab.resume()
    await call
    panel.close()


async def test_lab_choose_accepts_a_choice_and_refuses_a_stale_one(lab):
    stub = lab.env.COUNTER.getByName("a")
    lab.pause()
    call = asyncio.ensure_future(stub.increment())
    await lab.scheduler.settle()
    (ctor,) = lab.choices()
    taken = await lab.choose(ctor)
    assert taken.kind == "constructor"
    try:
        await lab.choose(ctor)
    except LookupError as exc:
        assert "no longer possible" in str(exc)
    else:
        raise AssertionError("a stale choice was taken")
    lab.resume()
    await call


async def test_gate_lanes_keep_every_closed_gate_as_a_span():
    events = await two_increments()
    lanes = fold(_GateFolder(GateLanes("COUNTER:room-1")), events).lanes
    rows = lanes.take()
    closed = [i for i, lane in enumerate(rows["lane"]) if lane == "input gate"]
    # constructor + two deliveries: each closed the gate once, for at least one event
    assert len(closed) >= 3
    assert {rows["label"][i] for i in closed} >= {"#1", "#2"}
    assert all(rows["right"][i] > rows["left"][i] for i in closed)
    assert "commit" in rows["lane"] and "output gate" in rows["lane"]
    assert not lanes.open  # everything closed again at the end


class _GateFolder:
    def __init__(self, lanes: GateLanes) -> None:
        self.lanes = lanes

    def apply(self, e) -> None:
        self.lanes.apply(e, e.seq)


async def test_timeline_draws_gate_spans_at_full_speed(lab):
    stub = lab.env.COUNTER.getByName("a")
    t = widgets.timeline(lab, stub)
    await asyncio.gather(*[stub.increment() for _ in range(4)])
    t._feed.flush()
    kinds = list(t.gate_spans.data["kind"])
    assert kinds.count("gate closed") >= 4  # constructor + 4 deliveries
    assert "replies held" in kinds and "commit in flight" in kinds
    assert t.gate_figure.title.text == "Gates of COUNTER:a"
    t.close()


async def test_slow_motion_steps_at_the_chosen_rate_and_ends_on_full_speed(lab):
    stub = lab.env.COUNTER.getByName("a")
    view = widgets.watch(lab, stub, speed=20)
    assert lab.paused
    seen_closed = []
    sub = lab.subscribe(lambda e: None)
    calls = asyncio.gather(stub.increment(), stub.increment())
    for _ in range(400):
        await asyncio.sleep(0.02)  # the feed's own task draws the frames
        seen_closed.append(_attr(view.object_view.html.value, "data-gate"))
        if calls.done():
            break
    assert sorted(await calls) == [1, 2]
    # Slow enough for a frame to catch the gate closed, several times.
    assert seen_closed.count("closed") >= 2, seen_closed
    steps = lab.scheduler.steps_taken
    assert steps >= 6
    view.full_speed()
    assert not lab.paused
    assert await stub.increment() == 3
    sub.close()
    view.close()
    assert lab.bus.subscriber_count == 0


async def test_resuming_the_lab_by_hand_ends_slow_motion(lab):
    stub = lab.env.COUNTER.getByName("a")
    view = widgets.watch(lab, stub, speed=20, timeline=False)
    await asyncio.sleep(0.1)
    lab.resume()
    await asyncio.sleep(0.15)  # the autoplay loop notices and stops
    assert not lab.paused
    assert await stub.increment() == 1
    view.close()


async def test_watch_with_the_scheduler_shares_one_subscription(lab):
    stub = lab.env.COUNTER.getByName("a")
    view = widgets.watch(lab, stub, scheduler=True, storage=True)
    assert lab.bus.subscriber_count == 1
    again = widgets.watch(lab, stub)  # re-running the cell replaces it
    assert view.closed and lab.bus.subscriber_count == 1
    again.close()
    assert lab.bus.subscriber_count == 0


def test_the_status_word_is_kept_whole_in_a_narrow_header():
    """Lesson 08 side by side: the header's flex row squeezed the status chip "reset" into
    "res / et". The chip sits in a box that does not shrink or wrap."""
    html = render_object_html(ObjectState("C:a", status="reset"))
    box = re.search(r'<span style="([^"]*)"><span class="dl-status"', html)
    assert box and "flex:none" in box.group(1) and "white-space:nowrap" in box.group(1)


def test_failed_replies_are_red_and_ok_ones_green():
    s = ObjectState("C:a")
    s.released.extend([(1, True), (2, False)])
    html = render_object_html(s)
    ok = re.search(r'<span class="dl-chip dl-released dl-ok"[^>]*background:([^;]+);', html)
    bad = re.search(r'<span class="dl-chip dl-released dl-failed"[^>]*background:([^;]+);', html)
    assert ok and bad
    assert ok.group(1) == "#2ca02c" and bad.group(1) == "#d62728"
    assert "#2 ✗ ERROR" in html


def test_a_held_reply_does_not_wait_for_a_batch_that_landed():
    from durable_lab import events as ev
    s = ObjectState("C:a")
    s.apply(ev.ReplyHeld(seq=1, time=0, object="C:a", delivery=68, waiting_for=1))
    assert "#68 waits for 1 commit" in render_object_html(s)
    s.apply(ev.CommitDone(seq=2, time=0, object="C:a", batch=17, keys=1, duration=0.0))
    html = render_object_html(s)
    assert "waits for 1" not in html and "#68 commit landed" in html
    assert "batch 17 landed" in html


async def test_lab_closed_is_shown_as_closed_not_as_a_reset():
    lab = Lab(storage="memory", seed=1)
    stub = lab.bind("C", Counter).getByName("a")
    view = widgets.object_view(lab, stub)
    fleet = widgets.fleet(lab)
    await stub.increment()
    await lab.close()
    view._feed.flush()
    html = view.html.value
    assert _attr(html, "data-status") == "closed"
    assert "LAB CLOSED" in html and "RESET" not in html
    assert list(fleet.source.data["status"]) == ["closed"]
    assert fleet.source.data["line"][0] != "#d62728"  # not red
    view.close()
    fleet.close()


def test_a_pending_key_is_not_lost_when_the_lab_closes_without_losing_writes():
    from durable_lab import events as ev
    r = StorageReducer()
    r.apply(ev.StorageOp(seq=1, time=0, object="C:a", delivery=1, op="put", keys=("n",),
                         cache="write"))
    r.apply(ev.InstanceReset(seq=2, time=0, object="C:a", reason="labClosed", error="",
                             stubs_broken=True, lost_writes=0))
    assert r.counts("C:a") == {}


def test_projector_scale_enlarges_the_object_view():
    s = ObjectState("C:a")
    assert "zoom" not in render_object_html(s)
    assert "zoom:1.5" in render_object_html(s, 1.5)


class Notes(DurableObject):
    async def add(self, n: int) -> int:
        return n


def test_fleet_labels_name_the_binding_and_fit_a_cell():
    from widgets.fleet import short_label
    assert short_label("PAGES:page-1") == "PAGES:page-1"
    assert short_label("BOOKS:page-1") != short_label("PAGES:page-1")
    assert len(short_label("VERYLONGBINDING:some-long-object-name")) <= 14


async def test_a_narrow_fleet_shortens_labels_to_fit_its_cells(lab):
    # The dashboard's fleet is 400 px wide, four cells to a row: "COUNTER:room-1" ran over the
    # cell's edge there (seen in the dashboard screenshot). The label's first line fits.
    from widgets.fleet import FleetView

    narrow = FleetView(lab, width=400, register=False)
    wide = FleetView(lab, width=1200, register=False)
    for i in range(4):
        await lab.env.COUNTER.getByName(f"room-{i}").increment()
    for view in (narrow, wide):
        view._feed.flush()
    first_lines = {view: [text.split("\n")[0] for text in view.source.data["text"]]
                   for view in (narrow, wide)}
    limit = narrow.label_limit(4)
    assert limit < len("COUNTER:room-1")
    assert first_lines[narrow] and all(len(t) <= limit for t in first_lines[narrow])
    assert len(set(first_lines[narrow])) == 4  # still one name per object
    assert "COUNTER:room-1" in first_lines[wide]  # room enough: the whole label
    assert set(narrow.source.data["ink"]) == {"#111827"}  # cool cells: dark text
    row = narrow.reducer.rows["COUNTER:room-0"]
    row.heat = row.peak = narrow.mapper.high = 20  # the hottest colour: white text on it
    narrow.refresh()
    ink = dict(zip(narrow.source.data["label"], narrow.source.data["ink"], strict=True))
    assert ink["COUNTER:room-0"] == "#ffffff" and ink["COUNTER:room-1"] == "#111827"
    narrow.close()
    wide.close()


async def test_one_object_is_one_cell_of_the_fleet_not_the_whole_plot(lab):
    stub = lab.env.COUNTER.getByName("a")
    fleet = widgets.fleet(lab)
    await stub.increment()
    fleet._feed.flush()
    x, y = fleet.figure.x_range, fleet.figure.y_range
    assert (x.end - x.start) >= 4 and (y.end - y.start) >= 4  # a 4x4 grid at least
    assert next(iter(fleet.source.data["text"])).startswith("COUNTER:a")
    fleet.close()


def test_latency_axis_follows_the_99th_percentile_not_an_outlier():
    from widgets.metrics import latency_axis_top
    values = [5.0] * 300 + [25_000.0]
    top, above = latency_axis_top(values)
    assert top < 100 and above == 1
    assert latency_axis_top([]) == (1.0, 0)


async def test_metrics_start_readable_and_use_a_log_scale_for_batches(lab):
    m = widgets.metrics(lab)
    f1, f3 = m._f1, m._f3
    assert (f1.y_range.start, f1.y_range.end) == (0, 1)  # not -1..1 while empty
    assert all(note.visible for note in m._empty)
    assert type(f3.y_scale).__name__ == "LogScale"
    stub = lab.env.COUNTER.getByName("a")
    for _ in range(3):
        await stub.increment()
    await stub.write_many(40)
    m._last_sample = 0.0
    m._feed.flush()
    m._last_sample = 0.0
    m.render()
    counts = list(m.batches.data["count"])
    assert counts[0] == 3 and sum(counts) == 4
    assert next(iter(m.batches.data["top"])) == 3 and min(m.batches.data["top"]) > 0
    assert not m._empty[2].visible
    legends = [r for r in f1.above if type(r).__name__ == "Legend"]
    assert legends and f1.legend[0] not in f1.center
    m.close()


async def test_dashboard_scale_enlarges_plots_and_text(lab):
    small = widgets.dashboard(lab)
    w1, font1 = small.timeline.figure.width, small.timeline.figure.title.text_font_size
    big = widgets.dashboard(lab, scale=1.5)
    assert big.timeline.figure.width == round(w1 * 1.5)
    assert int(big.timeline.figure.title.text_font_size[:-2]) > int(font1[:-2])
    assert "zoom:1.5" in big.object_view.html.value
    big.close()
    try:
        widgets.dashboard(lab, scale=10)
    except ValueError as exc:
        assert "scale" in str(exc)
    else:
        raise AssertionError("scale=10 was accepted")


async def test_running_a_cell_again_closes_the_panels_its_last_run_made():
    from widgets import _feed
    first_lab = Lab(storage="memory", seed=1)
    first = widgets.object_view(first_lab)
    _feed.claim_for_cell(first, ("cell-7", 1))
    other = widgets.fleet(first_lab)
    _feed.claim_for_cell(other, ("cell-7", 1))  # the same run made two panels: both stay
    assert not first.closed and not other.closed
    # The learner runs the lesson again: a new Lab, the same cell, a new execution count.
    second_lab = Lab(storage="memory", seed=1)
    again = widgets.object_view(second_lab)
    _feed.claim_for_cell(again, ("cell-7", 2))
    assert first.closed and other.closed and not again.closed
    assert first_lab.bus.subscriber_count == 0 and second_lab.bus.subscriber_count == 1
    assert widgets.live_feeds() >= 1
    again.close()
    await first_lab.close()
    await second_lab.close()


async def test_slow_motion_does_not_tell_the_learner_the_lab_is_paused(lab, caplog):
    stub = lab.env.COUNTER.getByName("a")
    view = widgets.watch(lab, stub, speed=20, timeline=False)
    await asyncio.sleep(0.05)
    with caplog.at_level("WARNING", logger="durable_lab"):
        assert await stub.increment() == 1
    assert "paused" not in caplog.text
    view.full_speed()
    view.close()
    assert lab.scheduler.note_paused_calls  # restored


async def test_a_frame_goes_out_as_one_patch_message(lab):
    """jupyter_bokeh sends each document change as a message serialised against the whole
    document; a frame batches them into one (the price of watching at saturation)."""
    import json
    stub = lab.env.COUNTER.getByName("a")
    t = widgets.timeline(lab, stub)
    sent: list[dict] = []
    t.plot.send = lambda content, buffers=None: sent.append(content)
    await asyncio.gather(*[stub.increment() for _ in range(5)])
    t._feed.flush()
    headers = [json.loads(m["payload"]) for m in sent if "payload" in m
               and '"msgtype"' in m["payload"]]
    assert len(headers) == 1 and headers[0]["msgtype"] == "PATCH-DOC"
    contents = [json.loads(m["payload"]) for m in sent if "payload" in m
                and '"events"' in m["payload"]]
    kinds = {e["kind"] for e in contents[0]["events"]}
    assert "ColumnsStreamed" in kinds and "ModelChanged" in kinds  # rows and ranges together
    assert len(contents[0]["events"]) >= 4
    t.close()


async def test_a_held_reply_whose_commit_fails_is_released_as_an_error_on_the_stream():
    """Lesson 03: the reply held behind a failing commit reaches its caller as an error; the
    stream must say so (it said ok=True when the reset answered the caller first)."""
    from durable_lab import events as ev
    lab = Lab(storage="memory", seed=1, commit_latency=0.05)
    acct = lab.bind("A", Counter).getByName("alice")
    view = widgets.object_view(lab, "A:alice")
    await acct.increment()
    lab.faults.fail_next_commit(acct)
    rec = lab.record()
    try:
        await acct.increment()
    except Exception:
        pass
    else:
        raise AssertionError("the failed commit's reply was a success")
    await asyncio.sleep(0.05)  # the delivery's task unwinds after the reset answered
    released = [e for e in rec.events if type(e) is ev.ReplyReleased]
    assert [e.ok for e in released] == [False]
    view._feed.flush()
    assert "✗ ERROR" in view.html.value and "dl-failed" in view.html.value
    view.close()
    await lab.close()


def test_a_hot_cell_stays_hot_for_a_while_after_its_queue_drained():
    from durable_lab import events as ev
    from widgets._reducers import FleetReducer
    r = FleetReducer()
    for d in range(1, 6):
        r.apply(ev.DeliveryQueued(seq=d, time=0, object="C:hot", delivery=d,
                                  kind_of_delivery="rpc", method="inc", queue_length=d))
    for d in range(1, 6):
        r.apply(ev.DeliveryStarted(seq=10 + d, time=0, object="C:hot", delivery=d, method="inc"))
        r.apply(ev.DeliveryFinished(seq=20 + d, time=0, object="C:hot", delivery=d, ok=True))
    row = r.rows["C:hot"]
    assert row.queue == 0 and row.peak == 5 and row.done == 5
    r.tick()
    assert 4.5 < row.heat <= 5  # still hot one frame later
    for _ in range(25 * 3):  # three seconds of frames
        r.tick()
    assert 0 < row.heat < 1.5  # faded, not gone at once


async def test_an_object_view_opened_late_knows_the_incarnation(lab):
    stub = lab.env.COUNTER.getByName("a")
    await stub.increment()
    await lab.evict(stub)
    await stub.increment()  # incarnation 2, before any panel exists
    view = widgets.object_view(lab, stub)
    await asyncio.sleep(0.02)
    assert view.state.incarnation == 2
    assert "incarnation 2" in view.html.value
    view.close()
