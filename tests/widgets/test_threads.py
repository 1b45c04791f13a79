"""Widget messages delivered on another thread are handled on the lab's (widgets/_threads.py).

JupyterLab 4.4+ sends widget messages over kernel subshells, which ipykernel 7 handles in
threads of their own while the main thread runs the cell. Here a plain thread stands in for
the subshell: clicks, slider moves and BokehJS view messages sent from it must be handled on
the thread (and event loop) that made the panel, where the lab runs. The browser half is
tests/browser/test_same_cell_browser.py (a page kept a third of a timeline's rows when a
view's message changed the plot's document from the subshell thread mid-frame).
"""

from __future__ import annotations

import asyncio
import threading

from test_late_views import DOCUMENT_READY, _plot

import widgets
from widgets import _threads


def _from_another_thread(fn) -> None:  # type: ignore[no-untyped-def]
    worker = threading.Thread(target=fn, name="subshell-stand-in")
    worker.start()
    worker.join(5)
    assert not worker.is_alive()


async def _until(condition, what: str) -> None:  # type: ignore[no-untyped-def]
    for _ in range(500):
        if condition():
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"timed out waiting for {what}")


async def test_a_call_from_another_thread_runs_on_the_home_loop():
    home = _threads.here()
    assert home is not None and home.loop is asyncio.get_running_loop()
    ran_on: list[int] = []
    results: list[object] = []
    _from_another_thread(lambda: results.append(
        _threads.call_at_home(home, lambda: ran_on.append(threading.get_ident()) or "done")))
    assert results == [None] and ran_on == []  # handed over, not run in the other thread
    await _until(lambda: ran_on, "the handed-over call")
    assert ran_on == [threading.get_ident()]
    # At home it runs at once and returns its result.
    assert _threads.call_at_home(home, lambda: "now") == "now"


def test_without_a_running_loop_there_is_no_home_and_calls_run_in_place():
    assert _threads.here() is None
    seen: list[int] = []
    _from_another_thread(lambda: _threads.call_at_home(
        None, lambda: seen.append(threading.get_ident())))
    assert seen and seen[0] != threading.get_ident()


async def test_a_closed_home_loop_drops_the_call():
    other = asyncio.new_event_loop()
    home = _threads.Home(other, thread=-1)
    other.close()
    assert _threads.call_at_home(home, lambda: 1 / 0) is None  # dropped, not raised


async def test_a_step_click_from_another_thread_steps_the_lab_on_its_own_loop(lab):
    stub = lab.env.COUNTER.getByName("room-1")
    c = widgets.controls(lab, stub)
    c.pause.click()
    call = asyncio.ensure_future(stub.increment())
    await asyncio.sleep(0)
    before = lab.scheduler.steps_taken
    stepped_in: list[int] = []
    real_step = c._on_step

    def recording_step(button):  # type: ignore[no-untyped-def]
        stepped_in.append(threading.get_ident())
        return real_step(button)

    c.step._click_handlers.callbacks.clear()
    c.step.on_click(c.guarded(recording_step))
    _from_another_thread(c.step.click)
    assert stepped_in == []  # not in the clicking thread
    await _until(lambda: lab.scheduler.steps_taken == before + 1, "one step")
    assert stepped_in == [threading.get_ident()]
    while c._tasks:  # the step's task ran on this loop (spawn), not the other thread's
        await asyncio.gather(*c._tasks, return_exceptions=True)
    c.play.click()
    assert await call == 1
    c.close()


async def test_an_error_in_a_handed_over_callback_shows_in_the_panel(lab):
    c = widgets.controls(lab)  # nothing selected: the crash button must say so
    _from_another_thread(c.crash.click)
    await _until(lambda: c.errors.outputs, "the error output")
    (out,) = c.errors.outputs
    assert "no object selected" in out["text"]
    c.close()


async def test_a_view_message_from_another_thread_changes_the_plot_on_the_home_thread():
    model, source = _plot()
    source.stream({"x": [1, 2], "y": [1, 2]})
    refreshed_in: list[int] = []
    real_refresh = model.refresh_bundle

    def recording_refresh() -> bool:
        refreshed_in.append(threading.get_ident())
        return real_refresh()

    model.refresh_bundle = recording_refresh  # type: ignore[method-assign]
    msg = {"content": {"data": {"method": "custom", "content": dict(DOCUMENT_READY)}},
           "buffers": []}
    _from_another_thread(lambda: model._handle_msg(msg))
    assert refreshed_in == []
    await _until(lambda: refreshed_in, "the view's DocumentReady to be handled")
    assert refreshed_in == [threading.get_ident()] and model.bundle_refreshes == 1
    model.close()
