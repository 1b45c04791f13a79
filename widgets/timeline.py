"""Timeline: one lane per delivery; turns, awaits, time blocked at the gate, commits, replies."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import ipywidgets as w
from bokeh.models import ColumnDataSource, HoverTool, Range1d
from bokeh.plotting import figure
from bokeh.transform import factor_cmap

from ._base import Panel
from ._plots import LiveBokehModel
from ._reducers import MARKER_COLUMNS, SEGMENT_COLUMNS, SEGMENT_KINDS, TimelineReducer
from ._targets import label_of
from ._theme import SEGMENT_COLORS

if TYPE_CHECKING:
    from durable_lab import Lab
    from durable_lab.events import RuntimeEvent

__all__ = ["Timeline"]


class Timeline(Panel):
    """Lanes per delivery, x = event number. ``target``: one object's lanes (None: all)."""

    kind = "timeline"

    def __init__(self, lab: Lab, target: Any = None, *, rollover: int = 3000,
                 lanes: int = 24, width: int = 680, height: int = 330, **kwargs: Any) -> None:
        self.rollover = rollover
        self.lanes = lanes
        self.reducer = TimelineReducer(only=label_of(target))
        self.segments = ColumnDataSource({c: [] for c in SEGMENT_COLUMNS}, name="timeline_segments")
        self.open_segments = ColumnDataSource({c: [] for c in SEGMENT_COLUMNS},
                                              name="timeline_open")
        self.markers = ColumnDataSource({c: [] for c in MARKER_COLUMNS}, name="timeline_markers")
        self.figure = fig = figure(
            width=width, height=height, title="Timeline: one lane per delivery",
            x_axis_label="event #", y_axis_label="delivery",
            tools="xpan,xwheel_zoom,box_zoom,reset,save", active_scroll="xwheel_zoom",
            x_range=Range1d(0, 100), y_range=Range1d(0.5, lanes + 0.5), name="timeline_fig")
        cmap = factor_cmap("kind", [SEGMENT_COLORS[k] for k in SEGMENT_KINDS], list(SEGMENT_KINDS))
        bars = fig.hbar(y="delivery", left="left", right="right", height=0.7, source=self.segments,
                        fill_color=cmap, line_color=None, legend_field="kind")
        fig.hbar(y="delivery", left="left", right="right", height=0.7, source=self.open_segments,
                 fill_color=cmap, line_color="#334155", line_dash="dotted")
        marks = fig.scatter(x="x", y="delivery", source=self.markers, marker="diamond", size=13,
                            fill_color="#2ca02c", line_color="#14532d")
        fig.text(x="x", y="delivery", text="label", source=self.markers, x_offset=7,
                 y_offset=-4, text_font_size="10px", text_color="#14532d")
        fig.add_tools(HoverTool(renderers=[bars], tooltips=[
            ("delivery", "@delivery @method"), ("object", "@object"), ("", "@detail")]))
        fig.add_tools(HoverTool(renderers=[marks], tooltips=[
            ("commit", "batch @batch of @object"), ("keys", "@size")]))
        fig.legend.location = "top_left"
        fig.legend.orientation = "horizontal"
        fig.legend.label_text_font_size = "10px"
        fig.legend.background_fill_alpha = 0.7
        fig.toolbar.logo = None
        self.follow = w.Checkbox(value=True, description="follow the latest events", indent=False)
        self.plot = LiveBokehModel(fig)
        super().__init__(lab, **kwargs)
        self.children = (self.follow, self.plot, self.errors)
        self.follow.observe(self.guarded(lambda _c: self.refresh()), names=["value"])

    def select(self, target: Any) -> None:
        """Show another object's lanes (starting from now)."""
        self.reducer = TimelineReducer(only=label_of(target))
        doc = self.figure.document
        doc.hold("combine")
        try:
            for source in (self.segments, self.open_segments, self.markers):
                source.data = {c: [] for c in source.data}
        finally:
            doc.unhold()
        self.refresh()

    def apply(self, event: RuntimeEvent) -> None:
        self.reducer.apply(event)

    def draw(self) -> None:
        segments, markers = self.reducer.take()
        open_rows = self.reducer.open_rows()
        doc = self.figure.document
        doc.hold("combine")
        try:
            if segments["delivery"]:
                self.segments.stream(segments, rollover=self.rollover)
            if markers["delivery"]:
                self.markers.stream(markers, rollover=self.rollover)
            if open_rows["delivery"] or self.open_segments.data["delivery"]:
                self.open_segments.data = open_rows
            if self.follow.value and self.reducer.last_x:
                last = self.reducer.last_x
                span = max(60, min(400, 12 * self.lanes))
                self.figure.x_range.update(start=max(0, last - span), end=last + 4)
                lanes = list(open_rows["delivery"]) or list(segments["delivery"][-1:])
                if lanes:
                    top = max(lanes)
                    bottom = max(0, min(min(lanes), top - self.lanes + 1))
                    self.figure.y_range.update(start=bottom - 0.5, end=bottom + self.lanes + 0.5)
        finally:
            doc.unhold()
