"""``Lab``: the root of everything, the one handle a notebook keeps.

A lab owns the clock, the event bus, the storage backend, the bindings (namespaces) and the
hosts of every object it has seen. Two labs in one notebook never share anything. A lab needs no
``async with``: make it in one cell, use it in the next ones, ``await lab.close()`` at the end (or
``async with Lab() as lab:`` in a script). Its storage files live in ``path`` (kept across kernel
restarts: a lesson reopens the same folder and finds its counters where they were) or in a fresh
temporary folder that is removed when the lab closes or the interpreter exits.

    lab = Lab()                                   # SQLite files in a temporary folder
    COUNTER = lab.bind("COUNTER", Counter)        # also lab.env.COUNTER inside objects
    stub = COUNTER.getByName("room-1")
    await stub.increment()
    await lab.close()
"""

from __future__ import annotations

import asyncio
import dataclasses
import inspect
import math
import os
import random
import shutil
import tempfile
import warnings
import weakref
from collections import deque
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import _turns
from . import alarms as _alarms
from . import attribution as _attribution
from . import snapshot as _snapshot
from . import trace as _trace
from ._backends import MemoryBackend, SqliteBackend
from ._folder import FolderLock
from ._host import CODE_UPDATED_MESSAGE, ObjectHost
from ._sql_engine import OpenDatabases
from .bus import EventBus, Recorder, Subscription
from .clock import Clock, make_clock
from .errors import DurableObjectResetError, LabClosedError, LabForkedError
from .events import LabClosed
from .faults import Faults
from .http import Request, Response
from .namespace import Client, DurableObjectNamespace, DurableObjectStub
from .network import Network, check_caller_region, make_network
from .objects import DurableObject
from .peek import TableSnapshot, kv_snapshot, sql_snapshot
from .recording import History
from .scheduler import Breakpoint, Choice, Scheduler
from .services import LabServices
from .websockets import CLOSE_CODE_UPDATED, CLOSE_LAB_CLOSED, ClientWebSocket, WebSocket

if TYPE_CHECKING:
    from collections.abc import Callable

    from ._backends import StorageBackend
    from .attribution import Breakdown, Explanation
    from .events import RuntimeEvent
    from .ids import DurableObjectId

__all__ = ["MODELS", "RECORD_LIMIT", "Env", "Lab", "LabStatistics", "ObjectInfo"]

#: The concurrency models a lab can run (see Lab's docstring).
MODELS = ("gates", "none", "serial")


def _is_seconds(value: object, *, zero: bool = False) -> bool:
    """A finite number of seconds, > 0 (or >= 0 with ``zero``); NaN and infinity are not."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    return math.isfinite(value) and (value >= 0 if zero else value > 0)


#: How many client calls ``Lab(record=True)`` keeps (about 45 MiB of recording).
RECORD_LIMIT = 10_000
#: The largest ``Lab(record=N)``.
MAX_RECORD_LIMIT = 10_000_000
#: The largest ``Lab(max_tasks=N)``.
MAX_TASKS_LIMIT = 1_000_000
#: The largest ``lab.keep_recent_calls(per_object)``.
MAX_RECENT_CALLS = 10_000


def default_open_databases() -> int:
    """``Lab(max_open_databases=None)``: a sixteenth of the file descriptors this process may
    open (``ulimit -n``), from 4 to 64. KV-backed and SQLite-backed objects may each keep that
    many databases open, three descriptors each: at most 3/8 of the limit."""
    try:
        import resource

        soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    except (ImportError, OSError, ValueError):  # (Windows has no resource module)
        return 64
    if soft == resource.RLIM_INFINITY or soft <= 0:
        return 64
    return max(4, min(64, soft // 16))


def _record_limit(record: object) -> int:
    """``Lab(record=...)`` as a number of calls (0: off); a ValueError for anything else."""
    if record is None or record is False:
        return 0
    if record is True or record == "calls":
        return RECORD_LIMIT
    if isinstance(record, int) and 1 <= record <= MAX_RECORD_LIMIT:
        return record
    raise ValueError(
        f"record must be False, True (keep the first {RECORD_LIMIT:,} calls), an int from 1 "
        f"to {MAX_RECORD_LIMIT:,} (the calls to keep; each costs about 4.5 KiB) or 'calls' "
        f"(the client calls only, no events), got {record!r}")


class Env:
    """``env``: the lab's bindings as attributes (``env.COUNTER``)."""

    def __init__(self) -> None:
        self._bindings: dict[str, DurableObjectNamespace] = {}

    def __getattr__(self, name: str) -> DurableObjectNamespace:
        if name.startswith("_"):
            raise AttributeError(name)
        try:
            return self._bindings[name]
        except KeyError:
            known = ", ".join(sorted(self._bindings)) or "none yet"
            raise AttributeError(
                f"env has no binding {name!r} (bindings: {known}); "
                f"add one with lab.bind({name!r}, YourClass)"
            ) from None

    def __dir__(self) -> list[str]:
        return sorted(self._bindings)

    def __repr__(self) -> str:
        return f"<Env {', '.join(sorted(self._bindings)) or '(no bindings)'}>"


@dataclass(frozen=True, slots=True)
class ObjectInfo:
    """One object as ``lab.objects()`` sees it (for lessons and panels)."""

    namespace: str
    name: str | None
    id: str
    label: str
    state: str  # "live", "idle", "evicted", "broken", "reset", "not started"
    incarnations: int
    queue_length: int  # deliveries waiting at the input gate
    in_flight: int  # deliveries admitted and not yet answered
    pending_writes: int  # keys written and not yet committed
    stored_bytes: int  # keys + values of the KV data in storage (SQL tables not counted)
    alarm: float | None  # committed alarm time, epoch ms
    region: str | None = None  # where it lives (Lab(network=...)); None: not placed / no network


