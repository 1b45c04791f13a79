"""``ctx.storage``: the Durable Object storage API, with Cloudflare's names and rules.

Every method checks its input first and changes nothing if the input is bad: a bad key or value
raises at once (``TypeError``/``ValueError`` saying what was wrong and what is allowed) and the
rest of a batch is not applied either.

What each call costs in turns (the thing to learn):

- ``put()``/``delete()`` of a known key change the cache and return an already-finished
  awaitable: ``await`` on it does not end the turn, so the writes of one turn coalesce.
  They are not ``async def``: called without ``await`` they still take effect.
- ``get()`` of a known key is a cache *hit* (no I/O, the turn goes on); of an unknown key a
  *miss*: storage is read and the input gate stays CLOSED until the code after the ``await``
  has run, so read-then-write cannot interleave with other deliveries.
- ``list()`` always reads storage (a miss) and merges the cache's newer entries over the rows.
- ``sync()`` waits for the commits pending now. It is *not* a storage read: the input gate opens
  while it waits, like any other I/O (trace ``a2-sync-between`` in the spec).

Deviation from Cloudflare (docs/semantics.md): validation errors are raised synchronously rather
than as rejected promises, so that a bad ``put()`` without ``await`` is not silently lost.

SQL API and transactions
------------------------
There are two storage engines, chosen per class when it is bound:

- **KV-backed** (``lab.bind(NAME, Cls)``, workerd ActorCache): everything above. ``ctx.storage.sql``
  raises ``RuntimeError("This Durable Object is not backed by SQLite storage, so the SQL API is
  not available. ...")`` and ``transactionSync`` raises "Durable Object is not backed by SQL.".
- **SQLite-backed** (``lab.bind(NAME, Cls, sql=True)``, workerd ActorSqlite;
  :class:`SqlDurableObjectStorage`): the object owns a SQLite database. Every call is
  synchronous: ``get``/``list`` of any key read the database at once (a *hit*: no turn
  boundary, no gate held), writes join an implicit transaction that commits after the turn,
  together with ``ctx.storage.sql.exec(...)`` statements (see ``durable_lab.sql``).
  ``deleteAll()`` wipes the whole database, SQL tables included. ``transactionSync(fn)`` runs a
  synchronous ``fn`` in a savepoint: released if it returns, rolled back if it raises.

``await ctx.storage.transaction(closure)`` works on both engines. It runs ``closure(txn)`` under
``blockConcurrencyWhile`` (nothing else enters the object meanwhile); ``txn`` has ``get``,
``put``, ``delete``, ``list`` and ``rollback()`` (``deleteAll`` raises "Cannot call deleteAll()
within a transaction"). If the closure raises, its writes are rolled back and the error is
raised to the caller, and the object is *not* reset. On the KV engine the writes of ``txn`` are
buffered in it (its reads see them) and reach the cache all at once when the closure returns,
so they land in one flush; writes made through ``ctx.storage`` inside the closure are not part
of the transaction. On SQLite the transaction is a savepoint and every storage call inside
belongs to it.

``deleteAll()`` also deletes the alarm on both engines (Cloudflare compatibility flag
``delete_all_deletes_alarm``, the default from 2026-02-24).
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Callable, Generator, Iterable, Mapping
from functools import partial
from threading import get_ident
from typing import TYPE_CHECKING, Any

from . import values
from ._turns import current_driver, mark_io, resolved, spawn, wake
from .alarms import ALARM_KEY, alarm_time, stored_alarm
from .errors import StorageCorruptError
from .events import StorageOp
from .sql import NOT_SQL_MESSAGE, NOT_SQLITE_MESSAGE, SqlStorage

if TYPE_CHECKING:
    from ._cache import StorageCache
    from ._sql_engine import SqliteEngine

# Handed down from the rooms above (``_host.Instance``): named for the reader, not imported.
Instance = Any

__all__ = [
    "MAX_KEYS",
    "MAX_KEY_SIZE",
    "MAX_SQLITE_ENTRY_SIZE",
    "MAX_VALUE_SIZE",
    "DurableObjectStorage",
    "KvTransaction",
    "SqlDurableObjectStorage",
    "SqlTransaction",
    "TransactionResult",
]

MAX_KEY_SIZE = 2048  # bytes of UTF-8
MAX_VALUE_SIZE = 131072  # bytes, encoded
MAX_KEYS = 128  # per get/put/delete call
MAX_SQLITE_ENTRY_SIZE = 2 * 1024 * 1024  # key + value, SQLite-backed objects

_MISSING: Any = object()

#: ``StorageOp.cache`` of a put/delete/transaction that changed nothing in the cache (the same
#: value again, a key known absent deleted): no flush and no commit follow, so a panel must not
#: show its keys as pending (on a KV-backed class; SQLite-backed classes commit every write).
UNCHANGED = "unchanged"


def _done(value: Any) -> asyncio.Future[Any]:
    # A resolved promise: awaiting it does not end the turn but lets the turn's other
    # runnable code go first (_turns.Resolved).
    return resolved(value)


def _not_unicode(what: str, text: str) -> ValueError:
    """The error for a str that cannot be encoded as UTF-8 (it holds a lone surrogate)."""
    bad = next(c for c in text if 0xD800 <= ord(c) <= 0xDFFF)
    return ValueError(
        f"{what} {text[:40]!r} is not valid Unicode text: it holds the lone surrogate {bad!r}, "
        "which cannot be encoded as UTF-8 (keys and names must be encodable text)"
    )


def _utf8_size(text: str, what: str) -> int:
    """Bytes of ``text`` in UTF-8; ValueError naming ``what`` if it holds a lone surrogate."""
    if text.isascii():  # O(1) in CPython: the str knows
        return len(text)
    try:
        return len(text.encode())
    except UnicodeEncodeError:
        raise _not_unicode(what, text) from None


def _check_key(key: object) -> str:
    if type(key) is not str:  # (a short ASCII key is checked in three cheap steps)
        raise TypeError(f"storage keys must be str, got {type(key).__name__}: {key!r}")
    if len(key) > MAX_KEY_SIZE // 4 or not key.isascii():
        size = _utf8_size(key, "storage key")
        if size > MAX_KEY_SIZE:
            raise ValueError(
                f"Keys cannot be larger than {MAX_KEY_SIZE} bytes. "
                f"A key of size {size} was provided."
            )
    return key


def _check_keys(keys: object, op: str) -> list[str]:
    if not isinstance(keys, (list, tuple)):
        raise TypeError(f"{op}() takes a key (str) or a list of keys, got {type(keys).__name__}")
    if len(keys) > MAX_KEYS:
        raise ValueError(
            f"Maximum number of keys is {MAX_KEYS}. {len(keys)} keys were provided to {op}()."
        )
    return [_check_key(k) for k in keys]


def _encode(key: str, value: object) -> bytes:
    data = values.encode_for_key(key, value)
    if len(data) > MAX_VALUE_SIZE:
        raise ValueError(
            f"Values cannot be larger than {MAX_VALUE_SIZE} bytes. "
            f"A value of size {len(data)} was provided (key {key!r})."
        )
    return data


def decode_stored(label: str, key: str, data: bytes, limit: int = MAX_VALUE_SIZE) -> Any:
    """``values.decode`` of the stored value of ``key``: corrupt bytes fail this read only,
    with one error naming the object and the key."""
    try:
        return values.decode(data, limit=limit)
    except StorageCorruptError as exc:
        raise StorageCorruptError(
            f"{label}: the stored value of key {key!r} cannot be read: {exc}"
        ) from exc


def _prefix_end(prefix: str) -> str | None:
    """The smallest string greater than every string starting with ``prefix`` (None: no bound)."""
    chars = list(prefix)
    while chars:
        last = ord(chars.pop())
        if last < 0x10FFFF:
            return "".join(chars) + chr(last + 1)
    return None


def _kv_put_items(key: object, value: Any) -> list[tuple[str, bytes]]:
    """The (key, encoded value) pairs of a KV-engine ``put(key, value)`` or ``put(dict)``."""
    if isinstance(key, Mapping):
        if value is not _MISSING:
            raise TypeError(
                "put() takes either a key and a value, or one dict of entries, not both"
            )
        if len(key) > MAX_KEYS:
            raise ValueError(
                f"Maximum number of key value pairs is {MAX_KEYS}. "
                f"{len(key)} pairs were provided."
            )
        return [(_check_key(k), _encode(k, v)) for k, v in key.items()]
    if value is _MISSING:
        raise TypeError("put() called with a key and no value: put(key, value)")
    checked = _check_key(key)
    return [(checked, _encode(checked, value))]


def _check_sql_key(key: object) -> str:
    """A key of SQLite-backed storage: any str SQLite can store (no 2 KiB limit there)."""
    if type(key) is not str:
        raise TypeError(f"storage keys must be str, got {type(key).__name__}: {key!r}")
    _utf8_size(key, "storage key")
    return key


def _check_sql_keys(keys: object, op: str) -> list[str]:
    if not isinstance(keys, (list, tuple)):
        raise TypeError(f"{op}() takes a key (str) or a list of keys, got {type(keys).__name__}")
    return [_check_sql_key(k) for k in keys]


def _sql_put_items(key: object, value: Any) -> list[tuple[str, bytes]]:
    """``_kv_put_items`` for SQLite-backed storage: key + value up to 2 MiB, no count limit."""
    if isinstance(key, Mapping):
        if value is not _MISSING:
            raise TypeError(
                "put() takes either a key and a value, or one dict of entries, not both"
            )
        pairs = list(key.items())
    else:
        if value is _MISSING:
            raise TypeError("put() called with a key and no value: put(key, value)")
        pairs = [(key, value)]
    items: list[tuple[str, bytes]] = []
    for k, v in pairs:
        k = _check_sql_key(k)
        data = values.encode_for_key(k, v)
        size = len(k.encode()) + len(data)
        if size > MAX_SQLITE_ENTRY_SIZE:
            raise ValueError(
                f"Key and value together cannot be larger than {MAX_SQLITE_ENTRY_SIZE} bytes "
                f"in SQLite-backed storage. An entry of size {size} was provided (key {k!r})."
            )
        items.append((k, data))
    return items


def _list_bounds(prefix: str | None, start: str | None, start_after: str | None,
                 end: str | None, limit: int | None) -> tuple[str | None, str | None]:
    """Check list() options; the [start, end) range they select."""
    for name, bound in (("prefix", prefix), ("start", start), ("startAfter", start_after),
                        ("end", end)):
        if bound is not None and type(bound) is not str:
            raise TypeError(f"list() option {name} must be a str, got {type(bound).__name__}")
        if bound is not None:
            _utf8_size(bound, f"list() option {name}")
    if start is not None and start_after is not None:
        raise TypeError("list() cannot be called with both start and startAfter values.")
    if limit is not None and (type(limit) is not int or limit <= 0):
        raise TypeError(f"List limit must be positive (got {limit!r}).")
    if start_after is not None:
        start = start_after + "\0"
    if prefix:
        if start is None or start < prefix:
            start = prefix
        upper = _prefix_end(prefix)
        if upper is not None and (end is None or end > upper):
            end = upper
    return start, end


class DurableObjectStorage:
    """The storage of one object instance (``self.ctx.storage``)."""

    __slots__ = ("_cache", "_done", "_instance")

    def __init__(self, instance: Instance, cache: StorageCache) -> None:
        self._instance = instance
        self._cache = cache
        self._done: asyncio.Future[None] | None = None

    def _emit(self, op: str, keys: Iterable[str], cache: str) -> None:
        """Emit the StorageOp (if someone listens). Called also while a delivery awaits
        something (``Instance.awaits``): a storage call of a delivery that awaited storage
        says its code runs on, and the runtime keeps that as a reader of the stream folds it
        (for snapshots, listened to or not)."""
        inst = self._instance
        driver = current_driver.get()
        delivery = driver.delivery if driver is not None else 0
        awaits = inst.awaits
        if awaits and delivery in awaits:
            del awaits[delivery]
            inst.running = delivery
        if inst.bus.active:
            inst.bus.emit(StorageOp, inst.label, inst.object_id, delivery, op, tuple(keys),
                          cache)

    def _start_read(self, coro: Any, allow_concurrency: bool) -> asyncio.Future[Any]:
        task = spawn(coro)
        if not allow_concurrency:
            # The read holds the gate of the code that issued it, however it is awaited
            # (directly, gather, wait_for, a task): first callback, so that the awaiter's
            # wake-up finds the gate settling and comes back in as part of the read's turn.
            driver = current_driver.get()
            gate = driver.gate if driver is not None else self._instance.gate
            gate.hold_for(task)
        self._cache.track_read(task)
        if not allow_concurrency:
            holding = self._instance.gate_holding_reads
            holding.add(task)
            task.add_done_callback(holding.discard)
        self._instance.track(task)
        return task

    # -- get -----------------------------------------------------------------------------

    def get(self, keys: str | list[str], *, allowConcurrency: bool = False,
            noCache: bool = False) -> asyncio.Future[Any]:
        """The value stored at ``keys`` (None if absent), or a dict of the keys that exist.

        A list of keys gives a dict sorted by key with only the keys that exist.
        """
        self._instance.check_usable()
        if isinstance(keys, str):
            key = _check_key(keys)
            known, data = self._cache.lookup(key)
            if known:
                if self._instance.bus.active or self._instance.awaits:
                    self._emit("get", (key,), "hit")
                return _done(None if data is None else self._decode(key, data))
            if self._instance.bus.active or self._instance.awaits:
                self._emit("get", (key,), "miss")
            return self._start_read(self._read_one(key, not noCache), allowConcurrency)
        wanted = sorted(set(_check_keys(keys, "get")))
        found: dict[str, bytes] = {}
        missing: list[str] = []
        for key in wanted:
            known, data = self._cache.lookup(key)
            if not known:
                missing.append(key)
            elif data is not None:
                found[key] = data
        if self._instance.bus.active or self._instance.awaits:
            self._emit("get", wanted, "miss" if missing else "hit")
        if not missing:
            return _done({k: self._decode(k, found[k]) for k in wanted if k in found})
        return self._start_read(self._read_many(wanted, found, missing, not noCache),
                                allowConcurrency)

    async def _read_one(self, key: str, remember: bool) -> Any:
        found = await self._cache.read_missing([key], remember=remember)
        data = found.get(key)
        return None if data is None else self._decode(key, data)

    async def _read_many(self, wanted: list[str], found: dict[str, bytes], missing: list[str],
                         remember: bool) -> dict[str, Any]:
        found.update(await self._cache.read_missing(missing, remember=remember))
        return {k: self._decode(k, found[k]) for k in wanted if k in found}

    #: The largest value this engine stores; anything longer read back is not ours.
    _MAX_STORED = MAX_VALUE_SIZE

    def _decode(self, key: str, data: bytes) -> Any:
        return decode_stored(self._instance.label, key, data, self._MAX_STORED)

    # -- put / delete --------------------------------------------------------------------

    def put(self, key: str | Mapping[str, Any], value: Any = _MISSING, *,
            allowUnconfirmed: bool = False, allowConcurrency: bool = False,
            noCache: bool = False) -> asyncio.Future[None]:
        """Store ``value`` at ``key``, or every pair of a dict. Takes effect now, without await."""
        instance = self._instance
        if instance.broken is not None or get_ident() != instance.thread:
            instance.check_usable()  # (raises: reset, or called from another thread)
        if type(key) is str and value is not _MISSING and not allowUnconfirmed:
            # The common case, kept short: one key, one value, confirmed.
            if len(key) > MAX_KEY_SIZE // 4 or not key.isascii():
                _check_key(key)
            data = values.encode_for_key(key, value)
            if len(data) > MAX_VALUE_SIZE:
                _encode(key, value)
            changed = self._cache.write_one(key, data)
            if instance.bus.active or instance.awaits:
                self._emit("put", (key,), "write" if changed else UNCHANGED)
            return self._done_none()
        items = _kv_put_items(key, value)
        written = self._cache.write(items, confirmed=not allowUnconfirmed)
        if self._instance.bus.active or self._instance.awaits:
            self._emit("put", [k for k, _ in items], "write" if written else UNCHANGED)
        return self._done_none()

    def _done_none(self) -> asyncio.Future[None]:
        # One finished future shared by every put() of this instance: awaiting a finished
        # future is free and it can be awaited any number of times.
        done = self._done
        if done is None:
            done = self._done = _done(None)
        return done

    def delete(self, keys: str | list[str], *, allowUnconfirmed: bool = False,
               allowConcurrency: bool = False, noCache: bool = False
               ) -> asyncio.Future[Any]:
        """Delete a key (result: whether it existed) or a list of keys (result: how many did).

        Takes effect now, without await. If the cache does not know whether a key existed,
        the result needs a storage read (with the input gate CLOSED, as in workerd).
        """
        self._instance.check_usable()
        single = isinstance(keys, str)
        names = [_check_key(keys)] if single else list(dict.fromkeys(_check_keys(keys, "delete")))
        existed = 0
        unknown: list[str] = []
        for key in names:
            known, data = self._cache.lookup(key)
            if not known:
                unknown.append(key)
            elif data is not None:
                existed += 1
        if unknown:
            # Ask storage before the delete is committed (the flush waits for this read).
            read = self._start_read(self._cache.read_missing(unknown, remember=False),
                                    allowConcurrency)
        changed = self._cache.write([(k, None) for k in names], confirmed=not allowUnconfirmed)
        if self._instance.bus.active or self._instance.awaits:
            self._emit("delete", names,
                       "miss" if unknown else "write" if changed else UNCHANGED)
        if not unknown:
            return _done(existed > 0 if single else existed)
        return self._start_read(self._count_deleted(read, existed, single), allowConcurrency)

    @staticmethod
    async def _count_deleted(read: asyncio.Future[dict[str, bytes]], known: int,
                             single: bool) -> Any:
        total = known + len(await read)
        return total > 0 if single else total

    def deleteAll(self, *, allowUnconfirmed: bool = False,
                  allowConcurrency: bool = False, noCache: bool = False
                  ) -> asyncio.Future[None]:
        """Delete every key, and the alarm. Coalesced with the turn's other writes; always
        confirmed. On a SQLite-backed class it wipes the whole database, SQL tables included."""
        self._instance.check_usable()
        self._cache.delete_all()
        # The alarm goes too (compat flag delete_all_deletes_alarm, default from 2026-02-24).
        self._cache.set_metadata("alarm", None, confirmed=True)
        if self._instance.bus.active or self._instance.awaits:
            self._emit("deleteAll", (), "write")
        return _done(None)

    delete_all = deleteAll

    # -- list ----------------------------------------------------------------------------

    def list(self, *, prefix: str | None = None, start: str | None = None,
             startAfter: str | None = None, end: str | None = None,
             reverse: bool = False, limit: int | None = None,
             allowConcurrency: bool = False, noCache: bool = False
             ) -> asyncio.Future[dict[str, Any]]:
        """Keys and values in key order, as a dict: ``start`` inclusive, ``end`` exclusive."""
        self._instance.check_usable()
        start, end = _list_bounds(prefix, start, startAfter, end, limit)
        if self._instance.bus.active or self._instance.awaits:
            self._emit("list", (), self._LIST_CACHE)
        if start is not None and end is not None and start >= end:
            return _done({})
        return self._list_range(start, end, bool(reverse), limit, allowConcurrency)

    #: How a list() shows on the event stream: on this engine it always reads storage.
    _LIST_CACHE = "miss"

    def _list_range(self, start: str | None, end: str | None, reverse: bool,
                    limit: int | None, allow_concurrency: bool) -> asyncio.Future[dict[str, Any]]:
        """The rows of a non-empty range (the one step the two storage engines do differently)."""
        overlay = self._cache.snapshot_range(start, end)
        return self._start_read(self._list(overlay, start, end, reverse, limit),
                                allow_concurrency)

    async def _list(self, overlay: dict[str, bytes | None], start: str | None, end: str | None,
                    reverse: bool, limit: int | None) -> dict[str, Any]:
        rows = await self._cache.read_range(overlay, start=start, end=end, reverse=reverse,
                                            limit=limit)
        return {k: self._decode(k, v) for k, v in rows}

    # -- sync ----------------------------------------------------------------------------

    def sync(self) -> asyncio.Future[None]:
        """Wait until every write made so far is durable. The input gate opens meanwhile."""
        self._instance.check_usable()
        pending = [f for f in self._cache.pending_commits() if not f.done()]
        if self._instance.bus.active or self._instance.awaits:
            self._emit("sync", (), "miss")
        # Always a real turn boundary, as on SQLite-backed storage (the a2 trace).
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()

        def settle(_: object = None) -> None:
            if fut.done():
                return
            for commit in pending:
                if not commit.done():
                    return
            for commit in pending:
                if not commit.cancelled() and commit.exception() is not None:
                    fut.set_exception(commit.exception())  # type: ignore[arg-type]
                    # The object is being reset and its code may never resume to read this:
                    # mark it read, so asyncio does not log it as forgotten.
                    fut.exception()
                    return
            fut.set_result(None)

        for commit in pending:
            commit.add_done_callback(settle)
        asyncio.get_running_loop().call_soon(settle)
        return mark_io(fut)  # I/O: the code after it comes back behind everything queued

    # -- SQL and transactions ------------------------------------------------------------

    @property
    def sql(self) -> SqlStorage:
        """The SQL API: only on SQLite-backed classes (``lab.bind(NAME, Cls, sql=True)``)."""
        raise RuntimeError(NOT_SQLITE_MESSAGE)

    def transactionSync(self, fn: Callable[[], Any]) -> Any:
        """Run ``fn()`` in a SQLite savepoint (SQLite-backed classes only)."""
        raise RuntimeError(NOT_SQL_MESSAGE)

    transaction_sync = transactionSync

    def transaction(self, closure: Callable[[Any], Any]) -> TransactionResult:
        """Run ``closure(txn)`` as one transaction, with every other event kept out meanwhile.

        Built on ``blockConcurrencyWhile``. ``txn`` has ``get``/``put``/``delete``/``list``/
        ``rollback``. If the closure raises, its writes are rolled back and the error is raised
        here; the object is *not* reset. Returns (an awaitable of) the closure's value.
        """
        instance = self._instance
        instance.check_usable()
        if not callable(closure):
            raise TypeError(
                f"transaction() takes a function of one argument, the transaction "
                f"(e.g. an async def), got {type(closure).__name__}"
            )
        driver = current_driver.get()
        if driver is None or driver.instance is not instance:
            raise RuntimeError(
                "transaction() must be called from this object's own code (its constructor or "
                "a handler), while it runs"
            )
        section = self._transaction_section(closure)
        return TransactionResult(instance.ctx.blockConcurrencyWhile(section))

    def _transaction_section(self, closure: Callable[[Any], Any]) -> Callable[[], Any]:
        """The critical section of a transaction on the KV engine: buffer, then apply at once."""

        async def section() -> tuple[bool, Any]:
            txn = KvTransaction(self)
            try:
                result = closure(txn)
                if inspect.isawaitable(result):
                    result = await result
            except Exception as exc:
                # Packed into the result: the critical section succeeds, so no reset.
                txn._finish(commit=False)
                return False, exc
            txn._finish(commit=True)
            return True, result

        return section

    # -- the alarm (alarms.py): one time per object, kept with the data in _cf_METADATA ------

    def getAlarm(self, *, allowConcurrency: bool = False
                 ) -> asyncio.Future[float | None]:
        """The alarm time in epoch milliseconds, or None. None inside ``alarm()`` unless re-set."""
        instance = self._instance
        instance.check_usable()
        cache = self._cache
        if instance.in_alarm_handler and not instance.alarm_set_in_handler:
            return _done(None)
        if cache.metadata_loaded or ALARM_KEY in cache.metadata:
            data = cache.metadata.get(ALARM_KEY)
            return _done(None if data is None else stored_alarm(data, instance.label))

        async def read() -> float | None:
            metadata = await cache.load_metadata()
            data = metadata.get(ALARM_KEY)
            return None if data is None else stored_alarm(data, instance.label)

        return self._start_read(read(), allowConcurrency)

    def setAlarm(self, scheduledTime: Any, *,
                 allowConcurrency: bool = False, allowUnconfirmed: bool = False
                 ) -> asyncio.Future[None]:
        """Set the object's one alarm (epoch ms or datetime). Replaces any earlier alarm."""
        instance = self._instance
        instance.check_usable()
        millis = alarm_time(scheduledTime)
        if millis <= 0:
            raise TypeError("setAlarm() cannot be called with an alarm time <= 0")
        driver = current_driver.get()
        in_constructor = driver is not None and driver.holder == "constructor"
        handler = getattr(instance.cls, "alarm", None)
        if not in_constructor and not callable(handler):
            raise TypeError(
                "Your Durable Object class must have an alarm() handler in order to call setAlarm()"
            )
        now = instance.services.clock.now() * 1000.0
        millis = max(millis, now)  # a past time fires (almost) at once
        if instance.in_alarm_handler:
            instance.alarm_set_in_handler = True
        self._cache.set_metadata(ALARM_KEY, values.encode(millis),
                                    confirmed=not allowUnconfirmed)
        return _done(None)

    def deleteAlarm(self, *, allowConcurrency: bool = False,
                    allowUnconfirmed: bool = False) -> asyncio.Future[None]:
        """Cancel the alarm (a no-op if none is set). Does not stop a running handler."""
        instance = self._instance
        instance.check_usable()
        if instance.in_alarm_handler:
            instance.alarm_set_in_handler = False
        self._cache.set_metadata(ALARM_KEY, None, confirmed=not allowUnconfirmed)
        return _done(None)

    get_alarm = getAlarm
    set_alarm = setAlarm
    delete_alarm = deleteAlarm

    def __repr__(self) -> str:
        return f"<DurableObjectStorage of {self._instance.label}>"


