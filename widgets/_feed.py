"""The feed: one subscription per lab, buffered, flushed to the panels a few dozen times a second.

The lab calls subscribers synchronously inside every step (``lab.subscribe``), so the feed's
subscriber does as little as can be: it is the ``append`` of a bounded ``deque`` (a C call, no
Python frame per event), and the bus wakes the feed when it should look (``EventBus.wake_at``:
at the first event after a frame, to time the lag, then every ``REDUCE_EVERY`` events). An asyncio
task on the kernel's loop wakes every ``interval`` seconds (40 ms: at most 25 frames a second),
takes the buffered events, hands them to each panel's ``consume(events)`` (the reducers), then
asks each panel that changed to ``render()`` once (Bokeh ``stream``/``patch`` inside
``Document.hold``, widget traits inside ``hold_sync``). So a burst of 10,000 events costs the
runtime 10,000 ``deque.append`` calls and the reducers' folding (below), and the front end at
most 25 messages per panel per second.

At full speed the reducers do not wait for the frame: every ``REDUCE_EVERY`` events the
buffered ones are handed to the panels' ``consume`` at once (rendering still waits for the
frame). Events
that waited a whole frame (40 ms, thousands of them on a busy lab) outlived the garbage
collector's young generation and were promoted to the old ones, whose collections then scanned
the kernel's whole heap (Bokeh models, widgets) over and over: that cost a busy lab more than
the reducers themselves (bench/RESULTS-watching.txt). Handed over after 64, they die young.
The runtime's step that emitted the 64th event may be the object's own code: the panels fold
in an empty context, so nothing they start is taken for the object's. (A Python subscriber
that counted to 64 itself cost the busy lab more than the deque it fed: a frame per event.)

Slow motion (``play_slowly``): instead of handing every buffered event over at the next frame,
the feed releases them one at a time, ``seconds_per_event`` apart. A step of the runtime takes
microseconds and emits a handful of events (the gate closes, the call starts, reads, writes,
the gate opens, the reply is held); played back this way each intermediate state stays on
screen long enough to be seen, e.g. the input gate CLOSED while a call runs. The slow-motion
stepper (``Controls.play_at``) waits for the playback to finish before taking the next step, so
panels are never more than one step behind the runtime.

If the runtime outruns the panels by more than ``max_buffer`` events between two frames, the
oldest are dropped and counted (``statistics().dropped``): the panels' state may then be off
until the next reset or eviction; it never grows without bound.

Panels opened late (docs/panels.md): a panel starts from the lab's snapshot
(``lab.snapshot()``, :meth:`Feed.snapshot`) stamped with the ``seq`` of the last event it
reflects, and sets ``skip_until`` to that seq: the feed hands it only the events after it.
Events already buffered when it opened are in the snapshot, so they are skipped for it (no
double count); the feed was subscribed before the snapshot was taken, so every later event
reaches it (no gap).

Registry: :func:`attach` keeps, per lab (weakly), one feed and, per kind of top-level panel, the
panel last opened. Opening a panel of a kind already open on that lab closes the old one, so
re-running a cell never leaves two subscriptions behind. The last panel closed closes the feed,
which unsubscribes it from the lab.
"""

from __future__ import annotations

import asyncio
import contextvars
import time
import weakref
from collections import deque
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from durable_lab.events import StepTaken

if TYPE_CHECKING:
    from durable_lab import Lab
    from durable_lab.events import RuntimeEvent

__all__ = ["Feed", "FeedStatistics", "Listener", "attach", "feed_for", "open_panels"]

#: Seconds between two frames: 25 frames a second at most.
FRAME_INTERVAL = 0.04
#: At full speed, buffered events are handed to the reducers every this many (see above).
REDUCE_EVERY = 64
#: Drawing takes at most this share of the kernel's time: after a frame that took ``c``
#: seconds the next one waits ``c * 9`` (and at least FRAME_INTERVAL). Frames are paced by
#: the wall clock, so the slower the machine (a loaded laptop in a workshop), the more of
#: each call's time went to drawing; this keeps it to a tenth, with fewer frames instead.
FRAME_SHARE = 0.1


