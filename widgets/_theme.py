"""Colours, labels and small HTML helpers shared by every panel (one source of truth)."""

from __future__ import annotations

import html
import re

__all__ = ["COLORS", "GATE_COLORS", "KEY_COLORS", "SEGMENT_COLORS", "chip", "esc", "pill",
           "plain", "px", "scale_css", "style_figure"]

#: Timeline segment kinds -> colour.
SEGMENT_COLORS = {
    "queued": "#c7c7c7",  # blocked at the input gate
    "running": "#1f77b4",  # a turn runs
    "awaiting storage": "#ff7f0e",  # awaiting a read, gate held
    "awaiting io": "#ffdd57",  # awaiting io, gate open for others
    "awaiting io, gate held": "#8c564b",  # awaiting io, the gate closed (blockConcurrencyWhile)
    "reply held": "#9467bd",  # done, reply held by the output gate
    "network": "#17becf",  # on the wire: the request on its way in, the reply on its way back
}

#: Gate lanes of the timeline: span kind -> colour.
GATE_COLORS = {
    "gate closed": "#d62728",  # the input gate keeps every other event out
    "commit in flight": "#1f77b4",  # a batch on its way to storage
    "commit failed": "#d62728",  # the batch did NOT reach storage (the object resets)
    "replies held": "#9467bd",  # the output gate holds replies until the commit lands
}

#: Storage key states -> colour.
KEY_COLORS = {
    "pending": "#ff7f0e",
    "flushing": "#1f77b4",
    "committed": "#2ca02c",
    "deleted": "#7f7f7f",
    "lost": "#d62728",
    "failed": "#d62728",
    "stored": "#15803d",  # in storage before the panel opened
}

COLORS = {
    "open": "#2ca02c",
    "closed": "#d62728",
    "ok": "#2ca02c",
    "bad": "#d62728",
    "muted": "#6b7280",
    "box": "#f8fafc",
    "border": "#cbd5e1",
}


def esc(text: object) -> str:
    """``text`` as HTML text or as a quoted attribute value (``data-x="..."``, ``title='...'``).

    Every string a caller or object code chose (an object's name, a method, a key, a value, an
    error, a WebSocket tag, a table, a region, a transition's description) goes through here
    before it is put into a panel's HTML: an ipywidgets ``HTML`` value is inserted as markup,
    unsanitised, so a name like ``<img src=x onerror=...>`` would run in the notebook of whoever
    watches. ``&``, ``<``, ``>`` and both quotes are escaped, so one helper serves text and
    attributes alike. (Bokeh plots draw titles, labels and glyph text on a canvas and escape
    their ``@column`` tooltips; a title that holds a caller's text goes through :func:`plain`.)
    """
    return html.escape(str(text), quote=True)


#: A TeX delimiter's first two characters (``$$``, ``\[``, ``\(``): BokehJS renders a title or
#: an axis label holding ``$$...$$``, ``\[...\]`` or ``\(...\)`` as math (MathJax).
_TEX_START = re.compile(r"\$(?=\$)|\\(?=[\[(])")


def plain(text: object) -> str:
    """``text`` for a Bokeh title or axis label, shown as typed, never typeset as TeX.

    A caller's name in a title (``Gates of COUNTER:$$x$$``) would otherwise be handed to MathJax.
    A zero-width space after the delimiter's first character breaks every delimiter and
    changes nothing a reader sees. (Glyph text and tooltips are never typeset.)
    """
    return _TEX_START.sub(lambda m: m[0] + "\u200b", str(text))


def chip(text: str, color: str, *, cls: str = "dl-chip", title: str = "",
         fg: str = "#fff") -> str:
    return (f'<span class="{cls}" title="{esc(title)}" style="display:inline-block;'
            f"margin:2px;padding:2px 7px;border-radius:10px;background:{color};color:{fg};"
            f"font:12px/1.5 monospace;white-space:nowrap;max-width:100%;overflow:hidden;"
            f'text-overflow:ellipsis;vertical-align:top">{esc(text)}</span>')


def pill(text: str, color: str) -> str:
    return chip(text, color, cls="dl-pill")


def px(size: float, scale: float = 1.0) -> str:
    """A CSS/Bokeh font size in pixels, scaled (``scale=1.5`` for a projector)."""
    return f"{round(size * scale)}px"


def scale_css(scale: float) -> str:
    """Inline style that enlarges an HTML panel by ``scale`` (1.0: nothing)."""
    return "" if scale == 1.0 else f"zoom:{scale:g};"


def style_figure(fig: object, scale: float = 1.0) -> None:
    """Readable text on a Bokeh figure: at least 12-14 px (Bokeh's default is ~11), scaled."""
    fig.title.text_font_size = px(14, scale)  # type: ignore[attr-defined]
    for axis in (*fig.xaxis, *fig.yaxis):  # type: ignore[attr-defined]
        axis.axis_label_text_font_size = px(13, scale)
        axis.major_label_text_font_size = px(12, scale)
    fig.toolbar.logo = None  # type: ignore[attr-defined]
