"""Every lesson, as a learner runs it: real JupyterLab, headless Chromium, no network at all.

The "done when" of issue #9. One JupyterLab server (harness.py: no ``BOKEH_RESOURCES`` in its
environment, every non-local request blocked and recorded) serves every lesson as
scripts/build_lessons.py builds it from course/ (not the files in notebooks/, which a learner's
JupyterLab autosaves into); each lesson gets its own page (in its own JupyterLab workspace, so
the previous lesson's tab is not restored) and its kernel is shut down afterwards. A
``MutationObserver`` installed before JupyterLab loads records every value the panels' ``data-*``
attributes take (``data-seq``, ``data-steps``, ``data-gate``, ...), however briefly, so a gate
closed for one frame is still seen. After *Run All* each lesson must show:

- every code cell ran, no error output, no traceback (a cell tagged ``raises-exception`` may
  show its error: the lesson means it);
- no browser console error, no page error, no request that needed the network;
- no "Click to show javascript error" box (a Bokeh view that could not be made);
- every Bokeh plot on the page drew glyphs: its glyph renderers' data sources hold rows in
  BokehJS itself (``Bokeh.index``: the views, not the kernel's copy);
- if the lesson shows panels (``.dl-panel``), that they changed while its workload ran (a
  ``data-seq`` or ``data-steps`` took at least two values) and that none reported an error;
- every claim of the lesson with a ``page=(selector, pattern)`` (a claim cell of its source in
  course/lessons/: a sentence of the lesson about a panel): some element matching the selector
  showed text matching the pattern at some moment of the run (recorded by ``CLAIMS_JS`` on
  every DOM change, then waited for with a deadline);
- what ``EXPECT`` adds per lesson: panels at all (``panels``), the input gate seen CLOSED in an
  object view (``gate_closed``), and the clickable scheduler (``scheduler``): one click on a
  ``.dl-choice-button`` advances its ``.dl-scheduler``'s ``data-steps`` by exactly one.

Screenshots: per lesson that shows a panel, ``<lesson>.png`` (the output of the first panel, as
soon as a panel has changed), plus ``<lesson>-gate-closed.png`` (the slow-motion object view
with the gate CLOSED: a copy of its DOM the page keeps at that instant, since the closed gate
shows for less time than a screenshot takes) and ``<lesson>-scheduler.png`` (after the click)
where ``EXPECT`` asks for those, in ``build/screenshots/lessons/``; the whole report in
``build/lessons-report.json``. Refresh the committed ones with ``SHOTS_DIR=docs/img bash
scripts/test.sh tests/browser/test_lessons_browser.py`` (they land in ``docs/img/lessons/``).
The module took 3 min 45 s for the ten lessons on this 2-core machine while other test suites
ran (load average 7).

A cell that ran but kept ``[*]:`` (JupyterLab lost its reply; harness.wait_all_cells_ran) is
listed in the lesson's ``stuck_prompts`` and does not fail the lesson.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import re
import time
from typing import Any

import pytest
from harness import (
    ERROR_OUTPUT,
    JS_ERROR_BOX_TEXT,
    KERNEL_IDLE_JS,
    ROOT,
    BrowserSession,
    attr,
    browser_marks,
    hide_left_sidebar,
    menu,
    run_all,
    shots_dir,
    stuck_prompts,
    wait_all_cells_ran,
)
from notebook_sources import generate, load_build

pytestmark = browser_marks()

# The lessons as scripts/build_lessons.py builds them, not the files in notebooks/ (a learner's
# JupyterLab autosaves outputs and edits into those): tests/notebook_sources.py.
GENERATED = {g.name: g.text for g in generate() if g.lesson}
LESSONS = [ROOT / "notebooks" / f"{name}.ipynb" for name in GENERATED]

# Per lesson, its claims with a ``page=(selector, pattern)`` (course/lessons/: what the
# lesson says a panel shows, as a reader sees it on the page).
_BUILD = load_build()
PAGE_CLAIMS: dict[str, list[dict[str, str]]] = {
    name: [{"says": c.says, "selector": c.page[0], "pattern": c.page[1]}
           for _, c in _BUILD.claims_of(lesson.cells) if c.page]
    for name, lesson in _BUILD.lessons().items()}


@dataclasses.dataclass(frozen=True)
class Expect:
    """What one lesson must show beyond the checks every lesson gets.

    panels: the lesson opens at least one panel (``.dl-panel``), and its panels change while
        the workload runs.
    gate_closed: an object view (``.dl-objectview``) showed ``data-gate="closed"`` at some point
        (the lesson slows the lab down enough for a learner to see it).
    scheduler: a ``.dl-scheduler`` is on the page; clicking one of its ``.dl-choice-button``
        advances its ``data-steps`` by exactly one, and nothing else moves it.
    choice: which ``.dl-choice-button`` to click (0: the first), as the lesson tells the learner.
    pause_after: text of the cell after which the interactive checks (``scheduler``) run; the
        test runs everything up to and including that cell, clicks, then runs the rest. None:
        after Run All (then the lesson must leave that lab paused, not closed).
    """

    panels: bool = False
    gate_closed: bool = False
    scheduler: bool = False
    choice: int = 0
    pause_after: str | None = None
    #: (name, CSS selector): the last element matching each is screenshot after the run, as
    #: ``<lesson>-<name>.png`` (a panel whose teaching moment is its final state).
    after_run_shots: tuple[tuple[str, str], ...] = ()


# Per lesson; a lesson not listed only gets the checks every lesson gets (and the "panels
# changed" check if it shows any). Extend it as the lessons change.
EXPECT: dict[str, Expect] = {
    "00_tour": Expect(panels=True),
    "01_ownership_ids_stubs": Expect(panels=True),
    # "Be the scheduler": the lesson says to click `1: admit delivery 2 ...`; then the slow
    # motion cell shows the gate CLOSED.
    # "Let the machine be the scheduler": the counterexample played to its end in a watch
    # (its scheduler panel says "all 10 steps played", its timeline the two waiting calls).
    "02_input_gate": Expect(panels=True, gate_closed=True, scheduler=True, choice=1,
                            pause_after="board = widgets.watch(lab, stub, scheduler=True)",
                            after_run_shots=(("counterexample",
                                              ".jp-OutputArea-output:has(.dl-counterexample)"),
                                             )),
    "03_output_gate": Expect(panels=True),
    # The metrics panel's two rows of dots (one_turn flat, sync_each rising) and the histogram.
    "04_write_coalescing": Expect(panels=True,
                                  after_run_shots=(("metrics", ".dl-panel.dl-metrics"),)),
    "05_alarms_lifecycle": Expect(panels=True),
    "06_contention_sharding": Expect(panels=True),
    "07_sql_api": Expect(panels=True),
    "08_websockets_hibernation": Expect(panels=True),
    "09_capstone": Expect(panels=True),
    "10_placement": Expect(panels=True),
}

# Installed before JupyterLab's own scripts: records, per dl-* class and attribute, the
# sequence of distinct values seen. ipywidgets' HTML widget replaces its innerHTML on every
# update, so new nodes are scanned as well as attribute changes.
RECORDER_JS = r"""
(() => {
  // The panels' state attributes (not their identity ones: data-object, data-table, ...).
  const ATTRS = ["data-seq", "data-steps", "data-gate", "data-mailbox", "data-held",
                 "data-status", "data-paused", "data-count", "data-state", "data-holder",
                 "data-tables", "data-rows", "data-sockets", "data-running", "data-resets",
                 "data-queued", "data-objects", "data-keys", "data-dirty", "data-clicks",
                 "data-choices", "data-calls", "data-batches", "data-active"];
  const SELECTOR = ATTRS.map(a => `[${a}]`).join(",");
  const seen = {};
  window.__dlSeen = seen;
  const LIMIT = 5000;
  function keyOf(el) {
    for (const c of el.classList) if (c.startsWith("dl-")) return c;
    return null;  // not a panel's element (JupyterLab's own data-status, ...)
  }
  // Where the test asks (window.__dlSnapshotClosedGate): the first time an object view in
  // slow motion shows the gate CLOSED, keep a copy of that object view's DOM as it is, in this
  // same task. The closed gate is on screen for a fraction of a second (slow motion plays a
  // step's events back one at a time; between steps the gate is open again, so pausing does
  // not keep it), far less than a poll and a screenshot take; the test screenshots the copy.
  function snapshotHere(el) {
    if (!window.__dlSnapshotClosedGate || window.__dlGateSnapshot) return;
    const out = el.closest(".jp-OutputArea-output");
    const runstate = out && out.querySelector(".dl-runstate");
    if (!runstate || !/SLOW MOTION/i.test(runstate.textContent)) return;
    window.__dlGateSnapshot = {html: el.outerHTML, width: el.getBoundingClientRect().width,
                               runstate: runstate.outerHTML};
  }
  function note(el, name) {
    const value = el.getAttribute(name);
    const key = keyOf(el);
    if (value === null || key === null) return;
    if (name === "data-gate" && value === "closed" && key === "dl-objectview") snapshotHere(el);
    const per = (seen[key] ??= {});
    const list = (per[name] ??= []);
    if (list.length < LIMIT && list[list.length - 1] !== value) list.push(value);
  }
  function scan(el) {
    if (el.nodeType !== 1) return;
    if (el.matches(SELECTOR)) for (const a of ATTRS) note(el, a);
    for (const sub of el.querySelectorAll(SELECTOR)) for (const a of ATTRS) note(sub, a);
  }
  const observer = new MutationObserver(records => {
    for (const r of records) {
      if (r.type === "attributes") note(r.target, r.attributeName);
      else for (const n of r.addedNodes) scan(n);
    }
  });
  observer.observe(document, {subtree: true, childList: true, attributes: true,
                              attributeFilter: ATTRS});
})();
"""

# The lesson's page claims, watched from before JupyterLab loads: every DOM change (a new
# panel HTML, a changed attribute or text) re-tests the claims not yet met against the rendered
# text (innerText, spaces collapsed) of every element matching their selector; the first
# match is kept with its text and time. A claim about a moment (the room HIBERNATED before bob
# wakes it) is seen however briefly it was on screen; the test then waits, with a deadline,
# until every claim is met (CLAIMS_MET_JS), instead of sampling the page.
CLAIMS_JS = r"""
(claims => {
  const state = claims.map(c => ({...c, re: new RegExp(c.pattern), met: false, text: null}));
  window.__dlClaims = state;
  const textOf = el => (el.innerText || el.textContent || "").replace(/\s+/g, " ").trim();
  function test() {
    let open = 0;
    for (const c of state) {
      if (c.met) continue;
      for (const el of document.querySelectorAll(c.selector)) {
        const text = textOf(el);
        if (c.re.test(text)) { c.met = true; c.text = text.slice(0, 300); break; }
        c.last = text.slice(0, 300);
      }
      if (!c.met) open += 1;
    }
    return open;
  }
  const observer = new MutationObserver(() => { if (test() === 0) observer.disconnect(); });
  const start = () => observer.observe(document, {subtree: true, childList: true,
                                                  characterData: true, attributes: true});
  if (document.documentElement) start();
  else document.addEventListener("DOMContentLoaded", start);
})
"""

# True once every page claim was met (a list of the claims still open otherwise).
CLAIMS_MET_JS = "() => (window.__dlClaims || []).every(c => c.met)"
CLAIMS_JS_REPORT = ("() => (window.__dlClaims || []).map(c => ({says: c.says, selector: "
                    "c.selector, pattern: c.pattern, met: c.met, text: c.text || c.last || null}))")


def wait_for_claims(page: Any, timeout: float = 30.0) -> list[dict[str, Any]]:
    """Wait (with a deadline, not by sampling: the page recorded every match) until the page
    showed what each of the lesson's page claims says; returns them with what was seen."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    # On a timeout the report says which claim the page never showed, and what it showed.
    with contextlib.suppress(PlaywrightTimeout):
        page.wait_for_function(CLAIMS_MET_JS, timeout=timeout * 1000, polling=200)
    return page.evaluate(CLAIMS_JS_REPORT)