def rest_after(cost: float, interval: float = FRAME_INTERVAL, share: float = FRAME_SHARE
               ) -> float:
    """Seconds to wait after drawing that took ``cost`` seconds, so that drawing takes at most
    ``share`` of the time (and never sooner than ``interval``): frames (FRAME_SHARE), and the
    timeline at saturation (Timeline.rest_after_draw)."""
    return max(interval, cost * (1.0 - share) / share)


class Listener(Protocol):
    #: The ``seq`` of the snapshot a panel opened late started from (0: none): the feed hands
    #: it only the events after it, then sets it back to 0. (Read with a default of 0: a
    #: listener without one, a test's, gets every event.)
    skip_until: int

    def consume(self, events: list[RuntimeEvent]) -> None: ...

    def render(self) -> None: ...


@dataclass(frozen=True, slots=True)
class FeedStatistics:
    events: int  # events received
    dropped: int  # events dropped because the buffer was full
    frames: int  # flushes that carried events or a forced render
    buffered: int  # events waiting for the next frame
    last_lag: float  # seconds from the oldest event of the last frame to its render's end
    max_lag: float
    last_frame_cost: float  # seconds the last flush (reduce + render) took
    listeners: int
    subscribed: bool


class Feed:
    """Buffers a lab's events and flushes them to listeners at most once per ``interval``."""

    def __init__(self, lab: Lab, *, interval: float = FRAME_INTERVAL,
                 max_buffer: int = 200_000, autostart: bool = True) -> None:
        if interval <= 0:
            raise ValueError(f"interval must be > 0 seconds, got {interval!r}")
        self.lab = lab
        self.interval = interval
        self._buffer: deque[RuntimeEvent] = deque(maxlen=max_buffer)
        self._listeners: list[Listener] = []
        self._events = 0  # events handed to the listeners
        self._dropped_at_close = 0
        self._frames = 0
        self._first_at: float | None = None  # when the oldest event not yet drawn came
        self._reduced = 0  # events handed to the reducers since the last frame
        self._reducing = False
        self._last_lag = 0.0
        self._max_lag = 0.0
        self._last_cost = 0.0
        self._task: asyncio.Task[None] | None = None
        self._closed = False
        self._snapshot: Any = None  # the last lab.snapshot() taken (see snapshot())
        self._empty_context = contextvars.Context()  # where the reducers fold (_buffer_full)
        #: True while the frame task flushes (panels may then skip a redraw).
        self.in_frame_loop = False
        #: Slow motion: seconds between two events handed to the panels (None: all at once).
        self.seconds_per_event: float | None = None
        self._credit = 0.0  # events owed to the panels under slow motion
        self._last_tick = time.perf_counter()
        self.errors: deque[BaseException] = deque(maxlen=20)
        # The deque's own append: no Python call per event (a full deque drops its oldest).
        self._seq_at_start = lab.bus.seq
        self._subscription = lab.subscribe(self._buffer.append)
        self._arm()
        if autostart:
            self.start()

    # -- the subscriber: the deque's append, called by the runtime inside its step ----------

    def _arm(self) -> None:
        """Ask the bus for a wake-up at the next event (the first one the panels have not
        drawn: its arrival starts the lag clock)."""
        if not self._closed:
            self.lab.bus.wake_at(self.lab.bus.seq + 1, self._first_event)

    def _first_event(self) -> None:
        self._first_at = time.perf_counter()
        self.lab.bus.wake_at(self.lab.bus.seq + REDUCE_EVERY - 1, self._buffer_full)

    def _buffer_full(self) -> None:
        """``REDUCE_EVERY`` events buffered: hand them to the reducers now (at full speed)."""
        if self._closed:
            return
        self.lab.bus.wake_at(self.lab.bus.seq + REDUCE_EVERY, self._buffer_full)
        if self.seconds_per_event is None and not self._reducing:
            # In an empty context: the step that emitted this event may be the object's own
            # code, and a task a panel starts while folding (the storage inspector reading
            # values) would otherwise be adopted by that object. One context, made once: a
            # new one per batch was an object per 64 events for the collector (nothing sets
            # a context variable while folding, so it stays empty).
            self._empty_context.run(self._reduce)

    def _reduce(self, limit: int | None = None) -> int:
        """Hand the buffered events (at most ``limit``) to every listener's ``consume``."""
        buffer = self._buffer
        if self._reducing or not buffer:  # (a listener that made the lab emit: next time)
            return 0
        if limit is not None and limit < len(buffer):
            events = [buffer.popleft() for _ in range(limit)]
        else:
            events = list(buffer)
            buffer.clear()
        self._reducing = True
        focused: dict[str, list[Any]] = {}  # object -> its events and the lab's, this batch
        try:
            for listener in list(self._listeners):
                batch = events
                only = getattr(listener, "folds_only", None)
                if only is not None:
                    batch = focused.get(only)  # type: ignore[assignment]
                    if batch is None:
                        batch = focused[only] = _events_of(events, only)
                    if not batch:
                        continue
                skip = getattr(listener, "skip_until", 0)
                if skip:
                    # Opened at event ``skip``: its snapshot holds the events up to there.
                    if batch[-1].seq <= skip:
                        continue
                    if batch[0].seq <= skip:
                        batch = [e for e in batch if e.seq > skip]
                    listener.skip_until = 0  # (every later batch is newer)
                try:
                    listener.consume(batch)
                except Exception as exc:
                    self._report(listener, exc)
        finally:
            self._reducing = False
        self._events += len(events)
        self._reduced += len(events)
        return len(events)

    # -- listeners ------------------------------------------------------------------------

    def snapshot(self) -> Any:
        """The lab's snapshot now (``lab.snapshot()``), taken once per event seq: the panels
        a dashboard opens together start from the same one. None once the lab is closed."""
        lab = self.lab
        if lab.closed:
            return None
        seq = lab.bus.seq
        snap = self._snapshot
        if snap is None or snap.seq != seq:
            snap = self._snapshot = lab.snapshot()
        return snap

    def add(self, listener: Listener) -> None:
        if listener not in self._listeners:
            self._listeners.append(listener)

    def remove(self, listener: Listener) -> None:
        if listener in self._listeners:
            self._listeners.remove(listener)

    @property
    def listeners(self) -> list[Listener]:
        return list(self._listeners)

    # -- frames ---------------------------------------------------------------------------

    def start(self) -> bool:
        """Start the flush task on the running loop; False if no loop runs (flush by hand)."""
        if self._task is not None and not self._task.done():
            return True
        if self._closed:
            return False
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            try:  # ipykernel: a synchronous cell runs with the kernel's loop set but idle
                loop = asyncio.get_event_loop_policy().get_event_loop()
            except RuntimeError:
                return False
            if loop.is_closed():
                return False
        self._task = loop.create_task(self._run(), name="durable_lab-widgets-feed")
        return True

    def stop(self) -> None:
        """Stop the frame task: events still reach the reducers, drawing waits for a
        ``flush()`` by hand (benchmarks, tests); ``start()`` resumes."""
        if self._task is not None and not self._task.done():
            self._task.cancel()
        self._task = None

    async def _run(self) -> None:
        rest = self.interval
        while not self._closed:
            await asyncio.sleep(rest)
            started = time.perf_counter()
            try:
                # Frames of the running loop let panels skip redraws (Panel.min_interval); an
                # explicit flush() (tests, a notebook) draws everything at once.
                self.in_frame_loop = True
                try:
                    self.flush(force=True, limit=self._paced_count())
                finally:
                    self.in_frame_loop = False
            except Exception as exc:  # shown by the panels' status line, never swallowed
                self.errors.append(exc)
            # (Slow motion keeps its pace: its frames hand over a few events each.)
            rest = (self.interval if self.seconds_per_event is not None else
                    rest_after(time.perf_counter() - started, self.interval))

    def play_slowly(self, seconds_per_event: float | None) -> None:
        """Slow motion: hand events over one at a time, this many seconds apart (None: stop)."""
        if seconds_per_event is not None and not seconds_per_event > 0:
            raise ValueError(f"seconds_per_event must be > 0 (or None), got {seconds_per_event!r}")
        self.seconds_per_event = seconds_per_event
        self._credit = 0.0
        self._last_tick = time.perf_counter()

    def _paced_count(self) -> int | None:
        """How many events the panels may see this frame under slow motion (None: all)."""
        now = time.perf_counter()
        elapsed, self._last_tick = now - self._last_tick, now
        per_event = self.seconds_per_event
        if per_event is None:
            return None
        if not self._buffer:
            self._credit = 0.0  # nothing waited: don't bank time for a burst later
            return 0
        self._credit = min(self._credit + elapsed / per_event, 1.0 + self.interval / per_event)
        count = int(self._credit)
        self._credit -= count
        return count

    async def drained(self) -> None:
        """Wait until the panels have been handed every buffered event (slow motion)."""
        # Polled at the frame loop's pace on purpose: the frame loop is what empties the
        # buffer, and the runtime's subscriber (a bare deque.append) has no room for a signal.
        while self._buffer and not self._closed:  # noqa: ASYNC110
            await asyncio.sleep(self.interval / 2)

    def flush(self, *, force: bool = False, limit: int | None = None) -> int:
        """Hand the buffered events (at most ``limit``: slow motion) to every listener, then
        let each render. Returns how many."""
        buffer = self._buffer
        if not buffer and not self._reduced and not force:
            self._render_all()  # a panel the frame loop left dirty (min_interval) draws now
            return 0
        t0 = time.perf_counter()
        if (not buffer and not self._reduced) or limit == 0:
            self._render_all()  # an idle frame: panels that sample over time may draw
            return 0
        self._reduce(limit)
        first_at = self._first_at
        if buffer:
            self._first_at = time.perf_counter()  # the rest waits from now
        else:
            self._first_at = None
            self._arm()  # the lag clock starts again at the next event
        handed, self._reduced = self._reduced, 0
        self._render_all()
        end = time.perf_counter()
        self._frames += 1
        self._last_cost = end - t0
        if first_at is not None and limit is None:
            self._last_lag = end - first_at
            self._max_lag = max(self._max_lag, self._last_lag)
        return handed

    def _render_all(self) -> None:
        for listener in list(self._listeners):
            try:
                listener.render()
            except Exception as exc:
                self._report(listener, exc)

    def _report(self, listener: Any, exc: BaseException) -> None:
        self.errors.append(exc)
        show = getattr(listener, "show_error", None)
        if show is not None:
            show(exc)

    @property
    def dropped(self) -> int:
        """Events the full buffer let go (slow motion far behind): all the lab emitted since
        the feed subscribed, less those handed to the panels and those still waiting."""
        if self._closed:
            return self._dropped_at_close
        received = self.lab.bus.seq - self._seq_at_start
        return max(0, received - self._events - len(self._buffer))

    def reset_lag(self) -> None:
        self._max_lag = 0.0

    def statistics(self) -> FeedStatistics:
        return FeedStatistics(
            events=self._events, dropped=self.dropped, frames=self._frames,
            buffered=len(self._buffer), last_lag=self._last_lag, max_lag=self._max_lag,
            last_frame_cost=self._last_cost, listeners=len(self._listeners),
            subscribed=not self._subscription.closed,
        )

    # -- lifecycle ------------------------------------------------------------------------

    @property
    def closed(self) -> bool:
        return self._closed

    def close(self) -> None:
        """Unsubscribe from the lab and stop the flush task. Idempotent."""
        if self._closed:
            return
        self._dropped_at_close = self.dropped
        self._closed = True
        self._subscription.close()
        self.lab.bus.cancel_wake(self._first_event)
        self.lab.bus.cancel_wake(self._buffer_full)
        self._buffer.clear()
        self._listeners.clear()
        if self._task is not None and not self._task.done():
            self._task.cancel()
        self._task = None

    def __repr__(self) -> str:
        s = self.statistics()
        state = "closed" if self._closed else f"{s.listeners} listeners"
        return f"<Feed {state}, {s.events} events, {s.frames} frames>"


