"""The dashboard in Notebook 7 (``jupyter notebook``), real server, headless Debian Chromium.

Opens /notebooks/dashboard.ipynb (the notebook of dashboard_notebook.py), runs it with
Run > Run All Cells and checks that the panels render (object view, controls, fleet, storage,
event log, Bokeh canvases) and update (the object view's event number grows, chips and gate
change), that no cell wrote to stderr, and that the browser logged no errors. Screenshot:
docs/img/dashboard-notebook7.png (or $SHOTS_DIR). Skipped when Notebook 7 is not installed
(``pip install "notebook>=7,<8"``) or Chromium is missing.
"""

from __future__ import annotations

import importlib.util
import json
import os
import pathlib
import shutil
import sys
import tempfile
import time

import pytest

HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from test_dashboard_browser import CHROME_ARGS, CHROMIUM, JupyterLab, _attr  # noqa: E402

pytestmark = [
    pytest.mark.browser,
    pytest.mark.flaky(reruns=2, reruns_delay=2),
    pytest.mark.skipif(not os.path.exists(CHROMIUM),
                       reason=f"Chromium not installed at {CHROMIUM} (apt-get install chromium)"),
    pytest.mark.skipif(importlib.util.find_spec("notebook") is None,
                       reason='Notebook 7 not installed (pip install "notebook>=7,<8")'),
]

CLIP = {"x": 0, "y": 0, "width": 1500, "height": 1560}  # Notebook 7's header + the dashboard
STDERR = ".jp-OutputArea-output[data-mime-type='application/vnd.jupyter.stderr']"
# Notebook 7 has no status bar; its toolbar's kernel status shows the kernel name once
# connected, and the execution indicator says idle.
KERNEL_READY_JS = """() => {
  const name = document.querySelector('.jp-KernelName, .jp-Toolbar-kernelName');
  const ind = document.querySelector('.jp-Notebook-ExecutionIndicator');
  return !!name && /Python/.test(name.textContent) && !!ind
         && ind.getAttribute('data-status') === 'idle'; }"""


def run(shots: pathlib.Path) -> dict:
    from dashboard_notebook import build
    import nbformat
    from playwright.sync_api import expect, sync_playwright

    shots.mkdir(parents=True, exist_ok=True)
    report: dict = {"checks": {}, "seen": {}, "console_errors": [], "timings_s": {}}
    root = pathlib.Path(tempfile.mkdtemp(prefix="dl-nb7-"))
    nbformat.write(build(), root / "dashboard.ipynb")
    server = JupyterLab(root, root / "notebook.log", app="notebook")
    try:
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True,
                                         args=CHROME_ARGS)
            page = browser.new_page(viewport={"width": 1500, "height": 2500})
            errors, phase = report["console_errors"], report.setdefault("phase", ["load"])
            page.on("console", lambda m: m.type == "error" and errors.append(
                f"[{phase[0]}] {m.text}"))
            page.on("pageerror", lambda e: errors.append(f"[{phase[0]}] pageerror: {e} {e.stack}"))
            try:
                _drive(page, expect, f"http://127.0.0.1:{server.port}/notebooks/dashboard.ipynb"
                       f"?token={server.token}", shots, report)
            except Exception:
                page.screenshot(path=shots / "99-notebook7-failure.png")
                raise
            finally:
                browser.close()
    finally:
        server.stop()
        report["server_log_tail"] = (root / "notebook.log").read_text(errors="replace")[-1500:]
        shutil.rmtree(root, ignore_errors=True)
    return report