def _answer(history: History, op: int, fut: asyncio.Future[Any]) -> None:
    """Note in ``history`` how the recorded call ``op`` answered."""
    if fut.cancelled():
        history.fail(op, "cancelled")
    elif fut.exception() is not None:
        history.fail(op, fut.exception())  # type: ignore[arg-type]
    else:
        history.complete(op, fut.result())


@dataclass(frozen=True, slots=True)
class LabStatistics:
    bindings: int
    objects_seen: int
    live_instances: int
    deliveries: int
    commits: int
    #: Writes (puts and deletes that changed a value, alarm changes, deleteAll) taken by the
    #: key-value caches of the objects in memory, since each was constructed. SQLite-backed
    #: classes and ``model="none"`` write around that cache: not counted.
    kv_writes: int = 0


#: Every lab of this process not yet collected: a fork()ed child marks them unusable.
_LABS: weakref.WeakSet[Lab] = weakref.WeakSet()


def _after_fork_in_child() -> None:
    """In a fork()ed child, the parent's labs are copies the child must not use: their
    storage threads were not copied (a call would wait forever) and the parent still owns
    their folders (their commits would be a second writer). Each refuses all use from now on
    with LabForkedError; nothing of the parent's is touched (see _folder.FolderLock)."""
    child = os.getpid()
    for lab in list(_LABS):
        if lab._pid != child and lab._forked is None and hasattr(lab, "services"):
            lab._forked = LabForkedError(lab._pid, child)
            lab._closed = lab.services.closed = True


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


def _remove_tempdir(path: str, pid: int) -> None:
    """The finalizer of a lab's temporary folder: only the process that made it removes it
    (a fork()ed child exiting must not delete the folder its parent still uses)."""
    if os.getpid() == pid:
        shutil.rmtree(path, True)


class _Services:
    """The ``LabServices`` a lab hands down to the rooms below it (``services.py``): its
    settings, its parts and its hooks, set once by ``Lab.__init__`` (``closed`` and
    ``recent_calls`` follow the lab)."""


class _CountingBackend:
    """Wraps the storage backend to count calls in flight (for ``Scheduler.settle``)."""

    def __init__(self, backend: Any, lab: Lab) -> None:
        self._backend = backend
        self._lab = lab

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self._backend, name)
        if name not in ("read", "list", "commit", "read_metadata", "stored_size"):
            return attribute
        lab = self._lab

        async def counted(*args: Any, **kwargs: Any) -> Any:
            lab._io_in_flight += 1
            try:
                return await attribute(*args, **kwargs)
            finally:
                lab._io_in_flight -= 1

        return counted


