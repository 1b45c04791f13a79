"""Alarms: one wake-up call per object, durable, retried until it succeeds.

An object sets its alarm with ``ctx.storage.setAlarm(when)`` (epoch milliseconds, or a
``datetime``); at that time the runtime delivers ``alarm(alarm_info)`` to it, constructing it
first if it is not in memory. What the lab mirrors (spec §5, workerd ``alarm-scheduler.c++``):

- **One alarm per object.** A new ``setAlarm`` replaces the old one. Setting a time in the past
  clamps it to now: it fires almost at once. ``deleteAlarm()`` cancels it.
- **It is storage.** The alarm time is a write like ``put()``: coalesced with the turn's other
  writes, committed in the same transaction (``_cf_METADATA``), output-gated. The scheduler only
  learns about an alarm once it is committed, so an alarm set by a turn whose commit fails never
  fires. It survives eviction and a restart of the lab on the same folder.
- **Delivery is an ordinary event.** The handler waits at the input gate like any request and
  requests may interleave at its non-storage awaits.
- **Inside the handler** ``getAlarm()`` is None, unless the handler sets a new alarm. When the
  handler succeeds the alarm is deleted (deferred to the end of the handler, committed with its
  writes), unless it set a new one.
- **Retries.** A handler that raises (or whose object resets) is retried after ``2 s << n`` plus up
  to 25 % jitter, at most 6 times (7 attempts); then the alarm is abandoned (deleted). A
  ``setAlarm(t)`` (or ``deleteAlarm()``) from other code while the retry waits replaces it: the
  alarm runs at ``t`` with ``retryCount`` 0, as workerd does.
  ``alarm_info.retryCount`` counts the retries, ``alarm_info.isRetry`` is ``retryCount > 0``.
  At-least-once: a handler may run again after a failure that came after its side effects.

All times come from the lab clock, so a lesson can run the whole retry schedule (2, 4, 8, 16, 32,
64 s) in an instant with ``Lab(clock="auto")`` or step through it with ``clock="manual"``.
"""

from __future__ import annotations

import asyncio
import datetime as _dt
import inspect
import logging
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from . import values
from ._sql_engine import offline_set_metadata
from ._turns import spawn
from .errors import StorageCorruptError, StorageError

if TYPE_CHECKING:
    from .services import LabServices

#: An object's host (``_host.ObjectHost``, which stands above this module: the scheduler reads
#: its ``storage_key``, ``label``, ``generation``, ``instance``, ``namespace`` and calls
#: ``deliver``).
ObjectHost = Any

__all__ = [
    "ALARM_KEY",
    "MAX_RETRIES",
    "AlarmInvocationInfo",
    "AlarmScheduler",
    "alarm_time",
    "call_alarm_handler",
    "stored_alarm",
]

LOG = logging.getLogger("durable_lab")

ALARM_KEY = "alarm"
MAX_RETRIES = 6  # counted retries: 7 attempts in all
INITIAL_BACKOFF = 2.0  # seconds


@dataclass(frozen=True, slots=True)
class AlarmInvocationInfo:
    """What ``alarm(alarm_info)`` receives (Cloudflare's names)."""

    retryCount: int
    isRetry: bool
    scheduledTime: float

    @property
    def retry_count(self) -> int:
        return self.retryCount

    @property
    def is_retry(self) -> bool:
        return self.isRetry


#: The latest alarm time accepted, in epoch ms: the largest time a JavaScript Date can hold.
MAX_ALARM_TIME = 8.64e15


def alarm_time(when: Any) -> float:
    if isinstance(when, _dt.datetime):
        if when.tzinfo is None:
            when = when.astimezone()  # a naive datetime is local time, as Date would read it
        return when.timestamp() * 1000.0
    if isinstance(when, bool) or not isinstance(when, (int, float)):
        raise TypeError(
            f"setAlarm() takes epoch milliseconds (int or float) or a datetime, "
            f"got {type(when).__name__}: {when!r}"
        )
    # NaN and infinity would become the lab clock's time once the alarm is due (an auto
    # clock jumps to it), for every object: refuse them here, where the mistake is made.
    if not math.isfinite(when) or when > MAX_ALARM_TIME:
        raise ValueError(
            f"setAlarm() takes a finite time of at most {MAX_ALARM_TIME:.0f} epoch ms "
            f"(the largest JavaScript Date), got {when!r}"
        )
    return float(when)


def stored_alarm(data: bytes, label: str) -> float:
    """The alarm time stored as ``data``; StorageCorruptError naming the object otherwise."""
    try:
        when = values.decode(data)
    except StorageCorruptError as exc:
        raise StorageCorruptError(f"{label}: the stored alarm cannot be read: {exc}") from exc
    if isinstance(when, bool) or not isinstance(when, (int, float)) or not math.isfinite(when):
        raise StorageCorruptError(
            f"{label}: the stored alarm is {when!r:.60}, not a finite time in epoch ms"
        )
    return float(when)