# -- transactions --------------------------------------------------------------------------

_OPEN, _ROLLED_BACK, _COMMITTED = 0, 1, 2


class TransactionResult:
    """What ``storage.transaction()`` returns: await it for the closure's value (or its error).

    Awaiting it is awaiting the ``blockConcurrencyWhile`` underneath, so the code that started
    the transaction resumes right after it, ahead of the events queued meanwhile.
    """

    __slots__ = ("_future",)

    def __init__(self, future: asyncio.Future[tuple[bool, Any]]) -> None:
        self._future = future

    def __await__(self) -> Generator[Any, None, Any]:
        ok, value = yield from self._future.__await__()
        if ok:
            return value
        raise value

    def done(self) -> bool:
        return self._future.done()

    def __repr__(self) -> str:
        return f"<TransactionResult {'done' if self._future.done() else 'pending'}>"


class _Transaction:
    """What ``txn`` of every engine shares: the state checks and the refused deleteAll()."""

    __slots__ = ()
    _state: int
    _storage: DurableObjectStorage

    def _check(self, op: str) -> None:
        if self._state == _ROLLED_BACK:
            raise RuntimeError(f"Cannot {op}() on rolled back transaction")
        if self._state == _COMMITTED:
            raise RuntimeError(
                f"Cannot call {op}() on transaction that has already committed: did you move "
                "`txn` outside of the closure?"
            )
        self._storage._instance.check_usable()

    def deleteAll(self, **options: Any) -> asyncio.Future[None]:
        self._check("deleteAll")
        raise RuntimeError("Cannot call deleteAll() within a transaction")

    delete_all = deleteAll

    def _check_rollback(self) -> bool:
        """True if there is something to roll back (rollback() is idempotent)."""
        if self._state == _ROLLED_BACK:
            return False
        if self._state == _COMMITTED:
            self._check("rollback")
        self._storage._instance.check_usable()
        return True