# -- registry: one feed per lab, one top-level panel per kind per lab ---------------------------

_feeds: weakref.WeakKeyDictionary[Any, Feed] = weakref.WeakKeyDictionary()
_open: weakref.WeakKeyDictionary[Any, dict[str, Any]] = weakref.WeakKeyDictionary()


def _events_of(events: list[Any], label: str) -> list[Any]:
    """``label``'s events in ``events``, and the lab's own: those of no object (pauses,
    resumes) and every step the scheduler took (a focused object view counts them all)."""
    return [e for e in events
            if e.object == label or not e.object or type(e) is StepTaken]


def feed_for(lab: Lab, **options: Any) -> Feed:
    """The lab's feed, made (and subscribed) on first use."""
    feed = _feeds.get(lab)
    if feed is None or feed.closed:
        feed = _feeds[lab] = Feed(lab, **options)
        _draw_at_the_end_of_each_cell()
    return feed


_cell_hook_installed = False


def _flush_live_feeds(*_: Any) -> None:
    """Draw every live panel as the cell leaves the lab. At full speed a panel redraws at most
    every ``Panel.min_interval``, so a state that lasts from the end of one cell to the start
    of the next (the object HIBERNATED between two cells of lesson 08, run with Run All) was
    folded but never drawn: the page must show what the lab is at every cell boundary, since
    that is where a lesson's text describes it. Slow motion keeps its own pace."""
    for feed in list(_feeds.values()):
        if feed.closed or feed.seconds_per_event is not None:
            continue
        try:
            feed.flush()
        except Exception as exc:  # shown by the panels' status line, never swallowed
            feed.errors.append(exc)


