"""The dashboard: every panel on one lab, sharing one feed, with an object selector."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import ipywidgets as w

from ._base import Panel
from ._plots import ensure_bokehjs
from ._reducers import ObjectsReducer
from ._targets import label_of
from ._theme import layout_stylesheet, px, scale_stylesheet, scaled_classes
from .controls import Controls
from .event_log import EventLog
from .fleet import FleetView
from .metrics import Metrics
from .object_view import ObjectView
from .storage_view import StorageInspector
from .timeline import Timeline

if TYPE_CHECKING:
    from durable_lab import Lab
    from durable_lab.events import RuntimeEvent

__all__ = ["Dashboard", "dashboard"]


def _card(title: str, body: w.Widget, *, scale: float = 1.0, basis: int = 0) -> w.VBox:
    """A titled box. In a wrapping row it takes ``basis`` pixels or more (0: its content's
    width) and shares what is left; it never grows wider than the row, so a narrow notebook
    (a projector at ``scale=1.5``, a JupyterLab with its file browser open) stacks the cards
    instead of cutting them off on the right."""
    head = w.HTML(f'<div class="dl-card-title" style="font:600 {px(14, scale)}/1.3 sans-serif;'
                  f'color:#0f172a;margin:0 0 4px;white-space:normal">{title}</div>')
    box = w.VBox([head, body], layout=w.Layout(
        border="1px solid #e2e8f0", padding="6px 8px", margin="4px",
        flex=f"1 1 {basis}px" if basis else "1 1 auto", min_width="0", max_width="100%"))
    box.add_class("dl-card")
    return box


def _row(*cards: w.Widget) -> w.HBox:
    """Cards side by side while they fit, one under the other when they do not."""
    row = w.HBox(list(cards), layout=w.Layout(flex_flow="row wrap", align_items="flex-start",
                                              width="100%"))
    row.add_class("dl-row")
    return row


def _one_column(plot: Any) -> None:
    """Re-stack a grid of plots (Bokeh ``GridPlot``) as one column, in reading order."""
    from bokeh.models import GridPlot

    grid = getattr(plot, "_model", None)
    if not isinstance(grid, GridPlot):
        return
    cells = sorted(grid.children, key=lambda c: (c[1], c[2]))
    grid.children = [(child[0], i, 0) for i, child in enumerate(cells)]


def _stretch(plot: Any) -> None:
    """Make a panel's Bokeh layout follow its card's width (plots keep their height): a plot
    sized for a wide screen would run out of a narrow one. Every layout inside goes along
    (a column of two figures, a grid of four)."""
    from bokeh.models import LayoutDOM

    root = getattr(plot, "_model", None)
    if root is None:
        return
    for model in root.select({"type": LayoutDOM}):
        model.sizing_mode = "stretch_width"


class Dashboard(Panel):
    """Controls, object view, fleet, storage, timeline, metrics and event log on one lab."""

    kind = "dashboard"

    def __init__(self, lab: Lab, target: Any = None, *, scale: float = 1.0,
                 **kwargs: Any) -> None:
        if not isinstance(scale, (int, float)) or not 0.5 <= scale <= 3:
            raise ValueError(f"scale must be a number from 0.5 to 3 (1.5 for a projector), "
                             f"got {scale!r}")
        self.scale = float(scale)
        super().__init__(lab, **kwargs)
        feed = self._feed
        self.objects = ObjectsReducer()
        if self.start is not None:  # (Panel.__init__ ran before the reducer existed)
            self.objects.seed(self.start)
        label = label_of(target)
        self.target = label
        if label is not None:
            self.objects.focus(label, self.start)
        # Every part shares the dashboard's feed and stays out of the per-kind registry.
        self.controls = Controls(lab, label, reducer=self.objects, scale=scale, feed=feed,
                                 register=False)
        self.object_view = ObjectView(lab, label, reducer=self.objects, scale=scale, feed=feed,
                                      register=False)
        self.fleet = FleetView(lab, on_select=self.select, width=400, height=260, scale=scale,
                               feed=feed, register=False)
        self.storage = StorageInspector(lab, label, feed=feed, register=False)
        self.timeline = Timeline(lab, label, width=620, height=300, scale=scale, feed=feed,
                                 register=False)
        self.metrics = Metrics(lab, width=300, height=200, scale=scale, feed=feed,
                               register=False)
        self.event_log = EventLog(lab, feed=feed, register=False)
        self.picker = w.Dropdown(options=[label] if label else [], value=label,
                                 description="object", layout=w.Layout(width="320px",
                                                                       max_width="100%"))
        self._syncing_picker = False  # True while the code (not a user) sets the picker
        self.picker.observe(self.guarded(self._picked), names=["value"])
        # Order matters: the shared reducer must see a frame's events before its readers.
        feed.remove(self)
        feed.add(self)
        for panel in (self.controls, self.object_view, self.fleet, self.storage,
                      self.timeline, self.metrics, self.event_log):
            feed.remove(panel)
            feed.add(panel)
        self._layout(scale)
        if label is None and self.start is not None:
            live = [o.label for o in self.start.objects if o.in_memory]
            if live:
                self.select(live[0])
        self._update_picker()

    def _layout(self, scale: float) -> None:
        """Rows of cards that wrap (see _card); at ``scale`` != 1 the HTML and widget parts
        grow by CSS zoom and the plots by their own sizes (_theme, "projector scale")."""
        zoom = scaled_classes(scale)
        for widget in (self.picker, self.fleet.summary, self.storage, self.event_log,
                       self.timeline.follow):
            for cls in zoom:
                widget.add_class(cls)
        for panel in (self.timeline, self.metrics):
            _stretch(panel.plot)
        if scale > 1:
            # Projector: the metrics' plots one under the other, each the card's width. Two
            # side by side in a narrow notebook left "Commit batch sizes (keys, log scale)"
            # too little room for its title.
            _one_column(self.metrics.plot)
        s = scale
        self.children = (
            w.HTML(layout_stylesheet() + scale_stylesheet(scale)),
            _row(_card("Controls", self.controls, scale=s)),
            _row(_card("Object view", w.VBox([self.picker, self.object_view]), scale=s,
                       basis=round(560 * s)),
                 w.VBox([_card("Fleet (click an object to open it)", self.fleet, scale=s),
                         _card("Storage inspector", self.storage, scale=s)],
                        layout=w.Layout(flex=f"1 1 {self.fleet.width_px + 30}px",
                                        min_width="0", max_width="100%"))),
            _row(_card("Timeline", self.timeline, scale=s, basis=round(560 * s)),
                 _card("Metrics", self.metrics, scale=s, basis=round(560 * s))),
            _card("Event log", self.event_log, scale=s),
            self.errors,
        )

    @property
    def panels(self) -> tuple[Panel, ...]:
        return (self.controls, self.object_view, self.fleet, self.storage, self.timeline,
                self.metrics, self.event_log)

    def select(self, target: Any) -> None:
        """Focus every per-object panel (object view, storage, timeline, faults) on ``target``."""
        label = label_of(target)
        if label is None or label == self.target:
            return
        self.target = label
        self.objects.focus(label, self._feed.snapshot())
        for panel in (self.controls, self.object_view, self.storage, self.timeline):
            panel.select(label)
        self._update_picker()

    def _picked(self, change: Any) -> None:
        if change["new"] and not self._syncing_picker:
            self.select(change["new"])

    def _update_picker(self) -> None:
        labels = [r.label for r in self.fleet.reducer.visible()]
        if self.target and self.target not in labels:
            labels.insert(0, self.target)
        # Options first, then the value, without hold_trait_notifications: under a hold the
        # Dropdown validates the new value against its *old* options and raises "Invalid
        # selection" when the target is new (then again every frame). Setting the options
        # may move the value to the first option: that is not a user's pick, so _picked
        # ignores it.
        self._syncing_picker = True
        try:
            if tuple(labels) != tuple(self.picker.options):
                self.picker.options = labels
            if self.picker.value != self.target:
                self.picker.value = self.target
        finally:
            self._syncing_picker = False

    @property
    def folds_only(self) -> str | None:  # type: ignore[override]
        """The object the dashboard's object view folds (see Panel.folds_only)."""
        return self.objects.only

    def apply(self, event: RuntimeEvent) -> None:
        self.objects.apply(event)

    def fold(self, events: list[RuntimeEvent]) -> None:
        self.objects.consume(events)

    def consume(self, events: list[RuntimeEvent]) -> None:
        super().consume(events)
        if self.target is None:
            for e in events:
                if e.object:
                    self.select(e.object)
                    break

    def render(self) -> None:
        # The picker lists the fleet's objects: the dashboard folds its own object's events
        # only (folds_only), so another object's first call makes the fleet dirty, not this
        # panel. (The dashboard is the feed's first listener: it renders before the fleet
        # has drawn and cleared its flag.)
        if self.fleet._dirty:
            self._dirty = True
        super().render()

    def draw(self) -> None:
        self._update_picker()

    def close(self) -> None:
        if getattr(self, "_closed", True):  # closed already, or never made (bad arguments)
            return
        for panel in self.panels:
            panel.close()
        super().close()


def dashboard(lab: Lab, target: Any = None, *, scale: float = 1.0) -> Dashboard:
    """Open every panel on ``lab`` (``target``: the object to focus, a stub, id or label).

    ``scale=1.5`` enlarges text and plots for a projector. Re-running the cell closes the
    previous dashboard of this lab first (one subscription).
    """
    ensure_bokehjs()
    return Dashboard(lab, target, scale=scale)
