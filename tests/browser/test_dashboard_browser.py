"""The dashboard as a learner sees it: real JupyterLab, headless Debian Chromium, Playwright.

Starts JupyterLab on a free port with a throw-away notebook (dashboard_notebook.py) that builds
a lab and its dashboard and starts six clients; runs it with Run > Run All Cells; then checks:

- the panels render (object view HTML, controls, Bokeh canvases);
- mailbox chips and the input gate change while the workload runs;
- Pause, then Step advances the runtime by exactly one transition (the controls' step counter);
- Crash produces a reset that the object view shows, and Play brings the object back;
- no browser console errors, and no request left this machine (harness.py blocks them).

Server, browser, console and failure screenshots: harness.py. Screenshots go to
build/screenshots/ unless SHOTS_DIR says otherwise (SHOTS_DIR=docs/img refreshes the ones in
docs/). Skipped only when Chromium is not installed (CI installs it: apt-get install chromium).
"""

from __future__ import annotations

import contextlib
import time

from dashboard_notebook import build
from harness import (
    TIMEOUT_SCALE,
    BrowserSession,
    attr,
    browser_marks,
    click_until,
    hide_left_sidebar,
    print_report,
    run_all,
    shoot,
    shots_dir,
    wait_attr,
    wait_count,
    wait_js,
    wait_seen,
)

pytestmark = browser_marks()


def run(shots) -> dict:
    with BrowserSession("dashboard", {"dashboard.ipynb": build()}, shots=shots) as session:
        page = session.new_page()
        session.report.update(checks={}, seen={})
        _drive(session, page, shots, session.report)
    return session.report


