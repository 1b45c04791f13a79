"""The event bus: how the runtime tells the world what it is doing, without knowing who listens.

The runtime calls :meth:`EventBus.emit` at every step. Panels, recorders and tests subscribe.
Three rules keep the runtime honest and fast:

- emitting is synchronous and never awaits, so the runtime's timing does not depend on whether a
  panel is open;
- a subscriber that raises does not break the runtime: the error is kept in
  :attr:`EventBus.errors` (bounded) and logged, and the subscriber stays subscribed;
- with no subscriber, the runtime checks :attr:`EventBus.active` (a plain attribute) before it
  even builds an event, so an unobserved lab pays one attribute read per step.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable
from typing import Any

from .events import RuntimeEvent

_new = object.__new__

__all__ = ["EventBus", "Recorder", "Subscription"]

log = logging.getLogger("durable_lab")

Subscriber = Callable[[RuntimeEvent], None]


class Subscription:
    """A handle on one subscriber. ``close()`` (or leaving a ``with`` block) unsubscribes."""

    __slots__ = ("_bus", "callback")

    def __init__(self, bus: EventBus, callback: Subscriber) -> None:
        self._bus = bus
        self.callback = callback

    @property
    def closed(self) -> bool:
        return self not in self._bus._subscriptions

    def close(self) -> None:
        self._bus._unsubscribe(self)

    def __enter__(self) -> Subscription:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class EventBus:
    """Fans events out to subscribers, stamping each with ``seq`` and ``time``."""

    def __init__(self, now: Callable[[], float]) -> None:
        self._now = now
        self._subscriptions: list[Subscription] = []
        self._callbacks: tuple[Subscriber, ...] = ()
        self._seq = 0
        #: True while at least one subscriber listens; the runtime checks it before building events.
        self.active = False
        #: The last subscriber errors, as (subscriber, exception) pairs.
        self.errors: deque[tuple[Subscriber, BaseException]] = deque(maxlen=100)

    def subscribe(self, callback: Subscriber) -> Subscription:
        """Call ``callback(event)`` for every event from now on."""
        if not callable(callback):
            raise TypeError(f"subscribe() takes a callable, got {type(callback).__name__}")
        sub = Subscription(self, callback)
        self._subscriptions.append(sub)
        self._refresh()
        return sub

    def _unsubscribe(self, sub: Subscription) -> None:
        if sub in self._subscriptions:
            self._subscriptions.remove(sub)
            self._refresh()

    def _refresh(self) -> None:
        self._callbacks = tuple(s.callback for s in self._subscriptions)
        self.active = bool(self._callbacks)

    @property
    def subscriber_count(self) -> int:
        return len(self._callbacks)

    @property
    def seq(self) -> int:
        """The ``seq`` of the last event emitted (0 before any): how many were built so far."""
        return self._seq

    def emit(self, event_type: type[RuntimeEvent], *values: Any) -> None:
        """Build an ``event_type`` from the next ``seq``, the time and ``values``; deliver it.

        ``values`` are the event's fields after ``seq`` and ``time``, by position, in the order
        its class declares them, defaulted ones included: ``object``, ``object_id``, then the
        class's own (see :func:`durable_lab.events.build`; keywords cost three times as much).
        Callers check :attr:`active` first, so this is only reached when someone listens.
        """
        self._seq += 1
        event = _new(event_type)
        event_type._fill(event, self._seq, self._now(), values)  # type: ignore[attr-defined]
        for callback in self._callbacks:
            try:
                callback(event)
            except Exception as exc:  # a broken panel must not break the runtime
                self.errors.append((callback, exc))
                log.exception("durable_lab event subscriber %r failed on %s", callback, event)


class Recorder:
    """A subscriber that keeps every event in a list: for tests, lessons and quick looks.

    Use as ``rec = lab.record()``; ``rec.events``, ``rec.of(FlushStarted)``, ``rec.kinds()``;
    ``rec.close()`` stops recording.
    """

    def __init__(self, bus: EventBus, limit: int | None = None) -> None:
        self.events: deque[RuntimeEvent] | list[RuntimeEvent] = (
            deque(maxlen=limit) if limit else []
        )
        self._subscription = bus.subscribe(self.events.append)

    def of(self, *types: type[RuntimeEvent]) -> list[RuntimeEvent]:
        """The recorded events of the given types, in order."""
        return [e for e in self.events if isinstance(e, types)]

    def kinds(self) -> list[str]:
        """The type names of the recorded events, in order."""
        return [e.kind for e in self.events]

    def clear(self) -> None:
        self.events.clear()

    def close(self) -> None:
        self._subscription.close()

    def __enter__(self) -> Recorder:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
