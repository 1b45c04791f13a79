"""Re-running cells and restarting the kernel, in real JupyterLab and headless Chromium.

The notebook (dashboard_notebook.build(count=True)) builds a lab and its dashboard, starts six
clients, and ends with a cell that prints what the page cannot see by itself:
``SUBSCRIBERS <lab.bus.subscriber_count> LISTENERS <feed listeners> OPEN <kinds> PID <pid>``.
The test runs it with Run > Run All Cells, then:

1. re-runs the dashboard cell (Ctrl+Enter on it), then the count cell;
2. copies the dashboard cell further down (c / v), runs the copy, then the count cell: the old
   dashboard's widgets close, so its output empties;

and after each: exactly one ``.dl-dashboard`` in the page, one subscriber on the bus, eight
listeners on the feed (a dashboard and its seven panels), and the visible dashboard updating.
After the re-run, JupyterLab's log console holds no "No such comm" line.

3. Kernel > Restart Kernel and Run All Cells: a new kernel (another pid), the panels render
   again, one set, one subscriber, and they update.

No browser console errors at any point, and no request left this machine. Server, browser,
console and failure screenshots: harness.py.
"""

from __future__ import annotations

import contextlib
import re
import time

from dashboard_notebook import build
from harness import (
    STDERR,
    TIMEOUT_SCALE,
    BrowserSession,
    browser_marks,
    log_console_text,
    print_report,
    reset_seen,
    run_all,
    shoot,
    shots_dir,
    wait_count,
    wait_js,
    wait_seen,
)

pytestmark = browser_marks()

# What a finished dashboard cell and a finished count cell show (see _run_cell).
DASHBOARD_DONE = ".dl-dashboard .dl-objectview"
COUNT_DONE = ".jp-OutputArea-output:has-text('SUBSCRIBERS')"
COUNT_RE = re.compile(r"SUBSCRIBERS (\d+) LISTENERS (\d+) OPEN (\S*) PID (\d+)")


def _code_cell(page, index: int):
    return page.locator(".jp-Notebook .jp-CodeCell").nth(index)


def _prompt(cell) -> str:
    return cell.locator(".jp-InputPrompt").first.inner_text().strip()


def _run_cell(page, index: int, done: str, timeout: float = 300.0) -> None:
    """Select code cell ``index`` (command mode) and run it in place; wait for its new prompt.

    ``done``: a selector inside the cell that its last output shows (the dashboard, the
    printed counts). A cell whose output is there but whose prompt stays ``[*]:`` did run:
    JupyterLab lost its execute_reply, as harness.wait_all_cells_ran explains (ipykernel 7.4,
    widget messages handled while a cell awaits); the report counts those in
    ``stuck_prompts``."""
    cell = _code_cell(page, index)
    before = _prompt(cell)
    cell.locator(".jp-InputPrompt").first.click()
    page.keyboard.press("Escape")
    page.keyboard.press("Control+Enter")
    deadline = time.monotonic() + timeout * TIMEOUT_SCALE
    seen_running = False
    while time.monotonic() < deadline:
        now = _prompt(cell)
        if now != before and re.fullmatch(r"\[\d+\]:", now):
            return
        seen_running = seen_running or now == "[*]:"
        if seen_running and now == "[*]:" and cell.locator(done).count():
            time.sleep(1.0)  # the reply has had its chance
            if _prompt(cell) == "[*]:":
                STUCK.append(index)
            return
        time.sleep(0.05)
    raise AssertionError(f"code cell {index} did not run: prompt {before!r} -> {_prompt(cell)!r}")


#: Code cells that ran but kept "[*]:" (see _run_cell); reported, not failed.
STUCK: list[int] = []


def _count(page, index: int) -> dict:
    text = _code_cell(page, index).locator(".jp-OutputArea-output").first.inner_text()
    m = COUNT_RE.search(text)
    assert m, f"count cell printed {text!r}"
    return {"subscribers": int(m[1]), "listeners": int(m[2]), "open": m[3], "pid": int(m[4])}


