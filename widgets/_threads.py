"""Widget messages are handled on the thread that runs the lab, whichever thread received them.

JupyterLab 4.4 and later send widget messages over *kernel subshells* when the kernel has them
(ipykernel 7 does): each comm target gets a subshell, and ipykernel handles a subshell's
messages in a thread of its own, with an event loop of its own, while the main thread runs the
learner's cells and the lab. So a click on "Step" or a BokehJS view saying "I have drawn" runs
its Python handler in that other thread, at the same time as the cell:

- a panel's button handler then drove the lab from a second thread, and ``spawn`` put its task
  on the subshell's event loop, not the lab's;
- a plot's handler changed the Bokeh document (sizes the browser reports, a re-taken
  ``render_bundle``) while the main thread was in the middle of drawing a frame into that same
  document (``Document.hold``): the document's held events were lost and it stopped sending
  patches, so the page kept a third of a timeline's rows (tests/browser/test_same_cell_browser).

A widget therefore remembers its *home* (the event loop and thread it was made on: the one
running the cell that opened the panel, which is the lab's) and :func:`call_at_home` runs a
handler there: directly when already at home, else handed to the home loop with
``call_soon_threadsafe``, where it runs at the cell's next ``await`` (or once the cell ends,
if the cell never yields). Made outside a running loop (a script, a test), a widget has no
home and handlers run where they are called.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

__all__ = ["Home", "call_at_home", "here"]


@dataclass(frozen=True)
class Home:
    """The event loop a widget was made on, and the thread running it."""

    loop: asyncio.AbstractEventLoop
    thread: int


def here() -> Home | None:
    """The running loop and this thread, or None when no loop runs in this thread."""
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        return None
    return Home(loop, threading.get_ident())


def call_at_home(home: Home | None, fn: Callable[..., Any], *args: Any) -> Any:
    """Call ``fn(*args)`` on ``home``'s thread: now if this is it (returning its result),
    else at that loop's next turn (returning None). A closed home loop means the kernel is
    going away: the call is dropped, as the message would have been."""
    if home is None or threading.get_ident() == home.thread:
        return fn(*args)
    if home.loop.is_closed():
        return None
    home.loop.call_soon_threadsafe(fn, *args)
    return None
