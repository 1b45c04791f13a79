"""Metrics: throughput, queue depth, commit batch sizes, latency against writes per call."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from bokeh.layouts import gridplot
from bokeh.models import ColumnDataSource
from bokeh.plotting import figure

from ._base import Panel
from ._plots import LiveBokehModel
from ._reducers import BATCH_BINS, MetricsReducer

if TYPE_CHECKING:
    from durable_lab import Lab
    from durable_lab.events import RuntimeEvent

__all__ = ["Metrics"]


class Metrics(Panel):
    """Four small live plots, sampled every ``sample`` seconds, bounded by ``rollover``."""

    kind = "metrics"

    def __init__(self, lab: Lab, *, sample: float = 0.25, rollover: int = 480,
                 points: int = 3000, width: int = 330, height: int = 190, **kwargs: Any) -> None:
        self.reducer = MetricsReducer()
        self.sample = sample
        self.rollover = rollover
        self.max_points = points
        self._t0 = time.perf_counter()
        self._last_sample = self._t0
        self.rates = ColumnDataSource({"t": [], "calls_per_s": [], "commits_per_s": [],
                                       "queue_depth": [], "max_queue": []}, name="metrics_rates")
        self.batches = ColumnDataSource({"bin": [b[0] for b in BATCH_BINS],
                                         "count": [0] * len(BATCH_BINS)}, name="metrics_batches")
        self.latency = ColumnDataSource({"writes": [], "ms": [], "method": []},
                                        name="metrics_latency")
        common = {"width": width, "height": height, "tools": "pan,wheel_zoom,box_zoom,reset"}
        f1 = figure(title="Throughput (per second)", x_axis_label="seconds", **common)
        f1.line("t", "calls_per_s", source=self.rates, legend_label="calls answered",
                line_width=2)
        f1.line("t", "commits_per_s", source=self.rates, legend_label="commits", color="#2ca02c",
                line_width=2)
        f2 = figure(title="Queue depth", x_axis_label="seconds", x_range=f1.x_range, **common)
        f2.line("t", "queue_depth", source=self.rates, legend_label="all objects", line_width=2,
                color="#d62728")
        f2.line("t", "max_queue", source=self.rates, legend_label="busiest object",
                line_width=2, color="#ff7f0e", line_dash="dashed")
        f3 = figure(title="Commit batch sizes (keys)", x_range=[b[0] for b in BATCH_BINS],
                    **common)
        f3.vbar(x="bin", top="count", width=0.8, source=self.batches, color="#1f77b4")
        f4 = figure(title="Latency vs writes per call", x_axis_label="writes in the call",
                    y_axis_label="ms", **common)
        f4.scatter("writes", "ms", source=self.latency, size=5, alpha=0.5, color="#9467bd")
        for f in (f1, f2):
            f.legend.location = "top_left"
            f.legend.label_text_font_size = "9px"
            f.legend.background_fill_alpha = 0.6
        self.figure = gridplot([[f1, f2], [f3, f4]], toolbar_location="right", merge_tools=True)
        self.plot = LiveBokehModel(self.figure)
        super().__init__(lab, **kwargs)
        self.children = (self.plot, self.errors)

    def apply(self, event: RuntimeEvent) -> None:
        self.reducer.apply(event)

    def render(self) -> None:
        now = time.perf_counter()
        if now - self._last_sample < self.sample:
            return
        dt, self._last_sample = now - self._last_sample, now
        snap = self.reducer.snapshot(dt)
        points = self.reducer.take_points()
        doc = self.figure.document
        doc.hold("combine")
        try:
            row = {k: [v] for k, v in snap.items() if k in self.rates.data}
            row["t"] = [round(now - self._t0, 2)]
            self.rates.stream(row, rollover=self.rollover)
            if points:
                step = max(1, len(points) // 200)  # at most 200 dots per sample
                sample = points[::step]
                self.latency.stream({"writes": [p[0] for p in sample],
                                     "ms": [round(p[1], 3) for p in sample],
                                     "method": [p[2] for p in sample]}, rollover=self.max_points)
            counts = list(self.reducer.batch_hist)
            if counts != list(self.batches.data["count"]):
                self.batches.patch({"count": [(slice(0, len(counts)), counts)]})
        finally:
            doc.unhold()

    def draw(self) -> None:  # render() samples on its own clock
        pass
