"""The dashboard on a projector: nothing cut off, nothing drawn over something else (issue 17).

Two windows a workshop uses: 1280x800 with ``widgets.dashboard(lab, scale=1.5)`` and 1920x1080
with ``scale=2``, in JupyterLab as it opens (file browser on the left, so the notebook is the
narrower). For each, the notebook of dashboard_notebook.py (six clients on four objects, long
batches, migrations that close the gate) runs with Run All, and the page's element geometry is
measured (geometry.GEOMETRY_JS: boxes inside the window and their output, every text inside the
boxes that clip it, no two texts overlapping, buttons, menus and text fields wide enough for
their text, plots inside their cards, plot titles and legends inside their plots) at two
moments, each waited for, not sampled:

1. while the workload runs, once the object view shows a batch in flight and replies held (its
   longest chips);
2. after Pause, once the Controls bar lists the next transitions.

Not by eye: the assertion is the list of problems, empty. The 1280x800 screenshot of the
dashboard's top, paused, is ``lessons/dashboard-scale15-1280x800.png`` (SHOTS_DIR=docs/img refreshes
docs/img/lessons/). Plot-internal labels (ticks, gate lane labels) are Bokeh's layout, drawn to
a canvas; they are not measured here.
"""

from __future__ import annotations

import json

import nbformat
import pytest
from dashboard_notebook import build
from geometry import GEOMETRY_JS
from harness import (
    STDERR,
    TIMEOUT_SCALE,
    BrowserSession,
    browser_marks,
    click_until,
    print_report,
    run_all,
    shots_dir,
    wait_count,
    wait_js,
    wait_seen,
)
from nbformat.v4 import new_code_cell

pytestmark = browser_marks()

SCREENS = {
    "1280x800-scale1.5": ({"width": 1280, "height": 800}, 1.5),
    "1920x1080-scale2": ({"width": 1920, "height": 1080}, 2),
}


def _notebook(scale: float) -> nbformat.NotebookNode:
    nb = build()
    nb.cells[2] = new_code_cell(
        f'board = widgets.dashboard(lab, COUNTER.getByName("room-1"), scale={scale})\nboard')
    return nb


@pytest.fixture(scope="module")
def session():
    files = {f"{name}.ipynb": _notebook(scale) for name, (_, scale) in SCREENS.items()}
    with BrowserSession("projector", files) as s:
        yield s
        print_report({k: v for k, v in s.report.items() if k != "timings_s"})


def _measure(page, report: dict, moment: str) -> dict:
    result = page.evaluate(GEOMETRY_JS, ".dl-dashboard")
    report[moment] = result
    return result


@pytest.mark.parametrize("screen", list(SCREENS))
def test_nothing_is_cut_off_or_overlaps(session, screen):
    from playwright.sync_api import expect

    viewport, scale = SCREENS[screen]
    page = session.new_page(viewport=viewport)
    session.phase = screen
    report = session.report.setdefault(screen, {})
    errors0 = len(session.report["console_errors"])
    try:
        session.open_notebook(page, f"{screen}.ipynb", workspace=screen.replace(".", "-"))
        run_all(page)
        page.locator(".dl-dashboard .dl-objectview").wait_for(timeout=120_000 * TIMEOUT_SCALE)
        wait_count(page.locator(".dl-dashboard canvas"), 3, what="the dashboard's canvases")
        err = page.locator(STDERR)
        expect(page.locator(".jp-OutputArea-output", has_text="PHASE 1 DONE True").or_(err)
               .first).to_be_visible(timeout=180_000 * TIMEOUT_SCALE)
        assert not err.count(), err.first.inner_text()[-800:]
        # 1. running, with the object view's longest chips: a batch in flight, replies held
        wait_seen(page, "dl-objectview", "batches", "v => v.some(x => x !== '0')",
                  what="a batch in flight")
        wait_js(page, """() => { const e = document.querySelector('.dl-dashboard .dl-objectview');
                    return e && e.dataset.batches !== '0' && e.dataset.held !== '0'; }""",
                timeout=120, what="a batch in flight and replies held, shown at once")
        running = _measure(page, report, "running")
        # 2. paused, with the next transitions listed under the Controls bar
        click_until(page, page.locator(".dl-dashboard .jupyter-widgets button",
                                       has_text="Pause"),
                    """() => { const r = document.querySelector('.dl-dashboard .dl-runstate');
                    const c = document.querySelector('.dl-dashboard .dl-choices');
                    return r && r.dataset.paused === 'true' && c && +c.dataset.count > 0; }""",
                    timeout=180, what="paused, with the next transitions listed")
        paused = _measure(page, report, "paused")
        if scale == 1.5:  # the picture: the dashboard's top, paused (calls wait, a list of
            # next transitions), in the whole 1280x800 window
            top = page.locator(".dl-dashboard").first
            top.evaluate("el => el.scrollIntoView({block: 'start'})")
            page.wait_for_timeout(300)  # (the scroll lands; the picture only)
            page.screenshot(path=shots_dir("lessons") / "dashboard-scale15-1280x800.png")
        for moment, result in (("running", running), ("paused", paused)):
            c = result["counts"]
            # it measured what it should: one dashboard, its text, its controls and plots
            assert c["roots"] == 1, (moment, c)
            assert c["texts"] >= 60 and c["buttons"] >= 7 and c["selects"] >= 3, (moment, c)
            assert c["plots"] >= 7 and c["titles"] >= 7 and c["legends"] >= 3, (moment, c)
            assert result["total"] == 0, json.dumps({moment: result["problems"]}, indent=1)
        assert session.report["console_errors"][errors0:] == []
        assert session.report["blocked_requests"] == []
    except Exception as exc:
        session.save_failure(exc, tag=screen)
        raise
    finally:
        page.close()
        session.pages.remove(page)
        session.server.shutdown_kernels()
