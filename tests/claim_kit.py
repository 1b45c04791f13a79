"""What a lesson claim's check has at hand, in the lesson's own kernel.

A claim (a cell tagged ``claim`` in a lesson's source, course/lessons/NN_name.py) holds a
sentence of a lesson about a panel to the truth: tests/test_lesson_claims.py runs the lesson with
each claim cell as a hidden cell right after the text, in the same kernel, after the lesson's
``claim-kit`` cell (``from claim_kit import claim, settled, ...``). The checks read the panels'
own state (reducers, the HTML the widgets hold, the Bokeh sources' data) once the panels have
seen every event so far and drawn: ``await settled(lab)`` first.

Checks assert with a message that says what the panel showed instead, so a failing claim reads
as "the lesson says X; the panel showed Y".
"""

from __future__ import annotations

import asyncio
import html
import re
from typing import Any

__all__ = ["claim", "column", "drawn_text", "html_of", "panel_of", "panels_of", "settled",
           "text_of"]


def claim(says: str, *, output: str = "", page: tuple[str, str] | None = None) -> None:
    """The first line of a claim cell: what the lesson says, and what else to check.

    scripts/build_lessons.py reads these arguments from the source (they must be literals):
    ``says`` (words of the three cells above, quoted exactly), ``output`` (a regular expression
    the output of the code cell above must match, checked by tests/test_lesson_claims.py) and
    ``page`` ((CSS selector, regular expression) for the browser lesson test). Run in the
    kernel, the call only refuses arguments those tests could not use.
    """
    if not (isinstance(says, str) and says.strip()):
        raise ValueError(f"claim(says=...): the words of the lesson, not {says!r}")
    re.compile(output)
    if page is not None:
        selector, pattern = page
        if not selector.strip():
            raise ValueError(f"claim({says!r}, page=...): give a CSS selector, not {selector!r}")
        re.compile(pattern)


def panels_of(lab: Any) -> list[Any]:
    """Every panel open on ``lab``, the parts of composite panels (watch, dashboard) included."""
    from widgets import open_panels
    from widgets._base import Panel

    found: list[Any] = []
    stack = list(open_panels(lab).values())
    while stack:
        widget = stack.pop()
        if isinstance(widget, Panel) and widget not in found and not widget.closed:
            found.append(widget)
        stack.extend(getattr(widget, "children", ()))
        stack.extend(getattr(widget, "panels", ()))
    return found


def panel_of(lab: Any, kind: str, label: str | None = None) -> Any:
    """The open panel of ``kind`` ("metrics", "fleet", "object_view", "timeline", "storage",
    "websockets", "sql", "scheduler", ...) on ``lab``; of the object ``label`` if given."""
    candidates = [p for p in panels_of(lab) if p.kind == kind
                  and (label is None or getattr(p, "target", None) == label)]
    assert candidates, (f"no open {kind} panel on this lab (open: "
                        f"{sorted({p.kind for p in panels_of(lab)})})")
    return candidates[0]


async def settled(*labs: Any, wait: float = 0.35) -> None:
    """Let every panel of ``labs`` see all events so far and draw, as a learner's screen would
    a moment after the cell ran: hand the buffered events over, wait past the metrics' sampling
    interval and the storage inspector's read, and draw."""
    from widgets import _feed

    for _ in range(2):
        for lab in labs:
            feed = _feed._feeds.get(lab)
            if feed is not None and not feed.closed:
                feed.flush(force=True)
        await asyncio.sleep(wait)
        for lab in labs:
            for panel in panels_of(lab):
                panel.refresh()
    await asyncio.sleep(0.05)  # reads the panels started (storage values) land


def html_of(widget: Any) -> str:
    """The HTML every ``ipywidgets.HTML`` inside ``widget`` holds, in order."""
    import ipywidgets as w

    parts: list[str] = []

    def walk(x: Any) -> None:
        if isinstance(x, w.HTML):
            parts.append(x.value)
        for child in getattr(x, "children", ()):
            walk(child)

    walk(widget)
    return "\n".join(parts)


def text_of(widget: Any) -> str:
    """What a reader sees of ``widget``'s HTML: tags dropped, entities decoded, spaces collapsed."""
    return " ".join(html.unescape(re.sub(r"<[^>]+>", " ", html_of(widget))).split())


def column(source: Any, name: str) -> list[Any]:
    """A Bokeh ``ColumnDataSource`` column as a plain list (NumPy arrays included)."""
    return list(source.data[name])


def drawn_text(panel: Any) -> str:
    """Every piece of text the panel's Bokeh plots draw: titles, axis labels and tick-label
    overrides, labels, legends, and the string columns of text glyphs (lane names, counts)."""
    from bokeh.models import Axis, GlyphRenderer, Label, LabelSet, Legend, Plot, Title
    from bokeh.models.glyphs import Text

    roots = [getattr(panel, name) for name in ("figure", "gate_figure") if hasattr(panel, name)]
    found: list[str] = []
    for root in roots:
        for model in root.references():
            if isinstance(model, Title) and model.text:
                found.append(str(model.text))
            elif isinstance(model, Axis):
                found.append(str(model.axis_label or ""))
                overrides = getattr(model, "major_label_overrides", None) or {}
                found.extend(str(v) for v in overrides.values())
            elif isinstance(model, Label):
                found.append(str(model.text))
            elif isinstance(model, Legend):
                for item in model.items:
                    label = item.label
                    found.append(str(label.get("value", "") if isinstance(label, dict)
                                     else getattr(label, "value", label) or ""))
            elif isinstance(model, (LabelSet, GlyphRenderer)):
                glyph = getattr(model, "glyph", None)
                field = (model.text if isinstance(model, LabelSet) else
                         glyph.text if isinstance(glyph, Text) else None)
                source = model.source if isinstance(model, LabelSet) else model.data_source
                name = field if isinstance(field, str) else getattr(field, "field", None)
                if name and name in getattr(source, "data", {}):
                    found.extend(str(v) for v in source.data[name])
            elif isinstance(model, Plot):
                continue
    return " ".join(" ".join(found).split())
