"""Issue 17, item 6: whatever callers or object code choose (an object's name, a method's name,
keys, values, errors, WebSocket tags, SQL tables and columns, regions, transition descriptions)
is shown as text by every panel, never run as markup.

One lab pushes HTML and script through every place a panel shows a string; then every widget's
HTML is parsed and must contain no element or attribute the panels never write themselves (an
``<img>``, a ``<script>``, an ``on...=`` handler). The same strings must be *visible* as text in
the panels that show them: a panel that dropped them would pass the first check for nothing.
The Bokeh plots show caller strings only through ``@column`` tooltips (BokehJS escapes those) and
canvas text (never parsed as HTML): their tooltip templates must stay constant and unsafe-free.
"""

from __future__ import annotations

import asyncio
import re
from html.parser import HTMLParser
from typing import Any

import ipywidgets as w
from bokeh.models import Axis, ColumnDataSource, HoverTool, Markup, Title
from bokeh.models.dom import DOMNode

import widgets
from durable_lab import DurableObject, Lab, Response, WebSocketPair
from durable_lab.network import Network
from widgets._plots import LiveBokehModel
from widgets._theme import plain

#: What BokehJS typesets as TeX in a title or an axis label (models/text/utils.js).
TEX = re.compile(r"\$\$[\s\S]*?\$\$|\\\[[\s\S]*?\\\]|\\\([\s\S]*?\\\)")

# Each breaks out of text (a tag with a handler) and, for the name and the key, out of a
# double-quoted or single-quoted attribute too.
NAME = ('<img src=x onerror=alert(1)>" onfocus="alert(2)\' onclick=\'alert(2)'
        "$$\\href{javascript:alert(11)}{tex}$$")  # and TeX, for a Bokeh title
METHOD = "<svg onload=alert(3)>"
KEY = "<script>alert(4)</script>\" onmouseover=\"alert(4)"
VALUE = "<img src=v onerror=alert(5)>"
ERROR = "<b onmouseover=alert(6)>boom</b>"
TAG = "<iframe src=javascript:alert(7)></iframe>"
TABLE = "<img src=t onerror=alert(8)>"
COLUMN = "<script>alert(9)</script>"
REGION = "<img src=r onerror=alert(10)>"
INJECTED = (NAME, METHOD, KEY, VALUE, ERROR, TAG, TABLE, COLUMN, REGION)

#: Tags no panel writes itself: their presence means caller text became markup. (A link a
#: panel may write is checked by its attributes: no handler, no javascript: URL.)
FOREIGN_TAGS = frozenset({"script", "img", "svg", "iframe", "object", "embed", "math", "form",
                          "input", "link", "meta", "base", "video", "audio"})


class Hostile(DurableObject):
    async def work(self) -> int:
        self.ctx.storage.put(KEY, VALUE)
        return 1

    async def other(self, n: int) -> int:
        self.ctx.storage.put(f"{KEY}{n}", f"{VALUE}{n}")
        return n

    async def fail(self) -> None:
        raise ValueError(ERROR)


setattr(Hostile, METHOD, Hostile.work)  # a method whose name is markup


class HostileSql(DurableObject):
    def __init__(self, ctx: Any, env: Any) -> None:
        super().__init__(ctx, env)
        ctx.storage.sql.exec(f'CREATE TABLE IF NOT EXISTS "{TABLE}" ("{COLUMN}" TEXT)')

    async def add(self, text: str) -> None:
        self.ctx.storage.sql.exec(f'INSERT INTO "{TABLE}" VALUES (?)', text)


class HostileRoom(DurableObject):
    async def fetch(self, request: Any) -> Response:
        client, server = WebSocketPair()
        self.ctx.acceptWebSocket(server, [TAG])
        return Response(None, status=101, web_socket=client)

    async def webSocketMessage(self, ws: Any, message: Any) -> None:
        self.ctx.storage.put(KEY, message)
        ws.send(message)


class Scan(HTMLParser):
    """Elements and text of an HTML fragment, as a browser would parse it."""

    def __init__(self, html: str) -> None:
        super().__init__(convert_charrefs=True)
        self.foreign: list[str] = []
        self.text: list[str] = []
        self.feed(html)
        self.close()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in FOREIGN_TAGS:
            self.foreign.append(f"<{tag}>")
        for name, value in attrs:
            value = value or ""
            if name.startswith("on"):
                self.foreign.append(f"<{tag} {name}=...>")
            if value.strip().lower().startswith("javascript:"):
                self.foreign.append(f"<{tag} {name}=javascript:...>")
            self.text.append(value)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.handle_starttag(tag, attrs)

    def handle_data(self, data: str) -> None:
        self.text.append(data)

    @property
    def shown(self) -> str:
        return "\n".join(self.text)


