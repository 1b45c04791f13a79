"""Metrics: throughput, queue depth, commit batch sizes, latency against writes per call.

Everything is on the **lab clock** and computed **from events**, not sampled: the x axis is
seconds of lab time since the panel opened, each point is one interval of lab time (``sample``
seconds) with every call and commit in it counted and the highest queue depth reached in it
(``MetricsReducer``); latencies are lab-clock latencies as the caller saw them (network trips
included). A lab on the auto or manual clock reads the same as one on the real clock: a call
that took 190 ms of lab time shows 190 ms however fast the notebook ran it.

Readable at every size: legends sit above the plots, never on the lines; batch sizes use a log
scale (550 one-key batches next to five 100-key batches both show); the latency axis follows
the 99th percentile so one 25 s outlier cannot squash everything else (outliers are counted in
the title); an empty plot says "no data yet" instead of showing axes from -1 to 1.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any, TypedDict

import ipywidgets as w
import numpy as np
from bokeh.layouts import gridplot
from bokeh.models import BasicTickFormatter, ColumnDataSource, FactorRange, FixedTicker, Range1d
from bokeh.models.annotations import Label, Legend, Title
from bokeh.plotting import figure

from ._base import Panel
from ._plots import LiveBokehModel, legend_items, stream_columns, style_figure
from ._reducers import BATCH_BINS, MetricsReducer
from ._theme import px

if TYPE_CHECKING:
    from durable_lab import Lab
    from durable_lab.events import RuntimeEvent

__all__ = ["Metrics", "latency_axis_top"]

#: The NumPy type of the latency dots' numeric columns (see _plots.stream_columns).
_LATENCY_TYPES = {"writes": np.int32, "ms": np.float64}

#: The columns of the rates source, in the order of MetricsReducer's rows.
_RATE_COLUMNS = ("t", "calls_per_s", "commits_per_s", "queue_depth", "max_queue")
_RATE_TYPES = dict.fromkeys(_RATE_COLUMNS, np.float64)

class _FigureOptions(TypedDict):
    """What the four plots have in common."""

    width: int
    height: int
    tools: str


#: Bars of the batch histogram start here on the log axis (a count of 1 still shows).
LOG_FLOOR = 0.7


def latency_axis_top(values: list[float]) -> tuple[float, int]:
    """The latency axis' top (ms) and how many dots lie above it: the 99th percentile plus a
    margin, so one huge outlier does not flatten the rest."""
    if not values:
        return 1.0, 0
    ordered = sorted(values)
    p99 = ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))]
    top = max(p99 * 1.25, 0.05)
    return top, sum(1 for v in ordered if v > top)


def log_ticks(top: float) -> tuple[list[float], list[float]]:
    """Major ticks (labelled: 1, 10, 100, ...) and minor ones (2-9 of each decade) of a log
    axis from 1 to ``top``. Bokeh's own log ticker falls back to linear ticks (1, 2, ..., 10)
    on a range of a decade or two, whose labels then pile up at the top of each decade."""
    major: list[float] = []
    minor: list[float] = []
    decade = 1.0
    while decade <= top * 10:
        major.append(decade)
        minor.extend(decade * m for m in range(2, 10))
        decade *= 10
    return major, minor


class Metrics(Panel):
    """Four small live plots over intervals of ``sample`` seconds of lab time (drawn at most
    every ``sample`` seconds of wall time), bounded by ``rollover`` intervals."""

    kind = "metrics"

    def __init__(self, lab: Lab, *, sample: float = 0.25, rollover: int = 480,
                 points: int = 3000, width: int = 360, height: int = 220, scale: float = 1.0,
                 **kwargs: Any) -> None:
        self.reducer = MetricsReducer(interval=sample, origin=lab.clock.now(),
                                      max_rows=rollover)
        self.sample = sample
        self.rollover = rollover
        self.max_points = points
        self._last_sample = 0.0
        self._latencies: list[float] = []
        self._added = 0  # latencies added so far
        self._sampled_until = 0  # ... up to the last one that came from a sample of the calls
        #: The open interval drawn last, and how many rows at the end of the rates source are
        #: provisional (that interval and the point where it ends: see _draw_rates).
        self._open: tuple[float, float, float, float, float] | None = None
        self._provisional = 0
        self.rates = ColumnDataSource({"t": [], "calls_per_s": [], "commits_per_s": [],
                                       "queue_depth": [], "max_queue": []}, name="metrics_rates")
        self.batches = ColumnDataSource({"bin": [b[0] for b in BATCH_BINS],
                                         "count": [0] * len(BATCH_BINS),
                                         "top": [LOG_FLOOR] * len(BATCH_BINS),
                                         "text": [""] * len(BATCH_BINS)},
                                        name="metrics_batches")
        self.latency = ColumnDataSource({"writes": [], "ms": [], "method": []},
                                        name="metrics_latency")
        common = _FigureOptions(width=round(width * scale), height=round(height * scale),
                                tools="pan,wheel_zoom,box_zoom,reset")
        # The ranges the panel moves as data comes (kept: a figure's are typed as any Range).
        self._time_range = Range1d(start=0, end=10 * sample)
        self._rate_range = Range1d(start=0, end=1)
        self._queue_range = Range1d(start=0, end=1)
        self._batch_range = Range1d(start=LOG_FLOOR, end=10)
        self._writes_range = Range1d(start=0, end=10)
        self._latency_range = Range1d(start=0, end=1)
        # One step per interval of lab time: its value holds across the interval it counts.
        f1 = figure(title="Throughput (per second of lab time)", x_axis_label="lab time (s)",
                    x_range=self._time_range, y_range=self._rate_range, **common)
        calls = f1.step("t", "calls_per_s", source=self.rates, line_width=2, mode="after")
        commits = f1.step("t", "commits_per_s", source=self.rates, color="#2ca02c",
                          line_width=2, mode="after")
        f2 = figure(title="Queue depth (max per interval)", x_axis_label="lab time (s)",
                    x_range=self._time_range, y_range=self._queue_range, **common)
        depth = f2.step("t", "queue_depth", source=self.rates, line_width=2, color="#d62728",
                        mode="after")
        busiest = f2.step("t", "max_queue", source=self.rates, line_width=2, color="#ff7f0e",
                          line_dash="dashed", mode="after")
        for fig, items in ((f1, [("calls answered", calls), ("commits", commits)]),
                           (f2, [("all objects", depth), ("busiest object", busiest)])):
            # (Bokeh 3.9's stubs type ``padding`` as a Property of pixels, not pixels.)
            fig.add_layout(Legend(items=legend_items(items), orientation="horizontal", margin=0,
                                  padding=2,  # type: ignore[arg-type]
                                  label_text_font_size=px(12, scale), spacing=6), "above")
        f3 = figure(title="Commit batch sizes (keys, log scale)",
                    x_range=FactorRange(factors=[b[0] for b in BATCH_BINS]), y_axis_type="log",
                    y_range=self._batch_range, y_axis_label="commits", **common)
        major, minor = log_ticks(10)
        self._batch_ticks = FixedTicker(ticks=major, minor_ticks=minor)
        f3.yaxis.ticker = self._batch_ticks
        f3.yaxis.formatter = BasicTickFormatter(use_scientific=False)
        f3.vbar(x="bin", top="top", bottom=LOG_FLOOR, width=0.8, source=self.batches,
                color="#1f77b4")
        f3.text(x="bin", y="top", text="text", source=self.batches, text_align="center",
                text_baseline="bottom", text_font_size=px(11, scale), y_offset=-1)
        self._latency_title = "Latency vs writes per call"
        self._latency_heading = Title(text=self._latency_title)  # + the outliers' count
        f4 = figure(title=self._latency_heading, x_axis_label="writes in the call",
                    y_axis_label="ms (lab clock)", x_range=self._writes_range,
                    y_range=self._latency_range, **common)
        f4.scatter("writes", "ms", source=self.latency, size=round(6 * scale), alpha=0.5,
                   color="#9467bd")
        self._f1, self._f2, self._f3, self._f4 = f1, f2, f3, f4
        self._empty: list[Label] = []
        for fig in (f1, f2, f3, f4):
            style_figure(fig, scale)
            note = Label(x=10, y=10, x_units="screen", y_units="screen", text="no data yet",
                         text_color="#94a3b8", text_font_size=px(13, scale))
            fig.add_layout(note)
            self._empty.append(note)
        self.figure = gridplot([[f1, f2], [f3, f4]], toolbar_location="right", merge_tools=True)
        self.plot = LiveBokehModel(self.figure)
        self.percentiles = w.HTML()
        self._scale = scale
        super().__init__(lab, **kwargs)
        self.children = (self.percentiles, self.plot, self.errors)
        self._show_percentiles()

    def start_from(self, snapshot: Any) -> None:
        """Start the queue depths from the calls waiting when the panel opened."""
        self.reducer.seed(snapshot)

    def apply(self, event: RuntimeEvent) -> None:
        self.reducer.apply(event)

    def fold(self, events: list[RuntimeEvent]) -> None:
        self.reducer.consume(events)

    def render(self) -> None:
        now = time.perf_counter()
        if now - self._last_sample < self.sample:
            return  # (before frame(): holding and releasing the document costs, drawn or not)
        self._last_sample = now
        with self.plot.frame():  # one patch message per frame (_plots.LiveBokehModel)
            self._render_frame()

    def _render_frame(self) -> None:
        reducer = self.reducer
        if not self._feed.statistics().buffered:
            # Every event of the steps taken so far is folded (not slow motion mid-playback):
            # a call that finished last, its reply not held, is answered (see settle()).
            reducer.settle()
        self._draw_rates(reducer.take_rows(), reducer.open_row())
        points = reducer.take_points()
        if points:
            step = max(1, len(points) // reducer.DOTS_PER_TAKE)  # dots per take, at most
            sample = points[::step]
            stream_columns(self.latency, {"writes": [p[0] for p in sample],
                                          "ms": [round(p[1], 3) for p in sample],
                                          "method": [p[2] for p in sample]},
                           self.max_points, _LATENCY_TYPES)
            # The percentiles count every call followed, not just the dots drawn: a frame that
            # comes late (a busy machine) must not halve the calls they describe.
            self._latencies.extend(round(p[1], 3) for p in points)
            del self._latencies[:-self.max_points]
            self._added += len(points)
            if reducer.took_sample:
                self._sampled_until = self._added
            self._follow_latency(max(p[0] for p in sample))
        counts = list(reducer.batch_hist)
        if counts != list(self.batches.data["count"]):
            self.batches.data = {
                "bin": [b[0] for b in BATCH_BINS], "count": counts,
                "top": [c if c > 0 else LOG_FLOOR for c in counts],
                "text": [str(c) if c else "" for c in counts]}
            top = max(10, max(counts) * 3)
            self._batch_range.update(start=LOG_FLOOR, end=top)
            major, minor = log_ticks(top)
            if list(self._batch_ticks.ticks) != major:
                self._batch_ticks.update(ticks=major, minor_ticks=minor)
            self._empty[2].visible = not any(counts)

    def _draw_rates(self, closed: list[tuple[float, float, float, float, float]],
                    open_row: tuple[float, float, float, float, float] | None) -> None:
        """The intervals of lab time: the closed ones, then the one still filling, then where
        the last one ends (a step is drawn from one point to the next: without that point,
        one interval alone would draw nothing).

        The last two rows of the source are provisional (the open interval and the end
        point): each frame patches them with what comes next and streams the rest, so a
        frame sends the rows that changed, not the whole plot."""
        if not closed and open_row == self._open:
            return
        self._open = open_row
        rows = [*closed, open_row] if open_row is not None else list(closed)
        if not rows:
            return
        last = rows[-1]
        rows.append((last[0] + self.reducer.interval, *last[1:]))
        size = len(self.rates.data["t"])
        provisional = min(self._provisional, size)
        if provisional:
            first = size - provisional
            self.rates.patch({name: [(first + i, rows[i][c]) for i in range(provisional)]
                              for c, name in enumerate(_RATE_COLUMNS)})
        rest = rows[provisional:]
        if rest:
            columns = list(zip(*rest, strict=True))
            stream_columns(self.rates, dict(zip(_RATE_COLUMNS, columns, strict=True)),
                           self.rollover, _RATE_TYPES)
        self._provisional = 2 if open_row is not None else 1
        self._follow_rates()

    def _follow_rates(self) -> None:
        data = self.rates.data
        times = data["t"]
        if not len(times):
            return
        start = float(times[0])
        width = self.reducer.interval
        end = float(times[-1])  # (the end of the last interval: see _draw_rates)
        self._time_range.update(start=start, end=max(end, start + 10 * width))
        top_rate = max(float(np.max(data["calls_per_s"])), float(np.max(data["commits_per_s"])))
        top_queue = float(np.max(data["queue_depth"]))
        self._rate_range.update(start=0, end=max(1.0, top_rate * 1.15))
        self._queue_range.update(start=0, end=max(1.0, top_queue * 1.15))
        seen = top_rate > 0
        self._empty[0].visible = not seen
        self._empty[1].visible = not (seen or top_queue > 0)

    def _show_percentiles(self) -> None:
        values = sorted(self._latencies)
        if values:
            def pct(q: float) -> str:
                return f"{values[min(len(values) - 1, int(q * len(values)))]:.1f}"
            sampled = self._added - self._sampled_until < len(values)
            followed = ", a sample" if sampled else ""
            text = (f"latency of {len(values)} recent calls (ms of lab time{followed}): "
                    f"p50 <b>{pct(0.5)}</b> · "
                    f"p95 <b>{pct(0.95)}</b> · p99 <b>{pct(0.99)}</b> · max <b>{values[-1]:.1f}"
                    f"</b>")
        else:
            text = "latency: no call answered yet"
        self.percentiles.value = (f'<div class="dl-percentiles" data-calls="{len(values)}" '
                                  f'data-answered="{self.reducer.answered}" '
                                  f'style="font:{px(14, self._scale)} sans-serif;margin:2px 4px">'
                                  f'{text}</div>')

    def _follow_latency(self, writes: int) -> None:
        self._show_percentiles()
        top, above = latency_axis_top(self._latencies)
        self._latency_range.update(start=0, end=top)
        shown = self.latency.data["writes"]
        most = max(int(np.max(shown)) if len(shown) else 0, writes)
        self._writes_range.update(start=-0.5, end=max(10, most * 1.1 + 1))
        title = self._latency_title + (f" ({above} slower calls above the axis)" if above else "")
        if self._latency_heading.text != title:
            self._latency_heading.text = title
        self._empty[3].visible = False

    def draw(self) -> None:  # render() draws at most every ``sample`` seconds
        pass
