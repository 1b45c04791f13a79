"""Storage inspector: each key of one object with its value and state, live.

States come from the event stream (``pending`` in the cache, ``flushing`` in batch *n*,
``committed``, ``deleted``, ``failed``, ``lost``); values come from ``lab.peek(target)``, which
reads what the object's storage holds now (pending writes included) from outside, without
delivering anything to the object. Keys stored before the panel opened show as ``stored``.
Values are refreshed at most every ``refresh_every`` seconds, and only when the object did
something, so a busy lab is not slowed down by its inspector.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import ipywidgets as w

from ._base import Panel
from ._reducers import KeyState, StorageReducer
from ._targets import label_of
from ._theme import COLORS, KEY_COLORS, esc, pill

if TYPE_CHECKING:
    from durable_lab import Lab
    from durable_lab.events import RuntimeEvent

__all__ = ["StorageInspector", "preview"]

MAX_ROWS = 12
PREVIEW = 48  # characters of a value shown; the hover shows more


def preview(value: Any, limit: int = PREVIEW) -> str:
    """A value as a short line: its repr, cut in the middle of nothing important."""
    text = repr(value)
    return text if len(text) <= limit else text[:limit - 1] + "…"


class StorageInspector(Panel):
    """Keys and values of one object, with the state of each key's latest write."""

    kind = "storage"
    min_interval = 0.5  # seconds between redraws at full speed (see Panel)

    def __init__(self, lab: Lab, target: Any = None, *, refresh_every: float = 0.3,
                 **kwargs: Any) -> None:
        self.reducer = StorageReducer()
        self.target = label_of(target)
        self.values: dict[str, Any] = {}
        self.refresh_every = refresh_every
        self._values_for: str | None = None
        self._values_stale = True
        self._last_read = 0.0
        self._reading = False
        self.html = w.HTML()
        super().__init__(lab, **kwargs)
        self.children = (self.html, self.errors)
        self.refresh()

    def start_from(self, snapshot: Any) -> None:
        """Start from the lab's snapshot: keys pending and in flight now (values and the
        keys already stored come from ``lab.peek``, read at the first frame)."""
        if self.target is None:
            live = [o.label for o in snapshot.objects if o.in_memory]
            self.target = live[0] if live else None
        if self.target is None:
            self.reducer.seed(snapshot)  # every object's, until one is chosen
        else:
            self.reducer.focus(self.target, snapshot)

    def apply(self, event: RuntimeEvent) -> None:
        self.fold([event])

    @property
    def folds_only(self) -> str | None:  # type: ignore[override]
        """The object this panel folds, if one (see Panel.folds_only)."""
        return self.reducer.only

    def fold(self, events: list[RuntimeEvent]) -> None:
        self.reducer.consume(events)
        if self.target is None:
            self.target = next((e.object for e in events if e.object), None)
            if self.target is not None:
                self.reducer.focus(self.target, None)  # (folded up to now: keep its table)
        if not self._values_stale:
            target = self.target
            self._values_stale = any(e.object == target for e in events)

    def select(self, target: Any) -> None:
        self.target = label_of(target)
        if self.target is not None:
            self.reducer.focus(self.target, self._feed.snapshot())
        self._values_stale = True
        self.refresh()

    def render(self) -> None:
        now = time.perf_counter()
        if (self.target and not self._reading and not self.lab.closed
                and (self._values_stale or self._values_for != self.target)
                and now - self._last_read >= self.refresh_every):
            self._reading, self._values_stale, self._last_read = True, False, now
            self.spawn(self._read_values(self.target))
        super().render()

    async def _read_values(self, label: str) -> None:
        try:
            values = await self.lab.peek(label)
        finally:
            self._reading = False
        if label == self.target:
            self.values, self._values_for = values, label
            self.refresh()

    def rows(self) -> list[tuple[str, KeyState]]:
        """Keys seen written (with their state), then keys stored before the panel opened."""
        label = self.target or ""
        rows = self.reducer.rows(label)
        seen = {key for key, _ in rows}
        if self._values_for == label:
            rows += [(key, KeyState("stored")) for key in sorted(self.values) if key not in seen]
        return rows

    def draw(self) -> None:
        label = self.target or ""
        rows = self.rows()
        counts: dict[str, int] = {}
        for _, ks in rows:
            counts[ks.state] = counts.get(ks.state, 0) + 1
        summary = " ".join(pill(f"{n} {state}", KEY_COLORS.get(state, "#64748b"))
                           for state, n in sorted(counts.items())) or "no data yet"
        shown = self.values if self._values_for == label else {}
        body = []
        for key, ks in rows[:MAX_ROWS]:
            where = f"batch {ks.batch}" if ks.batch else ""
            value = shown.get(key, "") if ks.state not in ("deleted", "lost") else ""
            text = preview(value) if key in shown else ("(deleted)" if ks.state == "deleted"
                                                        else "")
            body.append(
                f'<tr class="dl-key" data-state="{esc(ks.state)}"><td style="font:13px monospace;'
                f'padding:1px 8px">{esc(key)}</td><td class="dl-value" title="{esc(repr(value))}"'
                f' style="font:13px monospace;padding:1px 8px;max-width:260px;overflow:hidden;'
                f'text-overflow:ellipsis;white-space:nowrap">{esc(text)}</td>'
                f'<td>{pill(ks.state, KEY_COLORS.get(ks.state, "#64748b"))}</td>'
                f'<td style="font:12px sans-serif;color:{COLORS["muted"]};padding:0 6px">'
                f'{where}</td><td style="font:12px sans-serif;color:{COLORS["muted"]}">'
                f'{"#" + str(ks.delivery) if ks.delivery else ""}</td></tr>')
        more = len(rows) - MAX_ROWS
        if more > 0:
            body.append(f'<tr><td colspan="5" style="font:12px sans-serif;color:'
                        f'{COLORS["muted"]}">... {more} more keys</td></tr>')
        self.html.value = (
            f'<div class="dl-storage-inspector" data-object="{esc(label)}" '
            f'data-keys="{len(rows)}" style="font-family:sans-serif"><div style="font:600 14px '
            f'sans-serif;margin:2px 0 4px">Storage of {esc(label or "(no object yet)")}</div>'
            f'<div>{summary}</div><table style="border-collapse:collapse;margin-top:4px">'
            f'<tr style="font:600 12px sans-serif;color:#334155;text-align:left">'
            f'<th style="padding:0 8px">key</th><th style="padding:0 8px">value</th><th>state'
            f'</th><th>batch</th><th>written by</th></tr>{"".join(body)}</table></div>')
