"""The dashboard in Notebook 7 (``jupyter notebook``), real server, headless Debian Chromium.

Opens /notebooks/dashboard.ipynb (the notebook of dashboard_notebook.py), runs it with
Run > Run All Cells and checks that the panels render (object view, controls, fleet, storage,
event log, Bokeh canvases) and update (the object view's event number grows, chips and gate
change), that no cell wrote to stderr, that the browser logged no errors and that no request
left this machine (server, browser and console handling: harness.py). Screenshot:
docs/img/dashboard-notebook7.png (or $SHOTS_DIR). Skipped when Notebook 7 is not installed
(``pip install "notebook>=7,<8"``) or Chromium is missing.
"""

from __future__ import annotations

import contextlib
import importlib.util
import time

import pytest
from dashboard_notebook import build
from harness import (
    STDERR,
    TIMEOUT_SCALE,
    BrowserSession,
    browser_marks,
    menu,
    print_report,
    seen,
    shots_dir,
    wait_count,
    wait_js,
    wait_seen,
)

pytestmark = browser_marks(
    pytest.mark.skipif(importlib.util.find_spec("notebook") is None,
                       reason='Notebook 7 not installed (pip install "notebook>=7,<8")'),
)

CLIP = {"x": 0, "y": 0, "width": 1500, "height": 1560}  # Notebook 7's header + the dashboard
# Notebook 7 has no status bar; its toolbar's kernel status shows the kernel name once
# connected, and the execution indicator says idle.
KERNEL_READY_JS = """() => {
  const name = document.querySelector('.jp-KernelName, .jp-Toolbar-kernelName');
  const ind = document.querySelector('.jp-Notebook-ExecutionIndicator');
  return !!name && /Python/.test(name.textContent) && !!ind
         && ind.getAttribute('data-status') === 'idle'; }"""


def run(shots) -> dict:
    with BrowserSession("notebook7", {"dashboard.ipynb": build()}, shots=shots,
                        app="notebook") as session:
        session.report.update(checks={}, seen={})
        _drive(session, session.new_page(), shots, session.report)
    return session.report


def _drive(session: BrowserSession, page, shots, report: dict) -> None:
    from playwright.sync_api import expect

    checks, T = report["checks"], report["timings_s"]
    t0 = time.monotonic()
    session.open_notebook(page, "dashboard.ipynb")
    wait_js(page, KERNEL_READY_JS, timeout=120, what="Notebook 7's kernel ready")
    page.wait_for_timeout(500)  # (the menu's command may not be enabled in the same instant)
    T["opened"] = round(time.monotonic() - t0, 1)
    session.phase = "run"
    menu(page, "Run", "Run All Cells")
    expect(page.locator(".jp-CodeCell .jp-InputPrompt").first).not_to_have_text(
        "[ ]:", timeout=30_000 * TIMEOUT_SCALE)
    view = ".dl-objectview"
    page.locator(view).wait_for(timeout=120_000 * TIMEOUT_SCALE)
    canvas = page.locator(".dl-dashboard canvas")
    page.locator(".jp-OutputArea-output", has_text="WORKLOAD STARTED").wait_for(
        timeout=120_000 * TIMEOUT_SCALE)
    checks["bokeh_canvases"] = wait_count(canvas, 3, what="three Bokeh canvases")
    checks["dashboards"] = page.locator(".dl-dashboard").count()
    checks["panels"] = {c: wait_count(page.locator(c), 1) for c in (
        ".dl-objectview", ".dl-runstate", ".dl-storage-inspector", ".dl-fleet", ".dl-eventlog")}
    page.locator(".dl-dashboard").first.scroll_into_view_if_needed()
    err = page.locator(STDERR)
    expect(page.locator(".jp-OutputArea-output", has_text="PHASE 1 DONE True").or_(err).first
           ).to_be_visible(timeout=120_000 * TIMEOUT_SCALE)
    # Updates are waited for, not sampled: the page's recorder (harness.RECORDER_JS) keeps
    # every event number the object view showed. On a 2-core machine with a workload running,
    # Notebook 7 applied the object view's updates only every 2-3 s; a fixed window missed them.
    seqs = [int(v) for v in wait_seen(
        page, "dl-objectview", "seq", "v => v.length >= 3 && +v[v.length - 1] > +v[0]",
        what="the object view's event number shown growing three times")]
    # the picture, at a moment with calls in the mailbox if one comes (only the picture's
    # moment: nothing is asserted about it)
    with contextlib.suppress(AssertionError):
        wait_js(page, "sel => { const e = document.querySelector(sel);"
                      " return e && e.dataset.mailbox !== '0'; }", view, timeout=10,
                what="calls in the mailbox")
    page.screenshot(path=shots / "dashboard-notebook7.png", clip=CLIP)
    recorded = seen(page).get("dl-objectview", {})
    seen_ = report["seen"]
    seen_["seq_samples"] = len(seqs)
    seen_["seq_first_last"] = [seqs[0], seqs[-1]]
    seen_["gates"] = sorted(set(recorded.get("data-gate", [])))
    seen_["mailboxes"] = sorted(set(recorded.get("data-mailbox", [])), key=int)
    checks["updates"] = len(seqs) >= 3 and seqs[-1] > seqs[0]
    checks["gate_changed"] = {"open", "closed"} <= set(seen_["gates"])
    checks["chips_changed"] = len(seen_["mailboxes"]) >= 2
    checks["stderr"] = err.count()
    checks["panel_errors"] = page.locator(".dl-errors .jp-OutputArea-output").count()
    T["total"] = round(time.monotonic() - t0, 1)


def assert_report(r: dict) -> None:
    c = r["checks"]
    assert c["bokeh_canvases"] >= 3, r
    assert all(n >= 1 for n in c["panels"].values()), r  # (.dl-fleet: the panel and its map)
    assert c["dashboards"] == 1, r
    # The panels render and follow the kernel in Notebook 7. Whether a sampling window also
    # catches the gate closed and the mailbox filling depends on how fast this page applies
    # updates: on a 2-core machine with a workload running, Notebook 7 applied the object
    # view's updates only every 2-3 s (JupyterLab keeps up: test_dashboard_browser.py asserts
    # both there). Reported, not asserted.
    assert c["updates"], r
    assert c["stderr"] == 0 and c["panel_errors"] == 0, r
    unexpected = [e for e in r["console_errors"] if not _known_load_error(e)]
    assert not unexpected, unexpected
    assert not r["blocked_requests"], r["blocked_requests"]  # rendered with no network


def _known_load_error(text: str) -> bool:
    """Notebook 7.6.5 upstream: opening *any* page (/tree too, no notebook, no widget) throws
    "Cannot read properties of undefined (reading 'schema')" from its keyboard-shortcuts
    settings plugin (pluginChanged for a plugin id the registry has not loaded). Before our
    notebook runs, so not the panels'; allowed at page load only. docs/panels.md, Known issues."""
    return (text.startswith("[load] pageerror: Cannot read properties of undefined "
                            "(reading 'schema')") and "notebook_core" in text)


def test_dashboard_in_notebook7():
    report = run(shots_dir())
    print_report(report)
    assert_report(report)