# Puts the object view the page copied when it showed the gate CLOSED (RECORDER_JS) in a box
# over the page, with the slow-motion status line above it; false if there is no copy yet.
SHOW_GATE_SNAPSHOT_JS = """() => {
  const snap = window.__dlGateSnapshot;
  if (!snap) return false;
  const box = document.createElement("div");
  box.id = "dl-gate-snapshot";
  box.style.cssText = `position:fixed;left:0;top:0;z-index:100000;background:white;
                       padding:8px;width:${Math.ceil(snap.width)}px`;
  box.innerHTML = snap.runstate + snap.html;
  document.body.appendChild(box);
  return true;
}"""

# How many panels the page shows, and the most values any panel state attribute took.
PANEL_CHANGES_JS = """() => [document.querySelectorAll('.dl-panel').length,
  Math.max(0, ...Object.values(window.__dlSeen || {}).flatMap(
      per => Object.values(per).map(values => values.length)))]"""

# Every Bokeh plot view in the page (BokehJS's global view index, children included), with
# its glyph renderers and how many rows each one's data source holds in the browser.
PLOTS_JS = r"""
() => {
  if (!window.Bokeh || !window.Bokeh.index) return null;
  const out = [];
  for (const v of window.Bokeh.index.query(v => v.renderer_views instanceof Map)) {
    const glyphs = [];
    for (const rv of v.renderer_views.values()) {
      const src = rv.model.data_source;
      if (src == null || rv.glyph == null) continue;
      glyphs.push({glyph: rv.glyph.model.type, rows: src.get_length() ?? 0,
                   visible: rv.model.visible});
    }
    const title = v.model.title != null && v.model.title.text != null ? v.model.title.text : "";
    out.push({id: v.model.id, title, connected: v.el.isConnected, glyphs});
  }
  return out;
}
"""


