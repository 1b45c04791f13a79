"""The course's first notebook as a learner opens it: the tour, run in real JupyterLab.

Copies notebooks/00_tour.ipynb into a throw-away folder, opens it in JupyterLab in headless
Chromium, runs all cells, waits for the kernel to go idle, and checks that every code cell ran,
no cell shows an error, the dashboard rendered (Bokeh canvases and the object view), and the
browser logged no console errors. Saves docs/img/tour-notebook.png (or SHOTS_DIR).
"""

from __future__ import annotations

import json
import os
import pathlib
import shutil
import tempfile
import time

import pytest
from test_dashboard_browser import CHROME_ARGS, CHROMIUM, KERNEL_IDLE_JS, ROOT, JupyterLab

pytestmark = [
    pytest.mark.browser,
    pytest.mark.flaky(reruns=2, reruns_delay=2),
    pytest.mark.skipif(not os.path.exists(CHROMIUM),
                       reason=f"Chromium not installed at {CHROMIUM} (apt-get install chromium)"),
]


def run_tour(shots: pathlib.Path) -> dict:
    from playwright.sync_api import sync_playwright

    shots.mkdir(parents=True, exist_ok=True)
    report: dict = {"console_errors": []}
    root = pathlib.Path(tempfile.mkdtemp(prefix="dl-tour-"))
    shutil.copy(ROOT / "notebooks" / "00_tour.ipynb", root / "00_tour.ipynb")
    lab = JupyterLab(root, root / "jupyterlab.log")
    try:
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True,
                                         args=CHROME_ARGS)
            page = browser.new_page(viewport={"width": 1400, "height": 2200})
            errors = report["console_errors"]
            page.on("console", lambda m: m.type == "error" and errors.append(m.text))
            page.on("pageerror", lambda e: errors.append(f"pageerror: {e}"))
            try:
                page.goto(f"http://127.0.0.1:{lab.port}/lab/tree/00_tour.ipynb?token={lab.token}")
                page.locator(".jp-Notebook .jp-Cell").first.wait_for(timeout=60_000)
                page.wait_for_function(KERNEL_IDLE_JS, timeout=60_000, polling=100)
                page.locator(".lm-MenuBar-itemLabel:text-is('Run')").click()
                page.locator(".lm-Menu-itemLabel:text-is('Run All Cells')").click()
                # Wait until every code cell has an execution count and the kernel is idle.
                deadline = time.monotonic() + 120
                prompts: list[str] = []
                while time.monotonic() < deadline:
                    prompts = page.locator(".jp-CodeCell .jp-InputPrompt").all_inner_texts()
                    shown = [p.strip() for p in prompts if p.strip()]  # a collapsed cell shows none
                    if shown and all(p not in ("[ ]:", "[*]:") for p in shown):
                        break
                    time.sleep(0.25)
                page.wait_for_function(KERNEL_IDLE_JS, timeout=60_000, polling=100)
                report["prompts"] = prompts
                running = page.locator(".jp-CodeCell", has=page.locator(".jp-InputPrompt",
                                                                         has_text="[*]:"))
                report["still_running"] = [t[:300] for t in running.all_inner_texts()]
                report["run_seconds"] = round(120 - (deadline - time.monotonic()), 1)
                report["errors_in_cells"] = page.locator(
                    ".jp-OutputArea-output[data-mime-type='application/vnd.jupyter.error']"
                ).count()
                report["tracebacks"] = page.locator(".jp-OutputArea-output",
                                                    has_text="Traceback").count()
                report["canvases"] = page.locator(".jp-OutputArea canvas").count()
                report["object_views"] = page.locator(".dl-objectview").count()
                time.sleep(1.0)
                dashboard = page.locator(".dl-dashboard")
                if dashboard.count():
                    dashboard.first.scroll_into_view_if_needed()
                page.screenshot(path=shots / "tour-notebook.png")
            except Exception:
                page.screenshot(path=shots / "99-tour-failure.png")
                (shots / "99-tour-failure.json").write_text(json.dumps(report, indent=2))
                raise
            finally:
                browser.close()
    finally:
        lab.stop()
        shutil.rmtree(root, ignore_errors=True)
    return report


def test_tour_notebook_runs_in_jupyterlab():
    shots = pathlib.Path(os.environ.get("SHOTS_DIR", ROOT / "build" / "screenshots"))
    report = run_tour(shots)
    prompts = report["prompts"]
    shown = [p.strip() for p in prompts if p.strip()]
    assert len(shown) >= 8 and all(p not in ("[ ]:", "[*]:") for p in shown), prompts
    assert report["errors_in_cells"] == 0 and report["tracebacks"] == 0, report
    assert report["canvases"] > 0 and report["object_views"] >= 1, report
    assert report["console_errors"] == [], report["console_errors"]
