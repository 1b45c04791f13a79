"""A plot view that starts hearing in the middle of a patch finds its place at the next one.

jupyter_bokeh hands a view each patch as a series of comm messages (header, metadata,
content, then a reference and the bytes of each buffer), put together by a BokehJS
``Receiver``. A view made while a patch is on its way hears its middle first; BokehJS's own
Receiver then stays out of step for good (found with a front-end trace of
test_same_cell_browser: a timeline kept 33 of 53 rows, every later binary fragment threw).
The page script (widgets/_lifecycle.py) makes receivers skip to the next header.

This drives BokehJS's real Receiver in Chromium with real patches made by Bokeh's Python
``Protocol`` (the kernel side's ``LiveBokehModel._send_patch`` sends exactly these
fragments), starting at every possible fragment of the first patch. No Jupyter needed.
"""

from __future__ import annotations

import base64
import json
import pathlib

import bokeh
import numpy as np
import pytest
from bokeh.document import Document
from bokeh.models import ColumnDataSource
from bokeh.protocol import Protocol
from harness import CHROME_ARGS, CHROMIUM, browser_marks

from widgets._lifecycle import frontend_script

pytestmark = browser_marks()

BOKEH_JS = pathlib.Path(bokeh.__file__).parent / "server" / "static" / "js" / "bokeh.min.js"


def _fragments(rows: int, start: int) -> list[dict[str, str]]:
    """The fragments of one PATCH-DOC streaming ``rows`` rows (two numeric buffers, one text
    column), as jupyter_bokeh sends them: text as text, bytes as base64 to cross into JS."""
    source = ColumnDataSource({"x": np.array([], dtype=np.float64),
                               "y": np.array([], dtype=np.int32), "label": []})
    doc = Document()
    doc.add_root(source)
    events: list = []
    doc.callbacks.on_change_dispatch_to(_Collect(events))
    source.stream({"x": np.arange(start, start + rows, dtype=np.float64),
                   "y": np.arange(start, start + rows, dtype=np.int32),
                   "label": np.array([f"r{i}" for i in range(start, start + rows)])})
    msg = Protocol().create("PATCH-DOC", events)
    out = [{"text": msg.header_json}, {"text": msg.metadata_json}, {"text": msg.content_json}]
    for buffer in msg.buffers:
        out.append({"text": json.dumps(buffer.ref)})
        out.append({"bytes": base64.b64encode(buffer.to_bytes()).decode()})
    return out


class _Collect:
    def __init__(self, events: list) -> None:
        self.events = events

    def _document_patched(self, event) -> None:  # type: ignore[no-untyped-def]
        self.events.append(event)


# Feeds fragments to one Receiver as jupyter_bokeh's view does (consume, then look at
# ``message``; an exception is what the view would have thrown) and returns, for each
# fragment, the event kinds of the message it completed (null: none).
FEED_JS = """([fragments, patched]) => {
  const Receiver = window.Bokeh.require("protocol/receiver").Receiver;
  const r = new Receiver();
  const done = [];
  for (const f of fragments) {
    const fragment = f.text !== undefined ? f.text
      : Uint8Array.from(atob(f.bytes), c => c.charCodeAt(0)).buffer;
    try {
      r.consume(fragment);
      const m = r.message;
      done.push(m != null && Object.keys(m.content).length > 0
                ? m.content.events.map(e => e.kind + ":" + m.header.msgid).join(",") : null);
    } catch (e) {
      done.push("threw: " + e.message);
    }
  }
  return {done, resynced: patched ? window.__durableLab.resynced : null};
}"""


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROME_ARGS)
        yield browser
        browser.close()


@pytest.fixture
def page(browser):
    """A blank page with BokehJS as shipped (the page script not run)."""
    page = browser.new_page()
    page.set_content("<html><body></body></html>")
    page.add_script_tag(path=str(BOKEH_JS))
    yield page
    page.close()


def _msgids(fragments: list[dict[str, str]]) -> str:
    return json.loads(fragments[0]["text"])["msgid"]


def _whole_patches_heard(page, joined_at: int, patched: bool) -> tuple[list[str], list[str]]:
    """Join a stream of three patches at fragment ``joined_at`` of the first: the msgids of
    the patches the receiver put together, and of those it should have."""
    first, second, third = _fragments(3, 0), _fragments(4, 3), _fragments(5, 7)
    assert len(first) == 7  # header, metadata, content, 2 x (reference, bytes)
    result = page.evaluate(FEED_JS, [first[joined_at:] + second + third, patched])
    heard = [d.split(":")[1] for d in result["done"]
             if d is not None and not d.startswith("threw")]
    if patched:  # nothing thrown at the view, no garbled message put together
        assert not [d for d in result["done"] if d is not None and d.startswith("threw")], result
    want = ([_msgids(first)] if joined_at == 0 else []) + [_msgids(second), _msgids(third)]
    return heard, want


def test_bokehjs_alone_loses_whole_patches_after_joining_mid_patch(page):
    """The defect, on BokehJS as shipped: joined at most places inside a patch, the receiver
    loses or garbles whole patches that follow."""
    lost_at = []
    for joined_at in range(1, 7):
        heard, want = _whole_patches_heard(page, joined_at, patched=False)
        if heard != want:
            lost_at.append(joined_at)
    assert len(lost_at) >= 3, lost_at


def test_with_the_page_script_every_whole_patch_after_the_join_arrives(page):
    page.evaluate(frontend_script())
    assert page.evaluate("() => window.Bokeh.require('protocol/receiver')"
                         ".Receiver.prototype.__dlResync") is True
    for joined_at in range(0, 7):
        heard, want = _whole_patches_heard(page, joined_at, patched=True)
        # each whole patch exactly once, in order: none lost, none applied twice, none garbled
        assert heard == want, joined_at
    assert page.evaluate("() => window.__durableLab.resynced") >= 6  # one per join, at least


def test_the_page_script_is_harmless_for_patches_heard_whole(page):
    page.evaluate(frontend_script())
    patches = [_fragments(n, 10 * n) for n in (1, 2, 3, 4)]
    result = page.evaluate(FEED_JS, [[f for p in patches for f in p], True])
    ids = [d.split(":")[1] for d in result["done"] if d is not None]
    assert ids == [_msgids(p) for p in patches]