@pytest.fixture(scope="module")
def session():
    files = {f"{name}.ipynb": text for name, text in GENERATED.items()}
    t0 = time.monotonic()
    with BrowserSession("lessons", files, shots=shots_dir()) as s:
        s.report["lessons"] = {}
        yield s
        s.report["timings_s"]["module"] = round(time.monotonic() - t0, 1)
        summary = {k: v for k, v in s.report.items() if k != "server_log_tail"}
        # next to the screenshots' default folder, never into docs/ (SHOTS_DIR=docs/img)
        out = ROOT / "build" / "lessons-report.json"
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(summary, indent=2, default=str))


def _cell_index(stem: str, text: str) -> int:
    """Index (among all cells, as the page shows them) of the lesson's cell containing ``text``.
    Read from the file: JupyterLab may not render the text of cells far off screen."""
    nb = json.loads(GENERATED[stem])
    for i, cell in enumerate(nb["cells"]):
        source = cell["source"] if isinstance(cell["source"], str) else "".join(cell["source"])
        if text in source:
            return i
    raise AssertionError(f"no cell of {stem} contains {text!r}")


def _select_cell(page: Any, index: int) -> None:
    cell = page.locator(".jp-Notebook .jp-Cell").nth(index)
    cell.scroll_into_view_if_needed()
    cell.locator(".jp-InputPrompt, .jp-InputArea-prompt").first.click()
    page.keyboard.press("Escape")  # command mode: the menu acts on the selected cell