def _updates(page) -> list[int]:
    """The visible dashboard's event numbers, waited for until they grew twice (the panels
    update). Recorded by the page (harness.RECORDER_JS) from the moment reset_seen() ran, so a
    busy machine cannot make the test look in the wrong second."""
    values = wait_seen(page, "dl-runstate", "seq",
                       "v => v.length >= 3 && +v[v.length - 1] > +v[0]",
                       what="the dashboard's event number growing")
    return [int(v) for v in values]


def _state(page, index: int) -> dict:
    """One snapshot after a (re-)run: counts printed by the kernel and what the page shows."""
    page.locator(".dl-dashboard .dl-objectview").first.wait_for(timeout=60_000 * TIMEOUT_SCALE)
    wait_count(page.locator(".dl-dashboard canvas"), 3, what="the dashboard's canvases")
    # closed widgets leave the page asynchronously: wait until one dashboard is left (if not,
    # it is counted and asserted below, with the rest of the state)
    with contextlib.suppress(AssertionError):
        wait_js(page, "() => document.querySelectorAll('.dl-dashboard').length === 1",
                timeout=60, what="one dashboard in the page")
    out = _count(page, index)
    out["dashboards"] = page.locator(".dl-dashboard").count()
    out["objectviews"] = page.locator(".dl-objectview").count()
    out["canvases"] = page.locator(".dl-dashboard canvas").count()
    reset_seen(page)
    out["seq"] = _updates(page)
    out["stderr"] = page.locator(STDERR).count()
    out["panel_errors"] = page.locator(".dl-errors .jp-OutputArea-output").count()
    return out


def run(shots) -> dict:
    STUCK.clear()
    with BrowserSession("lifecycle", {"dashboard.ipynb": build(count=True)},
                        shots=shots) as session:
        session.report["states"] = {}
        _drive(session, session.new_page(), shots, session.report)
    return session.report


def _drive(session: BrowserSession, page, shots, report: dict) -> None:
    from playwright.sync_api import expect

    states, T = report["states"], report["timings_s"]
    t0 = time.monotonic()
    session.open_notebook(page, "dashboard.ipynb")
    session.phase = "open"
    run_all(page)
    # code cells: 0 setup, 1 dashboard, 2 workload, 3 phase (awaits 3 s), 4 count
    count_cell = 4
    expect(_code_cell(page, count_cell).locator(".jp-OutputArea-output", has_text="SUBSCRIBERS")
           .or_(page.locator(STDERR)).first).to_be_visible(timeout=180_000 * TIMEOUT_SCALE)
    states["run_all"] = _state(page, count_cell)
    T["run_all"] = round(time.monotonic() - t0, 1)

    # 1. re-run the dashboard cell in place
    session.phase = "rerun_cell"
    t1 = time.monotonic()
    _run_cell(page, 1, DASHBOARD_DONE)
    _run_cell(page, count_cell, COUNT_DONE)
    states["rerun_cell"] = _state(page, count_cell)
    # What the kernel said about messages it could not deliver after the re-run: the old
    # dashboard's views keep sending (jupyter_bokeh echoes, plot sizes) while the new cell
    # closes their comms; widgets/_comms.py keeps that expected traffic out of the log.
    # Checked here, at once, so that a later phase failing cannot hide it.
    log = log_console_text(page)
    report["log_console"] = {"no_such_comm": log.count("No such comm"), "tail": log[-1500:]}
    assert report["log_console"]["no_such_comm"] == 0, report["log_console"]
    T["rerun_cell"] = round(time.monotonic() - t1, 1)

    # 2. copy the dashboard cell below the phase cell and run the copy: two cells, one dashboard
    session.phase = "copied_cell"
    t1 = time.monotonic()
    _code_cell(page, 1).locator(".jp-InputPrompt").first.click()
    page.keyboard.press("Escape")
    page.keyboard.press("c")
    _code_cell(page, 3).locator(".jp-InputPrompt").first.click()
    page.keyboard.press("Escape")
    page.keyboard.press("v")
    expect(page.locator(".jp-Notebook .jp-CodeCell")).to_have_count(
        6, timeout=30_000 * TIMEOUT_SCALE)
    count_cell = 5  # the copy is code cell 4 now
    _run_cell(page, 4, DASHBOARD_DONE)
    _run_cell(page, count_cell, COUNT_DONE)
    states["copied_cell"] = _state(page, count_cell)
    # the original dashboard cell's output no longer shows a dashboard
    states["copied_cell"]["original_cell_dashboards"] = _code_cell(page, 1).locator(
        ".dl-dashboard").count()
    T["copied_cell"] = round(time.monotonic() - t1, 1)

    # 3. Kernel > Restart Kernel and Run All Cells...
    session.phase = "restart"
    t1 = time.monotonic()
    old_pid = states["copied_cell"]["pid"]
    page.locator(".lm-MenuBar-itemLabel:text-is('Kernel')").click()
    page.locator(".lm-Menu-itemLabel", has_text="Restart Kernel and Run All Cells").click()
    page.locator(".jp-Dialog .jp-mod-accept").click()
    deadline = time.monotonic() + 300 * TIMEOUT_SCALE
    while True:
        out = _code_cell(page, count_cell).locator(".jp-OutputArea-output")
        text = out.first.inner_text() if out.count() else ""
        m = COUNT_RE.search(text)
        if m and int(m[4]) != old_pid:
            break
        if page.locator(STDERR).count():
            raise AssertionError("a cell wrote to stderr: "
                                 + page.locator(STDERR).first.inner_text()[-800:])
        if time.monotonic() > deadline:
            raise AssertionError(f"notebook did not run again after the restart: {text!r}")
        time.sleep(0.2)
    states["restarted"] = _state(page, count_cell)
    T["restart_and_run_all"] = round(time.monotonic() - t1, 1)
    shoot(page, page.locator(".dl-dashboard"), shots / "dashboard-after-restart.png")
    T["total"] = round(time.monotonic() - t0, 1)


