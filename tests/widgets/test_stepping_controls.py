"""One set of stepping buttons, and the projector scale's layout (issue 17, item 7).

The Controls bar (Play / Pause / Step +1 / speed) is the only place that pauses, resumes and
steps; the scheduler panel adds the clickable list of transitions under it. Headless: the widget
trees and real labs. What a browser draws at ``scale=1.5`` is measured in
tests/browser/test_dashboard_projector_browser.py.
"""

from __future__ import annotations

import asyncio

import ipywidgets as w

import widgets
from widgets.controls import Controls


def _buttons(root: w.Widget) -> list[w.Button]:
    out, stack = [], [root]
    while stack:
        node = stack.pop()
        if isinstance(node, w.Button):
            out.append(node)
        stack.extend(getattr(node, "children", ()))
    return out


def _stepping(root: w.Widget) -> list[str]:
    """The descriptions of every pause / run / step button under ``root``."""
    return sorted(b.description for b in _buttons(root)
                  if "dl-choice-button" not in b._dom_classes
                  and any(word in b.description for word in ("Play", "Pause", "Run", "Step")))


def _controls(root: w.Widget) -> list[Controls]:
    out, stack = [], [root]
    while stack:
        node = stack.pop()
        if isinstance(node, Controls):
            out.append(node)
        stack.extend(getattr(node, "children", ()))
    return out


ONE_SET = ["Pause", "Step +1", "▶ Play"]


async def test_watch_with_the_scheduler_has_one_set_of_stepping_buttons(lab):
    stub = lab.env.COUNTER.getByName("a")
    view = widgets.watch(lab, stub, scheduler=True)
    assert _stepping(view) == ONE_SET
    assert len(_controls(view)) == 1
    lab.pause()
    call = asyncio.ensure_future(stub.increment())
    await lab.step()  # the constructor
    await lab.scheduler.settle()
    view.controls.refresh()
    view.scheduler.refresh()
    # the next transitions are listed once: as the scheduler's buttons, not also as text
    assert view.controls.next_steps.value == ""
    choices = [b for b in _buttons(view.scheduler) if "dl-choice-button" in b._dom_classes]
    assert [b.description for b in choices] == ["0: admit delivery 1 at COUNTER:a"]
    # a click on the list and the bar's Step take turns on one lock
    assert view.scheduler._lock is view.controls._step_lock
    lab.resume()
    assert await call == 1
    view.close()


async def test_the_scheduler_alone_brings_the_same_bar(lab):
    stub = lab.env.COUNTER.getByName("a")
    panel = widgets.scheduler(lab, stub)
    assert _stepping(panel) == ONE_SET
    (bar,) = _controls(panel)
    assert bar.reducer is panel.reducer and not bar.transitions
    bar.pause.click()
    assert lab.paused
    call = asyncio.ensure_future(stub.increment())
    await lab.scheduler.settle()
    before = lab.scheduler.steps_taken
    bar.step.click()  # the bar's Step +1 takes the oldest: the constructor
    while bar._tasks:
        await asyncio.gather(*bar._tasks, return_exceptions=True)
    assert lab.scheduler.steps_taken == before + 1
    await lab.scheduler.settle()
    panel.refresh()
    assert panel.click(0) is not None  # then the list: admit delivery 1
    while panel._tasks:
        await asyncio.gather(*panel._tasks, return_exceptions=True)
    assert lab.scheduler.steps_taken == before + 2 and panel.clicks == 1
    bar.play.click()
    assert not lab.paused
    assert await call == 1
    panel.close()
    assert bar.closed and lab.bus.subscriber_count == 0


async def test_the_dashboard_and_a_plain_watch_have_one_bar(lab):
    stub = lab.env.COUNTER.getByName("a")
    board = widgets.dashboard(lab, stub)
    assert _stepping(board) == ONE_SET
    board.close()
    view = widgets.watch(lab, stub)
    assert _stepping(view) == ONE_SET
    # without the scheduler, the bar lists the next transitions itself while paused
    lab.pause()
    call = asyncio.ensure_future(stub.increment())
    await lab.scheduler.settle()
    view.controls.refresh()
    assert 'class="dl-choices" data-count="1"' in view.controls.next_steps.value
    lab.resume()
    await call
    view.close()


async def test_projector_scale_zooms_the_html_parts_and_stretches_the_plots(lab):
    board = widgets.dashboard(lab, scale=1.5)
    zoomed = "dl-zoom-150"
    for part in (board.controls, board.picker, board.fleet.summary, board.storage,
                 board.event_log, board.timeline.follow):
        assert zoomed in part._dom_classes, part
    # the page gets the rule the class needs
    styles = [c.value for c in board.children if isinstance(c, w.HTML)]
    assert any(".dl-zoom-150{zoom:1.5}" in v for v in styles), styles
    # no zoomed box holds a plot (BokehJS measures its canvas wrong under zoom)
    for part in (board.controls, board.storage, board.event_log):
        stack = [part]
        while stack:
            node = stack.pop()
            assert type(node).__name__ != "LiveBokehModel", part
            stack.extend(getattr(node, "children", ()))
    # the timeline's and the metrics' plots follow their card's width
    for panel in (board.timeline, board.metrics):
        assert panel.plot._model.sizing_mode == "stretch_width"
    # rows of cards wrap instead of running out of a narrow notebook
    rows = [c for c in board.children if "dl-row" in getattr(c, "_dom_classes", ())]
    assert len(rows) == 3 and all(r.layout.flex_flow == "row wrap" for r in rows)
    board.close()
    plain = widgets.dashboard(lab)
    assert not any(c.startswith("dl-zoom") for c in plain.controls._dom_classes)
    plain.close()
