"""``LabServices``: what the runtime's lower rooms need from the lab, handed down to them.

The lab (``lab.py``) stands at the top: it owns the clock, the bus, the storage backend, the
scheduler, the faults and the hosts of every object. The rooms below it (a host and its
instances, the storage caches, the alarm scheduler, the network, the namespaces and stubs) need
a few things from it: the settings the lab was made with, its parts, and a few hooks (track a
task, delay or fail a commit, record a client call, number a delivery, find a host, evict an
idle one, refuse work once the lab is closed). They get
exactly that, one object made by the lab and handed down at construction, never the ``Lab``
itself: a lower module imports only modules below it, and what it needs from above is this.

The object is a plain holder (attributes and bound methods fixed when the lab is made), so a hot
path pays one attribute read for a hook, as it paid for ``lab._track`` before.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable, Iterable
from pathlib import Path
from typing import Any, Protocol

from ._backends import StorageBackend
from .bus import EventBus
from .clock import Clock
from .scheduler import Scheduler

__all__ = ["AlarmHooks", "FaultHooks", "LabServices", "RecordCall"]

#: ``record_call(host, kind, method, args, kwargs, send)``: with ``Lab(record=True)``, a
#: client's call goes through the lab's history; ``send(link)`` sends it (``link`` is told the
#: delivery once it exists) and the reply it returns is the caller's.
RecordCall = Callable[[Any, str, str, tuple[Any, ...], dict[str, Any],
                       Callable[[Any], "asyncio.Future[Any]"]], "asyncio.Future[Any]"]


class FaultHooks(Protocol):
    """What a host and a storage engine ask the lab's faults (``faults.py``) at each call,
    alarm and commit."""

    def take_call_failure(self, host: Any) -> Exception | None: ...
    def call_delay(self, host: Any) -> float: ...
    def take_alarm_failure(self, host: Any) -> Exception | None: ...
    def commit_delay(self, instance: Any) -> float: ...
    def take_commit_failure(self, instance: Any) -> Exception | None: ...


class AlarmHooks(Protocol):
    """What an instance tells the lab's alarm scheduler (``alarms.py``): a batch with an alarm
    change is durable; and what it reads back: the committed alarm times."""

    scheduled: dict[tuple[str, str], float]

    def committed(self, host: Any, metadata: dict[str, bytes | None]) -> None: ...


class LabServices(Protocol):
    """The lab, as the rooms below it see it (made by ``Lab.__init__``)."""

    # -- settings, fixed when the lab is made (see Lab's docstring) --
    model: str
    storage: str
    path: Path | None
    commit_latency: float
    max_queue: int
    max_in_flight: int
    sql_time_limit: float
    max_tasks: int
    #: ``_sql_engine.OpenDatabases`` (a floor above this one, so named ``Any``): the bound on
    #: SQLite-backed objects' open database files; None for a memory lab.
    open_databases: Any
    idle_timeout: float | None
    hibernate_after: float | None
    recording: bool
    session: int
    random: random.Random

    # -- the lab's parts --
    clock: Clock
    bus: EventBus
    backend: StorageBackend
    scheduler: Scheduler
    faults: FaultHooks
    alarms: AlarmHooks
    #: ``Lab(network=...)``: a ``network.Network``, or None (no geography).
    network: Any
    #: ``env``: the bindings by name (``lab.env``), handed to every object's constructor.
    env: Any
    bindings: dict[str, Any]

    # -- what moves --
    closed: bool
    #: Finished calls each host keeps (``lab.keep_recent_calls``; 0: none).
    recent_calls: int

    # -- hooks --
    #: The lab waits for a tracked task at ``wait_idle()`` and ``close()``.
    track: Callable[[asyncio.Future[Any]], None]
    #: Before a commit reaches storage: the injected latency, then maybe an injected failure.
    before_commit: Callable[[Any], Awaitable[Exception | None]]
    record_call: RecordCall
    #: The next delivery id (one counter per lab), and the one it will give next.
    next_delivery_id: Callable[[], int]
    coming_delivery_id: Callable[[], int]
    #: The host of (namespace, id), made on first use; the host of a stub or an id.
    host: Callable[[Any, Any], Any]
    host_of: Callable[[Any], Any]
    #: Every host the lab has seen, in first-seen order.
    hosts: Callable[[], Iterable[Any]]
    check_open: Callable[[], None]
    #: Evict ``host``'s instance once it has no work in flight (``lab.evict``).
    evict_when_idle: Callable[[Any, str], Awaitable[bool]]
