"""Live panels for durable_lab: watch queues, gates and commit batches animate in Jupyter.

    import widgets
    widgets.dashboard(lab)                 # everything, focused on the first object seen
    widgets.object_view(lab, stub)         # or one panel at a time, for a lesson

Panels draw only from the lab's event stream (``lab.subscribe``), the snapshot they start
from (``lab.snapshot()``: a panel opened late shows what already waits) and public methods;
they batch updates per frame (at most 25 a second) and keep bounded buffers.
Opening a panel of a kind already open on the same lab closes the old one, and ``close()``
unsubscribes. See docs/panels.md.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ._feed import Feed, FeedStatistics, feed_for, live_feeds, open_panels
from ._layout import SideBySide
from ._plots import LiveBokehModel, ensure_bokehjs
from .attribution_view import WhereTimeWent
from .controls import Controls
from .dashboard import Dashboard, dashboard
from .event_log import EventLog
from .explore_view import ExploreProgressBar, explore_progress
from .fleet import FleetView
from .metrics import Metrics
from .object_view import ObjectView
from .scheduler_panel import SchedulerPanel
from .sql_view import SqlTables
from .storage_view import StorageInspector
from .timeline import Timeline
from .watch import Watch
from .websockets_view import WebSocketsView

if TYPE_CHECKING:
    from durable_lab import Lab

__all__ = [
    "Controls",
    "Dashboard",
    "EventLog",
    "ExploreProgressBar",
    "Feed",
    "FeedStatistics",
    "FleetView",
    "LiveBokehModel",
    "Metrics",
    "ObjectView",
    "SchedulerPanel",
    "SideBySide",
    "SqlTables",
    "StorageInspector",
    "Timeline",
    "Watch",
    "WebSocketsView",
    "WhereTimeWent",
    "controls",
    "dashboard",
    "event_log",
    "explore_progress",
    "feed_for",
    "fleet",
    "live_feeds",
    "metrics",
    "object_view",
    "open_panels",
    "scheduler",
    "side_by_side",
    "sql_tables",
    "storage",
    "timeline",
    "watch",
    "websockets",
    "where_time_went",
]


def object_view(lab: Lab, target: Any = None, *, scale: float = 1.0) -> ObjectView:
    """One object, large (``target``: a stub, an id or a label; None: the first seen)."""
    return ObjectView(lab, target, scale=scale)


def watch(lab: Lab, target: Any = None, *, timeline: bool = True, scheduler: bool = False,
          storage: bool = False, controls: bool = True, speed: float | None = None,
          scale: float = 1.0, x: str = "events") -> Watch:
    """A lesson's panel: the object view and its timeline with the gate lanes; optionally the
    clickable scheduler (``scheduler=True``), the storage inspector, and slow motion
    (``speed=3``: three transitions a second; ``.full_speed()`` ends it). ``x="time"`` draws
    the timeline against lab time instead of event number (a toggle in the panel too)."""
    if timeline:
        ensure_bokehjs()
    return Watch(lab, target, timeline=timeline, scheduler=scheduler, storage=storage,
                 controls=controls, speed=speed, scale=scale, x=x)


def scheduler(lab: Lab, target: Any = None) -> SchedulerPanel:
    """The next legal transitions as buttons: pause the lab, then click to take one."""
    return SchedulerPanel(lab, target)


def timeline(lab: Lab, target: Any = None, *, x: str = "events", scale: float = 1.0
             ) -> Timeline:
    """The gate lanes and one lane per delivery (of ``target`` only, or of every object),
    against event number (``x="events"``) or milliseconds of lab time (``x="time"``)."""
    ensure_bokehjs()
    return Timeline(lab, target, x=x, scale=scale)


def storage(lab: Lab, target: Any = None) -> StorageInspector:
    """The keys of one object: pending, flushing, committed."""
    return StorageInspector(lab, target)


def fleet(lab: Lab) -> FleetView:
    """Every object at once, coloured by queue length."""
    ensure_bokehjs()
    return FleetView(lab)


def metrics(lab: Lab) -> Metrics:
    """Throughput, queue depth, batch sizes, latency vs writes per call."""
    ensure_bokehjs()
    return Metrics(lab)


def controls(lab: Lab, target: Any = None) -> Controls:
    """Play / pause / step / speed and fault buttons."""
    return Controls(lab, target)


def event_log(lab: Lab) -> EventLog:
    """The latest events in words, filterable."""
    return EventLog(lab)


def sql_tables(lab: Lab, target: Any = None) -> SqlTables:
    """The tables and first rows of a SQLite-backed object (``sql=True``), live."""
    return SqlTables(lab, target)


def websockets(lab: Lab, target: Any = None) -> WebSocketsView:
    """An object's WebSockets: tags, awake or hibernated, messages held by the output gate."""
    return WebSocketsView(lab, target)


def where_time_went(lab: Lab, target: Any = None, *, result: Any = None, slowest: int = 20,
                    timeline: Timeline | None = None, scale: float = 1.0) -> WhereTimeWent:
    """Each call's latency as stacked phases (``lab.explain`` for all of them): ``target``'s
    last ``slowest`` calls, or the ``slowest`` slowest calls of a workload ``result``; click a
    bar to explain it and select it on the (open, or given) timeline."""
    ensure_bokehjs()
    return WhereTimeWent(lab, target, result=result, slowest=slowest, timeline=timeline,
                         scale=scale)


def side_by_side(*panels: Any) -> SideBySide:
    """Show panels next to each other in one row: each may shrink to about 60 % of its width
    (its plots follow), and the row wraps only when even that does not fit (widgets/_layout.py)."""
    return SideBySide(list(panels))


def _bar_in_a_kernel() -> None:
    """In a Jupyter kernel, ``explore()``'s default progress display is a bar (explore_view)."""
    import sys

    from durable_lab.explore import set_default_progress

    shell = getattr(sys.modules.get("IPython"), "get_ipython", lambda: None)()
    if shell is not None and getattr(shell, "kernel", None) is not None:
        set_default_progress(explore_progress)


_bar_in_a_kernel()