def widgets_under(root: w.Widget) -> list[w.Widget]:
    out, stack = [], [root]
    while stack:
        widget = stack.pop()
        out.append(widget)
        stack.extend(getattr(widget, "children", ()))
    return out


def html_of(root: w.Widget) -> list[str]:
    return [x.value for x in widgets_under(root) if isinstance(x, w.HTML) and x.value]


def assert_no_markup_from_callers(panel: w.Widget, *, shows: tuple[str, ...] = ()) -> str:
    """Every HTML value under ``panel`` parses to no foreign element or handler; the strings in
    ``shows`` are visible as text there. Returns the panel's visible text."""
    text = []
    for html in html_of(panel):
        scan = Scan(html)
        assert scan.foreign == [], f"{type(panel).__name__} renders {scan.foreign}: {html}"
        text.append(scan.shown)
    shown = "\n".join(text)
    for s in shows:
        assert s in shown, f"{type(panel).__name__} does not show {s!r} as text"
    return shown


def bokeh_models(panel: w.Widget) -> list[Any]:
    return [m for x in widgets_under(panel) if isinstance(x, LiveBokehModel)
            for m in x._model.references()]


def assert_bokeh_escapes(panel: w.Widget, *, in_data: tuple[str, ...] = (),
                         in_titles: tuple[str, ...] = ()) -> None:
    """Tooltips are (label, template) pairs with constant templates: no ``{safe}`` and no
    caller text in them (BokehJS escapes ``@column`` values, not the template); no Bokeh model
    that renders HTML carries caller text; no title or axis label holds TeX (a caller's
    ``$$...$$`` would be typeset); ``in_data`` strings did reach the plots' data and
    ``in_titles`` their titles (as typed, see ``plain``)."""
    models = bokeh_models(panel)
    assert models, f"{type(panel).__name__} has no plot"
    data: list[str] = []
    titles = [str(m.text) for m in models if isinstance(m, Title)]
    titles += [str(m.axis_label) for m in models if isinstance(m, Axis) and m.axis_label]
    assert [t for t in titles if TEX.search(t)] == []
    for s in in_titles:
        assert any(plain(s) in t for t in titles), (s, titles)
    for m in models:
        if isinstance(m, HoverTool):
            assert isinstance(m.tooltips, list), "a tooltip template in HTML: escape its values"
            for label, template in m.tooltips:
                assert "{safe}" not in template
                assert not any(s in template or s in label for s in INJECTED)
        elif isinstance(m, (Markup, DOMNode)):
            assert not any(s in str(m.properties_with_values()) for s in INJECTED)
        elif isinstance(m, ColumnDataSource):
            for column in m.data.values():
                data.extend(str(v) for v in column)
    joined = "\n".join(data)
    for s in in_data:
        assert s in joined, f"{s!r} never reached {type(panel).__name__}'s plots"


async def settle(*panels: Any, rounds: int = 6) -> None:
    for _ in range(rounds):
        for panel in panels:
            panel._feed.flush(force=True)
        await asyncio.sleep(0.02)
    for panel in panels:
        panel.refresh()