class KvTransaction(_Transaction):
    """``txn`` on the KV engine: writes are buffered here and reads see them over the cache;
    when the closure returns they go into the cache in one step (one flush)."""

    __slots__ = ("_confirmed", "_state", "_storage", "_writes")

    def __init__(self, storage: DurableObjectStorage) -> None:
        self._storage = storage
        self._writes: dict[str, bytes | None] = {}
        self._state = _OPEN
        self._confirmed = False

    def get(self, keys: str | list[str], *, allowConcurrency: bool = False,
            noCache: bool = False) -> asyncio.Future[Any]:
        self._check("get")
        storage = self._storage
        writes = self._writes
        if isinstance(keys, str):
            key = _check_key(keys)
            if key in writes:
                data = writes[key]
                return _done(None if data is None else values.decode(data))
            return storage.get(key, allowConcurrency=allowConcurrency, noCache=noCache)
        wanted = sorted(set(_check_keys(keys, "get")))
        local = {k: writes[k] for k in wanted if k in writes}
        rest = [k for k in wanted if k not in local]
        if not rest:
            return _done(_merge_got(wanted, {}, local))
        inner = storage.get(rest, allowConcurrency=allowConcurrency, noCache=noCache)
        if inner.done():
            return _done(_merge_got(wanted, inner.result(), local))
        return storage._start_read(_merge_got_later(inner, wanted, local), allowConcurrency)

    def put(self, key: str | Mapping[str, Any], value: Any = _MISSING, *,
            allowUnconfirmed: bool = False, allowConcurrency: bool = False,
            noCache: bool = False) -> asyncio.Future[None]:
        self._check("put")
        for k, data in _kv_put_items(key, value):
            self._writes[k] = data
        self._confirmed = self._confirmed or not allowUnconfirmed
        return _done(None)

    def delete(self, keys: str | list[str], *, allowUnconfirmed: bool = False,
               allowConcurrency: bool = False, noCache: bool = False
               ) -> asyncio.Future[Any]:
        self._check("delete")
        storage = self._storage
        single = isinstance(keys, str)
        names = [_check_key(keys)] if single else list(dict.fromkeys(_check_keys(keys, "delete")))
        existed = 0
        unknown: list[str] = []
        for key in names:
            if key in self._writes:
                existed += self._writes[key] is not None
                continue
            known, data = storage._cache.lookup(key)
            if known:
                existed += data is not None
            else:
                unknown.append(key)
        for key in names:
            self._writes[key] = None
        self._confirmed = self._confirmed or not allowUnconfirmed
        if not unknown:
            return _done(existed > 0 if single else existed)
        read = storage._start_read(storage._cache.read_missing(unknown, remember=True),
                                   allowConcurrency)
        return storage._start_read(DurableObjectStorage._count_deleted(read, existed, single),
                                   allowConcurrency)

    def list(self, *, prefix: str | None = None, start: str | None = None,
             startAfter: str | None = None, end: str | None = None,
             reverse: bool = False, limit: int | None = None,
             allowConcurrency: bool = False, noCache: bool = False
             ) -> asyncio.Future[dict[str, Any]]:
        self._check("list")
        lo, hi = _list_bounds(prefix, start, startAfter, end, limit)
        if lo is not None and hi is not None and lo >= hi:
            return _done({})
        overlay = {k: v for k, v in self._writes.items()
                   if (lo is None or k >= lo) and (hi is None or k < hi)}
        storage = self._storage
        inner = storage.list(start=lo, end=hi, reverse=reverse,
                             allowConcurrency=allowConcurrency)
        if inner.done():
            return _done(_merge_listed(inner.result(), overlay, bool(reverse), limit))
        return storage._start_read(_merge_listed_later(inner, overlay, bool(reverse), limit),
                                   allowConcurrency)

    def rollback(self) -> None:
        """Discard every write of the transaction; later ``txn`` calls raise."""
        if self._check_rollback():
            self._writes.clear()
            self._state = _ROLLED_BACK

    def _finish(self, *, commit: bool) -> None:
        """The closure returned (commit) or raised: apply the writes to the cache, or drop them."""
        storage = self._storage
        if commit and self._state == _OPEN:
            self._state = _COMMITTED
            if self._writes and storage._instance.broken is None:
                items = list(self._writes.items())
                changed = storage._cache.write(items, confirmed=self._confirmed)
                if storage._instance.bus.active:
                    storage._emit("transaction", [k for k, _ in items],
                                  "write" if changed else UNCHANGED)
        elif self._state == _OPEN:
            self._state = _ROLLED_BACK
        self._writes = {}

    def __repr__(self) -> str:
        return f"<KvTransaction of {self._storage._instance.label}, {len(self._writes)} writes>"


