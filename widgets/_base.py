"""The base of every panel: a ``VBox`` that listens to the lab's feed and renders per frame."""

from __future__ import annotations

import asyncio
import time
import traceback
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import ipywidgets as w

from . import _comms, _feed, _lifecycle, _threads

if TYPE_CHECKING:
    from durable_lab import Lab
    from durable_lab.events import RuntimeEvent

__all__ = ["Panel"]


class Panel(w.VBox):
    """A reducer plus a view. Subclasses implement ``apply(event)`` and ``draw()``.

    A panel opened while the lab is busy starts from the truth: the lab's snapshot
    (``lab.snapshot()``, taken when it opens, kept as ``self.start``) is handed to ``start_from``,
    and the feed then hands it only the events after the snapshot's ``seq``
    (``skip_until``): no gap, no double count (docs/panels.md, "Panels opened late").

    ``consume`` folds a frame's events into the reducer and marks the panel dirty; ``render``
    draws at most once per frame. Callback errors are shown in ``self.errors`` (an ``Output``
    at the bottom of the panel), never swallowed. ``close()`` unsubscribes.
    """

    kind = "panel"
    title = ""

    def __init__(self, lab: Lab, *, feed: _feed.Feed | None = None, register: bool = True,
                 **kwargs: Any) -> None:
        self.lab = lab
        #: Where widget callbacks run: the loop and thread of the cell that opened the panel.
        self._home = _threads.here()
        self._dirty = True
        self._tasks: set[asyncio.Future[Any]] = set()
        self.errors = w.Output(layout=w.Layout(max_height="160px", overflow="auto"))
        self.errors.add_class("dl-errors")
        self.error_count = 0
        self._last_draw = 0.0
        self._draw_cost = 0.0  # seconds the last paced draw took (see rest_after_draw)
        self._last_error = ("", 0)  # text of the last error shown, times in a row
        super().__init__(**kwargs)
        self.add_class("dl-panel")
        self.add_class(f"dl-{self.kind}")
        self._feed = feed if feed is not None else _feed.feed_for(lab)
        self._registered = register
        self._closed = False
        #: The snapshot this panel started from (None: the lab was closed, or is not a Lab).
        self.start = self._feed.snapshot() if hasattr(self._feed, "snapshot") else None
        #: The feed hands this panel only the events after this seq (see _feed._reduce).
        self.skip_until = self.start.seq if self.start is not None else 0
        if self.start is not None:
            self.start_from(self.start)
        self._feed.add(self)
        # Once per kernel: the page learns to show "kernel restarted" on a panel (_lifecycle).
        _lifecycle.ensure_frontend()
        #: Re-opening a panel with the same key on the same lab replaces it (one per cell).
        self.registry_key = self._registry_key()
        if register:
            _feed.attach(lab, self.registry_key, self)
            _feed.claim_for_cell(self)

    def _registry_key(self) -> str:
        return self.kind

    #: The one object whose events this panel folds, or None for every object's. The feed
    #: hands a focused panel only that object's events and the lab's own (scheduler) events:
    #: it filters a batch once for all the panels focused on the same object, where each
    #: panel's own loop would skip the other objects' events again (see _feed._reduce).
    folds_only: str | None = None

    # -- the feed's side ------------------------------------------------------------------

    def start_from(self, snapshot: Any) -> None:
        """Start the panel's state from ``snapshot`` (a ``durable_lab.LabSnapshot``): what
        happened before it opened. Panels with a reducer of their own override this."""

    def apply(self, event: RuntimeEvent) -> None:
        raise NotImplementedError

    def fold(self, events: list[RuntimeEvent]) -> None:
        """Fold a batch into the panel's state: ``apply`` each event, unless the panel hands
        the whole batch to its reducer's ``consume`` (which skips what it ignores before any
        call: the cheaper path, see widgets/_reducers.py)."""
        apply = self.apply
        for event in events:
            apply(event)

    def consume(self, events: list[RuntimeEvent]) -> None:
        self.fold(events)
        if events:
            self._dirty = True

    #: At most one redraw per this many seconds while the lab runs at full speed (the feed's
    #: frames come every 40 ms). A browser that re-renders every panel 25 times a second on a
    #: busy machine falls seconds behind the kernel: the page then shows old states and a click
    #: seems ignored (seen: Pause took more than 20 s to show). Plots, the storage inspector and
    #: the event log redraw less often still. Slow motion (the feed pacing events) and
    #: refresh() draw at once.
    min_interval = 0.1

    def rest_after_draw(self) -> float:
        """Seconds without a draw after a draw at full speed: ``min_interval``. A panel may
        rest longer when its draws are costly and drawing more often shows nothing more
        (the timeline at saturation); ``self._draw_cost`` is the last paced draw's cost."""
        return self.min_interval

    def render(self) -> None:
        if not self._dirty or self._closed:
            return
        feed = self._feed
        paced = bool(self.min_interval and feed.in_frame_loop and feed.seconds_per_event is None)
        if paced:
            now = time.perf_counter()
            if now - self._last_draw < self.rest_after_draw():
                return  # still dirty: drawn at a later frame
            self._last_draw = now
        self._dirty = False
        started = time.perf_counter()
        self.draw()
        if paced:
            self._draw_cost = time.perf_counter() - started

    def draw(self) -> None:
        raise NotImplementedError

    def refresh(self) -> None:
        """Render now, whether or not events came (after a control changed the view)."""
        self._dirty = True
        self._last_draw = 0.0
        self.render()

    # -- errors ---------------------------------------------------------------------------

    #: Errors kept in the panel's error output (the oldest go first).
    max_errors_shown = 20

    def show_error(self, exc: BaseException) -> None:
        """Show ``exc`` in the panel. The same error again (e.g. every frame) updates a count
        instead of adding a copy; at most ``max_errors_shown`` are kept, so the output (and the
        kernel's memory) stays bounded however long a failure repeats."""
        self.error_count += 1
        text = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
        outputs = self.errors.outputs
        last, times = self._last_error
        if text == last and outputs:
            times += 1
            self._last_error = (text, times)
            repeated = {**outputs[-1], "text": f"{text}(the same error {times} times in a row)\n"}
            self.errors.outputs = (*outputs[:-1], repeated)
            return
        self._last_error = (text, 1)
        if len(outputs) >= self.max_errors_shown:
            self.errors.outputs = outputs[len(outputs) - self.max_errors_shown + 1:]
        self.errors.append_stderr(text)

    def guarded(self, fn: Callable[..., Any]) -> Callable[..., Any]:
        """Wrap a widget callback so that it runs on the lab's thread (JupyterLab may deliver
        the click on another one: widgets/_threads.py) and its errors show in this panel."""

        def run(args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
            try:
                return fn(*args, **kwargs)
            except Exception as exc:
                self.show_error(exc)
                return None

        def handler(*args: Any, **kwargs: Any) -> Any:
            return _threads.call_at_home(self._home, run, args, kwargs)

        return handler

    def spawn(self, coro: Awaitable[Any]) -> asyncio.Future[Any]:
        """Run ``coro`` on the loop; its error (if any) shows in this panel."""
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)

        def done(t: asyncio.Future[Any]) -> None:
            self._tasks.discard(t)
            if not t.cancelled():
                error = t.exception()
                if error is not None:
                    self.show_error(error)

        task.add_done_callback(done)
        return task

    # -- lifecycle ------------------------------------------------------------------------

    @property
    def closed(self) -> bool:
        return self._closed

    def close(self) -> None:
        # A panel whose __init__ refused its arguments has no state yet (Widget.__del__ still
        # calls close): nothing to undo.
        if getattr(self, "_closed", True):
            return
        self._closed = True
        for task in list(self._tasks):
            task.cancel()
        _feed.release(self.lab, self)
        if self._registered:
            _feed.detach(self.lab, self.registry_key, self)
        owned = self._owned_widgets()
        for widget in (*owned, self):
            # Their views may still send (echoes, sizes) while this cell runs: see _comms.
            _comms.forget_comm_of(widget)
        for child in owned:
            child.close()
        own_parts = _parts_of(self)
        super().close()
        for part in own_parts:
            part.close()

    def _owned_widgets(self) -> list[w.Widget]:
        """The widgets this panel made, its sub-panels (which close their own) and the
        ``layout`` and ``style`` widgets of the others: ipywidgets makes one of each per
        widget and ``Widget.close()`` leaves them open, registered with the kernel: a
        dashboard closed left 97 of them behind (bench_watching opens one per round)."""
        out: list[w.Widget] = []
        stack = list(self.children)
        while stack:
            child = stack.pop()
            out.append(child)
            if isinstance(child, Panel):
                continue
            out.extend(_parts_of(child))
            stack.extend(getattr(child, "children", ()))
        return out

    def _repr_mimebundle_(self, **kwargs: Any) -> Any:
        # Displayed now (a cell's last expression, or display()): the plots' views will be
        # drawn from their render_bundle snapshot, so re-take it first when patches went out
        # since (the panel opened and a workload ran in the same cell). See LiveBokehModel.
        stack = list(self.children)
        while stack:
            child = stack.pop()
            refresh = getattr(child, "refresh_bundle", None)
            if refresh is not None:
                refresh()
            stack.extend(getattr(child, "children", ()))
        return super()._repr_mimebundle_(**kwargs)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {'closed' if self._closed else 'open'}>"


def _parts_of(widget: w.Widget) -> list[w.Widget]:
    """The ``layout`` and ``style`` widgets of ``widget`` (those it has)."""
    parts = (getattr(widget, "layout", None), getattr(widget, "style", None))
    return [p for p in parts if isinstance(p, w.Widget)]
