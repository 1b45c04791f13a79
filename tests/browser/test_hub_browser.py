"""The workshop hub in a real browser: two learners log in, land on the tour, run it.

Starts ``bash scripts/hub.sh`` as an instructor does (the room mode, not the preflight) on
localhost ports of its own and a throw-away workshop folder, reads the password from the banner
it prints, then in headless Chromium (two browser contexts: two learners, both pages kept open
so the first learner's panels stay live while the second runs):

- a wrong password leaves the learner on the login page with JupyterHub's error;
- the right one starts the learner's server and lands on the tour (``00_tour.ipynb`` open in
  JupyterLab, not the Launcher);
- *Run All* runs every cell, the tour's dashboard draws (Bokeh canvases, the object view), no
  cell shows an error;
- Ctrl-C to hub.sh stops the hub and every learner's server.

Prints the time from login to the tour and the run time per learner (quoted in
bench/RESULTS-workshop.txt).
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

from harness import (
    CHROMIUM,
    ERROR_OUTPUT,
    browser_marks,
    run_all,
    shots_dir,
    wait_all_cells_ran,
    wait_kernel_idle,
)

ROOT = Path(__file__).resolve().parents[2]
pytestmark = browser_marks()
LEARNERS = ("ada", "grace")


def free_block() -> int:
    for port in range(18400, 18700, 3):
        try:
            for p in (port, port + 1, port + 2):
                with socket.socket() as s:
                    s.bind(("127.0.0.1", p))
        except OSError:
            continue
        return port
    raise AssertionError("no three free ports in 18400-18700")


def start_hub(workdir: Path, port: int) -> tuple[subprocess.Popen[str], str, list[str]]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("VIRTUAL_ENV")}
    hub = subprocess.Popen(["bash", str(ROOT / "scripts" / "hub.sh"), "--ip", "127.0.0.1",
                            "--port", str(port), "--dir", str(workdir)], cwd=ROOT, env=env,
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines: list[str] = []
    deadline = time.monotonic() + 900  # the first run makes .venv-hub
    assert hub.stdout is not None
    while time.monotonic() < deadline:
        line = hub.stdout.readline()
        if not line:
            raise AssertionError("hub.sh ended before the hub was up:\n" + "".join(lines))
        lines.append(line)
        if line.strip().startswith("Stop "):  # the banner's last line
            password = re.search(r"^\s+Password\s+(\S+)", "".join(lines), re.M)
            assert password, lines
            return hub, password.group(1), lines
    raise AssertionError("no banner from hub.sh:\n" + "".join(lines))


def stop_hub(hub: subprocess.Popen[str]) -> str:
    # Ctrl-C, as the instructor does. A test run started in the background by a non-interactive
    # shell (a CI runner, `( ... & )`) inherits SIGINT ignored, and bash cannot trap a signal
    # that was ignored when it started: hub.sh then never stopped and left its hub and the
    # learners' servers running. It stops the same way on TERM, which is never inherited so.
    ignored = signal.getsignal(signal.SIGINT) == signal.SIG_IGN
    hub.send_signal(signal.SIGTERM if ignored else signal.SIGINT)
    out, _ = hub.communicate(timeout=120)
    return out


def test_two_learners_log_in_land_on_the_tour_and_run_it(tmp_path):

    # pytest's tmp_path is under a 0700 folder: learners' own uids could not reach a room
    # there (hub.sh would then run them as root, and say so). A workshop folder elsewhere:
    room = Path(tempfile.mkdtemp(prefix="durable_lab-hub-browser-"))
    try:
        run_room(room)
    finally:
        shutil.rmtree(room, ignore_errors=True)


def run_room(room: Path) -> None:
    from playwright.sync_api import sync_playwright

    port = free_block()
    hub, password, banner = start_hub(room, port)
    base = f"http://127.0.0.1:{port}"
    assert any(f"{base}/" in line for line in banner), banner  # the address to hand out
    report: dict[str, dict[str, float | int]] = {}
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, headless=True)
            pages = []
            # A wrong password: JupyterHub's login page again, with its error.
            context = browser.new_context(viewport={"width": 1400, "height": 2000})
            page = context.new_page()
            page.goto(f"{base}/hub/login")
            page.fill("#username_input", "mallory")
            page.fill("#password_input", password + "-wrong")
            page.click("#login_submit")
            page.wait_for_selector("text=Invalid username or password", timeout=60_000)
            assert "/hub/login" in page.url
            context.close()

            for name in LEARNERS:
                context = browser.new_context(viewport={"width": 1400, "height": 2000})
                page = context.new_page()
                pages.append(page)
                errors: list[str] = []
                page.on("pageerror", lambda e, errors=errors: errors.append(str(e)))
                t0 = time.monotonic()
                page.goto(f"{base}/hub/login")
                page.fill("#username_input", name)
                page.fill("#password_input", password)
                page.click("#login_submit")
                page.wait_for_url(re.compile(rf"/user/{name}/lab/tree/notebooks/00_tour\.ipynb"),
                                  timeout=300_000)
                page.wait_for_selector(".jp-Notebook .jp-CodeCell", timeout=180_000)
                wait_kernel_idle(page, timeout=180)
                landed = time.monotonic() - t0
                # the tour is the open document (not the Launcher)
                page.wait_for_selector("#jp-main-dock-panel .lm-TabBar-tab.lm-mod-current"
                                       ":has-text('00_tour.ipynb')", timeout=60_000)
                t1 = time.monotonic()
                run_all(page)
                wait_all_cells_ran(page, timeout=300)
                report[name] = {
                    "login_to_tour_s": round(landed, 1),
                    "run_s": round(time.monotonic() - t1, 1),
                    "errors_in_cells": page.locator(ERROR_OUTPUT).count(),
                    "canvases": page.locator(".jp-OutputArea canvas").count(),
                    "object_views": page.locator(".dl-objectview").count(),
                    "page_errors": len(errors),
                }
                page.screenshot(path=shots_dir() / f"hub-{name}-tour.png")
            browser.close()
    finally:
        out = stop_hub(hub)
    print("hub browser run:", report)
    assert sorted(report) == sorted(LEARNERS), report
    for name, found in report.items():
        assert found["errors_in_cells"] == 0 and found["page_errors"] == 0, (name, found)
        assert found["canvases"] > 0 and found["object_views"] >= 1, (name, found)
    assert hub.returncode is not None
    assert "stopping the hub" in out, out[-2000:]
    if os.geteuid() == 0:
        assert any("own Unix uid" in line for line in banner), banner
    homes = sorted(p.name for p in (room / "learners").iterdir())
    assert homes == sorted(LEARNERS), homes  # the wrong password made no learner