def _merge_got(wanted: list[str], found: dict[str, Any], local: dict[str, bytes | None]
               ) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key in wanted:
        if key in local:
            data = local[key]
            if data is not None:
                out[key] = values.decode(data)
        elif key in found:
            out[key] = found[key]
    return out


async def _merge_got_later(inner: asyncio.Future[dict[str, Any]], wanted: list[str],
                           local: dict[str, bytes | None]) -> dict[str, Any]:
    return _merge_got(wanted, await inner, local)


def _merge_listed(listed: dict[str, Any], overlay: dict[str, bytes | None], reverse: bool,
                  limit: int | None) -> dict[str, Any]:
    merged = dict(listed)
    for key, data in overlay.items():
        if data is None:
            merged.pop(key, None)
        else:
            merged[key] = values.decode(data)
    keys = sorted(merged, reverse=reverse)
    if limit is not None:
        keys = keys[:limit]
    return {k: merged[k] for k in keys}


async def _merge_listed_later(inner: asyncio.Future[dict[str, Any]],
                              overlay: dict[str, bytes | None], reverse: bool,
                              limit: int | None) -> dict[str, Any]:
    return _merge_listed(await inner, overlay, reverse, limit)


def _settled(fut: asyncio.Future[Any]) -> asyncio.Future[None]:
    """A future that resolves (never fails) once ``fut`` is done."""
    waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    fut.add_done_callback(partial(wake, waiter))
    return waiter