def _run(page: Any, stem: str, pause_after: str | None, on_pause: Any,
         on_tick: Any) -> list[str]:
    """Run the lesson: all of it, or up to the ``pause_after`` cell, then ``on_pause()``, then
    the rest. ``on_tick()`` runs every 0.25 s while cells run (the screenshot's moment)."""
    if pause_after is None:
        run_all(page)
        return wait_all_cells_ran(page, timeout=180, tick=on_tick)
    index = _cell_index(stem, pause_after)
    _select_cell(page, index)
    menu(page, "Run", "Run All Above Selected Cell")
    page.keyboard.press("Control+Enter")  # and the selected cell itself, after those
    cell = page.locator(".jp-Notebook .jp-Cell").nth(index)
    deadline = time.monotonic() + 180
    idle_since = None
    while True:
        prompt = cell.locator(".jp-InputPrompt").first.inner_text().strip()
        now = time.monotonic()
        idle = bool(page.evaluate(KERNEL_IDLE_JS))
        idle_since = (idle_since or now) if idle else None
        if re.fullmatch(r"\[\d+\]:", prompt) and idle:
            break
        if prompt == "[*]:" and idle_since is not None and now - idle_since > 5:
            break  # it ran; JupyterLab lost the reply (harness.wait_all_cells_ran)
        if now > deadline:
            raise AssertionError(f"the cell with {pause_after!r} did not run in 180 s")
        on_tick()
        time.sleep(0.25)
    on_pause()
    _select_cell(page, index + 1)
    menu(page, "Run", "Run Selected Cell and All Below")
    return wait_all_cells_ran(page, timeout=180, tick=on_tick)