class AlarmScheduler:
    """The lab's alarm clock: one timer per object with a committed alarm."""

    def __init__(self, services: LabServices) -> None:
        self.services = services
        self._timers: dict[tuple[str, str], Any] = {}
        #: Committed alarm time (ms) per object, as the scheduler knows it.
        self.scheduled: dict[tuple[str, str], float] = {}
        self._running: set[tuple[str, str]] = set()
        self._retries: dict[tuple[str, str], int] = {}
        self.fired = 0
        #: (object label, error) for each stored alarm that could not be armed (see load).
        self.errors: list[tuple[str, StorageError]] = []

    # -- what storage tells us -------------------------------------------------------------

    def committed(self, host: ObjectHost, metadata: dict[str, bytes | None]) -> None:
        """A batch with an alarm change is durable: (re)arm or cancel the object's timer."""
        if ALARM_KEY not in metadata:
            return
        data = metadata[ALARM_KEY]
        when = None if data is None else stored_alarm(data, host.label)
        if host.storage_key not in self._running:
            # Set (or deleted) by other code while a failed alarm waited for its retry: the
            # new time replaces the retry, which starts again from retryCount 0 (recorded on
            # workerd, issue #20 trace alarm_set_during_retry).
            self._retries.pop(host.storage_key, None)
        self._arm(host, when)

    def _arm(self, host: ObjectHost, when: float | None) -> None:
        key = host.storage_key
        timer = self._timers.pop(key, None)
        if timer is not None:
            timer.cancel()
        if when is None:
            self.scheduled.pop(key, None)
            return
        self.scheduled[key] = when
        if key in self._running:
            return  # armed again when the running handler finishes
        clock = self.services.clock
        # Milliseconds back to seconds: a time set to "now" (setAlarm clamps past times to now)
        # can come back one rounding step after now, and a manual clock that is not moved
        # would then never fire it. A time not after now is due now.
        at = when / 1000.0
        now = clock.now()
        if at > now and when <= now * 1000.0:
            at = now
        self._timers[key] = clock.call_at(at, lambda: self._fire(host))

    async def load(self, hosts: list[ObjectHost]) -> None:
        """Arm the alarms stored by objects not in memory (a lab reopened on its folder).

        Each object on its own: an alarm that cannot be read (a damaged file) is skipped and
        logged, and the others are armed all the same. Reading that object's alarm later
        (``getAlarm()``) raises the same StorageCorruptError to its own code.
        """
        for host in hosts:
            try:
                stored = await self.services.backend.read_metadata(host.storage_key)
                data = stored.get(ALARM_KEY)
                if data is not None and host.storage_key not in self.scheduled:
                    self._arm(host, stored_alarm(data, host.label))
            except StorageError as exc:
                self.errors.append((host.label, exc))
                LOG.warning("alarm of %s not armed: %s", host.label, exc)

    # -- firing ----------------------------------------------------------------------------

    def _fire(self, host: ObjectHost) -> None:
        key = host.storage_key
        self._timers.pop(key, None)
        if self.services.closed or key not in self.scheduled or key in self._running:
            return
        self._running.add(key)
        retry = self._retries.get(key, 0)
        info = AlarmInvocationInfo(retryCount=retry, isRetry=retry > 0,
                                   scheduledTime=self.scheduled[key])
        self.fired += 1
        reply = host.deliver("alarm", "alarm", (info,), {}, host.generation)
        self.services.track(spawn(self._after(host, reply, retry)))

    async def _after(self, host: ObjectHost, reply: asyncio.Future[Any], retry: int) -> None:
        key = host.storage_key
        try:
            await reply
            ok = True
        except Exception:
            ok = False
        self._running.discard(key)
        if ok:
            self._retries.pop(key, None)
            # The handler's deferred delete (or its new alarm) was committed with its writes;
            # ``committed`` already re-armed or cleared the timer. Arm a new time set meanwhile.
            when = self.scheduled.get(key)
            if when is not None and key not in self._timers:
                self._arm(host, when)
            return
        if retry >= MAX_RETRIES or key not in self.scheduled:
            # Abandoned after 7 attempts (or deleted meanwhile): forget it, durably.
            self._retries.pop(key, None)
            self.scheduled.pop(key, None)
            self.services.track(spawn(self._abandon(host)))
            return
        self._retries[key] = retry + 1
        delay = INITIAL_BACKOFF * (2 ** retry)
        delay += self.services.random.uniform(0, delay * 0.25)
        timer = self._timers.pop(key, None)
        if timer is not None:
            timer.cancel()
        self._timers[key] = self.services.clock.call_at(self.services.clock.now() + delay,
                                                   lambda: self._fire(host))

    async def _abandon(self, host: ObjectHost) -> None:
        instance = host.instance
        if instance is not None and instance.broken is None and not instance.evicted:
            # Through the live instance, so its cache and storage agree.
            instance.cache.set_metadata(ALARM_KEY, None, confirmed=True)
            return
        if host.namespace.sql:
            # A SQLite-backed object's data lives in its own database, not the KV backend.
            offline_set_metadata(self.services, host, ALARM_KEY, None)
            return
        await self.services.backend.commit(host.storage_key, delete_all=False, puts={}, deletes=(),
                                      metadata={ALARM_KEY: None})

    def pending(self) -> dict[tuple[str, str], float]:
        """Committed alarm times (ms) by (namespace, id)."""
        return dict(self.scheduled)

    def cancel_all(self) -> None:
        for timer in self._timers.values():
            timer.cancel()
        self._timers.clear()


def call_alarm_handler(obj: Any, info: AlarmInvocationInfo) -> Any:
    """Call ``obj.alarm(info)``, or ``obj.alarm()`` if the handler takes no argument."""
    handler = obj.alarm
    try:
        parameters = inspect.signature(handler).parameters
    except (TypeError, ValueError):
        return handler(info)
    if not parameters:
        return handler()
    return handler(info)