def assert_report(r: dict) -> None:
    s = r["states"]
    assert set(s) == {"run_all", "rerun_cell", "copied_cell", "restarted"}, r
    for name, st in s.items():
        assert st["subscribers"] == 1, (name, st)  # one subscription on the bus
        assert st["listeners"] == 8, (name, st)  # dashboard + 7 panels, no stale ones
        assert st["open"] == "dashboard", (name, st)
        assert st["dashboards"] == 1 and st["objectviews"] == 1, (name, st)  # one set visible
        assert st["canvases"] >= 3, (name, st)
        assert len(st["seq"]) >= 2 and st["seq"][-1] > st["seq"][0], (name, st)  # updating
        assert st["stderr"] == 0 and st["panel_errors"] == 0, (name, st)
    assert s["copied_cell"]["original_cell_dashboards"] == 0, s["copied_cell"]
    assert r["log_console"]["no_such_comm"] == 0, r["log_console"]
    assert s["restarted"]["pid"] != s["copied_cell"]["pid"], s  # a new kernel
    assert len({s[k]["pid"] for k in ("run_all", "rerun_cell", "copied_cell")}) == 1, s
    unexpected = [e for e in r["console_errors"] if not _known_restart_error(e)]
    assert not unexpected, unexpected
    assert not r["blocked_requests"], r["blocked_requests"]  # rendered with no network


def _known_restart_error(text: str) -> bool:
    """jupyter_bokeh 4.1 upstream bug, met only while the kernel restarts: the *old* kernel's
    plots get a resize as their outputs are cleared, BokehJS pushes the new layout sizes, and
    jupyter_bokeh sends them on a comm whose kernel is gone ("Error: Cannot send", uncaught,
    stack: ResizeObserver -> after_layout -> setv -> jupyter_bokeh _change_event -> _send).
    Harmless (the plots being cleared are dead) and not ours to fix; allowed in that phase only,
    with exactly that stack. Listed in docs/panels.md, Known issues."""
    return (text.startswith("[restart] pageerror: Cannot send") and "jupyter_bokeh" in text
            and "_change_event" in text)


def test_dashboard_survives_rerun_and_kernel_restart():
    report = run(shots_dir())
    report["known_restart_errors"] = sum(map(_known_restart_error, report["console_errors"]))
    report["stuck_prompts"] = list(STUCK)
    print_report(report)
    assert_report(report)