# Scrolls the notebook (JupyterLab's own scroller, not the window) so that the element's top is
# at the top of the visible notebook area; returns the element's box after the scroll.
SCROLL_TO_TOP_JS = """e => {
  let p = e.parentElement;
  while (p && !(p.scrollHeight > p.clientHeight
                && ['auto', 'scroll'].includes(getComputedStyle(p).overflowY))) p = p.parentElement;
  if (p) p.scrollTop += e.getBoundingClientRect().top - p.getBoundingClientRect().top;
  const r = e.getBoundingClientRect();
  return {x: r.x, y: r.y, width: r.width, height: r.height};
}"""


def _shoot(page: Any, target: Any, path: Any) -> None:
    """Screenshot ``target`` (a locator or an element handle) as it is now. Not
    ``locator.screenshot()``: that waits for the element to stop moving, and a live panel only
    stops when its workload ends (the shots then showed the lab closed). Scroll it to the top of
    the notebook and clip the page to its box; JupyterLab scrolls to the running cell as Run All
    goes on, so if the box moved during the shot, take it again."""
    size = page.viewport_size
    for _ in range(4):
        box = target.evaluate(SCROLL_TO_TOP_JS)
        top = max(0.0, box["y"])
        clip = {"x": max(0.0, box["x"]), "y": top, "width": min(box["width"], size["width"]),
                "height": max(1.0, min(box["height"], size["height"] - top))}
        page.screenshot(path=path, clip=clip)
        after = target.bounding_box()
        if after is not None and abs(after["y"] - box["y"]) < 2:
            return


def _click_scheduler(page: Any, choice: int, shot: Any) -> dict[str, Any]:
    """One click on choice ``choice`` of the first scheduler: data-steps must go up by one.
    ``shot`` is where the scheduler's output is screenshot after the click."""
    sched = ".dl-scheduler[data-steps]"  # (the panel box itself is .dl-scheduler too)
    page.locator(sched).first.wait_for(timeout=20_000)
    # The buttons are ipywidgets next to the .dl-scheduler HTML, in the same panel.
    panel = page.locator(".dl-panel", has=page.locator(sched)).last
    buttons = panel.locator(".dl-choice-button")
    buttons.first.wait_for(timeout=20_000)
    button = buttons.nth(choice)
    button.scroll_into_view_if_needed()
    time.sleep(0.5)  # let frames already on their way land
    before = int(attr(page, sched, "data-steps"))
    label = button.inner_text()
    button.click()
    deadline = time.monotonic() + 15
    after = before
    while after == before and time.monotonic() < deadline:
        time.sleep(0.05)
        after = int(attr(page, sched, "data-steps"))
    time.sleep(1.0)  # nothing else may move it: the lab stays paused
    settled = int(attr(page, sched, "data-steps"))
    _shoot(page, page.locator(".jp-OutputArea-output", has=page.locator(sched)).first, shot)
    return {"clicked": label, "buttons": buttons.count(), "steps": [before, after, settled]}


