"""A lesson's panels at the end of their life, in real JupyterLab and headless Chromium.

One lesson (``LESSON``, as scripts/build_lessons.py builds it), served by a JupyterLab with the
project's server extension enabled as an install enables it (the config in ``jupyter-config/``;
see widgets/_server.py), no network:

1. **Run All**, then **save** (Ctrl+S): the file JupyterLab wrote holds one static note
   (``.dl-saved-panel``) per panel output and no widget view, no BokehJS, no support script;
   it is small (``MAX_SAVED_BYTES``). The page keeps its live panels.
2. **Kernel > Restart Kernel**: every panel gets ipywidgets' ``jupyter-widgets-disconnected``
   class; the outermost one shows the restart note (its ``::before``) and no longer shows its
   "live"/"PAUSED" words (``.dl-status``, ``.dl-runstate`` hidden), no broken-link icons inside.
3. Clear the outputs, **Run All** again (live panels, new kernel), save, **close the tab**:
   jupyter_bokeh's views keep sending their plots' resizes on the closed kernel connection;
   the page's guard (widgets/_lifecycle.py) unhooks them at the first "Cannot send", so no
   uncaught error. ``window.__durableLab.silenced`` counts the unhooked documents (it must be
   above 0: the test met the case it guards).
4. **A fresh page on the running kernel** (as a reload or a second window): the notes come
   back from the file, and a panel made in a new cell draws its plot (the page got no BokehJS
   from the file; the kernel sends it again, widgets/_plots.py ``page_may_be_new``).
5. Shut the kernels down and **reopen** the saved lesson: the notes are shown, no "Error
   displaying widget: model not found", no "JavaScript output is disabled".

No console error or uncaught page error in any phase, and no request off this machine. The
conditions are waited for with deadlines, never slept on.

``python tests/browser/test_lifecycle_browser.py --without-extension`` runs step 1 on a server
without the extension and prints the saved size: the "before" of docs/panels.md.
"""

from __future__ import annotations

import json
import os
import pathlib
import sys
import time
from typing import Any

import harness
import pytest
from harness import (
    ROOT,
    BrowserSession,
    browser_marks,
    menu,
    print_report,
    run_all,
    shots_dir,
    wait_all_cells_ran,
)
from notebook_sources import generate

# Six phases, two full runs of a lesson: minutes on a busy machine (the default is 300 s).
pytestmark = browser_marks(pytest.mark.timeout(900))

LESSON = "06_contention_sharding"  # fleet, metrics, where-time-went and a watch: many plots
#: A saved lesson with its outputs but no live state: printed text and notes (bytes).
MAX_SAVED_BYTES = 150_000
# The lesson's extra last cell: a panel of its own, run again on a fresh page (step 5).
RELOAD_CELL = ("import widgets\nfrom durable_lab import Lab\n"
               "widgets.timeline(Lab(storage='memory'))")
NOTE = ".dl-saved-panel"
WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"
BOKEH_LOAD = "application/vnd.bokehjs_load.v0+json"

# The outermost panels that lost their kernel, what their ::before says, and what still shows
# inside them that claims liveness or draws ipywidgets' broken-link icon.
RESTART_STATE_JS = """() => {
  const outer = [...document.querySelectorAll('.dl-panel')]
      .filter(p => !p.parentElement.closest('.dl-panel'));
  const gone = outer.filter(p => p.classList.contains('jupyter-widgets-disconnected'));
  const visible = sel => gone.flatMap(p => [...p.querySelectorAll(sel)])
      .filter(e => getComputedStyle(e).display !== 'none' && e.offsetParent !== null).length;
  // ipywidgets' broken-link icon, on a widget inside a panel or on a box holding panels
  const icons = [...document.querySelectorAll('.jupyter-widgets-disconnected')]
      .filter(e => !outer.includes(e) && (e.closest('.dl-panel') || e.querySelector('.dl-panel')))
      .filter(e => { const c = getComputedStyle(e, '::before').content;
                     return c && c !== 'none' && c !== 'normal'; }).length;
  return {panels: outer.length, disconnected: gone.length,
          notes: gone.map(p => getComputedStyle(p, '::before').content),
          live_words: visible('.dl-status, .dl-runstate, .dl-choices'), icons: icons};
}"""


def _with_extension(env_of: Any) -> Any:
    """harness.server_env plus the project's Jupyter config folder, as an install provides it
    (``<venv>/etc/jupyter/jupyter_server_config.d/durable_lab.json``)."""

    def env(runtime_dir: pathlib.Path) -> dict[str, str]:
        out = env_of(runtime_dir)
        out["JUPYTER_CONFIG_PATH"] = os.pathsep.join(
            p for p in (str(ROOT / "jupyter-config"), out.get("JUPYTER_CONFIG_PATH", "")) if p)
        return out

    return env


def _lesson() -> Any:
    """The lesson as generated, plus a last cell that makes a panel of its own (step 5 runs
    it again on a fresh page)."""
    import nbformat

    nb = next(g.fresh() for g in generate() if g.lesson and g.name == LESSON)
    nb.cells.append(nbformat.v4.new_code_cell(RELOAD_CELL))
    return nb