def _drive(session: BrowserSession, page, shots, report: dict) -> None:
    from playwright.sync_api import expect

    checks, seen = report["checks"], report["seen"]
    session.open_notebook(page, "dashboard.ipynb")
    hide_left_sidebar(page)
    session.phase = "run"
    run_all(page)
    # 1. the panels render
    view = ".dl-objectview"
    page.locator(view).wait_for(timeout=120_000 * TIMEOUT_SCALE)
    canvas = page.locator(".jp-OutputArea canvas")
    checks["bokeh_canvases"] = wait_count(canvas, 3, what="three Bokeh canvases")
    checks["panels"] = {c: wait_count(page.locator(c), 1) for c in (
        ".dl-objectview", ".dl-runstate", ".dl-storage-inspector", ".dl-fleet", ".dl-eventlog")}
    page.locator(".jupyter-widgets button", has_text="Step").wait_for(
        timeout=30_000 * TIMEOUT_SCALE)
    page.locator(".jp-OutputArea-output", has_text="WORKLOAD STARTED").wait_for(
        timeout=120_000 * TIMEOUT_SCALE)
    # scroll the dashboard's output into view
    page.locator(".dl-dashboard").first.scroll_into_view_if_needed()

    # 2. chips and gate change as the workload runs: waited for, not sampled. The page's
    # recorder (harness.RECORDER_JS) keeps every value the object view showed, so a gate closed
    # for one frame counts however busy the machine is; the deadline only bounds a failure.
    # The screenshot waits for a telling moment (calls queued, replies held, gate closed), and
    # is taken anyway if that moment is gone before the test process gets to look.
    # (Only the picture's moment: the checks below wait for their own conditions.)
    with contextlib.suppress(AssertionError):
        wait_js(page, """sel => { const e = document.querySelector(sel);
                   return e && e.dataset.mailbox !== "0" && e.dataset.held !== "0"
                          && e.dataset.gate === "closed"; }""", view, timeout=20,
                what="a moment with calls queued, replies held and the gate closed")
    shoot(page, page.locator(".dl-dashboard"), shots / "dashboard-running.png")
    gates = wait_seen(page, "dl-objectview", "gate",
                      "v => v.includes('open') && v.includes('closed')",
                      what="the object view's gate shown both open and closed")
    mailboxes = wait_seen(page, "dl-objectview", "mailbox", "v => new Set(v).size >= 3",
                          what="three different mailbox sizes")
    seen["mailbox_sizes"] = sorted(set(mailboxes), key=int)
    seen["gate_states"] = sorted(set(gates))
    checks["chips_changed"] = len(seen["mailbox_sizes"]) >= 2
    checks["gate_changed"] = {"open", "closed"} <= set(seen["gate_states"])
    err = page.locator(".jp-OutputArea-output[data-mime-type='application/vnd.jupyter.stderr']")
    expect(page.locator(".jp-OutputArea-output", has_text="PHASE 1 DONE True").or_(err).first
           ).to_be_visible(timeout=120_000 * TIMEOUT_SCALE)
    if err.count():
        raise AssertionError("a cell wrote to stderr: " + err.first.inner_text()[-800:])

    # 3. Pause, then Step: exactly one transition
    click_until(page, page.locator(".jupyter-widgets button", has_text="Pause"),
                "() => document.querySelector('.dl-runstate')?.dataset.paused === 'true'",
                what="the lab paused")
    wait_attr(page, ".dl-choices", "data-count", lambda v: int(v) > 0)
    # Frames already on their way may still move the counter: wait until it has held still
    # for a second (a deadline bounds it), then step.
    before = _steady(page, ".dl-runstate", "data-steps")
    page.locator(".jupyter-widgets button", has_text="Step").click()
    after = int(wait_attr(page, ".dl-runstate", "data-steps", lambda v: int(v) != before))
    # The one check that something does NOT happen: nothing else moves while paused. It has to
    # watch for a while (1 s), there is no event to wait for.
    time.sleep(1.0)
    settled = int(attr(page, ".dl-runstate", "data-steps"))
    seen["steps"] = [before, after, settled]
    checks["step_is_one_transition"] = after == before + 1 == settled
    checks["choices_after_step"] = int(attr(page, ".dl-choices", "data-count"))
    shoot(page, page.locator(".dl-dashboard"), shots / "dashboard-paused.png")

    # 4. Crash: a reset the object view shows; Play brings the object back
    resets = int(attr(page, view, "data-resets"))
    page.locator(".jupyter-widgets button", has_text="Crash").click()
    wait_attr(page, view, "data-status", lambda v: v == "reset")
    checks["reset_shown"] = int(attr(page, view, "data-resets")) == resets + 1 and (
        page.locator(".dl-reset[data-active='true']").count() == 1)
    seen["reset_reason"] = attr(page, ".dl-reset", "data-reason")
    shoot(page, page.locator(".dl-dashboard"), shots / "dashboard-reset.png")
    click_until(page, page.locator(".jupyter-widgets button", has_text="Play"),
                "() => document.querySelector('.dl-runstate')?.dataset.paused === 'false'",
                what="the lab running again")
    wait_attr(page, view, "data-status", lambda v: v == "live")
    checks["live_again"] = True
    checks["panel_errors"] = page.locator(".dl-errors .jp-OutputArea-output").count()
    # the object view shows the object live again before its picture is taken
    wait_attr(page, view, "data-status", lambda v: v == "live")
    shoot(page, page.locator(".dl-object_view"), shots / "object-view.png")
    shoot(page, page.locator(".dl-timeline"), shots / "timeline.png")
    shoot(page, page.locator(".dl-metrics"), shots / "metrics.png")


def _steady(page, selector: str, name: str, quiet: float = 1.0, timeout: float = 30.0) -> int:
    """The value of an integer attribute once it has not changed for ``quiet`` seconds."""
    deadline = time.monotonic() + timeout * TIMEOUT_SCALE
    value, since = attr(page, selector, name), time.monotonic()
    while time.monotonic() < deadline:
        time.sleep(0.1)
        now = attr(page, selector, name)
        if now != value:
            value, since = now, time.monotonic()
        elif time.monotonic() - since >= quiet:
            return int(value)
    raise AssertionError(f"{selector}[{name}] kept changing for {timeout} s while paused")


def assert_report(r: dict) -> None:
    c = r["checks"]
    assert c["bokeh_canvases"] >= 3, r
    assert all(n >= 1 for n in c["panels"].values()), r
    assert c["chips_changed"] and c["gate_changed"], r
    assert c["step_is_one_transition"], r
    assert c["reset_shown"] and c["live_again"], r
    assert c["panel_errors"] == 0, r
    assert not r["console_errors"], r["console_errors"]
    assert not r["blocked_requests"], r["blocked_requests"]  # rendered with no network


def test_dashboard_in_jupyterlab():
    report = run(shots_dir())
    print_report(report)
    assert_report(report)