def _lesson_report(session: BrowserSession, page: Any, stem: str, expect: Expect) -> dict:
    r: dict[str, Any] = {}
    shots = shots_dir("lessons")
    shot = {"taken": False}
    errors0 = len(session.report["console_errors"])
    blocked0 = len(session.report["blocked_requests"])

    def first_panel_output() -> Any:
        return page.locator(".jp-OutputArea-output", has=page.locator(".dl-panel")).first

    def tick() -> None:
        # Where the lesson is about the gate: the object view as it was when it showed the gate
        # CLOSED (a copy the page kept at that instant, RECORDER_JS), shown over the page just
        # long enough for a screenshot.
        if (expect.gate_closed and not shot.get("gate")
                and page.evaluate(SHOW_GATE_SNAPSHOT_JS)):
            snap = page.locator("#dl-gate-snapshot")
            page.screenshot(path=shots / f"{stem}-gate-closed.png", clip=snap.bounding_box())
            page.evaluate("() => document.getElementById('dl-gate-snapshot').remove()")
            shot["gate"] = True
        # The panel moment: the first panel on the page, as soon as a panel has changed
        # (polls are slow on a busy machine: waiting for more often meant the run's end).
        if shot["taken"]:
            return
        panels, changes = page.evaluate(PANEL_CHANGES_JS)
        if not panels or changes < 2:
            return
        _shoot(page, first_panel_output().element_handle(), shots / f"{stem}.png")
        shot["taken"] = True
        r["screenshot_at"] = {"s": round(time.monotonic() - t0, 1), "changes": changes,
                              "seq": attr(page, ".dl-panel [data-seq]", "data-seq")}

    def interact() -> None:
        if expect.scheduler:
            r["scheduler"] = _click_scheduler(page, expect.choice,
                                              shots / f"{stem}-scheduler.png")

    session.phase = stem
    t0 = time.monotonic()
    session.open_notebook(page, f"{stem}.ipynb", workspace=f"lesson-{stem[:2]}")
    if expect.gate_closed:
        page.evaluate("() => { window.__dlSnapshotClosedGate = true; }")
    hide_left_sidebar(page)
    r["prompts"] = _run(page, stem, expect.pause_after, interact, tick)
    r["run_s"] = round(time.monotonic() - t0, 1)
    r["claims"] = wait_for_claims(page)
    if expect.scheduler and expect.pause_after is None:
        interact()
    r["unrun_cells"] = [i for i, p in enumerate(r["prompts"]) if p == "[ ]:"]
    # ran, but JupyterLab lost the reply (harness.wait_all_cells_ran): reported, not failed
    r["stuck_prompts"] = stuck_prompts(r["prompts"])
    r["error_outputs"] = _unexpected_errors(page, stem)
    r["js_error_boxes"] = page.get_by_text(JS_ERROR_BOX_TEXT).count()
    r["plots"] = page.evaluate(PLOTS_JS)
    r["seen"] = page.evaluate("() => window.__dlSeen")
    r["panels"] = page.locator(".dl-panel").count()
    r["panel_errors"] = page.locator(".dl-errors .jp-OutputArea-output").count()
    if r["panels"] and not shot["taken"]:  # the workload ended before a moment was found
        r["screenshot_at"] = "after the run"
        _shoot(page, first_panel_output(), shots / f"{stem}.png")
        shot["taken"] = True
    r["screenshot"] = shot["taken"]
    for name, selector in expect.after_run_shots:
        _shoot(page, page.locator(selector).last.element_handle(), shots / f"{stem}-{name}.png")
    if expect.gate_closed:
        r["gate_closed_screenshot"] = bool(shot.get("gate"))
    r["console_errors"] = session.report["console_errors"][errors0:]
    r["blocked_requests"] = session.report["blocked_requests"][blocked0:]
    return r


