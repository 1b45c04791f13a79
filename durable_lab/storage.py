"""``ctx.storage``: the Durable Object storage API, with Cloudflare's names and rules.

Every method checks its input first and changes nothing if the input is bad: a bad key or value
raises at once (``TypeError``/``ValueError`` saying what was wrong and what is allowed) and the
rest of a batch is not applied either.

What each call costs in turns (the thing to learn):

- ``put()``/``delete()`` of a known key change the cache and return an already-finished
  awaitable: ``await`` on it does not end the turn, so the writes of one turn coalesce.
  They are not ``async def``: called without ``await`` they still take effect.
- ``get()`` of a known key is a cache *hit* (no I/O, the turn goes on); of an unknown key a
  *miss*: storage is read and the input gate stays locked until the code after the ``await``
  has run, so read-then-write cannot interleave with other deliveries.
- ``list()`` always reads storage (a miss) and merges the cache's newer entries over the rows.
- ``sync()`` waits for the commits pending now. It is *not* a storage read: the input gate opens
  while it waits, like any other I/O (trace ``a2-sync-between`` in the spec).

Deviation from Cloudflare (docs/semantics.md): validation errors are raised synchronously rather
than as rejected promises, so that a bad ``put()`` without ``await`` is not silently lost.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from . import values
from .events import StorageOp
from ._turns import current_driver

if TYPE_CHECKING:
    from ._host import Instance

__all__ = ["MAX_KEYS", "MAX_KEY_SIZE", "MAX_VALUE_SIZE", "DurableObjectStorage"]

MAX_KEY_SIZE = 2048  # bytes of UTF-8
MAX_VALUE_SIZE = 131072  # bytes, encoded
MAX_KEYS = 128  # per get/put/delete call

_MISSING: Any = object()


def _done(value: Any) -> asyncio.Future[Any]:
    fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
    fut.set_result(value)
    return fut


def _check_key(key: object) -> str:
    if type(key) is not str:  # (a str key that is short enough is checked in two comparisons)
        raise TypeError(f"storage keys must be str, got {type(key).__name__}: {key!r}")
    if len(key) * 4 > MAX_KEY_SIZE and len(key.encode()) > MAX_KEY_SIZE:
        raise ValueError(
            f"Keys cannot be larger than {MAX_KEY_SIZE} bytes. "
            f"A key of size {len(key.encode())} was provided."
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


def _prefix_end(prefix: str) -> str | None:
    """The smallest string greater than every string starting with ``prefix`` (None: no bound)."""
    chars = list(prefix)
    while chars:
        last = ord(chars.pop())
        if last < 0x10FFFF:
            return "".join(chars) + chr(last + 1)
    return None


class DurableObjectStorage:
    """The storage of one object instance (``self.ctx.storage``)."""

    __slots__ = ("_cache", "_done", "_instance")

    def __init__(self, instance: Instance) -> None:
        self._instance = instance
        self._cache = instance.cache
        self._done: asyncio.Future[None] | None = None

    def _emit(self, op: str, keys: Iterable[str], cache: str) -> None:
        inst = self._instance
        driver = current_driver.get()
        inst.bus.emit(StorageOp, object=inst.label, object_id=inst.object_id,
                      delivery=driver.delivery if driver is not None else 0,
                      op=op, keys=tuple(keys), cache=cache)

    def _start_read(self, coro: Any, allow_concurrency: bool) -> asyncio.Future[Any]:
        task = asyncio.get_running_loop().create_task(coro)
        self._cache.track_read(task)
        if not allow_concurrency:
            holding = self._instance.gate_holding_reads
            holding.add(task)
            task.add_done_callback(holding.discard)
        self._instance.track(task)
        return task

    # -- get -----------------------------------------------------------------------------

    def get(self, keys: str | list[str], *, allowConcurrency: bool = False,  # noqa: N803
            noCache: bool = False) -> asyncio.Future[Any]:  # noqa: N803
        """The value stored at ``keys`` (None if absent), or a dict of the keys that exist.

        A list of keys gives a dict sorted by key with only the keys that exist.
        """
        self._instance.check_usable()
        if isinstance(keys, str):
            key = _check_key(keys)
            known, data = self._cache.lookup(key)
            if known:
                if self._instance.bus.active:
                    self._emit("get", (key,), "hit")
                return _done(None if data is None else values.decode(data))
            if self._instance.bus.active:
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
        if self._instance.bus.active:
            self._emit("get", wanted, "miss" if missing else "hit")
        if not missing:
            return _done({k: values.decode(found[k]) for k in wanted if k in found})
        return self._start_read(self._read_many(wanted, found, missing, not noCache),
                                allowConcurrency)

    async def _read_one(self, key: str, remember: bool) -> Any:
        found = await self._cache.read_missing([key], remember=remember)
        data = found.get(key)
        return None if data is None else values.decode(data)

    async def _read_many(self, wanted: list[str], found: dict[str, bytes], missing: list[str],
                         remember: bool) -> dict[str, Any]:
        found.update(await self._cache.read_missing(missing, remember=remember))
        return {k: values.decode(found[k]) for k in wanted if k in found}

    # -- put / delete --------------------------------------------------------------------

    def put(self, key: str | Mapping[str, Any], value: Any = _MISSING, *,
            allowUnconfirmed: bool = False, allowConcurrency: bool = False,  # noqa: N803
            noCache: bool = False) -> asyncio.Future[None]:  # noqa: N803
        """Store ``value`` at ``key``, or every pair of a dict. Takes effect now, without await."""
        instance = self._instance
        if instance.broken is not None:
            instance.check_usable()
        if type(key) is str and value is not _MISSING and not allowUnconfirmed:
            # The common case, kept short: one key, one value, confirmed.
            if len(key) * 4 > MAX_KEY_SIZE:
                _check_key(key)
            data = values.encode_for_key(key, value)
            if len(data) > MAX_VALUE_SIZE:
                _encode(key, value)
            self._cache.write_one(key, data)
            if instance.bus.active:
                self._emit("put", (key,), "write")
            return self._done_none()
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
            items = [(_check_key(k), _encode(k, v)) for k, v in key.items()]
        else:
            if value is _MISSING:
                raise TypeError("put() called with a key and no value: put(key, value)")
            items = [(_check_key(key), _encode(key, value))]
        self._cache.write(items, confirmed=not allowUnconfirmed)
        if self._instance.bus.active:
            self._emit("put", [k for k, _ in items], "write")
        return self._done_none()

    def _done_none(self) -> asyncio.Future[None]:
        # One finished future shared by every put() of this instance: awaiting a finished
        # future is free and it can be awaited any number of times.
        done = self._done
        if done is None:
            done = self._done = _done(None)
        return done

    def delete(self, keys: str | list[str], *, allowUnconfirmed: bool = False,  # noqa: N803
               allowConcurrency: bool = False, noCache: bool = False  # noqa: N803
               ) -> asyncio.Future[Any]:
        """Delete a key (result: whether it existed) or a list of keys (result: how many did).

        Takes effect now, without await. If the cache does not know whether a key existed,
        the result needs a storage read (with the input gate locked, as in workerd).
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
        self._cache.write([(k, None) for k in names], confirmed=not allowUnconfirmed)
        if self._instance.bus.active:
            self._emit("delete", names, "miss" if unknown else "write")
        if not unknown:
            return _done(existed > 0 if single else existed)
        return self._start_read(self._count_deleted(read, existed, single), allowConcurrency)

    @staticmethod
    async def _count_deleted(read: asyncio.Future[dict[str, bytes]], known: int,
                             single: bool) -> Any:
        total = known + len(await read)
        return total > 0 if single else total

    def deleteAll(self, *, allowUnconfirmed: bool = False,  # noqa: N802, N803
                  allowConcurrency: bool = False, noCache: bool = False  # noqa: N803
                  ) -> asyncio.Future[None]:
        """Delete every key. Coalesced with the turn's other writes; always confirmed."""
        self._instance.check_usable()
        self._cache.delete_all()
        if self._instance.bus.active:
            self._emit("deleteAll", (), "write")
        return _done(None)

    delete_all = deleteAll

    # -- list ----------------------------------------------------------------------------

    def list(self, *, prefix: str | None = None, start: str | None = None,
             startAfter: str | None = None, end: str | None = None,  # noqa: N803
             reverse: bool = False, limit: int | None = None,
             allowConcurrency: bool = False, noCache: bool = False  # noqa: N803
             ) -> asyncio.Future[dict[str, Any]]:
        """Keys and values in key order, as a dict: ``start`` inclusive, ``end`` exclusive."""
        self._instance.check_usable()
        for name, bound in (("prefix", prefix), ("start", start), ("startAfter", startAfter),
                            ("end", end)):
            if bound is not None and type(bound) is not str:
                raise TypeError(f"list() option {name} must be a str, got {type(bound).__name__}")
        if start is not None and startAfter is not None:
            raise TypeError("list() cannot be called with both start and startAfter values.")
        if limit is not None and (type(limit) is not int or limit <= 0):
            raise TypeError(f"List limit must be positive (got {limit!r}).")
        if startAfter is not None:
            start = startAfter + "\0"
        if prefix:
            if start is None or start < prefix:
                start = prefix
            upper = _prefix_end(prefix)
            if upper is not None and (end is None or end > upper):
                end = upper
        if self._instance.bus.active:
            self._emit("list", (), "miss")
        if start is not None and end is not None and start >= end:
            return _done({})
        overlay = self._cache.snapshot_range(start, end)
        return self._start_read(self._list(overlay, start, end, bool(reverse), limit),
                                allowConcurrency)

    async def _list(self, overlay: dict[str, bytes | None], start: str | None, end: str | None,
                    reverse: bool, limit: int | None) -> dict[str, Any]:
        rows = await self._cache.read_range(overlay, start=start, end=end, reverse=reverse,
                                            limit=limit)
        return {k: values.decode(v) for k, v in rows}

    # -- sync ----------------------------------------------------------------------------

    def sync(self) -> asyncio.Future[None]:
        """Wait until every write made so far is durable. The input gate opens meanwhile."""
        self._instance.check_usable()
        pending = [f for f in self._cache.pending_commits() if not f.done()]
        if self._instance.bus.active:
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
                    return
            fut.set_result(None)

        for commit in pending:
            commit.add_done_callback(settle)
        asyncio.get_running_loop().call_soon(settle)
        return fut

    def __repr__(self) -> str:
        return f"<DurableObjectStorage of {self._instance.label}>"
