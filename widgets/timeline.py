"""Timeline: one lane per delivery, under three gate lanes that keep a closed gate visible.

The delivery lanes show turns, awaits, time blocked at the input gate, commits and held
replies. Above them, sharing the x axis, three lanes for the selected object: when the **input
gate** was closed (and by which delivery), when a **commit** was in flight, and when the
**output gate** held replies. x is the event number, so a run on memory storage where
everything takes microseconds still spreads out readably, and a gate that was closed for a
microsecond is still a red span you can hover.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import ipywidgets as w
import numpy as np
from bokeh.layouts import column
from bokeh.models import ColumnDataSource, FactorRange, HoverTool, Legend, Range1d
from bokeh.plotting import figure
from bokeh.transform import factor_cmap

from ._base import Panel
from ._plots import LiveBokehModel, stream_columns
from ._reducers import (
    GATE_COLUMNS,
    GATE_LANES,
    MARKER_COLUMNS,
    SEGMENT_COLUMNS,
    SEGMENT_KINDS,
    TimelineReducer,
)
from ._targets import label_of
from ._theme import GATE_COLORS, SEGMENT_COLORS, plain, px, style_figure

if TYPE_CHECKING:
    from durable_lab import Lab
    from durable_lab.events import RuntimeEvent

__all__ = ["Timeline"]

#: The NumPy type of each column the timeline streams (stream_columns: the others are text).
_SEGMENT_TYPES = {"delivery": np.int32, "left": np.int32, "right": np.float64}
_MARKER_TYPES = {"delivery": np.int32, "x": np.int32, "batch": np.int32, "size": np.int32,
                 "ok": np.bool_}
_GATE_TYPES = {"left": np.int32, "right": np.float64}


class Timeline(Panel):
    """Gate lanes and lanes per delivery, x = event number. ``target``: one object (None: all
    objects' deliveries, and the gates of the first object seen)."""

    kind = "timeline"
    min_interval = 0.4  # seconds between redraws at full speed (see Panel)

    def __init__(self, lab: Lab, target: Any = None, *, rollover: int = 3000,
                 lanes: int = 16, width: int = 760, height: int = 330, scale: float = 1.0,
                 **kwargs: Any) -> None:
        self.rollover = rollover
        self.lanes = lanes
        self.scale = scale
        self.reducer = TimelineReducer(only=label_of(target))
        self.segments = ColumnDataSource({c: [] for c in SEGMENT_COLUMNS}, name="timeline_segments")
        self.open_segments = ColumnDataSource({c: [] for c in SEGMENT_COLUMNS},
                                              name="timeline_open")
        self.markers = ColumnDataSource({c: [] for c in MARKER_COLUMNS}, name="timeline_markers")
        self.gate_spans = ColumnDataSource({c: [] for c in GATE_COLUMNS}, name="timeline_gates")
        self.open_gate_spans = ColumnDataSource({c: [] for c in GATE_COLUMNS},
                                                name="timeline_gates_open")
        width, height = round(width * scale), round(height * scale)
        # -- the gate lanes --------------------------------------------------------------
        self.gate_figure = gates = figure(
            width=width, height=round(125 * scale), title=self._gate_title(),
            x_range=Range1d(0, 100), y_range=FactorRange(*reversed(GATE_LANES)),
            tools="xpan,xwheel_zoom,reset", active_scroll="xwheel_zoom",
            name="timeline_gates_fig")
        gmap = factor_cmap("kind", list(GATE_COLORS.values()), list(GATE_COLORS))
        spans = gates.hbar(y="lane", left="left", right="right", height=0.7,
                           source=self.gate_spans, fill_color=gmap, line_color=None)
        gates.hbar(y="lane", left="left", right="right", height=0.7, source=self.open_gate_spans,
                   fill_color=gmap, line_color="#334155", line_dash="dotted")
        gates.text(x="left", y="lane", text="label", source=self.gate_spans, x_offset=2,
                   text_baseline="middle", text_font_size=px(11, scale), text_color="#ffffff")
        gates.add_tools(HoverTool(renderers=[spans], tooltips=[("", "@kind"), ("", "@detail")]))
        gates.xaxis.visible = False
        style_figure(gates, scale)
        gates.min_border_left = gates.min_border_right = 0
        # -- the delivery lanes ----------------------------------------------------------
        self.figure = fig = figure(
            width=width, height=height, title="Deliveries: one lane each",
            x_axis_label="event #", y_axis_label="delivery",
            tools="xpan,xwheel_zoom,box_zoom,reset,save", active_scroll="xwheel_zoom",
            x_range=gates.x_range, y_range=Range1d(0.5, lanes + 0.5), name="timeline_fig")
        cmap = factor_cmap("kind", [SEGMENT_COLORS[k] for k in SEGMENT_KINDS], list(SEGMENT_KINDS))
        bars = fig.hbar(y="delivery", left="left", right="right", height=0.7, source=self.segments,
                        fill_color=cmap, line_color=None)
        fig.hbar(y="delivery", left="left", right="right", height=0.7, source=self.open_segments,
                 fill_color=cmap, line_color="#334155", line_dash="dotted")
        marks = fig.scatter(x="x", y="delivery", source=self.markers, marker="diamond",
                            size=round(13 * scale), fill_color="#2ca02c", line_color="#14532d")
        fig.text(x="x", y="delivery", text="label", source=self.markers, x_offset=7,
                 y_offset=-4, text_font_size=px(12, scale), text_color="#14532d")
        fig.add_tools(HoverTool(renderers=[bars], tooltips=[
            ("delivery", "@delivery @method"), ("object", "@object"), ("", "@detail")]))
        fig.add_tools(HoverTool(renderers=[marks], tooltips=[
            ("commit", "batch @batch of @object"), ("keys", "@size")]))
        # The legend goes below the plot, never over the lanes it explains. One entry per
        # kind, drawn by legend-only renderers so every kind shows before it happens.
        items = []
        # "network" is listed only on a lab with geography (Lab(network=...)).
        for kind in [k for k in SEGMENT_KINDS
                     if k != "network" or getattr(lab, "network", None) is not None]:
            proxy = fig.hbar(y=[-10], left=[0], right=[0], height=0.7,
                             fill_color=SEGMENT_COLORS[kind], line_color=None)
            items.append((kind, [proxy]))
        legend = Legend(items=items, orientation="horizontal", label_text_font_size=px(12, scale),
                        click_policy="none", spacing=8, margin=2)
        fig.add_layout(legend, "below")
        style_figure(fig, scale)
        self.follow = w.Checkbox(value=True, description="follow the latest events", indent=False)
        self.plot = LiveBokehModel(column(gates, fig))
        super().__init__(lab, **kwargs)
        self.children = (self.follow, self.plot, self.errors)
        self.follow.observe(self.guarded(lambda _c: self.refresh()), names=["value"])

    def _gate_title(self) -> str:
        who = self.reducer.gates.object
        return f"Gates of {plain(who)}" if who else "Gates (of the first object that runs)"

    def select(self, target: Any) -> None:
        """Show another object's lanes (starting from now)."""
        self.reducer = TimelineReducer(only=label_of(target))
        start = self._feed.snapshot()
        if start is not None:  # lanes open now, then the events after the snapshot
            self.reducer.seed(start)
            self.skip_until = start.seq
        with self.plot.frame():  # one patch message (LiveBokehModel.frame)
            for source in (self.segments, self.open_segments, self.markers, self.gate_spans,
                           self.open_gate_spans):
                source.data = {c: [] for c in source.data}
            self.gate_figure.title.text = self._gate_title()
        self.refresh()

    def start_from(self, snapshot: Any) -> None:
        """Open lanes for the deliveries queued, running or held when the panel opened."""
        self.reducer.seed(snapshot)

    def apply(self, event: RuntimeEvent) -> None:
        self.reducer.apply(event)

    def fold(self, events: list[RuntimeEvent]) -> None:
        self.reducer.consume(events)

    def draw(self) -> None:
        with self.plot.frame():  # one patch message per frame (_plots.LiveBokehModel)
            self._draw_frame()

    def _draw_frame(self) -> None:
        reducer = self.reducer
        segments, markers = reducer.take()
        gate_rows = reducer.gates.take()
        open_rows = reducer.open_rows()
        open_gates = reducer.gates.open_rows(reducer.last_x)
        if segments["delivery"]:
            stream_columns(self.segments, segments, self.rollover, _SEGMENT_TYPES)
        if markers["delivery"]:
            stream_columns(self.markers, markers, self.rollover, _MARKER_TYPES)
        if gate_rows["lane"]:
            stream_columns(self.gate_spans, gate_rows, self.rollover, _GATE_TYPES)
        if open_rows["delivery"] or self.open_segments.data["delivery"]:
            self.open_segments.data = open_rows
        if open_gates["lane"] or self.open_gate_spans.data["lane"]:
            self.open_gate_spans.data = open_gates
        title = self._gate_title()
        if self.gate_figure.title.text != title:
            self.gate_figure.title.text = title
        if self.follow.value and reducer.last_x:
            last = reducer.last_x
            span = max(40, min(300, 10 * self.lanes))
            self.figure.x_range.update(start=max(0, last - span), end=last + 4)
            lanes = list(open_rows["delivery"]) or list(segments["delivery"][-1:])
            if lanes:
                top = max(lanes)
                bottom = max(0, min(min(lanes), top - self.lanes + 1))
                self.figure.y_range.update(start=bottom - 0.5, end=bottom + self.lanes + 0.5)