def _unexpected_errors(page: Any, stem: str) -> list[str]:
    """Error outputs (or printed tracebacks) of code cells not tagged ``raises-exception``.

    The page's code cells are the notebook's, in order (the test adds none), so the tags are
    read from the lesson file by index."""
    nb = json.loads(GENERATED[stem])
    tags = [c.get("metadata", {}).get("tags", []) for c in nb["cells"]
            if c["cell_type"] == "code"]
    found = []
    cells = page.locator(".jp-Notebook .jp-CodeCell")
    for i in range(cells.count()):
        if i < len(tags) and "raises-exception" in tags[i]:
            continue
        cell = cells.nth(i)
        if cell.locator(f"{ERROR_OUTPUT}, .jp-OutputArea-output:has-text('Traceback')").count():
            found.append(f"code cell {i}: {cell.inner_text()[-600:]}")
    return found


def check(stem: str, expect: Expect, r: dict) -> list[str]:
    """The failures of one lesson's report, in words (empty: the lesson passes)."""
    bad = []
    if r["unrun_cells"]:
        bad.append(f"cells did not run: {r['unrun_cells']}")
    if r["error_outputs"]:
        bad.append(f"errors in cells: {r['error_outputs']}")
    if r["console_errors"]:
        bad.append(f"console errors: {r['console_errors']}")
    if r["blocked_requests"]:
        bad.append(f"needed the network: {r['blocked_requests']}")
    if r["js_error_boxes"]:
        bad.append(f"{r['js_error_boxes']} javascript error box(es)")
    plots = [p for p in (r["plots"] or []) if p["connected"]]
    empty = [p for p in plots if sum(g["rows"] for g in p["glyphs"] if g["visible"]) == 0]
    if empty:
        bad.append(f"plots that drew no glyphs: {empty}")
    if r["panels"]:
        # any state attribute of any panel element took a second value
        changes = [len(v) for per in r["seen"].values() for v in per.values()]
        if max(changes, default=0) < 2:
            bad.append(f"the panels never changed: {r['seen']}")
        if r["panel_errors"]:
            bad.append(f"{r['panel_errors']} panel error output(s)")
    elif expect.panels:
        bad.append("no panel (.dl-panel) on the page")
    if expect.panels and r["plots"] is not None and not plots and r["panels"] == 0:
        bad.append("no Bokeh plot either")
    if expect.gate_closed and "closed" not in r["seen"].get("dl-objectview", {}).get(
            "data-gate", []):
        bad.append(f"the input gate was never shown closed: "
                   f"{r['seen'].get('dl-objectview', {}).get('data-gate')}")
    for c in r.get("claims", []):
        if not c["met"]:
            bad.append(f"the page never showed what the lesson says ({c['says']!r}): no "
                       f"{c['selector']} matched {c['pattern']!r}; it showed {c['text']!r}")
    if expect.scheduler:
        before, after, settled = r["scheduler"]["steps"]
        if not after == before + 1 == settled:
            bad.append(f"one click took {after - before} step(s), then {settled - after} more: "
                       f"{r['scheduler']}")
    return bad


@pytest.mark.parametrize("path", LESSONS, ids=lambda p: p.stem)
def test_lesson_in_jupyterlab(session, path):
    stem, expect = path.stem, EXPECT.get(path.stem, Expect())
    page = session.new_page(viewport={"width": 1500, "height": 2500})
    page.add_init_script(RECORDER_JS)
    page.add_init_script(f"{CLAIMS_JS}({json.dumps(PAGE_CLAIMS.get(stem, []))});")
    try:
        r = _lesson_report(session, page, stem, expect)
    except Exception as exc:
        session.save_failure(exc, tag=stem)
        raise
    finally:
        page.close()
        session.pages.remove(page)
        session.server.shutdown_kernels()
    session.report["lessons"][stem] = r
    bad = check(stem, expect, r)
    summary = {k: v for k, v in r.items() if k not in ("seen", "prompts")}
    summary["seen_counts"] = {cls: {k: len(v) for k, v in per.items()}
                              for cls, per in r["seen"].items()}
    print(json.dumps({stem: summary, "failures": bad}, indent=2, default=str)[:6000])
    assert not bad, f"{stem}: " + "\n".join(bad)
