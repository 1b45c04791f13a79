"""The lab's clock: the one place the runtime reads or waits for time.

Everything time-based in the lab goes through ``lab.clock``: event timestamps, alarms and their
retry backoff, idle eviction, injected commit latency, and ``durable_lab.sleep()`` inside
objects. Times are epoch seconds (Cloudflare's ``Date.now()`` is epoch milliseconds; alarm APIs
take milliseconds and convert).

Three clocks:

- :class:`RealClock` (``Lab(clock="real")``, the default): wall time. ``rate=0.1`` makes lab time
  run at a tenth of real speed, so a person can watch a fast scenario unfold; ``rate=10`` the
  opposite.
- :class:`ManualClock` (``Lab(clock="manual")``): time stands still until you move it with
  ``lab.clock.advance(seconds)``. Timers due by then fire in time order. Starts at the real time
  of its creation unless given ``start=``.
- :class:`AutoClock` (``Lab(clock="auto")``): a manual clock that jumps to the next timer
  whenever nothing else can run, so a notebook that simulates an hour of alarms and retries
  finishes in a moment, with the same order of events as in real time.

Deliberate simplification: ``asyncio.sleep()`` inside object code still sleeps in real time (the
runtime cannot re-time a future asyncio made); use ``durable_lab.sleep()`` for timers that should
follow the lab's clock. On Cloudflare, write ``asyncio.sleep`` (the lab's ``sleep`` is the one
name a class has to change when it moves).
"""

from __future__ import annotations

import asyncio
import contextvars
import heapq
import itertools
import math
import time
from collections.abc import Callable
from typing import Any, Protocol

__all__ = ["AutoClock", "Clock", "ClockTimer", "ManualClock", "RealClock", "Sleep", "make_clock",
           "wall_monotonic"]


class ClockTimer(Protocol):
    def cancel(self) -> None: ...


class Clock(Protocol):
    """What the runtime needs from a clock."""

    def now(self) -> float:
        """Lab time, in seconds since the epoch."""
        ...

    def call_at(self, when: float, callback: Callable[[], Any]) -> ClockTimer:
        """Call ``callback()`` once lab time reaches ``when``."""
        ...

    def sleep(self, seconds: float) -> asyncio.Future[None]:
        """A future that resolves once ``seconds`` of lab time have passed."""
        ...


class Sleep(asyncio.Future):
    """A sleep on the lab clock (what ``durable_lab.sleep`` returns inside an object).

    ``on_wake`` (set by the turn driver while a delivery awaits the sleep) runs synchronously
    when the timer fires, before the future's done-callbacks, which asyncio only runs at the
    loop's next pass. That is how the delivery's continuation is queued at its input gate at
    the moment ``lab.clock.advance()`` fires the timer, so ``lab.choices()`` in the same cell
    already lists it (and agrees with ``lab.step()``).
    """

    on_wake: Callable[[], None] | None = None


def _sleep_future() -> Sleep:
    return Sleep(loop=asyncio.get_running_loop())


def _resolve(fut: asyncio.Future[None]) -> None:
    if not fut.done():
        fut.set_result(None)
        wake = getattr(fut, "on_wake", None)
        if wake is not None:
            fut.on_wake = None  # type: ignore[attr-defined]
            wake()


class RealClock:
    """Wall time, optionally running at ``rate`` times real speed."""

    def __init__(self, rate: float = 1.0) -> None:
        if not isinstance(rate, (int, float)) or not math.isfinite(rate) or rate <= 0:
            raise ValueError(f"a clock rate must be a number > 0 (1.0 = real time), got {rate!r}")
        self.rate = float(rate)
        self._origin_real = time.time()
        self._origin_mono = time.monotonic()
        if self.rate == 1.0:
            # Read a dozen times per call (and once per event): the C function itself, not a
            # method that calls it.
            self.now = time.time  # type: ignore[method-assign]

    def now(self) -> float:
        if self.rate == 1.0:
            return time.time()
        return self._origin_real + (time.monotonic() - self._origin_mono) * self.rate

    def call_at(self, when: float, callback: Callable[[], Any]) -> ClockTimer:
        delay = max(0.0, (when - self.now()) / self.rate)
        return asyncio.get_running_loop().call_later(delay, callback)

    def sleep(self, seconds: float) -> asyncio.Future[None]:
        fut = _sleep_future()
        handle = self.call_at(self.now() + max(0.0, seconds), lambda: _resolve(fut))
        fut.add_done_callback(lambda f: handle.cancel() if f.cancelled() else None)
        return fut

    def __repr__(self) -> str:
        return "<RealClock>" if self.rate == 1.0 else f"<RealClock at {self.rate}x>"


def fast_now(clock: Clock) -> Callable[[], float]:
    """``clock.now``, or ``time.time`` itself for a real clock at rate 1 (the same value, one
    Python call less: the runtime reads it at every call's transitions, attribution.py)."""
    if type(clock) is RealClock and clock.rate == 1.0:
        return time.time
    return clock.now


class _ManualTimer:
    __slots__ = ("callback", "cancelled", "when")

    def __init__(self, when: float, callback: Callable[[], Any]) -> None:
        self.when = when
        self.callback = callback
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True


