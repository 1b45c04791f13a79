"""The event bus: how the runtime tells the world what it is doing, without knowing who listens.

The runtime calls :meth:`EventBus.emit` at every step. Panels, recorders and tests subscribe.
Three rules keep the runtime honest and fast:

- emitting is synchronous and never awaits, so the runtime's timing does not depend on whether a
  panel is open;
- a subscriber that raises does not break the runtime: the error is kept in
  :attr:`EventBus.errors` (bounded) and logged, and the subscriber stays subscribed;
- with no subscriber, the runtime checks :attr:`EventBus.active` (a plain attribute) before it
  even builds an event, so an unobserved lab pays one attribute read per step.

A subscriber that only stores events (the panels' feed appends them to a ``deque``) can
subscribe the container's own ``append``: no Python frame per event. To look at what it stored
now and then, it asks :meth:`EventBus.wake_at` for a call once the stream reaches a given event.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable
from typing import Any

from .events import RuntimeEvent

_new = object.__new__
#: ``seq`` of no wake-up: larger than any stream will reach.
_NEVER = 1 << 62

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
        self._wakes: dict[Callable[[], None], int] = {}  # callback -> seq to call it after
        self._wake_seq = _NEVER  # the smallest of those
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

    def wake_at(self, seq: int, callback: Callable[[], None]) -> None:
        """Call ``callback()`` once, right after event number ``seq`` has reached every
        subscriber (after the next event if ``seq`` has passed). Asking again for the same
        callback moves its wake-up; :meth:`cancel_wake` drops it. A callback that raises is
        kept in :attr:`errors`, like a subscriber."""
        if not callable(callback):
            raise TypeError(f"wake_at() takes a callable, got {type(callback).__name__}")
        self._wakes[callback] = max(int(seq), self._seq + 1)
        self._wake_seq = min(self._wakes.values())

    def cancel_wake(self, callback: Callable[[], None]) -> None:
        """Forget ``callback``'s wake-up, if it has one."""
        if self._wakes.pop(callback, None) is not None:
            self._wake_seq = min(self._wakes.values(), default=_NEVER)

    def _wake(self) -> None:
        due = [cb for cb, seq in self._wakes.items() if seq <= self._seq]
        for callback in due:
            del self._wakes[callback]
        self._wake_seq = min(self._wakes.values(), default=_NEVER)
        for callback in due:
            try:
                callback()
            except Exception as exc:  # like a subscriber: never breaks the runtime
                self.errors.append((callback, exc))  # type: ignore[arg-type]
                log.exception("durable_lab wake-up %r failed", callback)

    def emit(self, event_type: type[RuntimeEvent], *values: Any) -> None:
        """Build an ``event_type`` from the next ``seq``, the time and ``values``; deliver it.

        ``values`` are the event's fields after ``seq`` and ``time``, by position, in the order
        its class declares them, defaulted ones included: ``object``, ``object_id``, then the
        class's own (see :func:`durable_lab.events.build`; keywords cost three times as much).
        Callers check :attr:`active` first, so this is only reached when someone listens.
        """
        seq = self._seq = self._seq + 1
        event = _new(event_type)
        event_type._fill(event, seq, self._now(), values)  # type: ignore[attr-defined]
        for callback in self._callbacks:
            try:
                callback(event)
            except Exception as exc:  # a broken panel must not break the runtime
                self.errors.append((callback, exc))
                log.exception("durable_lab event subscriber %r failed on %s", callback, event)
        if seq >= self._wake_seq:
            self._wake()


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