# -- SQLite-backed storage -----------------------------------------------------------------


class SqlDurableObjectStorage(DurableObjectStorage):
    """``ctx.storage`` of a SQLite-backed object (``lab.bind(NAME, Cls, sql=True)``).

    Every call is synchronous (workerd ActorSqlite): ``get``/``list`` read the database now and
    return finished futures (a *hit*, whatever the key), writes go into the implicit
    transaction. Limits are SQLite's: key + value up to 2 MiB, no 128-key limit.
    ``allowConcurrency`` and ``noCache`` have no effect.
    """

    __slots__ = ("_sql",)
    _cache: SqliteEngine  # type: ignore[assignment]
    _MAX_STORED = MAX_SQLITE_ENTRY_SIZE

    def __init__(self, instance: Instance, engine: SqliteEngine) -> None:
        super().__init__(instance, engine)  # type: ignore[arg-type]  # (the same interface)
        self._sql: SqlStorage | None = None

    def get(self, keys: str | list[str], *, allowConcurrency: bool = False,
            noCache: bool = False) -> asyncio.Future[Any]:
        self._instance.check_usable()
        engine = self._cache
        if isinstance(keys, str):
            key = _check_sql_key(keys)
            data = engine.kv_get(key)
            if self._instance.bus.active or self._instance.awaits:
                self._emit("get", (key,), "hit")
            return _done(None if data is None else self._decode(key, data))
        wanted = sorted(set(_check_sql_keys(keys, "get")))
        found = engine.kv_get_many(wanted)
        if self._instance.bus.active or self._instance.awaits:
            self._emit("get", wanted, "hit")
        return _done({k: self._decode(k, found[k]) for k in wanted if k in found})

    def put(self, key: str | Mapping[str, Any], value: Any = _MISSING, *,
            allowUnconfirmed: bool = False, allowConcurrency: bool = False,
            noCache: bool = False) -> asyncio.Future[None]:
        self._instance.check_usable()
        items = _sql_put_items(key, value)
        self._cache.kv_put(items, confirmed=not allowUnconfirmed)
        if self._instance.bus.active or self._instance.awaits:
            self._emit("put", [k for k, _ in items], "write")
        return self._done_none()

    def delete(self, keys: str | list[str], *, allowUnconfirmed: bool = False,
               allowConcurrency: bool = False, noCache: bool = False
               ) -> asyncio.Future[Any]:
        self._instance.check_usable()
        single = isinstance(keys, str)
        names = ([_check_sql_key(keys)] if single
                 else list(dict.fromkeys(_check_sql_keys(keys, "delete"))))
        deleted = self._cache.kv_delete(names, confirmed=not allowUnconfirmed)
        if self._instance.bus.active or self._instance.awaits:
            self._emit("delete", names, "write")
        return _done(deleted > 0 if single else deleted)

    # deleteAll() is inherited: on this engine the cache's delete_all() wipes the whole
    # database (KV data and SQL tables), and the alarm goes with it as on the KV engine.

    # list() is inherited; only reading the range differs: synchronous, no I/O, a "hit".
    _LIST_CACHE = "hit"

    def _list_range(self, start: str | None, end: str | None, reverse: bool,
                    limit: int | None, allow_concurrency: bool) -> asyncio.Future[dict[str, Any]]:
        rows = self._cache.kv_list(start, end, reverse, limit)
        return _done({k: self._decode(k, v) for k, v in rows})

    def sync(self) -> asyncio.Future[None]:
        """Wait for the commit pending now. Inside ``transaction()`` the open transaction cannot
        commit before the closure ends, so there is nothing to wait for (still a turn boundary)."""
        if self._cache.explicit_depth:
            self._instance.check_usable()
            if self._instance.bus.active or self._instance.awaits:
                self._emit("sync", (), "miss")
            fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            asyncio.get_running_loop().call_soon(wake, fut)
            return mark_io(fut)
        return super().sync()

    @property
    def sql(self) -> SqlStorage:
        """The SQL API of this object's database (see ``durable_lab.sql``)."""
        sql = self._sql
        if sql is None:
            sql = self._sql = SqlStorage(self)
        return sql

    def transactionSync(self, fn: Callable[[], Any]) -> Any:
        """Run ``fn()`` now inside ``SAVEPOINT``: released if it returns (its value is returned),
        rolled back if it raises (the error propagates). Nestable. ``fn`` must not be async."""
        self._instance.check_usable()
        if not callable(fn):
            raise TypeError(
                f"transactionSync() takes a function (a plain def), got {type(fn).__name__}"
            )
        return self._cache.run_sync_transaction(fn)

    transaction_sync = transactionSync

    def _transaction_section(self, closure: Callable[[Any], Any]) -> Callable[[], Any]:
        """On SQLite: ``SAVEPOINT _cf_savepoint_<depth>``; every storage call inside is in it."""
        engine = self._cache

        async def section() -> tuple[bool, Any]:
            if engine.explicit_depth == 0:
                # workerd first lets the open implicit transaction commit.
                for fut in engine.pending_commits():
                    if not fut.done():
                        await _settled(fut)
            depth = engine.explicit_begin()
            txn = SqlTransaction(self, depth)
            try:
                result = closure(txn)
                if inspect.isawaitable(result):
                    result = await result
            except Exception as exc:
                txn._state = _ROLLED_BACK
                engine.explicit_end(depth, rollback=True)
                return False, exc
            except BaseException:
                engine.explicit_end(depth, rollback=True)
                raise
            if txn._state == _OPEN:
                txn._state = _COMMITTED
            engine.explicit_end(depth, rollback=False)
            return True, result

        return section

    def __repr__(self) -> str:
        return f"<DurableObjectStorage (SQLite) of {self._instance.label}>"