def _drive(page, expect, url: str, shots: pathlib.Path, report: dict) -> None:
    checks, seen, T = report["checks"], report["seen"], report["timings_s"]
    t0 = time.monotonic()
    page.goto(url)
    page.locator(".jp-Notebook .jp-Cell").first.wait_for(timeout=60_000)
    page.wait_for_function(KERNEL_READY_JS, timeout=60_000, polling=100)
    page.wait_for_timeout(500)
    T["opened"] = round(time.monotonic() - t0, 1)
    report["phase"][0] = "run"
    page.locator(".lm-MenuBar-itemLabel:text-is('Run')").click()
    page.locator(".lm-Menu-itemLabel:text-is('Run All Cells')").click()
    expect(page.locator(".jp-CodeCell .jp-InputPrompt").first).not_to_have_text("[ ]:",
                                                                               timeout=10_000)
    view = ".dl-objectview"
    page.locator(view).wait_for(timeout=30_000)
    canvas = page.locator(".dl-dashboard canvas")
    canvas.first.wait_for(timeout=30_000)
    page.locator(".jp-OutputArea-output", has_text="WORKLOAD STARTED").wait_for(timeout=30_000)
    checks["bokeh_canvases"] = canvas.count()
    checks["dashboards"] = page.locator(".dl-dashboard").count()
    checks["panels"] = {c: page.locator(c).count() for c in (
        ".dl-objectview", ".dl-runstate", ".dl-storage-inspector", ".dl-fleet", ".dl-eventlog")}
    page.locator(".dl-dashboard").first.scroll_into_view_if_needed()
    seqs, gates, mailboxes = [], set(), set()
    shot = False
    deadline = time.monotonic() + 6
    while time.monotonic() < deadline:
        s = _attr(page, view, "data-seq")
        if s is not None and (not seqs or int(s) != seqs[-1]):
            seqs.append(int(s))
        gates.add(_attr(page, view, "data-gate"))
        mb = _attr(page, view, "data-mailbox")
        mailboxes.add(mb)
        if not shot and mb not in (None, "0") and time.monotonic() > deadline - 4:
            page.screenshot(path=shots / "dashboard-notebook7.png", clip=CLIP)
            shot = True
        time.sleep(0.05)
    if not shot:
        page.screenshot(path=shots / "dashboard-notebook7.png", clip=CLIP)
    seen["seq_samples"] = len(seqs)
    seen["seq_first_last"] = [seqs[0], seqs[-1]] if seqs else []
    seen["gates"] = sorted(g for g in gates if g)
    seen["mailboxes"] = sorted(m for m in mailboxes if m)
    checks["updates"] = len(seqs) >= 3 and seqs[-1] > seqs[0]
    checks["gate_changed"] = {"open", "closed"} <= set(seen["gates"])
    checks["chips_changed"] = len(seen["mailboxes"]) >= 2
    err = page.locator(STDERR)
    expect(page.locator(".jp-OutputArea-output", has_text="PHASE 1 DONE True").or_(err).first
           ).to_be_visible(timeout=30_000)
    checks["stderr"] = err.count()
    checks["panel_errors"] = page.locator(".dl-errors .jp-OutputArea-output").count()
    T["total"] = round(time.monotonic() - t0, 1)


def assert_report(r: dict) -> None:
    c = r["checks"]
    assert c["bokeh_canvases"] >= 3, r
    assert all(n >= 1 for n in c["panels"].values()), r  # (.dl-fleet: the panel and its map)
    assert c["dashboards"] == 1, r
    assert c["updates"] and c["gate_changed"] and c["chips_changed"], r
    assert c["stderr"] == 0 and c["panel_errors"] == 0, r
    unexpected = [e for e in r["console_errors"] if not _known_load_error(e)]
    assert not unexpected, unexpected


def _known_load_error(text: str) -> bool:
    """Notebook 7.6.5 upstream: opening *any* page (/tree too, no notebook, no widget) throws
    "Cannot read properties of undefined (reading 'schema')" from its keyboard-shortcuts
    settings plugin (pluginChanged for a plugin id the registry has not loaded). Before our
    notebook runs, so not the panels'; allowed at page load only. docs/panels.md, Known issues."""
    return (text.startswith("[load] pageerror: Cannot read properties of undefined "
                            "(reading 'schema')") and "notebook_core" in text)


def test_dashboard_in_notebook7():
    shots = pathlib.Path(os.environ.get("SHOTS_DIR", HERE.parents[1] / "build" / "screenshots"))
    report = run(shots)
    print(json.dumps({k: v for k, v in report.items() if k != "server_log_tail"}, indent=2))
    assert_report(report)


if __name__ == "__main__":
    r = run(pathlib.Path(os.environ.get("SHOTS_DIR", HERE.parents[1] / "build" / "screenshots")))
    print(json.dumps(r, indent=2))
    assert_report(r)
    print("OK")
