"""Timeline: one lane per delivery, under three gate lanes that keep a closed gate visible.

The delivery lanes show turns, awaits, time blocked at the input gate, commits and held
replies. Above them, sharing the x axis, three lanes for the selected object: when the **input
gate** was closed (and by which delivery), when a **commit** was in flight (red if it failed),
and when the **output gate** held replies.

Two x axes, one toggle (``x=`` or the buttons above the plot):

- ``x="events"``: the event number. A run on memory storage where everything takes
  microseconds still spreads out readably, and a gate that was closed for a microsecond is a
  red span you can hover.
- ``x="time"``: milliseconds of lab time (the lab's clock, ``durable_lab/clock.py``: real, auto
  or manual) since the timeline opened. Distance and commit latency have width: a 230 ms trip
  from Amsterdam is 23 times as wide as a 10 ms local one. What takes no lab time (an object's
  own work on an auto or manual clock) has zero width; such spans stay visible because every
  bar is outlined in its own colour, ``MIN_SPAN_PX`` pixels wide at any zoom (the hover gives
  every span's lab time, on either axis). A clock that never moved puts everything at one
  instant: the event axis then shows the order.

Every row carries both coordinates (``widgets._reducers.SEGMENT_COLUMNS``): switching the axis
re-points the glyphs at the other columns and loses nothing. Gate-lane labels (``#7``, ``b3``)
are thinned to those that fit inside their span without touching the previous one, at the
current zoom; the delivery lanes' range follows the lanes in view, each named by its method
(``alarm`` for an alarm delivery).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import ipywidgets as w
import numpy as np
from bokeh.layouts import column
from bokeh.models import ColumnDataSource, FactorRange, FixedTicker, HoverTool, Range1d
from bokeh.models.annotations import Legend, Title
from bokeh.models.glyphs import HBar
from bokeh.models.text import BaseText
from bokeh.plotting import figure
from bokeh.transform import factor_cmap, linear_cmap

from ._base import Panel
from ._feed import rest_after
from ._plots import LiveBokehModel, legend_items, numeric_span, stream_columns, style_figure
from ._reducers import (
    GATE_COLUMNS,
    GATE_LANES,
    MARKER_COLUMNS,
    SEGMENT_COLUMNS,
    SEGMENT_KINDS,
    TimelineReducer,
)
from ._targets import label_of
from ._theme import GATE_COLORS, SEGMENT_COLORS, plain, px

if TYPE_CHECKING:
    from durable_lab import Lab
    from durable_lab.events import RuntimeEvent

__all__ = ["MIN_SPAN_PX", "X_AXES", "Timeline", "fit_labels"]

#: The NumPy type of each column the timeline streams (stream_columns: the others are text).
_SEGMENT_TYPES = {"delivery": np.int32, "left": np.int32, "right": np.float64,
                  "t_left": np.float64, "t_right": np.float64}
_MARKER_TYPES = {"delivery": np.int32, "x": np.int32, "t": np.float64, "batch": np.int32,
                 "size": np.int32, "ok": np.bool_}
_GATE_TYPES = {"left": np.int32, "right": np.float64, "t_left": np.float64,
               "t_right": np.float64}

#: The two x axes: name -> (left column, right column, marker column, axis label).
X_AXES = {"events": ("left", "right", "x", "event #"),
          "time": ("t_left", "t_right", "t", "lab time (ms)")}

#: On the lab-time axis, every bar is outlined this many pixels wide in its own colour, so a
#: span of zero lab time (an object's work on an auto or manual clock) is still a visible bar.
MIN_SPAN_PX = 2

#: Legend words for the segment kinds (what the colour means for the gate).
_LEGEND = {"awaiting storage": "awaiting storage (gate held)",
           "awaiting io": "awaiting io (gate open)",
           "awaiting io, gate held": "awaiting io (gate held)"}

#: Rows of the legend below the plot (filled column by column, see Timeline.__init__).
_LEGEND_ROWS = 3

#: A span's lab time in the hover, on either axis (ms since the timeline opened).
_LAB_TIME_TIP = "@t_left{0.000} to @t_right{0.000} ms"

#: Approximate width of one character of a 11 px label, in pixels (for fit_labels).
_CHAR_PX = 6.5

#: Longest lane name on the delivery axis, in characters (longer ones are cut, with "…").
_LANE_NAME_CHARS = 11

#: Pixels a lane label needs vertically (12 px text and a little air).
_LANE_LABEL_PX = 15


def _short(name: str) -> str:
    return name if len(name) <= _LANE_NAME_CHARS else name[:_LANE_NAME_CHARS - 1] + "…"


def fit_labels(lefts: Any, rights: Any, labels: Any, start: float, end: float,
               width_px: float, char_px: float = _CHAR_PX) -> list[int]:
    """The indices of the labels to draw: each one fits inside its own span and starts after
    the previous one drawn ends (left to right, at the zoom ``start``..``end`` over
    ``width_px`` pixels). At normal zoom a busy gate lane has spans a few pixels wide: their
    labels ("#3", "#38") piled up into "#3#3#38"; now only those with room show."""
    if end <= start or width_px <= 0:
        return []
    per_px = (end - start) / width_px
    shown: list[int] = []
    free_from = start  # x where the next label may start
    order = np.argsort(np.asarray(lefts, dtype=np.float64), kind="stable")
    for i in order:
        left, right, label = float(lefts[i]), float(rights[i]), str(labels[i])
        if not label or right < start or left > end:
            continue
        needs = (len(label) * char_px + 4) * per_px  # the text and its 2 px offset, both sides
        if right - left >= needs and left >= free_from:
            shown.append(int(i))
            free_from = left + needs
    return shown


class Timeline(Panel):
    """Gate lanes and lanes per delivery, against event number (``x="events"``) or lab time
    (``x="time"``). ``target``: one object (None: all objects' deliveries, and the gates of the
    first object seen)."""

    kind = "timeline"
    min_interval = 0.4  # seconds between redraws at full speed (see Panel)

    def __init__(self, lab: Lab, target: Any = None, *, x: str = "events", rollover: int = 3000,
                 lanes: int = 16, width: int = 760, height: int = 330, scale: float = 1.0,
                 **kwargs: Any) -> None:
        if x not in X_AXES:
            raise ValueError(f"x must be one of {sorted(X_AXES)} (event number or lab time), "
                             f"got {x!r}")
        self.rollover = rollover
        self.lanes = lanes
        self.scale = scale
        self.width_px = round(width * scale)
        self.height_px = round(height * scale)
        self.origin = lab.clock.now()  # lab time of 0 ms on the lab-time axis
        self.reducer = TimelineReducer(only=label_of(target), origin=self.origin,
                                       keep=self.rollover)
        self.segments = ColumnDataSource({c: [] for c in SEGMENT_COLUMNS}, name="timeline_segments")
        self.open_segments = ColumnDataSource({c: [] for c in SEGMENT_COLUMNS},
                                              name="timeline_open")
        self.markers = ColumnDataSource({c: [] for c in MARKER_COLUMNS}, name="timeline_markers")
        self.gate_spans = ColumnDataSource({c: [] for c in GATE_COLUMNS}, name="timeline_gates")
        self.open_gate_spans = ColumnDataSource({c: [] for c in GATE_COLUMNS},
                                                name="timeline_gates_open")
        #: The gate labels drawn (fit_labels: those with room at the current zoom).
        self.gate_labels = ColumnDataSource({"x": [], "lane": [], "label": []},
                                            name="timeline_gate_labels")
        width, height = self.width_px, self.height_px
        # Both plots' frames start at the same x (they share the x axis): the same room for
        # the y-axis labels on both.
        border = round(110 * scale)
        # -- the gate lanes --------------------------------------------------------------
        # The title, ranges and lane ticker the panel changes (kept: a figure's own are typed
        # as any title, range or ticker).
        self._gates_heading = Title(text=self._gate_title())
        self._x_range = Range1d(start=0, end=100)
        self._y_range = Range1d(start=0.5, end=3.5)
        self._lane_ticks = FixedTicker(ticks=[1, 2, 3])
        self.gate_figure = gates = figure(
            width=width, height=round(125 * scale), title=self._gates_heading,
            x_range=self._x_range, y_range=FactorRange(factors=list(reversed(GATE_LANES))),
            tools="xpan,xwheel_zoom,reset", active_scroll="xwheel_zoom",
            name="timeline_gates_fig")
        gmap = factor_cmap("kind", list(GATE_COLORS.values()), list(GATE_COLORS))
        spans = gates.hbar(y="lane", left="left", right="right", height=0.7,
                           source=self.gate_spans, fill_color=gmap, line_color=gmap,
                           line_width=MIN_SPAN_PX, line_alpha=0.0)
        open_spans = gates.hbar(y="lane", left="left", right="right", height=0.7,
                                source=self.open_gate_spans, fill_color=gmap,
                                line_color="#334155", line_dash="dotted")
        gates.text(x="x", y="lane", text="label", source=self.gate_labels, x_offset=2,
                   text_baseline="middle", text_font_size=px(11, scale),
                   text_color="#ffffff")
        gates.add_tools(HoverTool(renderers=[spans], tooltips=[
            ("", "@kind"), ("", "@detail"), ("lab time", _LAB_TIME_TIP)]))
        gates.xaxis.visible = False
        style_figure(gates, scale)
        gates.min_border_left = border
        gates.min_border_right = 0
        # -- the delivery lanes ----------------------------------------------------------
        self.figure = fig = figure(
            width=width, height=height, title="Deliveries: one lane each",
            x_axis_label=X_AXES[x][3], y_axis_label="delivery",
            tools="xpan,xwheel_zoom,box_zoom,reset,save", active_scroll="xwheel_zoom",
            x_range=self._x_range, y_range=self._y_range, name="timeline_fig")
        kinds = list(SEGMENT_KINDS)
        cmap = factor_cmap("kind", [SEGMENT_COLORS[k] for k in kinds], kinds)
        bars = fig.hbar(y="delivery", left="left", right="right", height=0.7, source=self.segments,
                        fill_color=cmap, line_color=cmap, line_width=MIN_SPAN_PX, line_alpha=0.0)
        open_bars = fig.hbar(y="delivery", left="left", right="right", height=0.7,
                             source=self.open_segments, fill_color=cmap, line_color="#334155",
                             line_dash="dotted")
        # A commit that landed is a green diamond labelled with its size; one that failed is
        # red, labelled "✗ failed" (by the "ok" column: 0 -> the first colour, 1 -> the last).
        fill = linear_cmap("ok", ["#d62728", "#2ca02c"], 0, 1)
        edge = linear_cmap("ok", ["#7f1d1d", "#14532d"], 0, 1)
        marks = fig.scatter(x="x", y="delivery", source=self.markers, marker="diamond",
                            size=round(13 * scale), fill_color=fill, line_color=edge)
        mark_text = fig.text(x="x", y="delivery", text="label", source=self.markers, x_offset=7,
                             y_offset=-4, text_font_size=px(12, scale), text_color=edge)
        fig.add_tools(HoverTool(renderers=[bars], tooltips=[
            ("delivery", "@delivery @method"), ("object", "@object"), ("", "@detail"),
            ("lab time", _LAB_TIME_TIP)]))
        fig.add_tools(HoverTool(renderers=[marks], tooltips=[
            ("commit", "batch @batch of @object"), ("keys", "@size")]))
        fig.yaxis.ticker = self._lane_ticks
        fig.min_border_left = border
        # The legend goes below the plot, never over the lanes it explains. One entry per
        # kind, drawn by legend-only renderers so every kind shows before it happens.
        # Column by column, three kinds to a column (the order a call goes through them):
        # Bokeh sizes each column to its widest label, so the long "awaiting ..." labels share
        # one column. Four columns in rows put two long labels side by side and, at a
        # projector's scale 1.5, made the legend wider than the plot (it was cut off left).
        items = []
        # "network" is listed only on a lab with geography (Lab(network=...)).
        for kind in [k for k in SEGMENT_KINDS
                     if k != "network" or getattr(lab, "network", None) is not None]:
            proxy = fig.hbar(y=[-10], left=[0], right=[0], height=0.7,
                             fill_color=SEGMENT_COLORS[kind], line_color=None)
            items.append((_LEGEND.get(kind, kind), proxy))
        legend = Legend(items=legend_items(items), orientation="vertical", nrows=_LEGEND_ROWS,
                        label_text_font_size=px(12, scale), click_policy="none", spacing=8,
                        margin=2)
        fig.add_layout(legend, "below")
        style_figure(fig, scale)
        #: The glyphs whose x columns the axis toggle re-points: spans (and whether they are
        #: closed ones, outlined on the lab-time axis) and marks.
        self._span_glyphs: list[tuple[HBar, bool]] = [
            (spans.glyph, True), (open_spans.glyph, False), (bars.glyph, True),
            (open_bars.glyph, False)]
        self._mark_glyphs = (marks.glyph, mark_text.glyph)
        self.follow = w.Checkbox(value=True, description="follow the latest events", indent=False)
        self.x_axis = w.ToggleButtons(options=[("event #", "events"), ("lab time", "time")],
                                      value=x, tooltips=["x = event number",
                                                         "x = milliseconds of lab time"],
                                      style={"button_width": "80px"})
        self.x_axis.add_class("dl-x-axis")
        self._use_axis(x)
        self.plot = LiveBokehModel(column(gates, fig))
        super().__init__(lab, **kwargs)
        self.children = (w.HBox([self.follow, self.x_axis]), self.plot, self.errors)
        self.follow.observe(self.guarded(lambda _c: self.refresh()), names=["value"])
        self.x_axis.observe(self.guarded(self._axis_changed), names=["value"])
        # A pan or zoom by hand (follow off): the gate labels that fit change.
        for attr in ("start", "end"):
            self.figure.x_range.on_change(attr, self._zoomed)
            self.figure.y_range.on_change(attr, self._zoomed)

    # -- the x axis ---------------------------------------------------------------------------

    @property
    def x(self) -> str:
        """The x axis drawn: ``"events"`` or ``"time"``."""
        return self.x_axis.value

    @property
    def x_columns(self) -> tuple[str, str]:
        """The (left, right) columns of the rows on the axis drawn."""
        left, right, _mark, _label = X_AXES[self.x]
        return left, right

    def _use_axis(self, x: str) -> None:
        left, right, mark, label = X_AXES[x]
        for glyph, closed in self._span_glyphs:
            glyph.left, glyph.right = left, right
            if closed:  # the outline that keeps a zero-width span visible
                glyph.line_alpha = 1.0 if x == "time" else 0.0
        for mark_glyph in self._mark_glyphs:
            mark_glyph.x = mark
        self.figure.xaxis.axis_label = label

    def _axis_changed(self, change: dict[str, Any]) -> None:
        with self.plot.frame():
            self._use_axis(change["new"])
        self.refresh()

    def _zoomed(self, _attr: str, _old: Any, _new: Any) -> None:
        if not self.follow.value:
            self._dirty = True  # re-fit the gate labels and lane names at the next frame

    def _gate_title(self) -> str:
        who = self.reducer.gates.object
        return f"Gates of {plain(who)}" if who else "Gates (of the first object that runs)"

    def select(self, target: Any) -> None:
        """Show another object's lanes (starting from now)."""
        self.reducer = TimelineReducer(only=label_of(target), origin=self.origin,
                                       keep=self.rollover)
        start = self._feed.snapshot()
        if start is not None:  # lanes open now, then the events after the snapshot
            self.reducer.seed(start)
            self.skip_until = start.seq
        with self.plot.frame():  # one patch message (LiveBokehModel.frame)
            for source in (self.segments, self.open_segments, self.markers, self.gate_spans,
                           self.open_gate_spans, self.gate_labels):
                source.data = {c: [] for c in source.data}
            self._gates_heading.text = self._gate_title()
        self.refresh()

    def start_from(self, snapshot: Any) -> None:
        """Open lanes for the deliveries queued, running or held when the panel opened."""
        self.reducer.seed(snapshot)

    # -- the feed's side ----------------------------------------------------------------------

    def apply(self, event: RuntimeEvent) -> None:
        self.reducer.apply(event)

    @property
    def folds_only(self) -> str | None:  # type: ignore[override]
        """The object this panel folds, if one (see Panel.folds_only)."""
        return self.reducer.only

    def fold(self, events: list[RuntimeEvent]) -> None:
        self.reducer.consume(events)

    def rest_after_draw(self) -> float:
        """At saturation a draw streams thousands of segments (a third of the rollover or
        more, ~14 ms), more than anyone follows at full speed; the timeline then waits 49
        times its last draw's cost (2 % of the kernel's time, about a second) instead of
        ``min_interval``. A lesson's few calls draw every ``min_interval`` (and every cell
        ends with a draw of everything: _feed._flush_live_feeds)."""
        if self.reducer.rows_taken >= self.rollover // 3:
            return rest_after(self._draw_cost, self.min_interval, share=0.02)
        return self.min_interval

    def draw(self) -> None:
        with self.plot.frame():  # one patch message per frame (_plots.LiveBokehModel)
            self._draw_frame()

    def _draw_frame(self) -> None:
        reducer = self.reducer
        segments, markers = reducer.take()
        gate_rows = reducer.gates.take()
        open_rows = reducer.open_rows()
        open_gates = reducer.gates.open_rows(reducer.last_x, reducer.last_t)
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
        if self._gates_heading.text != title:
            self._gates_heading.text = title
        if self.follow.value and reducer.last_x:
            self._follow(open_rows)
        else:  # panned or zoomed by hand (or scrolled to a call): name the lanes in view
            low, high = numeric_span(self._y_range)
            bottom = max(1, int(np.ceil(low)))
            top = int(np.floor(high))
            if top >= bottom:
                self._name_lanes(bottom, top)
        self._fit_gate_labels()

    def _follow(self, open_rows: dict[str, list[Any]]) -> None:
        """Keep the newest events in view: the x window, and the lanes in it (the y range
        follows the lanes in use, never a fixed 16 with three lanes squashed at the bottom)."""
        reducer = self.reducer
        left_col, right_col = self.x_columns
        data = self.segments.data
        recent = max(8 * self.lanes, 64)  # the closed rows that may be in view
        delivery = np.asarray(data["delivery"][-recent:])
        lefts = np.asarray(data[left_col][-recent:], dtype=np.float64)
        rights = np.asarray(data[right_col][-recent:], dtype=np.float64)
        open_d = np.asarray(open_rows["delivery"], dtype=np.int64)
        open_l = np.asarray(open_rows[left_col], dtype=np.float64)
        if self.x == "events":
            end = reducer.last_x + 4.0
            start = max(0.0, reducer.last_x - max(40, min(300, 10 * self.lanes)))
        else:
            # Lab time: from the oldest start among the newest lanes' rows to now (at least a
            # millisecond: on a clock that did not move, everything is at one instant).
            now = reducer.last_t
            shown = np.concatenate([lefts, open_l])
            oldest = float(np.min(shown)) if len(shown) else now
            span = max(now - oldest, 1.0)
            start, end = now - span * 1.04, now + span * 0.04
        self._x_range.update(start=start, end=end)
        in_view = np.concatenate([delivery[rights >= start], open_d]).astype(np.int64)
        if not len(in_view):
            return
        top = int(np.max(in_view))
        bottom = max(int(np.min(in_view)), top - self.lanes + 1)
        if top - bottom < 2:  # at least three lanes tall: one lane is not a whole plot
            bottom = max(1, top - 2)
            top = bottom + 2
        self._y_range.update(start=bottom - 0.5, end=top + 0.5)
        self._name_lanes(bottom, top)

    def _name_lanes(self, bottom: int, top: int) -> None:
        """A tick per lane, named by its delivery and method ("7 alarm"); every second or
        third lane only when the lanes are thinner than a line of text (alarm lanes always)."""
        names = self.reducer.names
        frame = max(40, self.height_px - round(170 * self.scale))  # less title, axis, legend
        per_lane = frame / (top - bottom + 1)
        step = max(1, -(-round(_LANE_LABEL_PX * self.scale) // max(1, int(per_lane))))
        lanes = [d for d in range(bottom, top + 1)
                 if (d - bottom) % step == 0 or names.get(d) == "alarm"]
        # (plain(): BokehJS would typeset a method name holding $$...$$ as TeX in a tick label)
        overrides: dict[float | str, str | BaseText] = {
            d: f"{d} {plain(_short(names[d]))}" if names.get(d) else str(d) for d in lanes}
        axis = self.figure.yaxis[0]
        if list(self._lane_ticks.ticks) != lanes:
            self._lane_ticks.ticks = lanes
        if axis.major_label_overrides != overrides:
            axis.major_label_overrides = overrides

    def _fit_gate_labels(self) -> None:
        left_col, right_col = self.x_columns
        start, end = numeric_span(self._x_range)
        columns: dict[str, list[Any]] = {"left": [], "right": [], "label": [], "lane": []}
        for source in (self.gate_spans, self.open_gate_spans):  # closed spans, then open ones
            data = source.data
            if not len(data["lane"]):
                continue
            ends = np.asarray(data[right_col], dtype=np.float64)
            near = np.nonzero(ends >= start)[0]  # (only the spans that reach the window)
            columns["left"].extend(np.asarray(data[left_col], dtype=np.float64)[near])
            columns["right"].extend(ends[near])
            columns["label"].extend(np.asarray(data["label"])[near])
            columns["lane"].extend(np.asarray(data["lane"])[near])
        labels: dict[str, list[Any]] = {"x": [], "lane": [], "label": []}
        lanes = np.asarray(columns["lane"])
        width = self.width_px - round(110 * self.scale)  # the plot frame, without the y axis
        for lane in GATE_LANES:
            mine = np.nonzero(lanes == lane)[0]
            if not len(mine):
                continue
            lefts = [columns["left"][i] for i in mine]
            rights = [columns["right"][i] for i in mine]
            texts = [columns["label"][i] for i in mine]
            for i in fit_labels(lefts, rights, texts, start, end, width, _CHAR_PX * self.scale):
                labels["x"].append(float(lefts[i]))
                labels["lane"].append(lane)
                labels["label"].append(str(texts[i]))
        if labels != {k: list(v) for k, v in self.gate_labels.data.items()}:
            self.gate_labels.data = labels
