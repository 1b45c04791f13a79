"""Metrics: throughput, queue depth, commit batch sizes, latency against writes per call.

Readable at every size: legends sit above the plots, never on the lines; batch sizes use a log
scale (550 one-key batches next to five 100-key batches both show); the latency axis follows
the 99th percentile so one 25 s outlier cannot squash everything else (outliers are counted in
the title); an empty plot says "no data yet" instead of showing axes from -1 to 1.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import ipywidgets as w
import numpy as np
from bokeh.layouts import gridplot
from bokeh.models import ColumnDataSource, Label, Legend, Range1d
from bokeh.plotting import figure

from ._base import Panel
from ._plots import LiveBokehModel, stream_columns
from ._reducers import BATCH_BINS, MetricsReducer
from ._theme import px, style_figure

if TYPE_CHECKING:
    from durable_lab import Lab
    from durable_lab.events import RuntimeEvent

__all__ = ["Metrics", "latency_axis_top"]

#: The NumPy type of the latency dots' numeric columns (see _plots.stream_columns).
_LATENCY_TYPES = {"writes": np.int32, "ms": np.float64}

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


class Metrics(Panel):
    """Four small live plots, sampled every ``sample`` seconds, bounded by ``rollover``."""

    kind = "metrics"

    def __init__(self, lab: Lab, *, sample: float = 0.25, rollover: int = 480,
                 points: int = 3000, width: int = 360, height: int = 220, scale: float = 1.0,
                 **kwargs: Any) -> None:
        self.reducer = MetricsReducer()
        self.sample = sample
        self.rollover = rollover
        self.max_points = points
        self._t0 = time.perf_counter()
        self._last_sample = self._t0
        self._latencies: list[float] = []
        self.rates = ColumnDataSource({"t": [], "calls_per_s": [], "commits_per_s": [],
                                       "queue_depth": [], "max_queue": []}, name="metrics_rates")
        self.batches = ColumnDataSource({"bin": [b[0] for b in BATCH_BINS],
                                         "count": [0] * len(BATCH_BINS),
                                         "top": [LOG_FLOOR] * len(BATCH_BINS),
                                         "text": [""] * len(BATCH_BINS)},
                                        name="metrics_batches")
        self.latency = ColumnDataSource({"writes": [], "ms": [], "method": []},
                                        name="metrics_latency")
        common = {"width": round(width * scale), "height": round(height * scale),
                  "tools": "pan,wheel_zoom,box_zoom,reset"}
        f1 = figure(title="Throughput (per second)", x_axis_label="seconds",
                    x_range=Range1d(0, 10), y_range=Range1d(0, 1), **common)
        calls = f1.line("t", "calls_per_s", source=self.rates, line_width=2)
        commits = f1.line("t", "commits_per_s", source=self.rates, color="#2ca02c", line_width=2)
        f2 = figure(title="Queue depth", x_axis_label="seconds", x_range=f1.x_range,
                    y_range=Range1d(0, 1), **common)
        depth = f2.line("t", "queue_depth", source=self.rates, line_width=2, color="#d62728")
        busiest = f2.line("t", "max_queue", source=self.rates, line_width=2, color="#ff7f0e",
                          line_dash="dashed")
        for fig, items in ((f1, [("calls answered", [calls]), ("commits", [commits])]),
                           (f2, [("all objects", [depth]), ("busiest object", [busiest])])):
            fig.add_layout(Legend(items=items, orientation="horizontal", margin=0, padding=2,
                                  label_text_font_size=px(12, scale), spacing=6), "above")
        f3 = figure(title="Commit batch sizes (keys, log scale)",
                    x_range=[b[0] for b in BATCH_BINS], y_axis_type="log",
                    y_range=Range1d(LOG_FLOOR, 10), y_axis_label="commits", **common)
        f3.vbar(x="bin", top="top", bottom=LOG_FLOOR, width=0.8, source=self.batches,
                color="#1f77b4")
        f3.text(x="bin", y="top", text="text", source=self.batches, text_align="center",
                text_baseline="bottom", text_font_size=px(11, scale), y_offset=-1)
        f4 = figure(title="Latency vs writes per call", x_axis_label="writes in the call",
                    y_axis_label="ms", x_range=Range1d(0, 10), y_range=Range1d(0, 1), **common)
        f4.scatter("writes", "ms", source=self.latency, size=round(6 * scale), alpha=0.5,
                   color="#9467bd")
        self._f1, self._f2, self._f3, self._f4 = f1, f2, f3, f4
        self._latency_title = f4.title.text
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
        with self.plot.frame():  # one patch message per frame (_plots.LiveBokehModel)
            self._render_frame()

    def _render_frame(self) -> None:
        now = time.perf_counter()
        if now - self._last_sample < self.sample:
            return
        dt, self._last_sample = now - self._last_sample, now
        snap = self.reducer.snapshot(dt)
        points = self.reducer.take_points()
        t = round(now - self._t0, 2)
        row = {k: [v] for k, v in snap.items() if k in self.rates.data}
        row["t"] = [t]
        self.rates.stream(row, rollover=self.rollover)
        self._follow_rates(t, snap)
        if points:
            step = max(1, len(points) // self.reducer.DOTS_PER_TAKE)  # dots per sample, at most
            sample = points[::step]
            stream_columns(self.latency, {"writes": [p[0] for p in sample],
                                          "ms": [round(p[1], 3) for p in sample],
                                          "method": [p[2] for p in sample]},
                           self.max_points, _LATENCY_TYPES)
            self._latencies.extend(round(p[1], 3) for p in sample)
            del self._latencies[:-self.max_points]
            self._follow_latency(max(p[0] for p in sample))
        counts = list(self.reducer.batch_hist)
        if counts != list(self.batches.data["count"]):
            self.batches.data = {
                "bin": [b[0] for b in BATCH_BINS], "count": counts,
                "top": [c if c > 0 else LOG_FLOOR for c in counts],
                "text": [str(c) if c else "" for c in counts]}
            self._f3.y_range.update(start=LOG_FLOOR, end=max(10, max(counts) * 3))
            self._empty[2].visible = not any(counts)

    def _follow_rates(self, t: float, snap: dict[str, float]) -> None:
        data = self.rates.data
        start = data["t"][0] if data["t"] else 0.0
        self._f1.x_range.update(start=start, end=max(t, start + 10))
        top_rate = max(max(data["calls_per_s"], default=0), max(data["commits_per_s"], default=0))
        top_queue = max(data["queue_depth"], default=0)
        self._f1.y_range.update(start=0, end=max(1.0, top_rate * 1.15))
        self._f2.y_range.update(start=0, end=max(1.0, top_queue * 1.15))
        seen = any(data["calls_per_s"]) or any(data["commits_per_s"])
        self._empty[0].visible = not seen
        self._empty[1].visible = not (seen or any(data["queue_depth"]))

    def _show_percentiles(self) -> None:
        values = sorted(self._latencies)
        if values:
            def pct(q: float) -> str:
                return f"{values[min(len(values) - 1, int(q * len(values)))]:.1f}"
            text = (f"latency of {len(values)} recent calls (ms): p50 <b>{pct(0.5)}</b> · "
                    f"p95 <b>{pct(0.95)}</b> · p99 <b>{pct(0.99)}</b> · max <b>{values[-1]:.1f}"
                    f"</b>")
        else:
            text = "latency: no call answered yet"
        self.percentiles.value = (f'<div class="dl-percentiles" data-calls="{len(values)}" '
                                  f'style="font:{px(14, self._scale)} sans-serif;margin:2px 4px">'
                                  f'{text}</div>')

    def _follow_latency(self, writes: int) -> None:
        self._show_percentiles()
        top, above = latency_axis_top(self._latencies)
        self._f4.y_range.update(start=0, end=top)
        shown = self.latency.data["writes"]
        most = max(int(np.max(shown)) if len(shown) else 0, writes)
        self._f4.x_range.update(start=-0.5, end=max(10, most * 1.1 + 1))
        title = self._latency_title + (f" ({above} slower calls above the axis)" if above else "")
        if self._f4.title.text != title:
            self._f4.title.text = title
        self._empty[3].visible = False

    def draw(self) -> None:  # render() samples on its own clock
        pass
