"""Event log: the latest events in plain words, filterable, bounded.

The log keeps its events as tuples of plain values, not as the event objects. Python's
garbage collector tracks every event object a panel keeps: thousands of them, kept for a few
hundred calls each, outlive two young collections and are promoted to the oldest generation,
and each full collection of a dashboard's heap (Bokeh's and ipywidgets' models, ~140,000
objects) takes tens of milliseconds. Tuples of strings and numbers leave the collector's lists
at its first pass. Measured at saturation: two full collections per 16,000 calls with events
kept, none to one with records (``bench/RESULTS-watching.txt``). An event is rebuilt from its
values (``durable_lab.events.build``) only when the log draws it.
"""

from __future__ import annotations

import dataclasses
from collections import deque
from operator import attrgetter
from typing import TYPE_CHECKING, Any

import ipywidgets as w

from durable_lab.events import build

from ._base import Panel
from ._reducers import describe_event
from ._theme import COLORS, esc

if TYPE_CHECKING:
    from durable_lab import Lab
    from durable_lab.events import RuntimeEvent

__all__ = ["EventLog"]

BOOKKEEPING = frozenset({"InputGateLocked", "InputGateUnlocked", "StorageOp", "TurnEnded"})

_READERS: dict[type, Any] = {}  # event type -> attrgetter of every field, in declaration order

#: Where a kept event's values hold ``object`` (RuntimeEvent's third field, after seq and time).
_OBJECT = 2


def _reader(event_type: type[RuntimeEvent]) -> Any:
    """The attrgetter of every field of ``event_type``, made at its first event."""
    names = [f.name for f in dataclasses.fields(event_type)]  # type: ignore[arg-type]
    found = _READERS[event_type] = attrgetter(*names)
    return found


class EventLog(Panel):
    """Keeps the last ``keep`` events; shows the last ``show`` that match the filter."""

    kind = "event_log"
    min_interval = 1.0  # seconds between redraws at full speed (see Panel)

    def __init__(self, lab: Lab, *, keep: int = 5000, show: int = 60, **kwargs: Any) -> None:
        self.keep = keep
        # A kept event is its type (in ``types``) and the values of its fields (in ``values``,
        # a flat tuple of strings and numbers: see the module docstring). Two deques of the
        # same length, not one of (type, values) pairs: a pair holding a tuple the collector
        # had not untracked yet stayed tracked, and was promoted like an event.
        self.types: deque[type[RuntimeEvent]] = deque(maxlen=keep)
        self.values: deque[tuple[Any, ...]] = deque(maxlen=keep)
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
        if not events:
            return
        add_type, add_values = self.types.append, self.values.append
        readers = _READERS
        for e in events[-self.keep:]:
            t = type(e)
            add_type(t)
            add_values((readers.get(t) or _reader(t))(e))
        self._dirty = True

    def apply(self, event: RuntimeEvent) -> None:
        self.consume([event])

    @property
    def events(self) -> list[RuntimeEvent]:
        """The kept events, oldest first (rebuilt: for tests and looks)."""
        return [build(t, *v) for t, v in zip(self.types, self.values, strict=True)]

    def matching(self) -> list[RuntimeEvent]:
        words = self.filter.value.strip().lower().split()
        quiet = self.quiet.value
        out: list[RuntimeEvent] = []
        for t, v in zip(reversed(self.types), reversed(self.values), strict=True):
            kind = t.__name__
            if quiet and kind in BOOKKEEPING:
                continue
            if words and not all(wd in kind.lower() or wd in v[_OBJECT].lower()
                                 for wd in words):
                continue
            out.append(build(t, *v))
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
        self.html.value = (f'<div class="dl-eventlog" data-count="{len(self.values)}" '
                           f'style="font:12px/1.45 monospace;max-height:320px;overflow:auto;'
                           f'white-space:pre">{"".join(lines) or "no events yet"}</div>')