def _draw_at_the_end_of_each_cell() -> None:
    """Register :func:`_flush_live_feeds` with IPython's ``post_run_cell`` event, once."""
    global _cell_hook_installed
    if _cell_hook_installed:
        return
    try:
        from IPython import get_ipython
    except ImportError:
        return
    shell = get_ipython()
    if shell is None:
        return
    shell.events.register("post_run_cell", _flush_live_feeds)
    _cell_hook_installed = True


def attach(lab: Lab, kind: str, panel: Any) -> None:
    """Register ``panel`` as the open panel of ``kind`` on ``lab``, closing the previous one."""
    panels = _open.setdefault(lab, {})
    previous = panels.get(kind)
    if previous is not None and previous is not panel:
        previous.close()
    panels[kind] = panel


def detach(lab: Lab, kind: str, panel: Any) -> None:
    panels = _open.get(lab)
    if panels is not None and panels.get(kind) is panel:
        del panels[kind]


def release(lab: Lab, listener: Listener) -> None:
    """Remove ``listener`` from the lab's feed; close the feed when nobody listens anymore."""
    feed = _feeds.get(lab)
    if feed is None:
        return
    feed.remove(listener)
    if not feed.listeners:
        feed.close()
        _feeds.pop(lab, None)


def _current_cell() -> tuple[str, int] | None:
    """(cell id, execution count) of the notebook cell running now, if the front end said
    (JupyterLab and Notebook 7 send ``cellId`` with every execute request); None elsewhere."""
    try:
        from IPython import get_ipython
    except ImportError:
        return None
    shell = get_ipython()
    kernel = getattr(shell, "kernel", None)
    if kernel is None:
        return None
    try:
        parent = kernel.get_parent()
    except Exception:
        return None
    cell = (parent or {}).get("metadata", {}).get("cellId")
    return (cell, shell.execution_count) if cell else None


#: cell id -> (execution count, panels made by that execution)
_by_cell: dict[str, tuple[int, list[weakref.ref[Any]]]] = {}


def claim_for_cell(panel: Any, cell: tuple[str, int] | None = None) -> None:
    """Remember that the running cell made ``panel``; when that cell runs again, the panels of
    its previous run are closed, whatever lab they watched. So re-running a lesson from the top
    (which makes new labs) leaves no old subscription behind."""
    cell = cell if cell is not None else _current_cell()
    if cell is None:
        return
    cell_id, count = cell
    previous = _by_cell.get(cell_id)
    if previous is not None and previous[0] != count:
        for ref in previous[1]:
            old = ref()
            if old is not None and old is not panel:
                old.close()
        previous = None
    if previous is None:
        previous = _by_cell[cell_id] = (count, [])
    previous[1].append(weakref.ref(panel))


def live_feeds() -> int:
    """How many labs have a feed subscribed right now (one per lab with an open panel)."""
    return sum(1 for feed in list(_feeds.values()) if not feed.closed)


def open_panels(lab: Lab) -> dict[str, Any]:
    """The top-level panels open on ``lab``, by kind."""
    return dict(_open.get(lab, {}))
