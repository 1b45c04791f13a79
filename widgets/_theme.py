"""Colours, labels and small HTML helpers shared by every panel (one source of truth)."""

from __future__ import annotations

import html
import re

__all__ = [
    "COLORS",
    "GATE_COLORS",
    "KEY_COLORS",
    "SEGMENT_COLORS",
    "chip",
    "esc",
    "layout_stylesheet",
    "pill",
    "plain",
    "px",
    "scale_css",
    "scale_stylesheet",
    "scaled_classes",
]

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
            # A chip longer than its box wraps (inside the chip) rather than ending in "...":
            # at scale=1.5 "batch 4: last:1, n" was cut to "batch 4 lan...".
            f"font:12px/1.5 monospace;white-space:normal;overflow-wrap:anywhere;"
            f'max-width:100%;box-sizing:border-box;vertical-align:top">{esc(text)}</span>')


def pill(text: str, color: str) -> str:
    return chip(text, color, cls="dl-pill")


def px(size: float, scale: float = 1.0) -> str:
    """A CSS/Bokeh font size in pixels, scaled (``scale=1.5`` for a projector)."""
    return f"{round(size * scale)}px"


def scale_css(scale: float) -> str:
    """Inline style that enlarges an HTML panel by ``scale`` (1.0: nothing)."""
    return "" if scale == 1.0 else f"zoom:{scale:g};"


# -- projector scale: the HTML and ipywidgets parts -------------------------------------------
#
# A panel's HTML and its ipywidgets (buttons, menus, text fields) grow by CSS ``zoom`` on the
# widget that holds them: every length inside (fixed widths such as a 190 px menu included)
# grows by the same factor, and the box lays out its content in the width it has divided by
# the factor, so a row of buttons wraps instead of running out of its card. Bokeh plots are
# never zoomed (BokehJS would measure its canvas wrong and a click would miss): they are made
# ``scale`` times larger in Python instead (``px(size, scale)``, widths and heights).
# Zoomed boxes must not nest: ``scaled_classes`` goes on leaves (a Controls panel, a summary
# line, a card's title), never on a box that also holds a plot or another zoomed box.


def layout_stylesheet() -> str:
    """The ``<style>`` of a composed panel (dashboard, watch): text that would run out of its
    box wraps instead (event lines, storage values; a long line keeps the whole of its words),
    so a narrow notebook or a projector scale cuts nothing off. Rules scoped to ``.dl-panel``."""
    return ("<style>"
            # break-spaces: a space at the end of a wrapped line wraps too (pre-wrap lets it
            # hang past the box's edge)
            ".dl-panel .dl-eventlog{white-space:break-spaces!important;overflow-wrap:anywhere}"
            ".dl-panel .dl-eventlog .dl-event{padding-left:2ch;text-indent:-2ch}"
            ".dl-panel .dl-storage-inspector td{white-space:normal!important;"
            "overflow-wrap:anywhere;text-overflow:clip!important}"
            ".dl-panel .widget-label,.dl-panel .widget-label-basic{white-space:normal}"
            # the object view's HTML is 100% wide plus its 2 px margins: 4 px too wide
            ".dl-object_view>.widget-html{width:auto!important}"
            "</style>")


def _scale_tag(scale: float) -> str:
    return f"dl-zoom-{round(scale * 100)}"


def scaled_classes(scale: float) -> list[str]:
    """CSS classes that enlarge a widget by ``scale`` (with :func:`scale_stylesheet` in the
    page); none at 1.0."""
    return [] if scale == 1.0 else ["dl-zoomed", _scale_tag(scale)]


def scale_stylesheet(scale: float) -> str:
    """The ``<style>`` that the classes of :func:`scaled_classes` need (empty at 1.0). Put it in
    the page once per panel that uses them (an ``ipywidgets.HTML``); two copies are harmless.
    Also: text in the dashboard's cards wraps rather than being cut (no ``nowrap`` button
    label or ``ellipsis`` left where a longer word fits the line)."""
    if scale == 1.0:
        return ""
    tag = _scale_tag(scale)
    return (f"<style>.{tag}{{zoom:{scale:g}}}"
            # buttons: their label wraps inside the button when the row is narrow
            f".{tag} .jupyter-button{{white-space:normal;height:auto;"
            f"min-height:var(--jp-widgets-inline-height);line-height:1.25}}"
            "</style>")


# -- lifecycle: what a panel shows once its kernel is gone (widgets/_lifecycle.py ships it) ----
#
# ipywidgets marks every widget view whose kernel restarted with the class
# ``jupyter-widgets-disconnected`` (and its own CSS draws a red broken-link icon on each). A
# panel then is a still picture of the last frame, but its header still said "live" and
# "PAUSED": this block says what happened and how to go on, once per panel (not per nested
# widget, nor on side_by_side's boxes), hides the words that claim liveness, and greys the
# picture. Plain class selectors only: a `:has()` rule on every widget of the page would make
# the browser re-check it at each of the panels' DOM updates.

#: The note shown on a panel whose kernel restarted.
RESTART_NOTE = ("Kernel restarted: this panel is a still picture now and no longer updates. "
                "Run the cells again from the top (Run > Run All Cells) for a live one.")

_GONE = ".dl-panel.jupyter-widgets-disconnected"
# The outermost such panel (a dashboard holds panels; each is disconnected too).
_OUTER = f"{_GONE}:not(.dl-panel .dl-panel)"

LIFECYCLE_CSS = f"""
{_OUTER}::before {{
  content: "{RESTART_NOTE}"; display: block; align-self: stretch; color: #7c2d12;
  font: 600 13px/1.45 sans-serif; background: #fff7ed; border: 1px solid #fb923c;
  border-radius: 6px; padding: 6px 10px; margin: 2px 0 6px; white-space: normal;
}}
{_GONE} .jupyter-widgets-disconnected::before,
.dl-side-by-side.jupyter-widgets-disconnected::before,
.dl-side-by-side .jupyter-widgets-disconnected::before {{ content: none; display: none; }}
{_OUTER} > * {{ opacity: 0.55; filter: grayscale(1); pointer-events: none; }}
{_GONE} .dl-status, {_GONE} .dl-runstate, {_GONE} .dl-choices {{ display: none !important; }}
"""
