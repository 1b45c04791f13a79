"""SQL tables: the tables and rows of one SQLite-backed object, live.

Reads ``lab.tables(target)`` (``durable_lab.peek``): the object's database as the object sees
it now, from outside, without delivering anything to it. Rows a turn just inserted show before
their commit (they are inside the open implicit transaction), tagged "not committed yet" until
the commit event arrives. Refreshed when the object does something, at most every
``refresh_every`` seconds.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import ipywidgets as w

from durable_lab import events as ev

from ._base import Panel
from ._targets import label_of
from ._theme import COLORS, esc
from .storage_view import preview

if TYPE_CHECKING:
    from durable_lab import Lab
    from durable_lab.events import RuntimeEvent
    from durable_lab.peek import TableSnapshot

__all__ = ["SqlTables", "render_tables_html"]

ROWS_SHOWN = 8


def render_tables_html(label: str, tables: list[TableSnapshot], *, uncommitted: bool) -> str:
    """The tables as HTML: a pure function (tested headless)."""
    parts = []
    for t in tables:
        head = "".join(f'<th style="padding:1px 8px;text-align:left">{esc(c)}</th>'
                       for c in t.columns)
        body = "".join(
            "<tr>" + "".join(f'<td style="padding:1px 8px;font:13px monospace">'
                             f'{esc(preview(v, 32))}</td>' for v in row) + "</tr>"
            for row in t.rows[:ROWS_SHOWN])
        more = t.count - min(len(t.rows), ROWS_SHOWN)
        tail = (f'<tr><td colspan="{len(t.columns)}" style="color:{COLORS["muted"]};'
                f'font:12px sans-serif">... {more} more row(s)</td></tr>' if more > 0 else "")
        parts.append(
            f'<div class="dl-sql-table" data-table="{esc(t.name)}" data-rows="{t.count}" '
            f'style="margin:4px 8px 8px 0;display:inline-block;vertical-align:top;'
            f'border:1px solid {COLORS["border"]};border-radius:6px;padding:4px 6px">'
            f'<div style="font:600 14px sans-serif">{esc(t.name)} <span style="font:12px '
            f'sans-serif;color:{COLORS["muted"]}">{t.count} row(s)</span></div>'
            f'<table style="border-collapse:collapse;font:13px sans-serif"><tr style="color:'
            f'#334155">{head}</tr>{body}{tail}</table></div>')
    note = ('<span class="dl-uncommitted" style="color:#b45309;font:13px sans-serif"> · '
            'changes of the current transaction, not committed yet</span>' if uncommitted
            else "")
    empty = (f'<div style="color:{COLORS["muted"]};font:italic 13px sans-serif">no tables yet'
             f'</div>' if not tables else "")
    return (f'<div class="dl-sql" data-object="{esc(label)}" data-tables="{len(tables)}" '
            f'style="font-family:sans-serif"><div style="font:600 14px sans-serif;margin:2px 0 '
            f'4px">SQL tables of {esc(label or "(no object yet)")}{note}</div>{empty}'
            f'{"".join(parts)}</div>')


class SqlTables(Panel):
    """Tables, row counts and first rows of one SQLite-backed object."""

    kind = "sql"

    def __init__(self, lab: Lab, target: Any = None, *, refresh_every: float = 0.3,
                 **kwargs: Any) -> None:
        self.target = label_of(target)
        self.tables: list[TableSnapshot] = []
        self.refresh_every = refresh_every
        self._stale = True
        self._last_read = 0.0
        self._uncommitted = False
        self.html = w.HTML()
        super().__init__(lab, **kwargs)
        self.children = (self.html, self.errors)
        self.refresh()

    def select(self, target: Any) -> None:
        self.target = label_of(target)
        self._stale = True
        self.refresh()

    def apply(self, event: RuntimeEvent) -> None:
        if self.target is None and event.object:
            self.target = event.object
        if event.object != self.target:
            return
        t = type(event)
        if type(event) is ev.StorageOp and event.cache == "write":
            self._uncommitted = True
        elif t is ev.CommitDone or t is ev.CommitFailed or t is ev.InstanceReset:
            self._uncommitted = False
        self._stale = True

    def render(self) -> None:
        now = time.perf_counter()
        if self._stale and now - self._last_read >= self.refresh_every and self.target:
            self._stale, self._last_read = False, now
            self.tables = [] if self.lab.closed else self.lab.tables(self.target,
                                                                     rows=ROWS_SHOWN)
            self._dirty = True
        super().render()

    def draw(self) -> None:
        html = render_tables_html(self.target or "", self.tables, uncommitted=self._uncommitted)
        if html != self.html.value:
            self.html.value = html
