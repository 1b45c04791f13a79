"""The dashboard as a learner sees it: real JupyterLab, headless Debian Chromium, Playwright.

Starts JupyterLab on a free port with a throw-away notebook (dashboard_notebook.py) that builds
a lab and its dashboard and starts six clients; runs it with Run > Run All Cells; then checks:

- the panels render (object view HTML, controls, Bokeh canvases);
- mailbox chips and the input gate change while the workload runs;
- Pause, then Step advances the runtime by exactly one transition (the controls' step counter);
- Crash produces a reset that the object view shows, and Play brings the object back;
- no browser console errors.

Screenshots go to build/screenshots/ (SHOTS_DIR=docs/img refreshes the ones in docs/) unless SHOTS_DIR says
otherwise. Skipped only when Chromium is not installed (CI installs it: apt-get install chromium).
Recipe and pitfalls: ../shared/reference/browser-testing.md (BokehJS inline, stream echo, idle).
"""

from __future__ import annotations

import json
import os
import pathlib
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

import pytest

CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
ROOT = pathlib.Path(__file__).resolve().parents[2]
HERE = pathlib.Path(__file__).resolve().parent

pytestmark = [
    pytest.mark.browser,
    # A real browser against a real Jupyter server has timing noise no fake clock can remove;
    # a failure is retried twice before it counts (the runtime's own tests never retry).
    pytest.mark.flaky(reruns=2, reruns_delay=2),
    pytest.mark.skipif(not os.path.exists(CHROMIUM),
                       reason=f"Chromium not installed at {CHROMIUM} (apt-get install chromium)"),
]

CHROME_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
               "--disable-background-networking", "--disable-component-update", "--disable-sync"]