class Lab:
    """A Durable Objects runtime in this process.

    Args:
        path: folder for the SQLite files (one per object). ``None``: a fresh temporary folder.
        storage: ``"sqlite"`` (default; durable: KV-backed classes commit through aiosqlite,
            SQLite-backed classes through their own synchronous connection) or ``"memory"``
            (fast, nothing survives the lab).
        seed: seeds the random generator behind ``newUniqueId()``.
        commit_latency: seconds added to every commit, so the cost coalescing saves is visible
            on a fast disk.
        max_queue: deliveries that may wait at one object for their first admission before
            calls are refused with an ``overloaded`` error.
        max_in_flight: deliveries one object may have at once, waiting or running (a call
            that awaits a timer or another object is still in flight); more are refused with
            an ``overloaded`` error. Bounds the memory one object's callers can pin.
        sql_time_limit: seconds of wall time one SQL statement (or one ``toArray()``) of a
            SQLite-backed object may run before it is interrupted with a ``SqlError``; the
            object stays usable. A statement runs synchronously, so without this limit a
            runaway query would freeze the whole lab.
        max_open_databases: database files kept open at once: up to this many aiosqlite
            connections (threads) for KV-backed classes, and as many synchronous connections
            of SQLite-backed instances; the least recently used quiet one is closed to open
            another, and reopens when needed. Each open database costs three file
            descriptors. ``None`` (default): ``ulimit -n`` / 16, between 4 and 64 (64 at
            Linux's usual 1024, 16 at macOS's 256), so a burst of new objects never runs out.
        clock: ``"real"`` (wall time), ``"manual"`` (moves only with ``lab.clock.advance(s)``),
            ``"auto"`` (jumps to the next timer whenever nothing can run), or a clock object.
        rate: with the real clock, how fast lab time runs (0.1 = ten times slower, to watch).
        model: the concurrency model. ``"gates"``: Cloudflare's (input and output gates, write
            coalescing). ``"none"``: plain asyncio, the naive model (no input gate, no output
            gate; it loses updates and acknowledges writes that later fail). ``"serial"``: one
            delivery at a time from start to finish, like an actor holding a lock.
        record: keep the client calls (``lab.history()``), the transitions and the events
            (``lab.trace()``), so the run can be checked and replayed. Off by default: it costs
            time and memory per call (about 4.5 KiB, ``bench/RESULTS-recording.txt``).
            ``True`` keeps the first :data:`RECORD_LIMIT` calls (10,000); an int ``N`` keeps
            the first ``N``. Past the limit recording stops (with a warning): the history and
            the trace stay a consistent prefix of the run, and memory stays flat.
            ``"calls"``: the client calls only (``lab.history()``, the same limit as ``True``),
            no events or transitions (no ``lab.trace()``) and no time breakdown per call
            (``op.breakdown`` stays None): what ``durable_lab.explore`` needs, cheaper.
        max_tasks: tasks one object's code may have unfinished at once (``asyncio.create_task``,
            ``ctx.waitUntil``, ...). Creating one more resets that object (a task bomb), not
            the lab: the creating call raises and every call in flight fails with a
            ``DurableObjectResetError`` naming the limit.
        idle_timeout: evict an instance after this many seconds (lab time) without work, as
            Cloudflare does (workerd: 10 s; production: 70-140 s). ``None`` (default): only
            ``lab.evict()`` evicts, so a notebook's objects stay put between cells.
        hibernate_after: an instance with accepted WebSockets hibernates after this many
            seconds (lab time) without work, as in workerd (10 s); ``None``: only
            ``lab.hibernate()`` hibernates. See ``durable_lab.websockets``.
        network: geography (``durable_lab.network``). ``None`` (default): none, calls cost no
            network time. ``"cloudflare-regions"``: objects are placed near the caller that
            creates them (or by ``locationHint``) and every call pays the round trip between
            the caller's region and the object's, on the lab clock; callers take a region with
            ``lab.client(region)``. A dict ``{("weur", "enam"): 80, ...}`` of round-trip
            milliseconds overrides pairs of that table; a ``Network`` gives a whole table.
    """

    def __init__(self, path: str | Path | None = None, *, storage: str = "sqlite",
                 seed: int | None = None, commit_latency: float = 0.0, max_queue: int = 1000,
                 max_in_flight: int = 5000, sql_time_limit: float = 5.0,
                 max_open_databases: int | None = None, clock: str | Clock = "real",
                 rate: float = 1.0, idle_timeout: float | None = None,
                 model: str = "gates", hibernate_after: float | None = 10.0,
                 record: bool | int | str = False,
                 network: str | dict[Any, Any] | Network | None = None,
                 max_tasks: int = 10_000) -> None:
        if storage not in ("sqlite", "memory"):
            raise ValueError(f"storage must be 'sqlite' or 'memory', got {storage!r}")
        if storage == "memory" and path is not None:
            raise ValueError("a path only makes sense with storage='sqlite'")
        if not _is_seconds(commit_latency, zero=True):
            raise ValueError(
                f"commit_latency must be a finite number of seconds >= 0, got {commit_latency!r}")
        if isinstance(max_queue, bool) or not isinstance(max_queue, int) or max_queue < 1:
            raise ValueError(f"max_queue must be an int >= 1, got {max_queue!r}")
        if (isinstance(max_in_flight, bool) or not isinstance(max_in_flight, int)
                or max_in_flight < 1):
            raise ValueError(f"max_in_flight must be an int >= 1, got {max_in_flight!r}")
        if (isinstance(max_tasks, bool) or not isinstance(max_tasks, int)
                or not 1 <= max_tasks <= MAX_TASKS_LIMIT):
            raise ValueError(f"max_tasks must be an int from 1 to {MAX_TASKS_LIMIT:,}, "
                             f"got {max_tasks!r}")
        record_limit = _record_limit(record)
        if max_open_databases is None:
            max_open_databases = default_open_databases()
        elif (isinstance(max_open_databases, bool) or not isinstance(max_open_databases, int)
                or max_open_databases < 1):
            raise ValueError(f"max_open_databases must be None or an int >= 1, "
                             f"got {max_open_databases!r}")
        if not _is_seconds(sql_time_limit):
            raise ValueError(
                f"sql_time_limit must be a finite number of seconds > 0, got {sql_time_limit!r}")
        if idle_timeout is not None and not _is_seconds(idle_timeout):
            raise ValueError(
                f"idle_timeout must be None or a finite number of seconds > 0, "
                f"got {idle_timeout!r}")
        self.idle_timeout = idle_timeout
        if hibernate_after is not None and not _is_seconds(hibernate_after):
            raise ValueError(
                f"hibernate_after must be None or a finite number of seconds > 0, "
                f"got {hibernate_after!r}")
        self.hibernate_after = hibernate_after
        if model not in MODELS:
            raise ValueError(f"model must be one of {', '.join(map(repr, MODELS))}, got {model!r}")
        self.model = model
        self.clock: Clock = make_clock(clock, rate=rate)
        self.bus = EventBus(self.clock.now)
        self.random = random.Random(seed)
        self.seed = seed
        self.commit_latency = float(commit_latency)
        self.max_queue = max_queue
        self.max_in_flight = max_in_flight
        self.sql_time_limit = float(sql_time_limit)
        self.storage = storage
        self.env = Env()
        self.recording = bool(record_limit)
        #: The most client calls the recording keeps (0: not recording).
        self.record_limit = record_limit
        #: True once the recording reached ``record_limit`` and stopped.
        self.recording_stopped = False
        self.max_tasks = max_tasks
        #: Events and transitions too (record=True or N), not only the client calls ("calls").
        self._record_all = bool(record_limit) and record != "calls"
        #: What the rooms below the lab get instead of the lab (services.py): made here,
        #: filled as the parts are made, handed to each at construction.
        services: LabServices = _Services()  # type: ignore[assignment]  # (filled below)
        self.services = services
        #: Storage calls on their way (the scheduler waits for them when it settles).
        self._io_in_flight = 0
        self.scheduler = Scheduler(self.bus, lambda: self._io_in_flight)
        self.scheduler.recording = self._record_all
        self.alarms = _alarms.AlarmScheduler(services)
        self.faults = Faults(services)
        #: Regions, placements and network delays (``durable_lab.network``); None: no geography.
        self.network: Network | None = make_network(network, services)
        self._history = History() if record else None
        #: Finished calls kept per object for lab.recent_calls() (0: none; see attribution.py).
        self._recent_calls = 0
        self._calls: list[dict[str, Any]] = []
        self._events = Recorder(self.bus) if self._record_all else None
        self._hosts: dict[tuple[str, str], ObjectHost] = {}
        self._tasks: set[asyncio.Future[Any]] = set()
        self._deliveries = 0
        self._commit_failures: dict[str, list[Exception]] = {}
        self._closed = False
        self._close_task: asyncio.Future[None] | None = None
        self._close_done = False
        self._tempdir: str | None = None
        self._folder_lock: FolderLock | None = None
        #: The process that made the lab; set in a fork()ed child, the error all use raises.
        self._pid = os.getpid()
        self._forked: LabForkedError | None = None
        _LABS.add(self)
        #: How many labs opened this folder before (0 for memory and fresh folders); mixed
        #: into newUniqueId() so ids stay unique across sessions on one folder.
        self.session = 0
        self.backend: StorageBackend
        self.max_open_databases = max_open_databases
        #: The bound on SQLite-backed objects' open files (None: memory, no files).
        self.open_databases: OpenDatabases | None = None
        if storage == "memory":
            self.path: Path | None = None
            self.backend = MemoryBackend()
        else:
            if path is None:
                self._tempdir = tempfile.mkdtemp(prefix="durable_lab-")
                weakref.finalize(self, _remove_tempdir, self._tempdir, self._pid)
                path = self._tempdir
            self.path = Path(path)
            self.path.mkdir(parents=True, exist_ok=True)
            # One owner per folder: refused at once (naming the holder) if another lab,
            # here or in another process, has it open. See _folder.py.
            self._folder_lock = FolderLock(self.path)
            self.session = self._folder_lock.session
            self.open_databases = OpenDatabases(max_open_databases)
            try:
                self.backend = SqliteBackend(self.path, max_open=max_open_databases,
                                             time_limit=self.sql_time_limit)
            except BaseException:
                # A traceback kept by Jupyter would keep this half-made lab, and its lock,
                # alive: let go of the folder now.
                self._folder_lock.release()
                raise
        self.backend = _CountingBackend(self.backend, self)
        self._hand_down()

    def _hand_down(self) -> None:
        """Fill ``self.services`` (services.py): what the rooms below the lab may use of it.
        Settings and parts are the lab's own objects; hooks are its bound methods, looked up
        once here rather than at every call."""
        services = self.services
        for name in ("model", "storage", "path", "commit_latency", "max_queue", "max_in_flight",
                     "sql_time_limit", "idle_timeout", "hibernate_after", "recording", "session",
                     "max_tasks", "open_databases",
                     "random", "clock", "bus", "backend", "scheduler", "faults", "alarms",
                     "network", "env"):
            setattr(services, name, getattr(self, name))
        services.bindings = self.env._bindings
        services.closed = False
        services.recent_calls = 0
        services.track = self._track
        services.before_commit = self._before_commit
        services.record_call = self._record_call
        services.next_delivery_id = self._next_delivery_id
        services.coming_delivery_id = self._coming_delivery_id
        services.host = self._host
        services.host_of = self._host_of
        services.hosts = self._hosts.values
        services.check_open = self._check_open
        services.evict_when_idle = self._evict_when_idle

    # -- bindings ------------------------------------------------------------------------

    def bind(self, name: str, cls: type, *, sql: bool = False) -> DurableObjectNamespace:
        """Bind ``cls`` as ``name`` (``env.NAME``); returns its namespace.

        ``sql=True`` makes the class *SQLite-backed* (Cloudflare's ``new_sqlite_classes``):
        ``ctx.storage.sql`` is available and every storage call is synchronous, as in workerd's
        ActorSqlite. The default is a *KV-backed* class (ActorCache): reads that miss the cache
        wait for storage with the input gate CLOSED.

        Binding a name again with another class is a code update: live instances are reset
        (calls in flight fail with "Durable Object reset because its code was updated.") and
        the next call constructs the new class over the same stored state. Stubs keep working.
        """
        self._check_open()
        if not isinstance(name, str) or not name.isidentifier() or name.startswith("_"):
            raise ValueError(
                f"a binding name must be a Python identifier not starting with '_' "
                f"(e.g. 'COUNTER'), got {name!r}"
            )
        if not (inspect.isclass(cls) and issubclass(cls, DurableObject)):
            raise TypeError(
                f"lab.bind() takes a class that subclasses durable_lab.DurableObject, got "
                f"{cls!r}. Write: class {getattr(cls, '__name__', 'MyObject')}(DurableObject): ..."
            )
        if inspect.iscoroutinefunction(getattr(cls, "__init__", None)):
            raise TypeError(
                f"{cls.__qualname__}.__init__ is async: a Durable Object constructor must be "
                "synchronous. Start async setup with ctx.blockConcurrencyWhile(self.load) "
                "from the constructor instead."
            )
        namespace = self.env._bindings.get(name)
        if namespace is not None and namespace.sql != bool(sql):
            raise ValueError(
                f"binding {name!r} is {'SQLite' if namespace.sql else 'KV'}-backed; a class "
                "cannot change storage backend once bound (Cloudflare needs a migration too)"
            )
        if namespace is None:
            namespace = DurableObjectNamespace(self.services, name, cls, sql=bool(sql))
            self.env._bindings[name] = namespace
            self._load_stored_alarms(namespace)
            return namespace
        namespace.cls = cls
        for host in self._hosts.values():
            if host.namespace is namespace and host.instance is not None:
                error = DurableObjectResetError(CODE_UPDATED_MESSAGE, reason="codeUpdated")
                host.instance.reset(error, reason="codeUpdated", stubs_broken=False)
        for host in self._hosts.values():  # hibernated objects' sockets close too
            if host.namespace is namespace and host.websockets is not None:
                host.websockets.close_all(CLOSE_CODE_UPDATED, "Durable Object code was updated")
        return namespace

    def _load_stored_alarms(self, namespace: DurableObjectNamespace) -> None:
        """Arm the alarms that objects of ``namespace`` stored in an earlier session."""
        stored = self.backend.stored_objects(namespace.name)
        if not stored:
            return
        hosts = [self._host(namespace, namespace.idFromString(hex_id)) for hex_id in stored]
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            raise RuntimeError(
                "lab.bind() found stored objects but no running event loop to arm their alarms: "
                "call bind() from async code (a notebook cell or an async function)"
            ) from None
        self._track(loop.create_task(self.alarms.load(hosts)))

    def client(self, region: str) -> Client:
        """A caller in ``region`` (a Worker running there): ``lab.client("apac-ne").env.CHAT``
        makes stubs whose calls come from ``region`` (see ``Lab(network=...)``)."""
        return Client(self.services, check_caller_region(self.network, region))

    def _host(self, namespace: DurableObjectNamespace, object_id: DurableObjectId) -> ObjectHost:
        key = (namespace.name, object_id.toString())
        host = self._hosts.get(key)
        if host is None:
            self._check_open()
            host = ObjectHost(self.services, namespace, object_id)
            self._hosts[key] = host
        elif host.id.name is None and object_id.name is not None and host.incarnations == 0:
            # Made from its file (alarms are loaded at bind) before the name was known: now
            # that it is, errors and events can say "COUNTER:room-1" instead of a hex prefix.
            host.id = object_id
            host.label = f"{namespace.name}:{object_id.name}"
        return host

    # -- observation ---------------------------------------------------------------------

    def subscribe(self, callback: Callable[[RuntimeEvent], None]) -> Subscription:
        """Call ``callback(event)`` for every runtime event; ``.close()`` the result to stop."""
        return self.bus.subscribe(callback)

    def record(self, limit: int | None = None) -> Recorder:
        """Start recording events into a list (``rec.events``); ``rec.close()`` to stop."""
        return Recorder(self.bus, limit)

    def statistics(self) -> LabStatistics:
        live = [h.instance for h in self._hosts.values() if h.instance is not None]
        return LabStatistics(
            bindings=len(self.env._bindings),
            objects_seen=len(self._hosts),
            live_instances=len(live),
            deliveries=self._deliveries,
            commits=sum(i.cache.commit_count for i in live),
            kv_writes=sum(getattr(i.cache, "writes", 0) for i in live),
        )

    def _next_delivery_id(self) -> int:
        self._deliveries += 1
        return self._deliveries

    def _coming_delivery_id(self) -> int:
        return self._deliveries + 1

    # -- history, traces, replay (see check.py and trace.py) --------------------------------

    def history(self) -> History:
        """Every client call so far (with ``Lab(record=True)``), for ``durable_lab.check``."""
        if self._history is None:
            raise RuntimeError(
                "this lab does not record calls: make it with Lab(record=True) to get "
                "lab.history() and lab.trace()"
            )
        return self._history

    def explain(self, call: Any) -> Explanation:
        """Where ``call``'s time went: a table of phases (ms and %) and a one-line verdict.

        ``call`` is a history entry (``lab.history().op(3)``, with ``Lab(record=True)``), a
        workload call (``result.calls[i]``), a ``Breakdown``, or a stub (its most recent call,
        in flight or finished). See ``durable_lab.attribution``.
        """
        return _attribution.explain(call)

    def keep_recent_calls(self, per_object: int = 50) -> None:
        """Keep the last ``per_object`` finished calls of every object, for
        :meth:`recent_calls` (the "Where the time went" panel turns this on). Off by default:
        a kept call holds its arguments and its result. ``0`` turns it off again."""
        if (isinstance(per_object, bool) or not isinstance(per_object, int)
                or not 0 <= per_object <= MAX_RECENT_CALLS):
            raise ValueError(
                f"per_object must be an int from 0 to {MAX_RECENT_CALLS:,} (each kept call "
                f"holds its arguments and its result), got {per_object!r}")
        if per_object <= self._recent_calls and per_object:
            return  # (already keeping at least that many)
        self._recent_calls = self.services.recent_calls = per_object
        for host in self._hosts.values():
            kept = list(host.recent or ())
            host.recent = deque(kept, maxlen=per_object) if per_object else None

    def recent_calls(self, target: Any = None) -> list[Breakdown]:
        """The breakdowns of the finished calls kept (``keep_recent_calls``) of ``target`` (a
        stub, an id, an object label like ``"COUNTER:room-1"``, or None: every object),
        oldest first."""
        if target is None:
            hosts = list(self._hosts.values())
        elif isinstance(target, str):  # an object label, "COUNTER:room-1"
            hosts = [h for h in self._hosts.values() if h.label == target]
            if not hosts:
                # A typo must not read as "no calls" (it once returned [] silently).
                seen = ", ".join(repr(h.label) for h in list(self._hosts.values())[:5])
                raise LookupError(
                    f"this lab has not seen an object labelled {target!r}: recent_calls() "
                    "takes a stub, an id, the label of an object the lab has seen (e.g. "
                    f"'COUNTER:room-1'; seen: {seen or 'none yet'}), or nothing for every "
                    "object")
        else:
            hosts = [self._host_of(target)]
        now = self.clock.now()
        calls = [d for h in hosts for d in (h.recent or ())]
        calls.sort(key=lambda d: (getattr(d, "end", None) or 0.0, d.id))
        return [_attribution.snapshot(d, now, self.services) for d in calls]

    def _record_call(self, host: ObjectHost, kind: str, method: str, args: tuple[Any, ...],
                     kwargs: dict[str, Any], send: Callable[[Any], asyncio.Future[Any]]
                     ) -> asyncio.Future[Any]:
        history = self._history
        assert history is not None
        if len(history.operations) >= self.record_limit:
            self._stop_recording()
            return send(None)
        task = asyncio.current_task()
        client = task.get_name() if task is not None else "client"
        shown_args = args if kind != "fetch" else (getattr(args[0], "url", args[0]),)
        if not self._record_all:
            # record="calls" (explore): the history only. No trace record (lab.trace() is
            # refused) and no breakdown: a search makes thousands of labs and reads neither.
            op = history.invoke(client, host.label, method, shown_args, kwargs)
            reply = send(None)
            reply.add_done_callback(partial(_answer, history, op))
            return reply
        record: dict[str, Any] = {
            "index": len(self._calls) + 1,
            "position": len(self.scheduler.transitions),
            "binding": host.namespace.name, "name": host.id.name, "id": host.object_id,
            "kind": kind, "method": method, "client": client,
            **_trace.encode_call_args(kind, args, kwargs),
        }
        self._calls.append(record)
        op = history.invoke(client, host.label, method, shown_args, kwargs)
        arrived: list[Any] = []  # the call's delivery, once it reached the object
        reply = send(arrived.append)

        def done(fut: asyncio.Future[Any]) -> None:
            record["outcome"] = _trace.encode_outcome(fut)
            if arrived:
                # Where its time went (attribution.py), kept with the history entry.
                entry = self._history.op(op)  # type: ignore[union-attr]
                entry.breakdown = _attribution.snapshot(arrived[0], self.clock.now(), self.services)
            _answer(history, op, fut)

        reply.add_done_callback(done)
        return reply

    def _stop_recording(self) -> None:
        """The recording is full: keep what it has (a prefix of the run), record no more."""
        self.recording_stopped = True
        self.services.recording = False
        self.scheduler.recording = False
        if self._events is not None:
            self._events.close()
        warnings.warn(
            f"the lab stopped recording at {self.record_limit:,} calls, its limit "
            f"(Lab(record=...); True keeps {RECORD_LIMIT:,}): lab.history() and lab.trace() "
            "keep those calls and what happened up to the last of them. Make the lab with "
            "Lab(record=N) to keep more (about 4.5 KiB per call).",
            RuntimeWarning, stacklevel=4)

    def trace(self) -> dict[str, Any]:
        """The run so far as a JSON-serialisable dict (calls, transitions, events)."""
        if not self._record_all:
            raise RuntimeError("this lab does not record its events: make it with "
                               "Lab(record=True)")
        events = []
        for event in (self._events.events if self._events is not None else []):
            row = dataclasses.asdict(event)  # type: ignore[call-overload]  # (a dataclass)
            row["kind"] = event.kind
            events.append({k: list(v) if isinstance(v, tuple) else v for k, v in row.items()})
        return {
            "version": _trace.TRACE_VERSION,
            "seed": self.seed,
            "model": self.model,
            "storage": self.storage,
            "bindings": {name: {"class": ns.cls.__qualname__, "module": ns.cls.__module__,
                                "sql": ns.sql}
                         for name, ns in self.env._bindings.items()},
            "truncated": self.recording_stopped,
            "calls": [dict(c) for c in self._calls],
            "transitions": list(self.scheduler.transitions),
            "events": events,
        }

    @staticmethod
    async def replay(trace: dict[str, Any], bindings: dict[str, type] | None = None, *,
                     keep_lab: bool = False) -> Any:
        """Run a trace again; the result says where it first diverged.

        ``bindings`` maps binding names to classes (e.g. the edited class); by default the
        classes the trace names are looked up again by module and name, which finds the current
        definition of a class defined in a notebook.
        """
        return await _trace.replay(trace, bindings, keep_lab=keep_lab, make_lab=Lab)

    # -- panels (widgets/, an optional extra) ----------------------------------------------

    def dashboard(self, target: Any = None, *, scale: float = 1.0) -> Any:
        """Open the live panels on this lab (``pip install durable_lab[widgets]``).

        ``target`` (a stub, an id or a name) picks the object the object view shows first;
        ``scale=1.5`` enlarges everything for a projector.
        """
        import importlib

        # Imported here, on demand, by name: the core itself never imports a UI package.
        panels = importlib.import_module("widgets")
        return panels.dashboard(self, target, scale=scale)

    # -- stepping (see scheduler.py) -------------------------------------------------------

    def pause(self) -> None:
        """Hold every transition until it is stepped or chosen (``lab.choices()``)."""
        self.scheduler.pause()

    def resume(self) -> None:
        """Run freely again; held transitions happen in the order they became ready."""
        self.scheduler.resume()

    @property
    def paused(self) -> bool:
        return self.scheduler.paused

    def choices(self) -> list[Choice]:
        """The transitions that are legal now (only what the gates allow), oldest first."""
        return self.scheduler.choices()

    async def choose(self, index: int | Choice) -> Choice:
        """Take ``choices()[index]`` (or a ``Choice`` from an earlier ``choices()``, if it is
        still legal) and run to the next transitions."""
        return await self.scheduler.choose(index)

    async def step(self) -> Choice | None:
        """Pause if needed, take the oldest transition, run to the next ones."""
        return await self.scheduler.step()

    async def step_until(self, condition: Any, *, max_steps: int = 10_000) -> RuntimeEvent | None:
        """Step until an event of a type (or matching a predicate) is emitted."""
        return await self.scheduler.step_until(condition, max_steps=max_steps)

    def break_on(self, kind: str | None = None, object: str | None = None) -> Breakpoint:
        """Pause before transitions of ``kind`` (e.g. "commit") at ``object`` ("C:room-1")."""
        return self.scheduler.break_on(kind, object)

    # -- lifecycle of objects ------------------------------------------------------------

    def _host_of(self, target: Any) -> ObjectHost:
        if isinstance(target, DurableObjectStub):
            return target._host
        if hasattr(target, "toString") and hasattr(target, "namespace"):
            namespace = self.env._bindings.get(target.namespace)
            if namespace is None:
                raise ValueError(f"no binding {target.namespace!r} in this lab")
            return self._host(namespace, target)
        raise TypeError(f"expected a stub or an id, got {type(target).__name__}: {target!r}")

    def _host_for(self, target: Any) -> ObjectHost | None:
        """The host of a stub, an id or a label (``"COUNTER:room-1"``); None if this lab has
        not seen that object."""
        if isinstance(target, str):
            for host in self._hosts.values():
                if host.label == target:
                    return host
            return None
        return self._host_of(target)

    async def evict(self, target: DurableObjectStub | DurableObjectId) -> bool:
        """Evict the object from memory, as Cloudflare does with idle objects.

        Waits until the object has no work in flight, then drops the instance: in-memory fields
        are lost, storage is kept, stubs keep working, and the next call runs the constructor
        again. Returns False if the object was not in memory.
        """
        return await self._evict_when_idle(self._host_of(target), "requested")

    async def _evict_when_idle(self, host: ObjectHost, reason: str) -> bool:
        """Wait until ``host``'s instance has no work in flight, then evict it for ``reason``."""
        while host.instance is not None and not host.instance.is_idle:
            instance = host.instance
            pending = [t for t in instance.tasks if not t.done()]
            pending += [f for f in instance.cache.pending_commits() if not f.done()]
            pending += [d.reply for d in instance.deliveries if not d.reply.done()]
            if pending:
                await asyncio.wait(pending)
            else:
                await asyncio.sleep(0)
        if host.instance is None:
            return False
        host.instance.evict(reason=reason)
        return True

    # -- WebSockets (durable_lab/websockets.py) -------------------------------------------

    async def connect(self, stub: DurableObjectStub, path: str = "/", *,
                      headers: dict[str, str] | None = None) -> ClientWebSocket:
        """Open a WebSocket to the object: ``stub.fetch`` of ``https://lab{path}`` with
        ``Upgrade: websocket``, which must answer 101 with ``web_socket=client``. Returns the
        client end (``await ws.send(m)``, ``await ws.receive()``, ``ws.messages``)."""
        if not isinstance(path, str) or not path.startswith("/"):
            raise ValueError(f"connect() takes a path starting with '/', got {path!r}")
        request = Request(f"https://lab{path}",
                          headers={**(headers or {}), "Upgrade": "websocket"})
        response = await stub.fetch(request)
        if not isinstance(response, Response) or response.status != 101:
            body = await response.text() if isinstance(response, Response) else ""
            raise RuntimeError(
                f"the WebSocket upgrade of {path!r} failed: fetch() answered "
                f"{getattr(response, 'status', response)!r}"
                + (f" ({body[:200]!r})" if body else "")
                + "; an upgrade answers Response(None, status=101, web_socket=client)"
            )
        ws = response.web_socket
        if isinstance(ws, WebSocket):
            raise TypeError(
                "fetch() returned the server end in web_socket=: return the client end "
                "(client, server = WebSocketPair()) and accept the server end"
            )
        if not isinstance(ws, ClientWebSocket):
            raise TypeError(
                "a 101 response must carry web_socket=client (the client end of a "
                f"WebSocketPair), got {type(ws).__name__}"
            )
        if ws._record is None:
            raise RuntimeError(
                "fetch() returned a WebSocket whose server end was never accepted: call "
                "self.ctx.acceptWebSocket(server) before returning the response"
            )
        return ws

    async def hibernate(self, target: DurableObjectStub | DurableObjectId) -> bool:
        """Hibernate the object now: like ``evict`` (waits for work in flight; fields lost), but
        its accepted WebSockets stay open and the next event on them wakes it. Returns False if
        the object was not in memory."""
        return await self._evict_when_idle(self._host_of(target), "hibernation")

    async def objects(self) -> list[ObjectInfo]:
        """Every object this lab has seen, with its state, queue and storage size."""
        infos = []
        for host in self._hosts.values():
            inst = host.instance
            if inst is not None:
                state = "idle" if inst.is_idle else "live"
                stats = inst.cache.statistics()
                pending = stats.dirty_keys + stats.flushing_keys
                queued, in_flight = inst.queued, len(inst.deliveries) - inst.queued
            else:
                if host.incarnations == 0:
                    state = "not started"
                elif host.last_end == "evicted":
                    state = "evicted"
                elif host.last_end == "codeUpdated":
                    state = "reset"  # waits for the next call to construct the new code
                else:
                    state = "broken"  # failed; old stubs stay broken, a new stub starts fresh
                pending = queued = in_flight = 0
            size = await self.backend.stored_size(host.storage_key) if not self._closed else 0
            infos.append(ObjectInfo(
                namespace=host.namespace.name, name=host.id.name, id=host.object_id,
                label=host.label, state=state, incarnations=host.incarnations,
                queue_length=queued, in_flight=max(0, in_flight), pending_writes=pending,
                stored_bytes=size, alarm=self.alarms.scheduled.get(host.storage_key),
                region=(self.network._placements.get(host.storage_key)
                        if self.network is not None else None),
            ))
        return infos

    async def peek(self, target: Any, *, limit: int = 500) -> dict[str, Any]:
        """What ``target``'s key-value storage holds now, pending writes included: read from
        outside, nothing delivered to the object, no gate touched (``durable_lab.peek``)."""
        if self._closed:
            return {}
        host = self._host_for(target)
        if host is None:
            return {}
        return await kv_snapshot(host, self.backend, self.path, limit=limit)

    def snapshot(self, target: Any = None) -> Any:
        """The live state now, as a reader of the event stream up to ``bus.seq`` knows it.

        ``lab.snapshot()``: a ``LabSnapshot`` (the scheduler, and every object the lab has
        seen, in first-seen order); ``lab.snapshot(target)`` (a stub, an id or a label): that
        object's ``ObjectSnapshot`` (mailbox, input gate, running turn, awaits, pending
        writes, batches in flight, held replies...). Read synchronously, from outside: nothing
        is delivered, no gate touched, no event emitted. A panel opened late starts from it
        and folds the events after its ``seq`` (durable_lab/snapshot.py, docs/panels.md).
        """
        seq = self.bus.seq
        if target is None:
            scheduler = self.scheduler
            return _snapshot.lab_snapshot(
                list(self._hosts.values()), seq, paused=scheduler.paused,
                steps=scheduler.steps_taken, last_step=scheduler.last_step, closed=self._closed,
                region_of=self._region_of, time=self.clock.now())
        host = self._host_for(target)
        if host is None:
            raise LookupError(f"this lab has not seen {target!r}: snapshot() takes a stub, an id "
                              f"or the label of an object the lab has seen (e.g. 'COUNTER:room-1')")
        return _snapshot.object_snapshot(host, seq, region=self._region_of(host))

    async def snapshot_storage(self, target: Any, *, limit: int = 500) -> Any:
        """``snapshot(target)`` with ``storage`` filled: the key-value data as the object sees
        it (``lab.peek``), read at the same ``seq`` as the rest (a commit that lands while
        storage is read makes it read again)."""
        host = self._host_for(target)
        if host is None:
            raise LookupError(f"this lab has not seen {target!r}: snapshot_storage() takes a "
                              f"stub, an id or the label of an object the lab has seen")
        for _ in range(20):
            commits, instance = host.commits, host.instance
            values = await self.peek(target, limit=limit)
            if host.commits == commits and host.instance is instance:
                break
        # (Still moving after 20 reads: the last read, with the state it ended at.)
        snap = _snapshot.object_snapshot(host, self.bus.seq, region=self._region_of(host))
        return dataclasses.replace(snap, storage=values)

    def _region_of(self, host: ObjectHost) -> str | None:
        network = self.network
        return network._placements.get(host.storage_key) if network is not None else None

    def tables(self, target: Any, *, rows: int = 20) -> list[TableSnapshot]:
        """The SQL tables of a SQLite-backed object now: columns, row count, first ``rows``."""
        if self._closed:
            return []
        host = self._host_for(target)
        if host is None:
            return []
        return sql_snapshot(host, self.path, rows=rows)

    # -- faults (the minimum the runtime's own tests need; lab controls add more) ----------

    def fail_next_commit(self, target: DurableObjectStub | DurableObjectId | str) -> None:
        """Make the next commit of ``target`` fail, as a storage failure would.

        Shorthand for ``lab.faults.fail_next_commit(target)``.
        """
        self.faults.fail_next_commit(target)

    async def _before_commit(self, instance: Any) -> Exception | None:
        """What the lab does to every commit before it reaches storage: the injected latency
        (``commit_latency`` plus ``faults.delay_commits``), then maybe an injected failure."""
        delay = self.commit_latency + self.faults.commit_delay(instance)
        if delay:
            await self.clock.sleep(delay)
        return self.faults.take_commit_failure(instance)

    # -- lifecycle -----------------------------------------------------------------------

    def _track(self, task: asyncio.Future[Any]) -> None:
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def wait_idle(self) -> None:
        """Return once nothing is running: no delivery, no critical section, no commit."""
        if self._forked is not None:
            raise self._forked  # the parent's work: it would never finish in this process
        while True:
            pending = [t for t in self._tasks if not t.done()]
            scheduled = [f for h in self._hosts.values() if h.instance is not None
                         for f in h.instance.cache.pending_commits() if not f.done()]
            if not pending and not scheduled:
                return
            await asyncio.wait(pending + scheduled)

    def _check_open(self) -> None:
        if self._forked is not None:
            raise self._forked
        if self._closed:
            raise LabClosedError()

    @property
    def closed(self) -> bool:
        return self._closed

    async def close(self) -> None:
        """Let pending commits land, stop every object, close storage, release the folder.

        Idempotent, and it completes: the work runs in a task of its own, so a close whose
        caller is interrupted (Jupyter's interrupt cancels the cell) goes on in the background,
        and a close that was stopped part-way is finished by the next ``close()``. Every step
        can be repeated safely.
        """
        if self._forked is not None:
            # A fork()ed child: closing would commit the copy's writes and unlock the
            # parent's folder. The parent closes its lab; the child only learns why not.
            raise self._forked
        if self._close_done:
            return
        if not self._closed:
            self._closed = self.services.closed = True
            if self.bus.active:
                # First, so a panel can show "lab closed" and read the labClosed resets below
                # as part of it (docs/events.md gives the order).
                live = sum(1 for h in self._hosts.values() if h.instance is not None)
                self.bus.emit(LabClosed, "", "", live)
        task = self._close_task
        if task is None or task.done():
            if task is not None and not task.cancelled():
                task.exception()  # it failed part-way: retrieved here, redone below
            task = self._close_task = asyncio.ensure_future(self._finish_close())
        await asyncio.shield(task)

    async def _finish_close(self) -> None:
        self.alarms.cancel_all()
        if self.network is not None:
            self.network.close(LabClosedError)  # calls still on their way fail, not hang
        # A paused lab would hold the commits we are about to wait for: let everything run.
        self.scheduler.clear_breakpoints()
        if self.scheduler.paused:
            self.scheduler.resume()
        # Writes already made are committed (their flushes are scheduled or running).
        commits = [f for h in self._hosts.values() if h.instance is not None
                   for f in h.instance.cache.pending_commits() if not f.done()]
        if commits:
            await asyncio.wait(commits)
        closing = LabClosedError()
        for host in self._hosts.values():
            if host.instance is not None:
                host.instance.reset(closing, reason="labClosed", stubs_broken=True)
        for host in self._hosts.values():  # hibernated objects' sockets too (code 1001)
            if host.websockets is not None:
                host.websockets.close_all(CLOSE_LAB_CLOSED, "the lab was closed")
        leftover = [t for t in self._tasks if not t.done()]
        # A batch that started flying while we closed (a delivery still running wrote it) lands
        # now, not on a closed backend after close() returned: nothing is emitted after close().
        leftover += [h._landing for h in self._hosts.values()
                     if h._landing is not None and not h._landing.done()]
        if leftover:
            await asyncio.wait(leftover)
        self.scheduler.clear_breakpoints()
        if self.scheduler.paused:
            self.scheduler.resume()
        await self.backend.aclose()
        _turns.uninstall_task_factory(self.services)  # object code no longer runs on this loop
        if self._folder_lock is not None:
            self._folder_lock.release()
        if self._tempdir is not None:
            shutil.rmtree(self._tempdir, ignore_errors=True)
        self._close_done = True

    async def __aenter__(self) -> Lab:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def __repr__(self) -> str:
        where = self.storage if self.path is None else f"sqlite at {self.path}"
        state = "closed" if self._closed else f"{len(self._hosts)} objects"
        return f"<Lab {where}, {state}>"
