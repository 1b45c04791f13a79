"""In real JupyterLab, ``side_by_side`` puts panels next to each other, and a hostile object name
stays text (issue 17: side_by_side stacked its panels; the fleet ran an ``<img onerror>``).

A notebook runs lesson 06's form (``side_by_side(fleet, metrics)``) and lesson 08's form
(``side_by_side(websockets, watch)``) on objects whose names are markup, then a dashboard on
one of them whose call raises an error made of markup. In a 1280x800 window,
with JupyterLab's left sidebar open (its default) and closed, the two cells of each row must
share one line (same top, the second to the right of the first), every plot must fit inside its
cell (it shrank with it instead of overflowing), and the page must hold no element the name's
markup would make (the ``<img>`` would set ``window.__dl_xss``).
"""

from __future__ import annotations

import time

import nbformat
import pytest
from harness import (
    ERROR_OUTPUT,
    BrowserSession,
    browser_marks,
    hide_left_sidebar,
    print_report,
    run_all,
    wait_all_cells_ran,
)
from nbformat.v4 import new_code_cell, new_notebook

pytestmark = browser_marks()

EVIL = '<img src=x onerror="window.__dl_xss=1" class="dl-evil">'

CELLS = [
    f'''\
import asyncio, widgets
from durable_lab import DurableObject, Lab, Response, WebSocketPair
from durable_lab.workload import run_workload

EVIL = {EVIL!r}

class Counter(DurableObject):
    async def increment(self):
        n = (await self.ctx.storage.get("n")) or 0
        self.ctx.storage.put("n", n + 1)
        return n + 1

    async def fail(self):
        self.ctx.storage.put(EVIL, EVIL)
        raise ValueError(EVIL)

class Room(DurableObject):
    async def fetch(self, request):
        client, server = WebSocketPair()
        self.ctx.acceptWebSocket(server, [EVIL])
        return Response(None, status=101, web_socket=client)

lab = Lab(storage="memory", seed=1, commit_latency=0.02)
COUNTER = lab.bind("COUNTER", Counter)
ROOMS = lab.bind("ROOMS", Room)''',
    "widgets.side_by_side(widgets.fleet(lab), widgets.metrics(lab))",
    '''\
await asyncio.gather(*(COUNTER.getByName(EVIL + str(i % 3)).increment() for i in range(40)))
await run_workload(COUNTER, method="increment", clients=4, per_client=10, rate=20, objects=4,
                   seed=1)''',
    '''\
sockets = widgets.websockets(lab, f"ROOMS:{EVIL}")
room_view = widgets.watch(lab, f"ROOMS:{EVIL}", timeline=False)
widgets.side_by_side(sockets, room_view)''',
    "board = widgets.dashboard(lab, COUNTER.getByName(EVIL + '0'))\nboard",
    '''\
ws = await lab.connect(ROOMS.getByName(EVIL))
try:
    await COUNTER.getByName(EVIL + "0").fail()
except ValueError:
    pass
await lab.wait_idle()
await asyncio.sleep(1.0)
print("DONE")''',
]

# Per side-by-side box: each cell's box, and how far its content overflows it.
GEOMETRY_JS = """() => [...document.querySelectorAll('.dl-side-by-side')].map(box => (
  [...box.querySelectorAll(':scope > .dl-side-cell')].map(cell => {
    const r = cell.getBoundingClientRect();
    const plots = [...cell.querySelectorAll('.bk-Figure, .bk-GridPlot, .bk-Column')]
      .map(p => p.getBoundingClientRect())
      .map(p => ({left: p.left, right: p.right}));
    return {left: r.left, right: r.right, top: r.top, width: r.width,
            overflow: cell.scrollWidth - cell.clientWidth, plots};
  })))"""

XSS_JS = "() => ({flag: window.__dl_xss || 0, imgs: document.querySelectorAll('.dl-evil').length})"


def _notebook() -> nbformat.NotebookNode:
    nb = new_notebook()
    nb.cells = [new_code_cell(c) for c in CELLS]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3 (ipykernel)",
                                 "language": "python"}
    return nb


@pytest.fixture(scope="module")
def session():
    with BrowserSession("side-by-side", {"side.ipynb": _notebook()}) as s:
        yield s
        print_report(s.report)


def _wait_geometry(page, deadline_s: float = 30.0) -> list:
    """The geometry once both boxes have two cells whose plots have been drawn."""
    deadline = time.monotonic() + deadline_s
    geo: list = []
    while time.monotonic() < deadline:
        geo = page.evaluate(GEOMETRY_JS)
        if len(geo) == 2 and all(len(b) == 2 for b in geo) and geo[0][0]["plots"] \
                and geo[0][1]["plots"]:
            return geo
        time.sleep(0.2)
    raise AssertionError(f"the two side-by-side boxes never drew: {geo}")


def _assert_one_row(geo: list, where: str) -> None:
    for box in geo:
        first, second = box
        assert abs(first["top"] - second["top"]) <= 2, (where, "stacked", box)
        assert second["left"] >= first["right"] - 1, (where, "overlap", box)
        for cell in box:
            assert cell["overflow"] <= 1, (where, "content wider than its cell", cell)
            for p in cell["plots"]:
                assert cell["left"] - 1 <= p["left"] and p["right"] <= cell["right"] + 1, (
                    where, "plot outside its cell", cell)


def test_panels_share_a_row_and_names_stay_text(session):
    page = session.new_page(viewport={"width": 1280, "height": 800})
    session.phase = "run"
    session.open_notebook(page, "side.ipynb")
    run_all(page)
    wait_all_cells_ran(page, timeout=120)
    assert not page.locator(ERROR_OUTPUT).count(), page.locator(ERROR_OUTPUT).first.inner_text()
    page.locator(".jp-OutputArea-output", has_text="DONE").first.wait_for(timeout=30_000)

    session.phase = "sidebar open"
    geo = _wait_geometry(page)
    session.report["sidebar_open"] = geo
    _assert_one_row(geo, "sidebar open")

    session.phase = "sidebar closed"
    width_js = "() => document.querySelector('.jp-NotebookPanel').getBoundingClientRect().width"
    before = page.evaluate(width_js)
    hide_left_sidebar(page)
    page.wait_for_timeout(1000)
    if page.evaluate(width_js) <= before + 100:  # the menu did not do it: the shortcut does
        page.keyboard.press("Control+b")
    deadline = time.monotonic() + 10
    while page.evaluate(width_js) <= before + 100 and time.monotonic() < deadline:
        time.sleep(0.2)
    assert page.evaluate(width_js) > before + 100, "the left sidebar did not close"
    page.wait_for_timeout(800)  # the panels re-lay out at the new width
    geo = _wait_geometry(page)
    session.report["sidebar_closed"] = geo
    _assert_one_row(geo, "sidebar closed")

    xss = page.evaluate(XSS_JS)
    session.report["xss"] = xss
    assert xss == {"flag": 0, "imgs": 0}
    # ... and the names are there, as text: in the fleet's summary and the sockets' tags.
    assert page.locator(".dl-fleet", has_text=EVIL).count() >= 1
    assert page.locator(".dl-websockets", has_text=EVIL).count() >= 1
    assert page.locator(".dl-eventlog", has_text=f"ValueError: {EVIL}").count() == 1
    assert page.locator(".dl-objectview", has_text=f"COUNTER:{EVIL}0").count() == 1
    page.locator(".dl-side-by-side").first.scroll_into_view_if_needed()
    page.wait_for_timeout(300)
    page.screenshot(path=str(session.shots / "side-by-side-1280x800.png"))
