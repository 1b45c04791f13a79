"""Storage inspector: each key of one object, pending vs flushing vs committed, live."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import ipywidgets as w

from ._base import Panel
from ._reducers import StorageReducer
from ._targets import label_of
from ._theme import COLORS, KEY_COLORS, esc, pill

if TYPE_CHECKING:
    from durable_lab import Lab
    from durable_lab.events import RuntimeEvent

__all__ = ["StorageInspector"]

MAX_ROWS = 12


class StorageInspector(Panel):
    """Keys seen written since the panel opened, with their state (values: see docs)."""

    kind = "storage"

    def __init__(self, lab: Lab, target: Any = None, **kwargs: Any) -> None:
        self.reducer = StorageReducer()
        self.target = label_of(target)
        self.html = w.HTML()
        super().__init__(lab, **kwargs)
        self.children = (self.html, self.errors)
        self.refresh()

    def apply(self, event: RuntimeEvent) -> None:
        self.reducer.apply(event)
        if self.target is None and event.object:
            self.target = event.object

    def select(self, target: Any) -> None:
        self.target = label_of(target)
        self.refresh()

    def draw(self) -> None:
        label = self.target or ""
        rows = self.reducer.rows(label)
        counts = self.reducer.counts(label)
        summary = " ".join(pill(f"{n} {state}", KEY_COLORS.get(state, "#64748b"))
                           for state, n in sorted(counts.items())) or "no writes seen yet"
        body = []
        for key, ks in rows[:MAX_ROWS]:
            where = f"batch {ks.batch}" if ks.batch else ""
            body.append(
                f'<tr class="dl-key" data-state="{ks.state}"><td style="font:12px monospace;'
                f'padding:1px 8px">{esc(key)}</td><td>{pill(ks.state, KEY_COLORS.get(ks.state, "#64748b"))}'
                f'</td><td style="font:12px sans-serif;color:{COLORS["muted"]};padding:0 6px">'
                f'{where}</td><td style="font:12px sans-serif;color:{COLORS["muted"]}">'
                f'{"#" + str(ks.delivery) if ks.delivery else ""}</td></tr>')
        more = len(rows) - MAX_ROWS
        if more > 0:
            body.append(f'<tr><td colspan="4" style="font:12px sans-serif;color:'
                        f'{COLORS["muted"]}">... {more} more keys</td></tr>')
        self.html.value = (
            f'<div class="dl-storage-inspector" data-object="{esc(label)}" style="font-family:'
            f'sans-serif"><div style="font:600 13px sans-serif;margin:2px 0 4px">Storage of '
            f'{esc(label or "(no object yet)")}</div><div>{summary}</div>'
            f'<table style="border-collapse:collapse;margin-top:4px"><tr style="font:600 11px '
            f'sans-serif;color:#334155;text-align:left"><th style="padding:0 8px">key</th><th>'
            f'state</th><th>batch</th><th>written by</th></tr>{"".join(body)}</table></div>')
