"""Event log: the latest events in plain words, filterable, bounded.

The log keeps the last 1,000 events (``keep``), not more: the events a panel keeps are what
Python's garbage collector promotes to its oldest generation, and each full collection of a
dashboard's heap (~150,000 objects: Bokeh's and ipywidgets' models) takes ~75 ms. Kept for
5,000 events, nearly every event of a saturated lab was promoted, and full collections came
three times as often as with 1,000 (bench/RESULTS-watching.txt). Keeping plain tuples of the
events' values instead cost more to build than the collections it saved.
"""

from __future__ import annotations

from collections import deque
from typing import TYPE_CHECKING, Any

import ipywidgets as w

from ._base import Panel
from ._reducers import describe_event
from ._theme import COLORS, esc

if TYPE_CHECKING:
    from durable_lab import Lab
    from durable_lab.events import RuntimeEvent

__all__ = ["EventLog"]

BOOKKEEPING = frozenset({"InputGateLocked", "InputGateUnlocked", "StorageOp", "TurnEnded"})


class EventLog(Panel):
    """Keeps the last ``keep`` events; shows the last ``show`` that match the filter."""

    kind = "event_log"
    min_interval = 1.0  # seconds between redraws at full speed (see Panel)

    def __init__(self, lab: Lab, *, keep: int = 1000, show: int = 60, **kwargs: Any) -> None:
        self.keep = keep
        self.events: deque[RuntimeEvent] = deque(maxlen=keep)
        self.show = show
        self.filter = w.Text(placeholder="filter: kind or object, e.g. Commit or room-1",
                             layout=w.Layout(width="340px"))
        self.quiet = w.Checkbox(value=False, indent=False,
                                description="hide gate and storage bookkeeping")
        self.html = w.HTML()
        super().__init__(lab, **kwargs)
        self.children = (w.HBox([self.filter, self.quiet]), self.html, self.errors)
        self.filter.observe(self.guarded(lambda _c: self.refresh()), names=["value"])
        self.quiet.observe(self.guarded(lambda _c: self.refresh()), names=["value"])

    def consume(self, events: list[RuntimeEvent]) -> None:
        if events:
            self.events.extend(events[-self.keep:])
            self._dirty = True

    def apply(self, event: RuntimeEvent) -> None:
        self.events.append(event)

    def matching(self) -> list[RuntimeEvent]:
        words = self.filter.value.strip().lower().split()
        quiet = self.quiet.value
        out: list[RuntimeEvent] = []
        for e in reversed(self.events):
            if quiet and e.kind in BOOKKEEPING:
                continue
            if words and not all(wd in e.kind.lower() or wd in e.object.lower() for wd in words):
                continue
            out.append(e)
            if len(out) >= self.show:
                break
        out.reverse()
        return out

    def draw(self) -> None:
        lines = []
        for e in self.matching():
            text = describe_event(e)
            color = "#b91c1c" if ("Failed" in e.kind or "Reset" in e.kind
                                  or "Fault" in e.kind) else "#111827"
            who = f"{e.object or 'lab':<18}"  # padded before escaping: aligned as read
            lines.append(f'<div class="dl-event" data-kind="{esc(e.kind)}" style="color:{color}">'
                         f'<span style="color:{COLORS["muted"]}">{e.seq:>7}</span> '
                         f'{esc(who)} <b>{esc(e.kind)}</b> {esc(text)}</div>')
        self.html.value = (f'<div class="dl-eventlog" data-count="{len(self.events)}" '
                           f'style="font:12px/1.45 monospace;max-height:320px;overflow:auto;'
                           f'white-space:pre">{"".join(lines) or "no events yet"}</div>')