KERNEL_IDLE_JS = """() => [...document.querySelectorAll('.jp-StatusBar-TextItem')]
    .map(e => e.textContent.trim())
    .some(t => /\\| Idle$/.test(t) && !t.startsWith('No Kernel'))"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class JupyterLab:
    """``jupyter lab`` (or ``app="notebook"``: Notebook 7) in the background; stopped by its
    REST shutdown, then by PID."""

    def __init__(self, root: pathlib.Path, log_path: pathlib.Path, app: str = "jupyterlab") -> None:
        self.port, self.token = _free_port(), secrets.token_hex(16)
        self.app = app
        cfg = root / ".lab-state"
        news = cfg / "settings" / "@jupyterlab" / "apputils-extension"
        news.mkdir(parents=True, exist_ok=True)
        (news / "notification.jupyterlab-settings").write_text('{"fetchNews": "false"}')
        app_class = {"jupyterlab": "LabApp", "notebook": "JupyterNotebookApp"}[app]
        cmd = [sys.executable, "-m", app, "--no-browser", f"--port={self.port}",
               "--ServerApp.ip=127.0.0.1", "--ServerApp.port_retries=0",
               "--ServerApp.allow_root=True", f"--IdentityProvider.token={self.token}",
               f"--ServerApp.root_dir={root}",
               f"--{app_class}.workspaces_dir={cfg / 'workspaces'}",
               f"--{app_class}.user_settings_dir={cfg / 'settings'}"]
        path = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p)
        env = dict(os.environ, JUPYTER_RUNTIME_DIR=str(cfg / "runtime"), PYTHONPATH=path,
                   BOKEH_RESOURCES=os.environ.get("BOKEH_RESOURCES", "inline"))
        self.log = open(log_path, "w")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(cmd, cwd=root, env=env, stdout=self.log,
                                     stderr=subprocess.STDOUT, start_new_session=True)
        url = f"http://127.0.0.1:{self.port}/api/status?token={self.token}"
        deadline = time.monotonic() + 90
        while True:
            if self.proc.poll() is not None:
                self.stop()
                raise RuntimeError(f"{app} exited with {self.proc.returncode}; see {log_path}")
            try:
                with urllib.request.urlopen(url, timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                self.stop()
                raise TimeoutError(f"{app} did not start in 90 s")
            time.sleep(0.2)

    def stop(self) -> None:
        if self.proc.poll() is None:
            try:
                req = urllib.request.Request(
                    f"http://127.0.0.1:{self.port}/api/shutdown", method="POST",
                    headers={"Authorization": f"token {self.token}"})
                urllib.request.urlopen(req, timeout=5).read()
                self.proc.wait(timeout=20)
            except Exception:
                self.proc.terminate()
                try:
                    self.proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    self.proc.kill()
                    self.proc.wait()
        self.log.close()


def _attr(page, selector: str, name: str) -> str | None:
    loc = page.locator(selector)
    return loc.first.get_attribute(name) if loc.count() else None


def _wait_attr(page, selector: str, name: str, pred, timeout: float = 20.0) -> str:
    deadline = time.monotonic() + timeout
    value = None
    while time.monotonic() < deadline:
        value = _attr(page, selector, name)
        if value is not None and pred(value):
            return value
        time.sleep(0.05)
    raise AssertionError(f"{selector}[{name}] never matched; last value {value!r}")


def run(shots: pathlib.Path) -> dict:
    from dashboard_notebook import build
    import nbformat
    from playwright.sync_api import expect, sync_playwright

    shots.mkdir(parents=True, exist_ok=True)
    report: dict = {"checks": {}, "console_errors": [], "seen": {}}
    root = pathlib.Path(tempfile.mkdtemp(prefix="dl-dashboard-"))
    nbformat.write(build(), root / "dashboard.ipynb")
    lab = JupyterLab(root, root / "jupyterlab.log")
    try:
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True,
                                         args=CHROME_ARGS)
            page = browser.new_page(viewport={"width": 1500, "height": 2500})
            errors = report["console_errors"]
            page.on("console", lambda m: m.type == "error" and errors.append(m.text))
            page.on("pageerror", lambda e: errors.append(f"pageerror: {e}"))
            try:
                _drive(page, expect, f"http://127.0.0.1:{lab.port}/lab/tree/dashboard.ipynb"
                       f"?token={lab.token}", shots, report)
            except Exception:
                page.screenshot(path=shots / "99-failure.png")
                (shots / "99-failure-report.json").write_text(json.dumps(report, indent=2))
                raise
            finally:
                browser.close()
    finally:
        lab.stop()
        log = (root / "jupyterlab.log").read_text(errors="replace")
        report["server_log_tail"] = log[-1500:]
        shutil.rmtree(root, ignore_errors=True)
    return report


def _drive(page, expect, url: str, shots: pathlib.Path, report: dict) -> None:
    checks, seen = report["checks"], report["seen"]
    page.goto(url)
    page.locator(".jp-Notebook .jp-Cell").first.wait_for(timeout=60_000)
    page.wait_for_function(KERNEL_IDLE_JS, timeout=60_000, polling=100)
    # Hide the file browser: the dashboard gets the whole width.
    page.locator(".lm-MenuBar-itemLabel:text-is('View')").click()
    toggle = page.locator(".lm-Menu-itemLabel", has_text="Left Sidebar")
    if toggle.count():
        toggle.first.click()
    else:
        page.keyboard.press("Escape")
    page.locator(".lm-MenuBar-itemLabel:text-is('Run')").click()
    page.locator(".lm-Menu-itemLabel:text-is('Run All Cells')").click()
    expect(page.locator(".jp-CodeCell .jp-InputPrompt").first).not_to_have_text("[ ]:",
                                                                               timeout=10_000)
    # 1. the panels render
    view = ".dl-objectview"
    page.locator(view).wait_for(timeout=30_000)
    canvas = page.locator(".jp-OutputArea canvas")
    canvas.first.wait_for(timeout=30_000)
    checks["bokeh_canvases"] = canvas.count()
    checks["panels"] = {c: page.locator(c).count() for c in (
        ".dl-objectview", ".dl-runstate", ".dl-storage-inspector", ".dl-fleet", ".dl-eventlog")}
    page.locator(".jupyter-widgets button", has_text="Step").wait_for(timeout=10_000)
    page.locator(".jp-OutputArea-output", has_text="WORKLOAD STARTED").wait_for(timeout=30_000)
    # scroll the dashboard's output into view
    page.locator(".dl-dashboard").first.scroll_into_view_if_needed()

    # 2. chips and gate change as the workload runs
    mailboxes, gates, statuses = set(), set(), set()
    deadline = time.monotonic() + 10
    shot_taken = False
    while time.monotonic() < deadline:
        mb = _attr(page, view, "data-mailbox")
        gate = _attr(page, view, "data-gate")
        held = _attr(page, view, "data-held")
        mailboxes.add(mb)
        gates.add(gate)
        statuses.add((mb, gate, held))
        if len(gates) >= 2 and len(mailboxes) >= 3 and shot_taken:
            break
        if (not shot_taken and mb not in (None, "0") and held not in (None, "0")
                and gate == "closed" and time.monotonic() > deadline - 8):
            page.locator(".dl-dashboard").first.screenshot(path=shots / "dashboard-running.png")
            shot_taken = True
        time.sleep(0.03)
    if not shot_taken:
        page.locator(".dl-dashboard").first.screenshot(path=shots / "dashboard-running.png")
    seen["mailbox_sizes"] = sorted(m for m in mailboxes if m)
    seen["gate_states"] = sorted(g for g in gates if g)
    seen["distinct_states"] = len(statuses)
    checks["chips_changed"] = len(seen["mailbox_sizes"]) >= 2
    checks["gate_changed"] = {"open", "closed"} <= set(seen["gate_states"])
    err = page.locator(".jp-OutputArea-output[data-mime-type='application/vnd.jupyter.stderr']")
    expect(page.locator(".jp-OutputArea-output", has_text="PHASE 1 DONE True").or_(err).first
           ).to_be_visible(timeout=30_000)
    if err.count():
        raise AssertionError("a cell wrote to stderr: " + err.first.inner_text()[-800:])

    # 3. Pause, then Step: exactly one transition
    page.locator(".jupyter-widgets button", has_text="Pause").click()
    _wait_attr(page, ".dl-runstate", "data-paused", lambda v: v == "true")
    _wait_attr(page, ".dl-choices", "data-count", lambda v: int(v) > 0)
    time.sleep(0.5)  # let queued calls and frames settle
    before = int(_attr(page, ".dl-runstate", "data-steps"))
    page.locator(".jupyter-widgets button", has_text="Step").click()
    after = int(_wait_attr(page, ".dl-runstate", "data-steps", lambda v: int(v) != before))
    time.sleep(1.0)  # nothing else moves while paused
    settled = int(_attr(page, ".dl-runstate", "data-steps"))
    seen["steps"] = [before, after, settled]
    checks["step_is_one_transition"] = after == before + 1 == settled
    checks["choices_after_step"] = int(_attr(page, ".dl-choices", "data-count"))
    page.locator(".dl-dashboard").first.screenshot(path=shots / "dashboard-paused.png")

    # 4. Crash: a reset the object view shows; Play brings the object back
    resets = int(_attr(page, view, "data-resets"))
    page.locator(".jupyter-widgets button", has_text="Crash").click()
    _wait_attr(page, view, "data-status", lambda v: v == "reset")
    checks["reset_shown"] = int(_attr(page, view, "data-resets")) == resets + 1 and (
        page.locator(".dl-reset[data-active='true']").count() == 1)
    seen["reset_reason"] = _attr(page, ".dl-reset", "data-reason")
    page.locator(".dl-dashboard").first.screenshot(path=shots / "dashboard-reset.png")
    page.locator(".jupyter-widgets button", has_text="Play").click()
    _wait_attr(page, ".dl-runstate", "data-paused", lambda v: v == "false")
    _wait_attr(page, view, "data-status", lambda v: v == "live")
    checks["live_again"] = True
    checks["panel_errors"] = page.locator(".dl-errors .jp-OutputArea-output").count()
    time.sleep(1.5)
    page.locator(".dl-object_view").first.screenshot(path=shots / "object-view.png")
    page.locator(".dl-timeline").first.screenshot(path=shots / "timeline.png")
    page.locator(".dl-metrics").first.screenshot(path=shots / "metrics.png")


def assert_report(r: dict) -> None:
    c = r["checks"]
    assert c["bokeh_canvases"] >= 3, r
    assert all(n >= 1 for n in c["panels"].values()), r
    assert c["chips_changed"] and c["gate_changed"], r
    assert c["step_is_one_transition"], r
    assert c["reset_shown"] and c["live_again"], r
    assert c["panel_errors"] == 0, r
    assert not r["console_errors"], r["console_errors"]


def test_dashboard_in_jupyterlab():
    sys.path.insert(0, str(HERE))
    shots = pathlib.Path(os.environ.get("SHOTS_DIR", ROOT / "build" / "screenshots"))
    report = run(shots)
    print(json.dumps({k: v for k, v in report.items() if k != "server_log_tail"}, indent=2))
    assert_report(report)


if __name__ == "__main__":
    sys.path.insert(0, str(HERE))
    r = run(pathlib.Path(os.environ.get("SHOTS_DIR", ROOT / "build" / "screenshots")))
    print(json.dumps(r, indent=2))
    assert_report(r)
    print("OK")