class SqlTransaction(_Transaction):
    """``txn`` on SQLite: a savepoint. Its calls are ``ctx.storage`` calls (which belong to the
    transaction too); ``rollback()`` rolls back to the savepoint."""

    __slots__ = ("_depth", "_state", "_storage")

    def __init__(self, storage: SqlDurableObjectStorage, depth: int) -> None:
        self._storage = storage
        self._depth = depth
        self._state = _OPEN

    def get(self, keys: str | list[str], **options: Any) -> asyncio.Future[Any]:
        self._check("get")
        return self._storage.get(keys, **options)

    def put(self, key: str | Mapping[str, Any], value: Any = _MISSING,
            **options: Any) -> asyncio.Future[None]:
        self._check("put")
        return self._storage.put(key, value, **options)

    def delete(self, keys: str | list[str], **options: Any) -> asyncio.Future[Any]:
        self._check("delete")
        return self._storage.delete(keys, **options)

    def list(self, **options: Any) -> asyncio.Future[dict[str, Any]]:
        self._check("list")
        return self._storage.list(**options)

    def rollback(self) -> None:
        """Undo everything done since the transaction began; later ``txn`` calls raise."""
        if self._check_rollback():
            engine: SqliteEngine = self._storage._cache  # type: ignore[assignment]
            engine.explicit_rollback(self._depth)
            self._state = _ROLLED_BACK

    def __repr__(self) -> str:
        return f"<SqlTransaction depth {self._depth} of {self._storage._instance.label}>"
