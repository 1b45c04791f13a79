"""Colours, labels and small HTML helpers shared by every panel (one source of truth)."""

from __future__ import annotations

import html

__all__ = ["COLORS", "KEY_COLORS", "SEGMENT_COLORS", "chip", "esc", "pill"]

#: Timeline segment kinds -> colour.
SEGMENT_COLORS = {
    "queued": "#c7c7c7",  # blocked at the input gate
    "running": "#1f77b4",  # a turn runs
    "awaiting storage": "#ff7f0e",  # awaiting a read, gate held
    "awaiting io": "#ffdd57",  # awaiting io, gate open for others
    "reply held": "#9467bd",  # done, reply held by the output gate
}

#: Storage key states -> colour.
KEY_COLORS = {
    "pending": "#ff7f0e",
    "flushing": "#1f77b4",
    "committed": "#2ca02c",
    "deleted": "#7f7f7f",
    "lost": "#d62728",
    "failed": "#d62728",
}

COLORS = {
    "open": "#2ca02c",
    "closed": "#d62728",
    "ok": "#2ca02c",
    "bad": "#d62728",
    "muted": "#6b7280",
    "box": "#f8fafc",
    "border": "#cbd5e1",
}


def esc(text: object) -> str:
    return html.escape(str(text), quote=True)


def chip(text: str, color: str, *, cls: str = "dl-chip", title: str = "",
         fg: str = "#fff") -> str:
    return (f'<span class="{cls}" title="{esc(title)}" style="display:inline-block;'
            f"margin:2px;padding:2px 7px;border-radius:10px;background:{color};color:{fg};"
            f"font:12px/1.5 monospace;white-space:nowrap;max-width:100%;overflow:hidden;"
            f'text-overflow:ellipsis;vertical-align:top">{esc(text)}</span>')


def pill(text: str, color: str) -> str:
    return chip(text, color, cls="dl-pill")
