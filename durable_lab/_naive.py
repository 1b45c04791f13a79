"""Storage for the ``"none"`` concurrency model: what a plain asyncio key-value client does.

This is the foil the lessons compare Durable Objects against. Every call is a real round trip
to storage, awaited on its own:

- no cache: ``get()`` always reads storage, so it always ends the turn, and with no input gate
  another request can read the same old value in the meantime (the classic lost update);
- no coalescing: every ``put()``/``delete()`` is its own commit, and the returned future is that
  commit: ``await`` it and your code waits for storage; don't, and the reply may leave first;
- no output gate: replies are not held, so a reply can acknowledge a write that later fails;
- a failed commit does not reset anything: the write is simply lost (the awaiting code sees a
  ``StorageError``; a caller who already got the reply never hears of it).

Same method names and arguments as :class:`~durable_lab.storage.DurableObjectStorage`, so the
same class runs unchanged under every model.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Mapping
from typing import Any

from ._turns import current_driver
from .errors import StorageError
from .events import CommitDone, CommitFailed, FlushStarted, StorageOp
from .storage import MAX_KEYS, _check_key, _check_keys, _encode, _prefix_end, decode_stored

# Handed down from the rooms above (``_host.Instance``): named for the reader, not imported.
Instance = Any

__all__ = ["NaiveStorage"]

_MISSING: Any = object()


class NaiveStorage:
    """``ctx.storage`` under ``Lab(model="none")``."""

    def __init__(self, instance: Instance) -> None:
        self._instance = instance
        self._backend = instance.services.backend
        self._key = instance.storage_key
        self._batches = itertools.count(1)
        #: Batches written and not yet landed: number -> keys, as FlushStarted said (snapshots).
        self.in_flight: dict[int, tuple[str, ...]] = {}

    # -- plumbing ------------------------------------------------------------------------

    def _emit(self, op: str, keys: tuple[str, ...], cache: str) -> None:
        inst = self._instance
        if inst.bus.active or inst.awaits:
            driver = current_driver.get()
            delivery = driver.delivery if driver is not None else 0
            awaits = inst.awaits
            if awaits and delivery in awaits:  # (see DurableObjectStorage._emit)
                del awaits[delivery]
                inst.running = delivery
            if inst.bus.active:
                inst.bus.emit(StorageOp, inst.label, inst.object_id, delivery, op, keys,
                              cache)

    def _task(self, coro: Any) -> asyncio.Future[Any]:
        task = asyncio.get_running_loop().create_task(coro)
        self._instance.track(task)
        return task

    async def _commit(self, puts: dict[str, bytes], deletes: list[str], delete_all: bool) -> None:
        inst = self._instance
        bus = inst.bus
        number = next(self._batches)
        self.in_flight[number] = (*puts, *deletes, *(("*",) if delete_all else ()))
        if bus.active:
            bus.emit(FlushStarted, inst.label, inst.object_id, number, tuple(puts), tuple(deletes),
                     delete_all, False)
        started = inst.services.clock.now()
        try:
            injected = await inst.services.before_commit(inst)
            if injected is not None:
                raise injected
            await self._backend.commit(self._key, delete_all=delete_all, puts=puts,
                                       deletes=deletes, metadata={})
        except Exception as exc:
            keys = self.in_flight.pop(number, ())
            inst.host.last_batch = (number, len(keys), False)
            if bus.active:
                bus.emit(CommitFailed, inst.label, inst.object_id, number,
                         f"{type(exc).__name__}: {exc}", getattr(exc, "injected", False))
            raise StorageError(f"write failed and was lost: {exc}") from exc
        self.in_flight.pop(number, None)
        inst.host.commits += 1
        inst.host.last_batch = (number, len(puts) + len(deletes), True)
        if bus.active:
            bus.emit(CommitDone, inst.label, inst.object_id, number, len(puts) + len(deletes),
                     inst.services.clock.now() - started)

    def _write(self, puts: dict[str, bytes], deletes: list[str], delete_all: bool = False
               ) -> asyncio.Future[None]:
        fut = self._task(self._commit(puts, deletes, delete_all))
        # Nobody may await it (a put without await): don't let asyncio complain about that.
        fut.add_done_callback(lambda f: f.cancelled() or f.exception())
        return fut

    def _decode(self, key: str, data: bytes) -> Any:
        return decode_stored(self._instance.label, key, data)

    # -- the storage API -----------------------------------------------------------------

    def get(self, keys: str | list[str], **options: Any) -> asyncio.Future[Any]:
        self._instance.check_usable()
        if isinstance(keys, str):
            key = _check_key(keys)
            self._emit("get", (key,), "miss")

            async def one() -> Any:
                found = await self._backend.read(self._key, [key])
                return None if key not in found else self._decode(key, found[key])

            return self._task(one())
        wanted = sorted(set(_check_keys(keys, "get")))
        self._emit("get", tuple(wanted), "miss")

        async def many() -> dict[str, Any]:
            found = await self._backend.read(self._key, wanted)
            return {k: self._decode(k, found[k]) for k in wanted if k in found}

        return self._task(many())

    def put(self, key: str | Mapping[str, Any], value: Any = _MISSING, **options: Any
            ) -> asyncio.Future[None]:
        self._instance.check_usable()
        if isinstance(key, Mapping):
            if value is not _MISSING:
                raise TypeError(
                    "put() takes either a key and a value, or one dict of entries, not both")
            if len(key) > MAX_KEYS:
                raise ValueError(f"Maximum number of key value pairs is {MAX_KEYS}. "
                                 f"{len(key)} pairs were provided.")
            puts = {_check_key(k): _encode(k, v) for k, v in key.items()}
        else:
            if value is _MISSING:
                raise TypeError("put() called with a key and no value: put(key, value)")
            puts = {_check_key(key): _encode(key, value)}
        self._emit("put", tuple(puts), "write")
        return self._write(puts, [])

    def delete(self, keys: str | list[str], **options: Any) -> asyncio.Future[Any]:
        self._instance.check_usable()
        single = isinstance(keys, str)
        names = [_check_key(keys)] if single else list(dict.fromkeys(_check_keys(keys, "delete")))
        self._emit("delete", tuple(names), "miss")

        async def run() -> Any:
            existing = await self._backend.read(self._key, names)
            await self._commit({}, names, False)
            return bool(existing) if single else len(existing)

        return self._task(run())

    def deleteAll(self, **options: Any) -> asyncio.Future[None]:
        self._instance.check_usable()
        self._emit("deleteAll", (), "write")
        return self._write({}, [], delete_all=True)

    delete_all = deleteAll

    def list(self, *, prefix: str | None = None, start: str | None = None,
             startAfter: str | None = None, end: str | None = None,
             reverse: bool = False, limit: int | None = None, **options: Any
             ) -> asyncio.Future[dict[str, Any]]:
        self._instance.check_usable()
        if start is not None and startAfter is not None:
            raise TypeError("list() cannot be called with both start and startAfter values.")
        if limit is not None and (type(limit) is not int or limit <= 0):
            raise TypeError(f"List limit must be positive (got {limit!r}).")
        if startAfter is not None:
            start = startAfter + "\0"
        if prefix:
            start = prefix if start is None or start < prefix else start
            upper = _prefix_end(prefix)
            if upper is not None and (end is None or end > upper):
                end = upper
        self._emit("list", (), "miss")

        async def run() -> dict[str, Any]:
            if start is not None and end is not None and start >= end:
                return {}
            rows = await self._backend.list(self._key, start=start, end=end,
                                            reverse=bool(reverse), limit=limit)
            return {k: self._decode(k, v) for k, v in rows}

        return self._task(run())

    def sync(self) -> asyncio.Future[None]:
        """Every write was already its own awaited commit: nothing to wait for but a turn."""
        return asyncio.ensure_future(asyncio.sleep(0))

    def __getattr__(self, name: str) -> Any:
        raise AttributeError(
            f"ctx.storage.{name} is not available under the 'none' concurrency model "
            "(it models a plain key-value client)"
        )
