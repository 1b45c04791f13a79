"""Object view: one object, large. Mailbox, input gate, turn, writes, batches, output gate."""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any

import ipywidgets as w

from ._base import Panel
from ._reducers import ObjectsReducer, ObjectState
from ._targets import label_of
from ._theme import COLORS, SEGMENT_COLORS, chip, esc, scale_css

if TYPE_CHECKING:
    from durable_lab import Lab
    from durable_lab.events import RuntimeEvent

__all__ = ["ObjectView", "render_object_html"]

MAX_CHIPS = 10


def _muted(html: str) -> str:
    return f'<span style="color:{COLORS["muted"]};font:italic 12px sans-serif">{html}</span>'


def _chips(items: list[str], color: str, *, cls: str = "dl-chip", fg: str = "#fff",
           empty: str = "empty") -> str:
    if not items:
        return _muted(esc(empty))
    shown = "".join(chip(t, color, cls=cls, fg=fg) for t in items[:MAX_CHIPS])
    more = len(items) - MAX_CHIPS
    if more > 0:
        shown += f'<span style="font:12px monospace;color:{COLORS["muted"]}"> +{more} more</span>'
    return shown


def _box(title: str, body: str, *, cls: str, flex: str = "1", border: str = "",
         attrs: str = "") -> str:
    border = border or COLORS["border"]
    return (f'<div class="{cls}" {attrs} style="flex:{flex} 1 0;min-width:0;overflow:hidden;'
            f"margin:4px;padding:8px;border:2px solid {border};border-radius:8px;"
            f'background:{COLORS["box"]}">'
            f'<div style="font:600 12px sans-serif;color:#334155;text-transform:uppercase;'
            f'letter-spacing:.04em;margin-bottom:6px">{esc(title)}</div>{body}</div>')


def _released_chips(released: list[tuple[str, bool]]) -> str:
    """Replies that went out: green when ok, red when the caller got an error."""
    if not released:
        return f'<span style="color:{COLORS["muted"]};font:italic 12px sans-serif">none yet</span>'
    return "".join(chip(text, COLORS["ok"] if ok else COLORS["bad"],
                        cls=f"dl-chip dl-released {'dl-ok' if ok else 'dl-failed'}")
                   for text, ok in released)


def _arrow() -> str:
    return '<div style="align-self:center;font:20px sans-serif;color:#94a3b8">&#10140;</div>'


