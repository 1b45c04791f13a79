"""The dashboard: every panel on one lab, sharing one feed, with an object selector."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import ipywidgets as w

from ._base import Panel
from ._plots import ensure_bokehjs
from ._reducers import ObjectsReducer
from ._targets import label_of
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


def _card(title: str, body: w.Widget, width: str = "auto") -> w.VBox:
    head = w.HTML(f'<div style="font:600 14px sans-serif;color:#0f172a;margin:0 0 4px">{title}'
                  "</div>")
    box = w.VBox([head, body], layout=w.Layout(border="1px solid #e2e8f0", padding="6px 8px",
                                                margin="4px", width=width))
    box.add_class("dl-card")
    return box


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
        sub = {"feed": feed, "register": False}
        self.controls = Controls(lab, label, reducer=self.objects, **sub)
        self.object_view = ObjectView(lab, label, reducer=self.objects, scale=scale, **sub)
        self.fleet = FleetView(lab, on_select=self.select, width=400, height=260, scale=scale,
                               **sub)
        self.storage = StorageInspector(lab, label, **sub)
        self.timeline = Timeline(lab, label, width=620, height=300, scale=scale, **sub)
        self.metrics = Metrics(lab, width=300, height=200, scale=scale, **sub)
        self.event_log = EventLog(lab, **sub)
        self.picker = w.Dropdown(options=[label] if label else [], value=label,
                                 description="object", layout=w.Layout(width="320px"))
        self._syncing_picker = False  # True while the code (not a user) sets the picker
        self.picker.observe(self.guarded(self._picked), names=["value"])
        # Order matters: the shared reducer must see a frame's events before its readers.
        feed.remove(self)
        feed.add(self)
        for panel in (self.controls, self.object_view, self.fleet, self.storage,
                      self.timeline, self.metrics, self.event_log):
            feed.remove(panel)
            feed.add(panel)
        self.children = (
            _card("Controls", self.controls),
            w.HBox([_card("Object view", w.VBox([self.picker, self.object_view]), "62%"),
                    w.VBox([_card("Fleet (click an object to open it)", self.fleet),
                            _card("Storage inspector", self.storage)],
                           layout=w.Layout(width="38%"))]),
            w.HBox([_card("Timeline", self.timeline), _card("Metrics", self.metrics)]),
            _card("Event log", self.event_log),
            self.errors,
        )
        if label is None and self.start is not None:
            live = [o.label for o in self.start.objects if o.in_memory]
            if live:
                self.select(live[0])
        self._update_picker()

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
