"""Quiet ends for the comms the panels close: late messages to them are expected, not errors.

Re-running a cell that opens a panel closes the previous panel of that kind (``_feed.attach``),
and with it the comm of every widget inside. Messages from those widgets' views are still on
their way to the kernel at that moment, and they reach it after the comms are gone (behind the
running cell, or, where JupyterLab sends widget messages over a kernel subshell, a moment later
on its thread). Two kinds arrive, measured in JupyterLab (tests/browser): jupyter_bokeh 4.1
sends back every patch it applied (the "echo" ``LiveBokehModel`` ignores) for the last frames
the old panel drew, and BokehJS reports the new sizes of every plot when the cell's old output
is cleared (``inner_width``, ``outer_height``, ...). The kernel finds no comm for them and the
``comm`` package logs ``No such comm: <id>`` for each: dozens of lines in JupyterLab's log
console per re-run, though nothing is wrong.

The kernel cannot wait for those messages (they come after the cell closed the comms), and the
browser side is jupyter_bokeh's and JupyterLab's. So the panels remember the ids of the comms
they closed (a bounded list) and a filter on the ``Comm`` logger drops the "No such comm"
warning for those ids only. A message to any other unknown comm is still logged.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from typing import Any

__all__ = ["closed_comm_ids", "forget_comm_of"]

#: How many closed comm ids are remembered (a dashboard has about 150 widgets).
MAX_REMEMBERED = 5000

_closed: OrderedDict[str, None] = OrderedDict()
_installed = False


class _LateMessageFilter(logging.Filter):
    """Drops ``No such comm: <id>`` when ``<id>`` is a comm the panels closed themselves."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.msg == "No such comm: %s" and isinstance(record.args, tuple) and record.args:
            return record.args[0] not in _closed
        return True


def _install() -> None:
    global _installed
    if not _installed:
        # comm.base_comm.CommManager.get_comm logs on the "Comm" logger (ipykernel 6 and 7).
        logging.getLogger("Comm").addFilter(_LateMessageFilter())
        _installed = True


def forget_comm_of(widget: Any) -> None:
    """Call just before closing ``widget``: late messages to its comm will be dropped quietly."""
    comm = getattr(widget, "comm", None)
    comm_id = getattr(comm, "comm_id", None)
    if comm_id is None:
        return
    _install()
    _closed[comm_id] = None
    while len(_closed) > MAX_REMEMBERED:
        _closed.popitem(last=False)


def closed_comm_ids() -> list[str]:
    """The comm ids remembered as closed by the panels, oldest first."""
    return list(_closed)