async def test_markup_from_callers_is_text_in_every_panel():
    lab = Lab(storage="memory", seed=1,
              network=Network({(REGION, "enam"): 20}))
    try:
        lab.bind("HOST", Hostile)
        notes = lab.bind("NOTES", HostileSql, sql=True).getByName(NAME)
        room = lab.bind("ROOM", HostileRoom).getByName(NAME + "-room")
        stub = lab.client(REGION).env.HOST.getByName(NAME)
        label = f"HOST:{NAME}"

        dash = widgets.dashboard(lab, stub)
        watch = widgets.watch(lab, stub, scheduler=True, storage=True)
        sql = widgets.sql_tables(lab, notes)
        sockets = widgets.websockets(lab, room)
        where = widgets.where_time_went(lab, stub)
        for panel in (dash.storage, watch.storage, sql):
            panel.refresh_every = 0.0
        dash.event_log.show = 1000  # every event of the run, not the latest 60
        panels = (dash, watch, sql, sockets, where)

        await asyncio.gather(*(stub.other(i) for i in range(4)))  # a queue: the fleet's hottest
        assert await stub.work() == 1
        assert await getattr(stub, METHOD)() == 1
        try:
            await stub.fail()
        except Exception as exc:  # the caller gets the error; the panels show its text
            assert ERROR in str(exc)
        await notes.add(VALUE)
        ws = await lab.connect(room)
        await ws.send(VALUE)
        await lab.wait_idle()

        # Paused: the hostile method waits in the mailbox; its transitions are offered.
        lab.pause()
        waiting = getattr(stub, METHOD)()
        for _ in range(200):  # the request is on its way from REGION first
            if lab.choices():
                break
            await asyncio.sleep(0.01)
        await settle(*panels)
        assert any(label in c.description for c in lab.choices()), lab.choices()
        buttons = [b for b in widgets_under(watch.scheduler) if isinstance(b, w.Button)
                   and b.description.startswith("0:")]
        assert buttons and label in buttons[0].description  # a button's text: never markup
        assert_no_markup_from_callers(watch.object_view, shows=(label, METHOD))  # mailbox
        assert_no_markup_from_callers(dash.controls, shows=(label,))  # the next transitions
        await watch.scheduler.click(0)
        await asyncio.sleep(0.01)
        lab.resume()
        assert await waiting == 1
        lab.faults.fail_next_commit(stub)  # a reset with its banner and a failed batch
        assert isinstance((await asyncio.gather(stub.other(9), return_exceptions=True))[0],
                          Exception)
        await lab.wait_idle()
        await settle(*panels)
        bar = next(i for i, b in enumerate(where.breakdowns) if b.method == METHOD)
        assert where.select(bar).object == label  # its explanation, under the bars

        assert_no_markup_from_callers(dash.object_view, shows=(label,))
        assert_no_markup_from_callers(dash.fleet, shows=(label,))  # the summary's hottest
        assert_no_markup_from_callers(dash.storage, shows=(label, KEY, VALUE))
        assert_no_markup_from_callers(dash.event_log, shows=(label, METHOD, ERROR, KEY,
                                                             REGION))
        assert_no_markup_from_callers(dash.controls, shows=(label,))
        assert_no_markup_from_callers(dash.metrics)
        assert_no_markup_from_callers(dash.timeline)
        assert_no_markup_from_callers(dash, shows=(label, KEY, VALUE, METHOD, ERROR))
        assert_no_markup_from_callers(watch, shows=(label, KEY, VALUE))
        assert_no_markup_from_callers(watch.scheduler, shows=(label,))  # "last taken: ..."
        assert_no_markup_from_callers(sql, shows=(TABLE, COLUMN, VALUE, f"NOTES:{NAME}"))
        assert_no_markup_from_callers(sockets, shows=(TAG, f"ROOM:{NAME}-room"))
        assert_no_markup_from_callers(where, shows=(label, METHOD))

        assert_bokeh_escapes(dash.fleet, in_data=(label, REGION))
        assert_bokeh_escapes(dash.timeline, in_data=(label, METHOD), in_titles=(label,))
        assert_bokeh_escapes(dash.metrics)
        assert_bokeh_escapes(where, in_data=(label, METHOD), in_titles=(label,))
        side = widgets.side_by_side(dash.fleet, sockets)
        assert_no_markup_from_callers(side, shows=(label, TAG))
        assert [p.error_count for p in (*dash.panels, *watch.panels, sql, sockets, where)] == [
            0] * (len(dash.panels) + len(watch.panels) + 3)
        for panel in panels:
            panel.close()
    finally:
        await lab.close()


def test_the_scanner_finds_what_escaping_prevents():
    # The check above is only as good as its parser: unescaped, each injection is found.
    for s in INJECTED:
        assert Scan(f'<div title="{s}">{s}</div>').foreign or Scan(f"<div>{s}</div>").foreign
    assert Scan(f'<div data-object="{NAME}"></div>').foreign  # out of a double-quoted value
    assert Scan(f"<div data-object='{NAME}'></div>").foreign  # out of a single-quoted value
    assert Scan(f"<b>{ERROR}</b>").foreign == ["<b onmouseover=...>"]
    assert TEX.search(f"Gates of HOST:{NAME}") and not TEX.search(f"Gates of {plain(NAME)}")
    assert plain(r"\(x\) \[y\] $$z$$").replace("\u200b", "") == r"\(x\) \[y\] $$z$$"
