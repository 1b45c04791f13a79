"""A focused panel for a lesson: one object's view, its timeline with the gate lanes, and
(optionally) the clickable scheduler, slow motion and the storage inspector.

The full dashboard shows everything at once; a lesson usually needs two or three things next to
the code the learner just ran. ``watch(lab, stub)`` composes the panels that fit, sharing one
feed and one object reducer (so they always agree), and can put the lab in slow motion
(``speed=3``: three transitions a second) so the input gate can be *seen* closing.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import ipywidgets as w

from ._base import Panel
from ._reducers import ObjectsReducer
from ._targets import label_of
from ._theme import layout_stylesheet, scale_stylesheet
from .controls import Controls
from .object_view import ObjectView
from .scheduler_panel import SchedulerPanel
from .storage_view import StorageInspector
from .timeline import Timeline

if TYPE_CHECKING:
    from durable_lab import Lab
    from durable_lab.events import RuntimeEvent

__all__ = ["Watch"]


class Watch(Panel):
    """Object view + timeline (+ scheduler, storage, controls) on one object."""

    kind = "watch"

    def __init__(self, lab: Lab, target: Any = None, *, timeline: bool = True,
                 scheduler: bool = False, storage: bool = False, controls: bool = True,
                 speed: float | None = None, scale: float = 1.0, x: str = "events",
                 **kwargs: Any) -> None:
        self.target = label_of(target)
        super().__init__(lab, **kwargs)
        feed = self._feed
        self.objects = ObjectsReducer()
        if self.start is not None:  # (Panel.__init__ ran before the reducer existed)
            self.objects.seed(self.start)
        label = self.target = label_of(target)
        sub: dict[str, Any] = {"feed": feed, "register": False}
        self.object_view = ObjectView(lab, label, reducer=self.objects, scale=scale, **sub)
        # One set of stepping buttons: the Controls bar. With the scheduler, the bar leaves the
        # list of next transitions to it (clickable there), and the scheduler shows no bar of
        # its own; without a Controls bar here, the scheduler brings one.
        self.controls = (Controls(lab, label, reducer=self.objects, faults=False, speed=speed,
                                  transitions=not scheduler, scale=scale, **sub)
                         if controls or speed else None)
        self.scheduler = (SchedulerPanel(lab, label, reducer=self.objects,
                                         controls=self.controls is None, **sub)
                          if scheduler else None)
        if self.scheduler is not None and self.controls is not None:
            self.scheduler.share_lock(self.controls)
        self.timeline = (Timeline(lab, label, x=x, height=260, scale=scale, **sub)
                         if timeline else None)
        self.storage = StorageInspector(lab, label, **sub) if storage else None
        # Order matters: the shared reducer folds a frame's events before its readers draw.
        for panel in (self, *self.panels):
            feed.remove(panel)
            feed.add(panel)
        middle: list[w.Widget] = [self.object_view]
        if self.scheduler is not None:
            # Side by side while both fit, the list under the object view when they do not
            # (a narrow notebook, a projector scale).
            self.object_view.layout.flex = f"1 1 {round(520 * scale)}px"
            self.object_view.layout.min_width = "0"
            box = w.VBox([w.HTML('<b style="font:14px sans-serif">The next transitions '
                                 '(click one to take it)</b>'), self.scheduler],
                         layout=w.Layout(flex=f"1 1 {round(300 * scale)}px", min_width="0",
                                         padding="0 0 0 8px"))
            middle = [w.HBox([self.object_view, box],
                             layout=w.Layout(width="100%", flex_flow="row wrap",
                                             align_items="flex-start"))]
        style = w.HTML(layout_stylesheet() + scale_stylesheet(scale))
        self.children = tuple(x for x in (style, self.controls, *middle, self.timeline,
                                          self.storage, self.errors) if x is not None)
        self.add_class("dl-watch")

    def _registry_key(self) -> str:
        # One watch per object and lab: a lesson may watch two objects of one lab in two
        # cells; re-running a cell replaces only its own panel.
        return f"watch:{self.target}"

    @property
    def panels(self) -> tuple[Panel, ...]:
        return tuple(p for p in (self.controls, self.object_view, self.scheduler, self.timeline,
                                 self.storage) if p is not None)

    def full_speed(self) -> None:
        """End the slow motion: the lab runs freely again."""
        if self.controls is not None:
            self.controls.full_speed()
        else:
            self.lab.resume()

    def select(self, target: Any) -> None:
        label = label_of(target)
        self.target = label
        for panel in self.panels:
            select = getattr(panel, "select", None)
            if select is not None:
                select(label)

    def apply(self, event: RuntimeEvent) -> None:
        self.objects.apply(event)

    def fold(self, events: list[RuntimeEvent]) -> None:
        self.objects.consume(events)

    def consume(self, events: list[RuntimeEvent]) -> None:
        super().consume(events)
        if self.target is None:
            for e in events:
                if e.object:
                    self.target = e.object
                    break

    def draw(self) -> None:
        pass

    def close(self) -> None:
        if getattr(self, "_closed", True):  # closed already, or never made (bad arguments)
            return
        for panel in self.panels:
            panel.close()
        super().close()