def _wait(fn: Any, what: str, timeout: float = 60.0, poll: float = 0.2) -> Any:
    """Call ``fn()`` until it returns something truthy; that value. Fails after ``timeout``."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = fn()
        if last:
            return last
        time.sleep(poll)
    raise AssertionError(f"{what}: not within {timeout:.0f} s (last: {last!r})")


def _save(page: Any, path: pathlib.Path, timeout: float = 30.0) -> dict:
    """Ctrl+S in the notebook; waits until JupyterLab wrote ``path`` anew; its summary."""
    before = path.stat().st_mtime_ns
    page.locator(".jp-Notebook .jp-Cell").first.locator(".jp-InputPrompt").first.click()
    page.keyboard.press("Escape")
    page.keyboard.press("Control+s")
    _wait(lambda: path.stat().st_mtime_ns != before, f"{path.name} saved", timeout)
    # The file is written in one go but may be read mid-write: wait for valid JSON.
    nb = _wait(lambda: _read_json(path), f"{path.name} readable", 10)
    outputs = [o for c in nb["cells"] for o in c.get("outputs", ())]
    return {"bytes": path.stat().st_size,
            "notes": sum(NOTE[1:] in str(o.get("data", {}).get("text/html", ""))
                         for o in outputs),
            "widget_views": sum(WIDGET_VIEW in o.get("data", {}) for o in outputs),
            "bokehjs_loads": sum(BOKEH_LOAD in o.get("data", {}) for o in outputs),
            "widget_state": "widgets" in nb.get("metadata", {})}


def _read_json(path: pathlib.Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except ValueError:
        return None


def _live_panel_outputs(page: Any) -> int:
    """Output areas showing a panel (outermost ``.dl-panel``s)."""
    return page.evaluate("""() => [...document.querySelectorAll('.dl-panel')]
        .filter(p => !p.parentElement.closest('.dl-panel')).length""")


def run(shots: pathlib.Path, *, extension: bool = True) -> dict:
    env_of = harness.server_env
    if extension:
        harness.server_env = _with_extension(env_of)
    try:
        with BrowserSession("lifecycle-end", {"lesson.ipynb": _lesson()},
                            shots=shots) as session:
            _drive(session, shots, session.report, full=extension)
    finally:
        harness.server_env = env_of
    return session.report


def _drive(session: BrowserSession, shots: pathlib.Path, report: dict, *, full: bool) -> None:
    T = report["timings_s"]
    path = session.root / "lesson.ipynb"
    page = session.new_page(viewport={"width": 1400, "height": 1000})
    page.on("dialog", lambda d: d.accept())  # "leave the page?" when it navigates (step 5)
    t0 = time.monotonic()

    # 1. run, save
    session.open_notebook(page, "lesson.ipynb")
    session.phase = "run"
    run_all(page)
    wait_all_cells_ran(page, timeout=180)
    page.locator(".dl-panel canvas").first.wait_for(timeout=30_000)
    report["live_panels"] = _live_panel_outputs(page)
    report["panel_outputs"] = page.locator(".jp-OutputArea-output:has(.dl-panel)").count()
    T["run"] = round(time.monotonic() - t0, 1)
    session.phase = "save"
    report["saved"] = _save(page, path)
    report["page_after_save"] = {"live_panels": _live_panel_outputs(page),
                                 "notes": page.locator(NOTE).count()}
    if not full:
        return

    # 2. restart the kernel: the note, and nothing saying "live"
    session.phase = "restart"
    t1 = time.monotonic()
    menu(page, "Kernel", "Restart Kernel…")
    page.locator(".jp-Dialog .jp-mod-accept").click()
    report["restart"] = _wait(
        lambda: (lambda s: s if s["panels"] and s["disconnected"] == s["panels"] else None)(
            page.evaluate(RESTART_STATE_JS)), "every panel marked disconnected", 60)
    first = page.locator(".dl-panel.jupyter-widgets-disconnected").first
    first.scroll_into_view_if_needed()
    first.screenshot(path=shots / "lifecycle-after-restart.png")
    T["restart"] = round(time.monotonic() - t1, 1)

    # 3. run again (a live kernel), save, close the tab
    session.phase = "rerun"
    t1 = time.monotonic()
    harness.wait_kernel_idle(page)
    menu(page, "Edit", "Clear Outputs of All Cells")
    _wait(lambda: page.locator(".dl-panel").count() == 0, "outputs cleared", 20)
    run_all(page)
    wait_all_cells_ran(page, timeout=180)
    page.locator(".dl-panel canvas").first.wait_for(timeout=30_000)
    report["resaved"] = _save(page, path)
    T["rerun"] = round(time.monotonic() - t1, 1)
    session.phase = "close"
    t1 = time.monotonic()
    menu(page, "File", "Close Tab")
    dialog = page.locator(".jp-Dialog")
    _wait(lambda: page.locator(".jp-Notebook").count() == 0 or dialog.count(),
          "tab closed or asks", 20)
    if dialog.count():  # output changed since the save (panels still drawing): discard
        report["close_dialog"] = dialog.inner_text()[:200]
        dialog.locator("button", has_text="Discard").click()
    _wait(lambda: page.locator(".jp-Notebook").count() == 0, "tab closed", 20)
    # The closed panels' plots resize as they are detached and send; the guard unhooks each
    # document at its first "Cannot send". Done when the count stays put for 2 s.
    silenced = "() => (window.__durableLab || {}).silenced || 0"
    history: list[tuple[float, int]] = []

    def settled() -> bool:
        history.append((time.monotonic(), page.evaluate(silenced)))
        n = history[-1][1]
        same = [t for t, v in history if v == n]
        return n > 0 and history[-1][0] - same[0] >= 2.0

    _wait(settled, "closed plots' sends silenced", 30, poll=0.25)
    report["silenced_after_close"] = history[-1][1]
    T["close"] = round(time.monotonic() - t1, 1)

    # 5. a fresh page on the still-running kernel (a reload, a second window): the notebook
    # comes back from the file (notes), and a panel made now draws its plot, though that page
    # got no BokehJS from the file: the kernel sends it again.
    session.phase = "reload"
    t1 = time.monotonic()
    session.open_notebook(page, "lesson.ipynb", workspace="reload")
    _wait(lambda: page.locator(NOTE).count() == report["resaved"]["notes"], "notes after reload")
    new_cell = page.locator(".jp-Notebook .jp-CodeCell").last  # RELOAD_CELL, a note now
    new_cell.scroll_into_view_if_needed()
    new_cell.locator(".jp-InputPrompt").first.click()
    page.keyboard.press("Escape")
    page.keyboard.press("Control+Enter")  # run it in place
    new_cell.locator(".dl-panel canvas").first.wait_for(timeout=60_000)
    report["reload"] = {"notes": page.locator(NOTE).count(),
                        "js_error_boxes": page.get_by_text(harness.JS_ERROR_BOX_TEXT).count(),
                        "new_panel_canvases": new_cell.locator(".dl-panel canvas").count()}
    T["reload"] = round(time.monotonic() - t1, 1)

    # 6. no kernel, reopen the saved lesson in a fresh page
    session.phase = "reopen"
    t1 = time.monotonic()
    page.close()
    report["kernels_shut_down"] = session.server.shutdown_kernels()
    page2 = session.new_page(viewport={"width": 1400, "height": 1000})
    session.open_notebook(page2, "lesson.ipynb", workspace="reopen")
    notes = page2.locator(NOTE)
    _wait(lambda: notes.count() == report["resaved"]["notes"], "the notes shown", 30)
    out_text = " ".join(page2.locator(".jp-OutputArea").all_inner_texts())
    report["reopen"] = {"notes": notes.count(),
                        "model_not_found": out_text.count("model not found"),
                        "js_disabled": out_text.count("JavaScript output is disabled"),
                        "panels": page2.locator(".dl-panel").count(),
                        "first_note": notes.first.inner_text()}
    notes.first.scroll_into_view_if_needed()
    notes.first.screenshot(path=shots / "lifecycle-reopened-note.png")
    T["reopen"] = round(time.monotonic() - t1, 1)
    T["total"] = round(time.monotonic() - t0, 1)


def assert_report(r: dict) -> None:
    assert r["live_panels"] >= 3, r["live_panels"]
    for saved in (r["saved"], r["resaved"]):
        assert saved["widget_views"] == 0 and saved["bokehjs_loads"] == 0, saved
        assert saved["notes"] == r["panel_outputs"] >= 3, saved  # a note per panel output
        assert not saved["widget_state"], saved
        assert saved["bytes"] < MAX_SAVED_BYTES, saved
    # saving left the page alone: the panels are still live there
    assert r["page_after_save"] == {"live_panels": r["live_panels"], "notes": 0}, r
    rl = r["reload"]
    # the re-run last cell shows its panel instead of its note
    assert rl["notes"] == r["resaved"]["notes"] - 1 and rl["js_error_boxes"] == 0, rl
    assert rl["new_panel_canvases"] >= 1, rl
    rs = r["restart"]
    assert rs["disconnected"] == rs["panels"] == r["live_panels"], rs
    assert all("Kernel restarted" in n and "Run All Cells" in n for n in rs["notes"]), rs
    assert rs["live_words"] == 0 and rs["icons"] == 0, rs
    assert r["silenced_after_close"] > 0, r  # the case the guard exists for did happen
    ro = r["reopen"]
    assert ro["notes"] == r["resaved"]["notes"] and ro["panels"] == 0, ro
    assert ro["model_not_found"] == 0 and ro["js_disabled"] == 0, ro
    assert "Run All Cells" in ro["first_note"], ro
    assert not r["console_errors"], r["console_errors"]
    assert not r["blocked_requests"], r["blocked_requests"]


def test_restart_save_close_and_reopen_a_lesson():
    report = run(shots_dir())
    print_report(report)
    assert_report(report)


if __name__ == "__main__":
    with_ext = "--without-extension" not in sys.argv
    result = run(shots_dir(), extension=with_ext)
    print_report(result)
    if with_ext:
        assert_report(result)
