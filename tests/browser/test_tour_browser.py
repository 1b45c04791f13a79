"""The course's first notebook as a learner opens it: the tour, run in real JupyterLab.

Writes the tour, as scripts/build_lessons.py builds it, into a throw-away folder, opens it in
JupyterLab in headless Chromium, runs all cells, waits for the kernel to go idle, and checks
that every code cell ran, no cell shows an error, the dashboard rendered (Bokeh canvases and
the object view), the browser logged no console errors and no request left this machine
(harness.py blocks them).
Saves tour-notebook.png (build/screenshots, or SHOTS_DIR=docs/img for the docs).
"""

from __future__ import annotations

import time

from harness import (
    ERROR_OUTPUT,
    BrowserSession,
    browser_marks,
    print_report,
    run_all,
    shots_dir,
    wait_all_cells_ran,
)
from notebook_sources import generate

pytestmark = browser_marks()


def run_tour(shots) -> dict:
    # As scripts/build_lessons.py builds it, not the learner-autosaved file in notebooks/.
    tour = next(g for g in generate() if g.relpath == "notebooks/00_tour.ipynb")
    files = {"00_tour.ipynb": tour.text}
    code_cells = tour.text.count('"cell_type": "code"')
    with BrowserSession("tour", files, shots=shots) as session:
        report = session.report
        report["code_cells"] = code_cells
        page = session.new_page(viewport={"width": 1400, "height": 2200})
        session.open_notebook(page, "00_tour.ipynb")
        session.phase = "run"
        t0 = time.monotonic()
        run_all(page)
        report["prompts"] = wait_all_cells_ran(page, timeout=120)
        report["run_seconds"] = round(time.monotonic() - t0, 1)
        report["errors_in_cells"] = page.locator(ERROR_OUTPUT).count()
        report["tracebacks"] = page.locator(".jp-OutputArea-output", has_text="Traceback").count()
        report["canvases"] = page.locator(".jp-OutputArea canvas").count()
        report["object_views"] = page.locator(".dl-objectview").count()
        time.sleep(1.0)
        dashboard = page.locator(".dl-dashboard")
        if dashboard.count():
            dashboard.first.scroll_into_view_if_needed()
        page.screenshot(path=shots / "tour-notebook.png")
    return report


def test_tour_notebook_runs_in_jupyterlab():
    report = run_tour(shots_dir())
    print_report(report)
    shown = [p for p in report["prompts"] if p]
    # "[*]:" may remain on a cell that ran when JupyterLab lost its reply (see harness)
    # Every code cell of the tour reports a prompt, numbered once it ran ('' for a cell
    # JupyterLab has not rendered, scrolled out of its window); none was left unrun.
    assert len(report["prompts"]) >= report["code_cells"], report["prompts"]
    assert len(shown) >= report["code_cells"] - 2 and "[ ]:" not in shown, report["prompts"]
    assert report["errors_in_cells"] == 0 and report["tracebacks"] == 0, report
    assert report["canvases"] > 0 and report["object_views"] >= 1, report
    assert report["console_errors"] == [], report["console_errors"]
    assert report["blocked_requests"] == [], report["blocked_requests"]  # no network needed
