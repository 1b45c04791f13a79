"""WebSockets: one object's hibernatable sockets, its state (awake or hibernated), and the
messages held by the output gate.

From the event stream only: ``WebSocketAccepted`` (with tags), messages received and sent
(``held=True``: waiting behind the output gate until the writes before it commit), released or
dropped, auto-responses (answered by the runtime without waking the object), closes, and the
instance being constructed (awake) or evicted with ``reason="hibernation"`` (hibernated: the
instance is gone, the sockets stay open).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import ipywidgets as w

from durable_lab import events as ev

from ._base import Panel
from ._targets import label_of
from ._theme import COLORS, chip, esc

if TYPE_CHECKING:
    from durable_lab import Lab
    from durable_lab.events import RuntimeEvent

__all__ = ["SocketRow", "WebSocketsReducer", "WebSocketsView"]


@dataclass
class SocketRow:
    socket: int
    tags: tuple[str, ...] = ()
    state: str = "open"  # open, closed
    received: int = 0
    sent: int = 0
    held: int = 0  # messages waiting behind the output gate now
    dropped: int = 0  # held messages that never went out (a commit failed, the socket closed)
    auto: int = 0  # auto-responses (the object stayed asleep)
    close: str = ""


@dataclass
class WebSocketsReducer:
    """The sockets of one object (``only``; None: the first object that accepts one)."""

    only: str | None = None
    sockets: dict[int, SocketRow] = field(default_factory=dict)
    instance: str = "not started"  # awake, hibernated, evicted, reset, not started
    wakeups: int = 0  # instances constructed while sockets were open
    #: Times the instance hibernated: kept, so a hibernation is still told after the next
    #: message woke the object (both may happen within one cell).
    hibernations: int = 0

    def apply(self, e: RuntimeEvent) -> None:
        if self.only is None:
            if type(e) is not ev.WebSocketAccepted:
                return
            self.only = e.object
        if e.object != self.only:
            return
        if type(e) is ev.WebSocketAccepted:
            self.sockets[e.socket] = SocketRow(e.socket, e.tags)
        elif type(e) is ev.WebSocketMessageReceived:
            self._row(e.socket).received += 1
        elif type(e) is ev.WebSocketMessageSent:
            row = self._row(e.socket)
            row.sent += 1
            if e.held:
                row.held += 1
        elif type(e) is ev.WebSocketMessageReleased:
            row = self._row(e.socket)
            row.held = max(0, row.held - 1)
            if not e.ok:
                row.dropped += 1
        elif type(e) is ev.WebSocketAutoResponse:
            self._row(e.socket).auto += 1
        elif type(e) is ev.WebSocketClosed:
            row = self._row(e.socket)
            row.state, row.close = "closed", f"{e.code} by {e.initiator}"
            row.dropped += row.held
            row.held = 0
        elif type(e) is ev.InstanceConstructed:
            if any(r.state == "open" for r in self.sockets.values()):
                self.wakeups += 1
            self.instance = "awake"
        elif type(e) is ev.InstanceEvicted:
            self.instance = "hibernated" if e.reason == "hibernation" else "evicted"
            self.hibernations += e.reason == "hibernation"
        elif type(e) is ev.InstanceReset:
            self.instance = "closed" if e.reason == "labClosed" else "reset"

    def _row(self, socket: int) -> SocketRow:
        row = self.sockets.get(socket)
        if row is None:
            row = self.sockets[socket] = SocketRow(socket)
        return row


def render_sockets_html(r: WebSocketsReducer) -> str:
    color = {"awake": COLORS["ok"], "hibernated": "#6366f1", "reset": COLORS["bad"]}.get(
        r.instance, "#64748b")
    words = {"awake": "AWAKE: the instance is in memory",
             "hibernated": "HIBERNATED: no instance in memory, the sockets stay open",
             }.get(r.instance, r.instance)
    rows = []
    for s in r.sockets.values():
        tags = " ".join(chip(t, "#475569") for t in s.tags) or ""
        state = chip(s.state if s.state == "open" else f"closed {s.close}",
                     COLORS["ok"] if s.state == "open" else "#64748b")
        held = chip(f"{s.held} held", "#9467bd") if s.held else ""
        dropped = chip(f"{s.dropped} dropped", COLORS["bad"]) if s.dropped else ""
        rows.append(
            f'<tr class="dl-socket" data-socket="{s.socket}" data-state="{esc(s.state)}" '
            f'data-held="{s.held}"><td style="padding:2px 8px;font:13px monospace">#{s.socket}'
            f'</td><td>{tags}</td><td>{state}</td><td style="padding:0 8px;font:13px '
            f'sans-serif">{s.received} in · {s.sent} out · {s.auto} auto</td>'
            f'<td>{held}{dropped}</td></tr>')
    table = ("<table style='border-collapse:collapse'><tr style='font:600 12px sans-serif;"
             "color:#334155;text-align:left'><th style='padding:0 8px'>socket</th><th>tags</th>"
             "<th>state</th><th style='padding:0 8px'>messages</th><th>output gate</th></tr>"
             + "".join(rows) + "</table>" if rows else
             f'<div style="color:{COLORS["muted"]};font:italic 13px sans-serif">no socket '
             f'accepted yet</div>')
    return (f'<div class="dl-websockets" data-object="{esc(r.only or "")}" '
            f'data-instance="{esc(r.instance)}" data-sockets="{len(r.sockets)}" '
            f'style="font-family:sans-serif"><div style="font:600 14px sans-serif;margin:2px 0 '
            f'6px">WebSockets of {esc(r.only or "(no object yet)")} '
            f'{chip(words, color, cls="dl-instance")} <span style="font:12px sans-serif;'
            f'color:{COLORS["muted"]}" class="dl-hibernations" '
            f'data-hibernations="{r.hibernations}">hibernated {r.hibernations} time(s) · '
            f'woken {r.wakeups} time(s)</span></div>{table}</div>')


class WebSocketsView(Panel):
    """Sockets, tags, awake or hibernated, and messages held by the output gate."""

    kind = "websockets"

    def __init__(self, lab: Lab, target: Any = None, **kwargs: Any) -> None:
        self.reducer = WebSocketsReducer(label_of(target))
        self.html = w.HTML()
        super().__init__(lab, **kwargs)
        self.children = (self.html, self.errors)
        self.refresh()

    def select(self, target: Any) -> None:
        self.reducer = WebSocketsReducer(label_of(target))
        self.refresh()

    def apply(self, event: RuntimeEvent) -> None:
        self.reducer.apply(event)

    def draw(self) -> None:
        html = render_sockets_html(self.reducer)
        if html != self.html.value:
            self.html.value = html
