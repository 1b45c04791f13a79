"""Where the time went: each call's latency as one stacked bar of its phases.

One horizontal bar per call, split into the phases of ``durable_lab.attribution`` (queued,
running, storage reads, other I/O, re-entry, output gate, network), for the selected object's
most recent calls (the panel asks the lab to keep them: ``lab.keep_recent_calls``) or for the
slowest calls of a workload (``result=``). Above the bars, the p50/p95/p99 of each phase over
the calls shown. Clicking a bar explains that call (``lab.explain``'s table and verdict) and, if
a :class:`~widgets.timeline.Timeline` is open on the lab, scrolls it to that delivery's events
and selects them (its lane stands out, the others fade).

The bars are drawn from the lab's own breakdowns, never from private state; the panel redraws
when a call of its object finishes (its events), at most once per frame.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import ipywidgets as w
from bokeh.models import ColumnDataSource, FactorRange, HoverTool, TapTool
from bokeh.models.annotations import Legend, Title
from bokeh.plotting import figure

from durable_lab.attribution import PHASE_LABELS, PHASES, Breakdown, Explanation, phase_percentiles
from durable_lab.events import DeliveryFinished, NetworkHopEnded, ReplyReleased

from ._base import Panel
from ._feed import open_panels
from ._plots import LiveBokehModel, legend_items, style_figure
from ._targets import label_of
from ._theme import esc, plain, px

if TYPE_CHECKING:
    from durable_lab import Lab
    from durable_lab.events import RuntimeEvent
    from durable_lab.workload import WorkloadResult

    from .timeline import Timeline

__all__ = ["PHASE_COLORS", "WhereTimeWent", "show_on_timeline"]

#: One colour per phase: waiting at a gate in reds, own work in blue/green, elsewhere in greys.
PHASE_COLORS = {
    "queued": "#d62728",
    "running": "#1f77b4",
    "storage": "#17becf",
    "io": "#bcbd22",
    "reentry": "#ff7f0e",
    "output_gate": "#9467bd",
    "network": "#7f7f7f",
}

COLUMNS = ("call", "delivery", "object", "method", "latency", *PHASES,
           *(f"{p}_pct" for p in PHASES))

#: The events after which one of the object's calls may have finished (redraw then).
_FINISHING = (DeliveryFinished, ReplyReleased, NetworkHopEnded)


def show_on_timeline(timeline: Timeline, delivery: int) -> bool:
    """Scroll ``timeline`` to ``delivery``'s events and select them (its lane is highlighted,
    the others fade); stop following the latest events. False if the timeline never saw that
    delivery (it opened later, or the events rolled over)."""
    rows = [i for i, d in enumerate(timeline.segments.data["delivery"]) if d == delivery]
    open_rows = [i for i, d in enumerate(timeline.open_segments.data["delivery"])
                 if d == delivery]
    if not rows and not open_rows:
        return False
    left, right = timeline.x_columns  # event numbers or ms of lab time (the axis drawn)
    lefts = [timeline.segments.data[left][i] for i in rows]
    lefts += [timeline.open_segments.data[left][i] for i in open_rows]
    rights = [timeline.segments.data[right][i] for i in rows]
    rights += [timeline.open_segments.data[right][i] for i in open_rows]
    timeline.follow.value = False  # (else the next frame scrolls away again)
    start, end = float(min(lefts)), float(max(rights))
    # A margin of a tenth on each side; at least two events, or a millisecond of lab time.
    pad = max(2.0 if timeline.x == "events" else 1.0, (end - start) * 0.1)
    timeline.figure.x_range.update(start=start - pad, end=end + pad)
    half = timeline.lanes / 2
    timeline.figure.y_range.update(start=delivery - half, end=delivery + half)
    timeline.segments.selected.indices = rows
    timeline.refresh()  # the lanes in view named, the gate labels fitted to the new window
    return True


class WhereTimeWent(Panel):
    """Stacked bars of each call's phases, phase percentiles, click a bar to explain it.

    ``target``: the object whose recent calls are shown (a stub, an id or a label; None: the
    first object a call finishes on). ``result``: a ``WorkloadResult`` instead (its slowest
    ``slowest`` calls, fixed). ``timeline``: the timeline a click scrolls (default: the one
    open on the lab, if any).
    """

    kind = "where_time_went"

    def __init__(self, lab: Lab, target: Any = None, *, result: WorkloadResult | None = None,
                 slowest: int = 20, timeline: Timeline | None = None, keep: int = 50,
                 width: int = 760, scale: float = 1.0, **kwargs: Any) -> None:
        if isinstance(slowest, bool) or not isinstance(slowest, int) or slowest < 1:
            raise ValueError(f"slowest must be an int >= 1, got {slowest!r}")
        self.target = label_of(target)
        self.result = result
        self.slowest = slowest
        self.timeline = timeline
        self.scale = scale
        if result is None:
            lab.keep_recent_calls(max(keep, slowest))
        self.breakdowns: list[Breakdown] = []
        self.selected: Breakdown | None = None
        self.source = ColumnDataSource({c: [] for c in COLUMNS}, name="where_time_went_source")
        # The title and the calls' range the panel changes (kept: a figure's own are typed as
        # any title or range).
        self._heading = Title(text=self._title())
        self._calls_range = FactorRange(factors=[])
        self.figure = fig = figure(
            width=round(width * scale), height=round(320 * scale), title=self._heading,
            y_range=self._calls_range, x_axis_label="ms (lab clock)",
            tools="tap,xwheel_zoom,reset,save", name="where_time_went_fig")
        bars = fig.hbar_stack(list(PHASES), y="call", height=0.75, source=self.source,
                              color=[PHASE_COLORS[p] for p in PHASES], line_color=None)
        fig.add_tools(HoverTool(renderers=list(bars), tooltips=[
            ("call", "@object.@method (delivery @delivery)"),
            ("latency", "@latency{0.000} ms"),
            *((p, f"@{{{p}}}{{0.000}} ms (@{{{p}_pct}}{{0}} %)") for p in PHASES)]))
        tap = next(tool for tool in fig.tools if isinstance(tool, TapTool))
        tap.renderers = list(bars)
        legend = Legend(items=legend_items([(PHASE_LABELS[p], r)
                                            for p, r in zip(PHASES, bars, strict=True)]),
                        orientation="horizontal", label_text_font_size=px(11, scale),
                        click_policy="none", spacing=6, margin=2, ncols=4)
        fig.add_layout(legend, "below")
        style_figure(fig, scale)
        self.source.selected.on_change("indices", self._tapped)
        self.plot = LiveBokehModel(fig)
        self.table = w.HTML()
        self.detail = w.HTML()
        super().__init__(lab, **kwargs)
        self.children = (self.table, self.plot, self.detail, self.errors)
        self.refresh()

    def _registry_key(self) -> str:
        # One per object (or per workload result) in a notebook, not one per lab.
        return f"{self.kind}:{self.target or ''}:{id(self.result) if self.result else ''}"

    def _title(self) -> str:
        if self.result is not None:
            return f"Where the time went: the {self.slowest} slowest calls of the workload"
        who = self.target or "(the first object a call finishes on)"
        return f"Where the time went: the last {self.slowest} calls of {plain(who)}"

    # -- the feed's side --------------------------------------------------------------------

    def apply(self, event: RuntimeEvent) -> None:  # pragma: no cover - consume does the work
        pass

    def consume(self, events: list[RuntimeEvent]) -> None:
        if self.result is not None:
            return  # a workload's calls do not change
        for event in events:
            if isinstance(event, _FINISHING):
                if self.target is None:
                    self.target = event.object
                if event.object == self.target:
                    self._dirty = True

    # -- data -------------------------------------------------------------------------------

    def calls(self) -> list[Breakdown]:
        """The breakdowns shown now, top bar first."""
        if self.result is not None:
            return [c.breakdown for c in self.result.slowest(self.slowest)
                    if c.breakdown is not None]
        if self.target is None:
            return []
        try:
            recent = self.lab.recent_calls(self.target)
        except LookupError:
            # A panel may watch a label before that object's first call: nothing yet.
            return []
        finished = [b for b in recent if b.end is not None]
        return list(reversed(finished[-self.slowest:]))  # the most recent on top

    def draw(self) -> None:
        calls = self.calls()
        self.breakdowns = calls
        data: dict[str, list[Any]] = {c: [] for c in COLUMNS}
        for b in calls:
            data["call"].append(f"#{b.delivery} {b.method}" if self.result is None
                                else f"#{b.delivery} {b.object}.{b.method}")
            data["delivery"].append(b.delivery)
            data["object"].append(b.object)
            data["method"].append(b.method)
            data["latency"].append(b.latency * 1000)
            for p in PHASES:
                data[p].append(b.phases[p] * 1000)
                data[f"{p}_pct"].append(b.share(p) * 100)
        doc = self.figure.document
        if doc is not None:
            doc.hold("combine")
        try:
            # Top to bottom in list order: a FactorRange lists its factors bottom-up.
            self._calls_range.factors = list(reversed(data["call"]))
            self._heading.text = self._title()
            self.source.data = data
        finally:
            if doc is not None:
                doc.unhold()
        self.table.value = self._percentile_table(calls)

    def _percentile_table(self, calls: list[Breakdown]) -> str:
        if not calls:
            return ('<div class="dl-where" data-calls="0" style="font:12px sans-serif">'
                    "No finished calls yet.</div>")
        table = phase_percentiles(calls)
        total = sorted(b.latency for b in calls)
        rows = []
        for phase in PHASES:
            cells = table[phase]
            if not cells["p99"]:
                continue
            rows.append(
                f'<tr data-phase="{phase}"><td><span style="color:{PHASE_COLORS[phase]}">■'
                f"</span> {esc(PHASE_LABELS[phase])}</td>"
                + "".join(f'<td style="text-align:right">{(cells[q] or 0) * 1000:.3f}</td>'
                          for q in ("p50", "p95", "p99")) + "</tr>")
        worst = total[-1] * 1000
        return (f'<div class="dl-where" data-calls="{len(calls)}" style="font:12px sans-serif">'
                f"{len(calls)} calls, slowest {worst:.3f} ms. Per phase, ms (lab clock):"
                '<table><tr><th></th><th>p50</th><th>p95</th><th>p99</th></tr>'
                + "".join(rows) + "</table></div>")

    # -- clicks -----------------------------------------------------------------------------

    def _tapped(self, _attr: str, _old: Any, new: list[int]) -> None:
        try:
            if new and new[0] < len(self.breakdowns):
                self.select(new[0])
        except Exception as exc:
            self.show_error(exc)

    def select(self, index: int) -> Breakdown:
        """Explain bar ``index`` (0: the top one) and show its delivery on the timeline."""
        b = self.breakdowns[index]
        self.selected = b
        note = ""
        timeline = self.timeline or open_panels(self.lab).get("timeline")
        if timeline is not None and not getattr(timeline, "closed", False):
            if show_on_timeline(timeline, b.delivery):
                note = f"<p>Delivery {b.delivery} is selected on the timeline.</p>"
            else:
                note = (f"<p>Delivery {b.delivery} is not on the timeline (it ran before the "
                        "timeline opened, or its events rolled over).</p>")
        self.detail.value = Explanation(b)._repr_html_() + note
        return b