def render_object_html(s: ObjectState, scale: float = 1.0) -> str:
    """The object view as HTML: a pure function of the object's state (tested headless)."""
    gate_open = s.gate_open
    gate_color = COLORS["open"] if gate_open else COLORS["closed"]
    holder = s.gate_holder or "nobody"
    mailbox = [f"#{d} {m}" for d, m in s.mailbox.items()]
    running = [f"#{s.running} {s.methods.get(s.running, '')}".strip()] if s.running else []
    awaits = [f"#{d} awaits {what}" for d, what in s.awaiting.items()]
    dirty = list(s.dirty)
    batches = [f"batch {b}: {', '.join(keys[:4])}{' ...' if len(keys) > 4 else ''}"
               f" ({len(keys)})" for b, keys in s.batches.items()]
    held = [f"#{d} waits for {n} commit{'s' if n != 1 else ''}" if n else f"#{d} commit landed"
            for d, n in s.held.items()]
    released = [(f"#{d} ✓ ok" if ok else f"#{d} ✗ ERROR", ok) for d, ok in reversed(s.released)]
    if s.last_batch is None:
        landed = _muted("no commit seen yet")
    else:
        b, n, ok = s.last_batch
        landed = chip(f"batch {b} {'landed' if ok else 'FAILED'}",
                      COLORS["ok"] if ok else COLORS["bad"], cls="dl-landed")
        landed += (f'<div style="font:13px sans-serif;margin-top:2px">{n} key'
                   f'{"s" if n != 1 else ""}{"" if ok else " NOT written"}</div>')
    gate = (f'<div class="dl-gate" data-state="{"open" if gate_open else "closed"}" '
            f'data-holder="{esc(holder)}" style="display:flex;align-items:center;gap:8px">'
            f'<div style="width:14px;height:54px;border-radius:4px;background:{gate_color};'
            f'{"opacity:.35;" if gate_open else ""}"></div>'
            f'<div style="font:600 14px sans-serif;color:{gate_color}">'
            f'{"OPEN" if gate_open else "CLOSED"}</div></div>'
            f'<div style="font:12px sans-serif;margin-top:4px">held by <b>{esc(holder)}</b>'
            f'</div>'
            f'<div style="font:12px sans-serif;color:{COLORS["muted"]}">{len(mailbox)} '
            f'waiting in the mailbox</div>')
    status_color = {"live": COLORS["ok"], "reset": COLORS["bad"], "evicted": "#64748b"}.get(
        s.status, "#64748b")
    banner = ""
    if s.status == "closed":
        banner = ('<div class="dl-closed" style="margin:4px;padding:6px 10px;border-radius:6px;'
                  'font:13px sans-serif;background:#f1f5f9;color:#334155">&#9632; LAB CLOSED: '
                  '<code>await lab.close()</code> ran, so this object stopped (not a failure). '
                  'Re-run the cell that makes the <code>Lab()</code> to go on.</div>')
    elif s.status == "reset" or s.last_reset:
        shown = s.status == "reset"
        banner = (f'<div class="dl-reset" data-reason="{esc(s.last_reset)}" '
                  f'data-active="{str(shown).lower()}" style="margin:4px;padding:6px 10px;'
                  f'border-radius:6px;font:13px sans-serif;'
                  f'background:{"#fee2e2" if shown else "#f1f5f9"};'
                  f'color:{"#991b1b" if shown else "#475569"}">'
                  f'{"&#9888; RESET" if shown else "last reset"} ({s.resets}): '
                  f'{esc(s.last_reset)}</div>')
    fault = (f'<span style="margin-left:12px;color:#b45309">fault: {esc(s.last_fault)}</span>'
             if s.last_fault else "")
    header = (f'<div style="display:flex;align-items:baseline;gap:10px;margin:2px 4px 6px">'
              f'<span style="font:600 17px sans-serif">{esc(s.label)}</span>'
              # (A status word is short and never breaks: in a narrow cell, side by side,
              # the flex row squeezed "reset" into "res / et".)
              f'<span style="flex:none;white-space:nowrap">'
              f'{chip(s.status, status_color, cls="dl-status")}</span>'
              f'<span style="font:12px sans-serif;color:{COLORS["muted"]}">incarnation '
              f'{s.incarnation} · {s.finished} answered · {s.commits} commits · '
              f'event {s.last_seq}{fault}</span></div>')
    row1 = "".join([
        _box(f"Mailbox ({len(mailbox)})", _chips(mailbox, "#64748b", cls="dl-chip dl-mail"),
             cls="dl-mailbox", flex="1.4"),
        _arrow(),
        _box("Input gate", gate, cls="dl-gatebox", flex="0.9", border=gate_color),
        _arrow(),
        _box("Running turn", _chips(running, SEGMENT_COLORS["running"], cls="dl-chip dl-run",
                                    empty="idle")
             + '<div style="height:6px"></div>'
             + _chips(awaits, SEGMENT_COLORS["awaiting storage"], cls="dl-chip dl-await",
                      fg="#111", empty="no awaits in flight"),
             cls="dl-turn", flex="1.3"),
    ])
    row2 = "".join([
        _box(f"Pending writes ({len(dirty)})", _chips(dirty, "#ff7f0e", cls="dl-chip dl-dirty",
                                                     empty="none"),
             cls="dl-dirtybox", flex="1.2"),
        _arrow(),
        _box(f"Batch in flight ({len(batches)})",
             _chips(batches, "#1f77b4", cls="dl-chip dl-batch", empty="none"),
             cls="dl-batchbox", flex="1.3"),
        _arrow(),
        _box("Storage", landed, cls="dl-storagebox", flex="1"),
    ])
    row3 = "".join([
        _box(f"Replies held by the output gate ({len(held)})",
             _chips(held, SEGMENT_COLORS["reply held"], cls="dl-chip dl-held", empty="none"),
             cls="dl-heldbox", flex="1.5"),
        _arrow(),
        _box("Released", _released_chips(released), cls="dl-releasedbox", flex="1"),
    ])
    attrs = (f'data-object="{esc(s.label)}" data-status="{esc(s.status)}" '
             f'data-mailbox="{len(mailbox)}" data-gate="{"open" if gate_open else "closed"}" '
             f'data-holder="{esc(holder)}" data-running="{s.running or 0}" '
             f'data-dirty="{len(dirty)}" data-batches="{len(batches)}" data-held="{len(held)}" '
             f'data-resets="{s.resets}" data-seq="{s.last_seq}"')
    flex = 'style="display:flex;align-items:stretch"'
    return (f'<div class="dl-objectview" {attrs} style="font-family:sans-serif;'
            f'{scale_css(scale)}">{header}{banner}'
            f'<div {flex}>{row1}</div><div {flex}>{row2}</div><div {flex}>{row3}</div></div>')


class ObjectView(Panel):
    """One object, large: every transition is a visible change (see docs/panels.md)."""

    kind = "object_view"

    def __init__(self, lab: Lab, target: Any = None, *, reducer: ObjectsReducer | None = None,
                 scale: float = 1.0, **kwargs: Any) -> None:
        self.scale = scale
        self.reducer = reducer if reducer is not None else ObjectsReducer()
        self._shared = reducer is not None
        self.target = label_of(target)
        self.html = w.HTML(layout=w.Layout(width="100%"))
        super().__init__(lab, **kwargs)
        self.children = (self.html, self.errors)
        self.layout.width = "100%"
        self.refresh()

    def start_from(self, snapshot: Any) -> None:
        """Start from the lab's snapshot: a panel opened while calls wait shows them (a
        shared reducer is seeded by the dashboard that owns it)."""
        if not self._shared:
            self.reducer.seed(snapshot)
        if self.target is None:
            live = [o.label for o in snapshot.objects if o.in_memory]
            self.target = live[0] if live else None

    def apply(self, event: RuntimeEvent) -> None:
        if not self._shared:
            self.reducer.apply(event)
        if self.target is None and event.object:
            self.target = event.object

    def consume(self, events: list[RuntimeEvent]) -> None:
        if not self._shared:
            self.reducer.consume(events)
        if self.target is None:
            for event in events:
                if event.object:
                    self.target = event.object
                    break
        if events:
            self._dirty = True

    def select(self, target: Any) -> None:
        self.target = label_of(target)
        self.refresh()

    @property
    def state(self) -> ObjectState:
        return self.reducer.get(self.target or "(no object yet)")

    def draw(self) -> None:
        state = self.state
        if self.lab.closed and state.status != "closed":
            state = dataclasses.replace(state, status="closed")
        html = render_object_html(state, self.scale)
        if html != self.html.value:
            self.html.value = html
