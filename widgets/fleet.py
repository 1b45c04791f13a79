"""Fleet view: many objects at once, a grid coloured by queue length and sized by load."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import ipywidgets as w
from bokeh.models import ColumnDataSource, HoverTool, LinearColorMapper, Range1d, TapTool
from bokeh.palettes import OrRd9
from bokeh.plotting import figure

from ._base import Panel
from ._plots import LiveBokehModel, style_figure
from ._reducers import FleetReducer
from ._theme import esc, px

if TYPE_CHECKING:
    from durable_lab import Lab
    from durable_lab.events import RuntimeEvent

__all__ = ["FleetView"]

COLUMNS = ("x", "y", "label", "short", "queue", "in_flight", "load", "status", "resets",
           "line", "text", "region", "heat", "done", "peak", "ink")
STATUS_LINE = {"live": "#334155", "reset": "#d62728", "evicted": "#94a3b8",
               "unknown": "#94a3b8", "not started": "#94a3b8", "idle": "#334155",
               "closed": "#94a3b8"}

#: From this share of the colour scale up, a cell's fill is dark enough to need white text.
DARK_FILL = 0.55

#: The grid is at least this many cells wide and high, so one object is one cell, not the plot.
MIN_GRID = 4


def short_label(label: str, limit: int = 14) -> str:
    """A cell's text: binding and name (``PAGES:page-1``), shortened to fit a cell. Two objects
    named ``page-1`` in two bindings never look the same."""
    namespace, _, name = label.partition(":")
    if not name:
        return label[:limit]
    if len(label) <= limit:
        return label
    ns = namespace[:max(3, limit - len(name) - 2)]
    text = f"{ns}:{name}"
    if len(text) <= limit:
        return text
    # Narrower still (a fleet shrunk by side_by_side): the name's end tells objects apart
    # (obj-0, obj-1), so the binding gives way first, down to one letter, then the name's start.
    ns = namespace[:max(1, limit - len(name) - 1)]
    text = f"{ns}:{name}"
    return text if len(text) <= limit else f"{namespace[:1]}:…{name[-max(1, limit - 3):]}"


class FleetView(Panel):
    """A cell per object: fill = queue length, outline = status; click one to open it."""

    kind = "fleet"
    min_interval = 0.4  # seconds between redraws at full speed (see Panel)
    #: The narrowest the plot may be drawn (``fit_width``); None: the width it was made with.
    _label_width: int | None = None

    def __init__(self, lab: Lab, *, on_select: Callable[[str], None] | None = None,
                 width: int = 420, height: int = 300, scale: float = 1.0,
                 **kwargs: Any) -> None:
        self.scale = scale
        width, height = round(width * scale), round(height * scale)
        #: The plot's width in pixels, as made (``fit_width`` may let it be drawn narrower).
        self.width_px = width
        self._font_px = 12 * scale
        self.reducer = FleetReducer()
        self.on_select = on_select
        self.source = ColumnDataSource({c: [] for c in COLUMNS}, name="fleet_source")
        self.mapper = LinearColorMapper(palette=("#f8fafc", *OrRd9[::-1][2:]), low=0, high=8)
        self.figure = fig = figure(width=width, height=height,
                                   title="Fleet: queue length per object", tools="tap,reset",
                                   x_axis_type=None, y_axis_type=None,
                                   x_range=Range1d(start=-0.5, end=MIN_GRID - 0.5),
                                   y_range=Range1d(start=-MIN_GRID + 0.5, end=0.5),
                                   name="fleet_fig")
        fig.grid.visible = False
        cells = fig.rect(x="x", y="y", width=0.92, height=0.92, source=self.source,
                         fill_color={"field": "heat", "transform": self.mapper},
                         line_color="line", line_width=2)
        fig.text(x="x", y="y", text="text", source=self.source, text_align="center",
                 text_baseline="middle", text_font_size=px(12, scale), text_color="ink")
        fig.add_tools(HoverTool(renderers=[cells], tooltips=[
            ("object", "@label"), ("status", "@status"), ("queued", "@queue"),
            ("longest queue", "@peak"), ("calls answered", "@done"),
            ("in flight", "@in_flight"), ("load", "@load{0.0} calls/frame"),
            ("resets", "@resets"), ("region", "@region")]))
        tap = next(tool for tool in fig.tools if isinstance(tool, TapTool))
        tap.renderers = [cells]
        style_figure(fig, scale)
        self.source.selected.on_change("indices", self._tapped)
        self.plot = LiveBokehModel(fig)
        self.summary = w.HTML()
        super().__init__(lab, **kwargs)
        self.children = (self.summary, self.plot, self.errors)
        self._labels: list[str] = []

    def _tapped(self, _attr: str, _old: Any, new: list[int]) -> None:
        try:
            if new and self.on_select is not None and new[0] < len(self._labels):
                self.on_select(self._labels[new[0]])
        except Exception as exc:
            self.show_error(exc)

    def start_from(self, snapshot: Any) -> None:
        """Start from the lab's snapshot: every object seen before the panel opened, with
        its queue, calls in flight, status and calls answered so far."""
        self.reducer.seed(snapshot)

    def apply(self, event: RuntimeEvent) -> None:
        self.reducer.apply(event)

    def fold(self, events: list[RuntimeEvent]) -> None:
        self.reducer.consume(events)

    def render(self) -> None:
        self.reducer.tick()
        super().render()

    def draw(self) -> None:
        with self.plot.frame():  # one patch message per frame (_plots.LiveBokehModel)
            self._draw_frame()

    def fit_width(self, pixels: int) -> None:
        """The plot may now be drawn as narrow as ``pixels`` (``widgets.side_by_side`` lets it
        shrink with its cell): cut the cells' labels to fit that width."""
        self._label_width = min(self.width_px, pixels)
        self.refresh()

    def label_limit(self, cols: int) -> int:
        """How many characters of a label fit in a cell ``cols`` cells to a row: a 400-pixel
        fleet (the dashboard's) fits ``COUNTER:room-1`` nowhere, ``COU:room-1`` does."""
        width = self._label_width or self.width_px
        cell_px = 0.92 * (width - 30) / cols  # the plot's frame is ~30 px in
        return max(6, int(cell_px / (0.6 * self._font_px)))  # ~0.6 em per character

    def _draw_frame(self) -> None:
        rows = self.reducer.visible()
        n = len(rows)
        cols = max(MIN_GRID, math.ceil(math.sqrt(n)))
        data: dict[str, list[Any]] = {c: [] for c in COLUMNS}
        limit = self.label_limit(cols)
        for i, r in enumerate(rows):
            data["x"].append(i % cols)
            data["y"].append(-(i // cols))
            data["label"].append(r.label)
            short = short_label(r.label, limit)
            data["short"].append(short)
            data["queue"].append(r.queue)
            data["in_flight"].append(r.in_flight)
            data["load"].append(round(r.load, 2))
            data["status"].append(r.status)
            data["resets"].append(r.resets)
            data["line"].append(STATUS_LINE.get(r.status, "#334155"))
            data["region"].append(r.region)
            data["heat"].append(round(r.heat * 2) / 2)  # coarse: redraw as it visibly fades
            data["done"].append(r.done)
            data["peak"].append(r.peak)
            # With placement (Lab(network=...)) each cell says where the object lives.
            where = f"{r.region} · " if r.region else ""
            data["text"].append(f"{short}\n{where}{r.queue} queued\n{r.done} calls"
                                if n <= 36 else "")
        self._labels = data["label"]
        self.mapper.high = high = max(8, max(data["peak"], default=0))
        # White text on the darkest reds (a hot cell), dark text elsewhere: readable on both.
        data["ink"] = ["#ffffff" if h >= DARK_FILL * high else "#111827" for h in data["heat"]]
        rows_needed = max(MIN_GRID, math.ceil(n / cols))
        self.figure.x_range.update(start=-0.5, end=cols - 0.5)
        self.figure.y_range.update(start=-rows_needed + 0.5, end=0.5)
        if data != dict(self.source.data):
            self.source.data = data
        total_q = sum(data["queue"])
        hot = max(rows, key=lambda r: (r.queue, r.peak), default=None)
        regions = len({r for r in data["region"] if r})
        self.summary.value = (
            f'<div class="dl-fleet" data-objects="{n}" data-queued="{total_q}" style="font:12px '
            f'sans-serif">{n} objects · {total_q} calls queued'
            # The name is the caller's choice: text, never markup (see _theme.esc).
            + (f" · hottest: <b>{esc(hot.label)}</b> ({hot.queue} queued now, {hot.peak} at most, "
               f"{hot.done} calls)" if hot and hot.peak else "")
            + (f" · in {regions} region(s), grouped by region" if regions else "")
            + "</div>")