class ManualClock:
    """Time moves only when told to: ``advance(seconds)`` or ``advance_to(epoch_seconds)``."""

    def __init__(self, start: float | None = None) -> None:
        self._now = time.time() if start is None else float(start)
        self._timers: list[tuple[float, int, _ManualTimer]] = []
        self._seq = itertools.count()

    def now(self) -> float:
        return self._now

    def call_at(self, when: float, callback: Callable[[], Any]) -> ClockTimer:
        if not math.isfinite(when):
            # An AutoClock jumps to its next timer: a NaN or infinite one would become the
            # time of every object in the lab.
            raise ValueError(f"a lab timer needs a finite time, got {when!r}")
        timer = _ManualTimer(float(when), callback)
        if timer.when <= self._now:
            # Already due: fire on the next loop iteration rather than wait for an advance().
            asyncio.get_running_loop().call_soon(lambda: timer.cancelled or timer.callback())
            return timer
        heapq.heappush(self._timers, (timer.when, next(self._seq), timer))
        self._timer_added()
        return timer

    def _timer_added(self) -> None:
        """Hook for AutoClock."""

    def sleep(self, seconds: float) -> asyncio.Future[None]:
        fut = _sleep_future()
        timer = self.call_at(self._now + max(0.0, seconds), lambda: _resolve(fut))
        fut.add_done_callback(lambda f: timer.cancel() if f.cancelled() else None)
        return fut

    def next_timer(self) -> float | None:
        """When the next pending timer is due (None if there is none)."""
        while self._timers and self._timers[0][2].cancelled:
            heapq.heappop(self._timers)
        return self._timers[0][0] if self._timers else None

    @property
    def pending_timers(self) -> int:
        return sum(1 for _, _, t in self._timers if not t.cancelled)

    def advance(self, seconds: float) -> int:
        """Move time forward by ``seconds``, firing the timers due on the way, in order.

        Returns how many timers fired. Their effects (a delivery, a resolved sleep) run when
        the event loop next gets control: ``await lab.wait_idle()`` after advancing.
        """
        if not isinstance(seconds, (int, float)):
            raise TypeError(f"advance() takes a number of seconds, got {type(seconds).__name__}")
        if seconds < 0:
            raise ValueError("time can't go backwards")
        if not math.isfinite(seconds):
            raise ValueError(f"advance() takes a finite number of seconds, got {seconds!r}")
        return self.advance_to(self._now + seconds)

    def advance_to(self, when: float) -> int:
        if not isinstance(when, (int, float)) or not math.isfinite(when):
            raise ValueError(f"advance_to() takes a finite epoch time in seconds, got {when!r}")
        if when < self._now:
            raise ValueError("time can't go backwards")
        fired = 0
        while True:
            due = self.next_timer()
            if due is None or due > when:
                break
            _, _, timer = heapq.heappop(self._timers)
            self._now = max(self._now, due)
            timer.callback()
            fired += 1
        self._now = when
        return fired

    def __repr__(self) -> str:
        return f"<ManualClock at {self._now:.3f}, {self.pending_timers} timers>"


class AutoClock(ManualClock):
    """A manual clock that jumps to the next timer whenever the event loop has nothing to run.

    "Nothing to run" is read from the loop's ready queue after a few idle passes. Work done in
    threads (SQLite commits) is not visible there, so a jump may happen while a commit is on
    disk: harmless, since only timers (never commits) depend on lab time.
    """

    def __init__(self, start: float | None = None, idle_passes: int = 3) -> None:
        super().__init__(start)
        self._idle_passes = idle_passes
        self._watcher: asyncio.Task[None] | None = None

    def _timer_added(self) -> None:
        if self._watcher is None or self._watcher.done():
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:
                return
            # Not an object's task, even if object code set the timer: built directly (the
            # loop's task factory adopts tasks made by object code) and in an empty context
            # (timers it fires run outside every object's turn).
            self._watcher = asyncio.Task(self._jump_when_idle(), loop=loop,
                                         context=contextvars.Context())

    async def _jump_when_idle(self) -> None:
        loop = asyncio.get_running_loop()
        idle = 0
        while self.next_timer() is not None:
            await asyncio.sleep(0)
            ready = getattr(loop, "_ready", None)
            # Only this watcher is runnable: everything else waits for a timer (or I/O).
            if ready is not None and len(ready) == 0:
                idle += 1
            else:
                idle = 0
            if idle >= self._idle_passes:
                due = self.next_timer()
                if due is not None:
                    self.advance_to(max(due, self._now))
                idle = 0

    def __repr__(self) -> str:
        return f"<AutoClock at {self._now:.3f}, {self.pending_timers} timers>"


def make_clock(clock: str | Clock | None, *, rate: float = 1.0,
               start: float | None = None) -> Clock:
    """``Lab(clock=...)``: a name (``"real"``, ``"manual"``, ``"auto"``) or a clock object."""
    if clock is None or clock == "real":
        return RealClock(rate)
    if clock == "manual":
        return ManualClock(start)
    if clock == "auto":
        return AutoClock(start)
    if isinstance(clock, str):
        raise ValueError(
            f"clock must be 'real', 'manual' or 'auto' (or a clock object), got {clock!r}")
    if not callable(getattr(clock, "now", None)) or not callable(getattr(clock, "call_at", None)):
        raise TypeError("a clock object needs now(), call_at(when, callback) and sleep(seconds)")
    return clock


def wall_monotonic() -> float:
    """Seconds of wall time from an arbitrary origin, for watchdogs only.

    Lab logic reads ``lab.clock``; a watchdog that must stop runaway synchronous work (a SQL
    statement, which no lab clock can interrupt because nothing else runs meanwhile) needs the
    time that really passes. This is the one place outside the clocks that may read it.
    """
    return time.monotonic()
