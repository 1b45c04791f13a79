"""The storage cache: where ``put()`` really goes, and how writes are coalesced into one commit.

Modelled on workerd's ActorCache (``src/workerd/io/actor-cache.h``):

- Every key the object has read or written is remembered: its value (encoded bytes) or the fact
  that it is absent. A read of a known key is a *hit* and completes at once, without I/O, so it
  does not end the turn. A read of an unknown key is a *miss*: storage is read, and the input gate
  stays locked until the code after the ``await`` has run.
- ``put()`` and ``delete()`` change the cache synchronously and mark the key dirty. Nothing is
  written yet: the caller goes on in the same turn.
- The first dirty write schedules a *flush* for "after this turn" (``loop.call_soon``; if the
  turn is still going on then, in tasks it started or code it made runnable, the flush waits
  for the end of the turn: ``InputGate.on_quiet``). The flush takes every dirty key as one
  batch and commits it in one transaction: n writes in a turn, one round trip. While a flush is
  in flight, later writes collect in the next batch; one flush runs at a time, so commits land
  in order.
- A batch with at least one *confirmed* write (no ``allowUnconfirmed``) locks the output gate
  until it commits: replies sent after those writes wait for them.
- If a commit fails, the object is reset (the caller is told, never falsely acknowledged).

Deliberate simplifications (docs/semantics.md): no cache size limit or LRU eviction of clean
entries (an instance's cache lives until the instance is reset or evicted); no backpressure at
8 MiB of dirty data; ``list()`` always reads storage (merging the cache over the result) and does
not remember the listed range.

SQL API and transactions
------------------------
This cache is the engine of *KV-backed* classes only. A class bound with
``lab.bind(NAME, Cls, sql=True)`` is SQLite-backed: the host (``_host.open_storage``) gives its
instances a ``_sql_engine.SqliteEngine`` instead (workerd ``ActorSqlite``: no cache,
synchronous reads, writes in an implicit SQLite transaction committed after the turn). Both
engines offer the same interface to the host, the lab and the alarm scheduler: ``close``,
``pending_commits``, ``in_flight``, ``commit_count``, and the metadata seam ``load_metadata`` /
``set_metadata`` / ``metadata`` / ``dirty_metadata`` / ``on_commit``.

On this engine ``storage.transaction(closure)`` buffers the writes of ``txn`` in the transaction
object and applies them to the cache in one step when the closure returns (so they land in one
flush); ``ctx.storage.sql`` and ``transactionSync`` do not exist (they raise).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ._turns import current_driver, spawn
from .events import CommitDone, CommitFailed, FlushStarted

if TYPE_CHECKING:
    from ._backends import StorageBackend

# Handed down from the rooms above (``_host.Instance``): named for the reader, not imported.
Instance = Any

__all__ = ["CacheStatistics", "StorageCache"]

#: Marks a key known to be absent (deleted, or read and not found).
ABSENT = None


@dataclass(frozen=True, slots=True)
class CacheStatistics:
    known_keys: int
    dirty_keys: int  # written, waiting for the next flush
    flushing_keys: int  # in the batch being committed now
    flushes: int
    commits: int
    flush_in_flight: bool


class StorageCache:
    """The write-coalescing cache of one object instance."""

    #: False here; True on the SQLite engine (``_sql_engine.SqliteEngine``).
    is_sqlite = False

    def __init__(self, instance: Instance, backend: StorageBackend,
                 barrier: asyncio.Future[None] | None) -> None:
        self.instance = instance
        self.backend = backend
        self.key = instance.storage_key
        self.values: dict[str, bytes | None] = {}
        self.dirty: dict[str, bytes | None] = {}
        #: Writes taken (puts and deletes that changed the cache, alarm changes, deleteAll):
        #: ``durable_lab.explore`` tells a step of code that wrote from one that did not.
        self.writes = 0
        self.delete_all_pending = False
        #: True after deleteAll(): every key not in ``values`` is known absent.
        self.all_known = False
        self.flushing: dict[str, bytes | None] = {}
        #: Whether the batch in ``flushing`` starts with a deleteAll (its FlushStarted said).
        self.flushing_delete_all = False
        #: Writes of a batch whose commit failed: lost with the reset that follows.
        self._failed_writes = 0
        #: Metadata (the alarm time) known to this instance, and changes waiting for a flush.
        #: ``metadata_loaded`` is False until storage was read once.
        self.metadata: dict[str, bytes | None] = {}
        self.metadata_loaded = False
        self.dirty_metadata: dict[str, bytes | None] = {}
        #: Called with the metadata of each batch once it is durable (the alarm scheduler).
        self.on_commit: list[Any] = []
        self._next_flush: asyncio.Future[None] | None = None
        self._next_gated = False
        self._running_flush: asyncio.Future[None] | None = None
        self._flush_task: asyncio.Task[None] | None = None
        #: The input gate of the code whose write scheduled the next flush.
        self._turn_gate: Any = None
        #: Reads in flight; a flush waits for them (workerd ``waitForPastReads``).
        self.pending_reads: set[asyncio.Future[Any]] = set()
        #: A commit of a previous instance that may still be landing: reads wait for it.
        self._barrier = barrier
        self.flush_count = 0
        self.commit_count = 0
        self.closed = False

    # -- reads ---------------------------------------------------------------------------

    def lookup(self, key: str) -> tuple[bool, bytes | None]:
        """(known, value) from the cache alone."""
        if key in self.values:
            return True, self.values[key]
        if self.all_known:
            return True, ABSENT
        return False, ABSENT

    async def read_missing(self, keys: list[str], *, remember: bool) -> dict[str, bytes]:
        """Read ``keys`` from storage; remember what was found (and not found) unless told
        not to."""
        if self._barrier is not None and not self._barrier.done():
            await asyncio.wait((self._barrier,))
        found = await self.backend.read(self.key, keys)
        if remember and not self.closed:
            for key in keys:
                # A write made while the read was in flight (possible only with
                # allowConcurrency) is newer than what storage returned: keep it.
                if key not in self.values:
                    self.values[key] = found.get(key, ABSENT)
        return found

    def snapshot_range(self, start: str | None, end: str | None) -> dict[str, bytes | None]:
        """What the cache knows in [start, end) right now (taken when list() is called)."""
        return {k: v for k, v in self.values.items()
                if (start is None or k >= start) and (end is None or k < end)}

    async def read_range(self, overlay: dict[str, bytes | None], *, start: str | None,
                         end: str | None, reverse: bool, limit: int | None
                         ) -> list[tuple[str, bytes]]:
        """Storage rows in [start, end), with the cache's ``overlay`` (newer) merged over them."""
        if self._barrier is not None and not self._barrier.done():
            await asyncio.wait((self._barrier,))
        rows: list[tuple[str, bytes]] = []
        if not self.all_known:
            # Keys the overlay deletes may hide storage rows: ask for enough rows that the
            # result cannot come up short.
            ask = None if limit is None else limit + len(overlay)
            rows = await self.backend.list(self.key, start=start, end=end, reverse=reverse,
                                           limit=ask)
        merged = dict(rows)
        for k, v in overlay.items():
            if v is ABSENT:
                merged.pop(k, None)
            else:
                merged[k] = v
        items = sorted(merged.items(), reverse=reverse)
        return items if limit is None else items[:limit]

    def track_read(self, fut: asyncio.Future[Any]) -> None:
        self.pending_reads.add(fut)
        fut.add_done_callback(self.pending_reads.discard)

    # -- writes --------------------------------------------------------------------------

    def write(self, items: Iterable[tuple[str, bytes | None]], *, confirmed: bool) -> int:
        """Apply writes to the cache now; schedule their commit. Returns how many changed."""
        changed = 0
        for key, data in items:
            if key in self.values and self.values[key] == data:
                continue  # the same value again, or deleting a known-absent key: a no-op
            if data is ABSENT and self.all_known and key not in self.values:
                continue
            self.values[key] = data
            self.dirty[key] = data
            changed += 1
        if changed:
            self.writes += changed
            self._schedule(confirmed)
        return changed

    def write_one(self, key: str, data: bytes) -> bool:
        """``write`` for one confirmed put: the hot path of ``put(key, value)``. Returns
        whether the cache changed (False: the same value again, nothing to commit)."""
        values = self.values
        if key in values and values[key] == data:
            return False
        values[key] = data
        self.dirty[key] = data
        self.writes += 1
        if self._next_flush is None or not self._next_gated:
            self._schedule(True)
        return True

    async def load_metadata(self) -> dict[str, bytes | None]:
        """Read the object's metadata from storage once; later calls answer from memory."""
        if not self.metadata_loaded:
            if self._barrier is not None and not self._barrier.done():
                await asyncio.wait((self._barrier,))
            stored = await self.backend.read_metadata(self.key)
            if not self.metadata_loaded:
                for k, v in stored.items():
                    self.metadata.setdefault(k, v)
                self.metadata_loaded = True
        return self.metadata

    def set_metadata(self, key: str, data: bytes | None, *, confirmed: bool) -> None:
        """Change a metadata entry (committed with the next batch, like a put)."""
        if self.metadata_loaded and self.metadata.get(key) == data:
            return
        self.metadata[key] = data
        self.dirty_metadata[key] = data
        self.writes += 1
        self._schedule(confirmed)

    def delete_all(self) -> None:
        self.values.clear()
        self.dirty.clear()
        self.all_known = True
        self.delete_all_pending = True
        self.writes += 1
        self._schedule(confirmed=True)

    def _schedule(self, confirmed: bool) -> None:
        if self._next_flush is None:
            self._next_flush = asyncio.get_running_loop().create_future()
            self._next_gated = False
            if self._running_flush is None:
                # "After this turn": callbacks run only once the current step of object code
                # has returned to the event loop. The next delivery need not wait for it (a
                # batch may hold the writes of several turns, never part of one).
                driver = current_driver.get()
                self._turn_gate = driver.gate if driver is not None else None
                asyncio.get_running_loop().call_soon(self._start_flush)
        if confirmed and not self._next_gated:
            self._next_gated = True
            self.instance.output_gate.lock_while(self._next_flush)

    def _start_flush(self, permitted: bool = False) -> None:
        done = self._next_flush
        if done is None or self.closed:
            return
        gate = self._turn_gate
        if not permitted and gate is not None and gate.turn_in_progress:
            # The turn that wrote is still running in code it started or made runnable
            # (tasks, gather): its writes would be split across two batches. Wait for its end.
            gate.on_quiet(self._start_flush)
            return
        if not permitted:
            # While the lab is paused, starting a flush is a step the learner takes; writes
            # made meanwhile join the batch.
            label = self.instance.label
            permit = self.instance.services.scheduler.permit(
                "flush", label, 0, f"start the flush of {label} (pending writes -> one batch)")
            if permit is not None:
                permit.add_done_callback(
                    lambda f: None if f.cancelled() else self._start_flush(permitted=True))
                return
        self._next_flush = None
        batch, self.dirty = self.dirty, {}
        metadata, self.dirty_metadata = self.dirty_metadata, {}
        delete_all, self.delete_all_pending = self.delete_all_pending, False
        self.flushing = batch
        self.flushing_delete_all = delete_all
        self._running_flush = done
        self.flush_count += 1
        instance = self.instance
        if instance.bus.active:
            # The batch is formed now; its commit may first wait for reads in flight.
            instance.bus.emit(FlushStarted, instance.label, instance.object_id, self.flush_count,
                              tuple(k for k, v in batch.items() if v is not ABSENT),
                              tuple(k for k, v in batch.items() if v is ABSENT), delete_all,
                              self._next_gated)
        self._flush_task = spawn(self._flush(self.flush_count, batch, metadata, delete_all, done))

    async def _flush(self, number: int, batch: dict[str, bytes | None],
                     metadata: dict[str, bytes | None], delete_all: bool,
                     done: asyncio.Future[None]) -> None:
        instance = self.instance
        bus = instance.bus
        if self.pending_reads:
            await asyncio.wait(tuple(self.pending_reads))
        if self._barrier is not None and not self._barrier.done():
            # A previous instance's last commit may still be landing: land after it.
            await asyncio.wait((self._barrier,))
        puts = {k: v for k, v in batch.items() if v is not ABSENT}
        deletes = [k for k, v in batch.items() if v is ABSENT]
        clock = instance.services.clock
        started = clock.now()
        try:
            injected = await instance.services.before_commit(instance)
            if injected is not None:
                raise injected
            await self.backend.commit(self.key, delete_all=delete_all, puts=puts,
                                      deletes=deletes, metadata=metadata)
            permit = instance.services.scheduler.permit(
                "commit", instance.label, 0, f"finish commit #{number} of {instance.label}")
            if permit is not None:
                await permit
        except asyncio.CancelledError:
            if not done.done():
                done.cancel()
            raise
        except Exception as exc:
            self.flushing = {}
            self._running_flush = None
            # The batch never reached storage: its writes are lost with the reset below
            # (those a later write of the same key superseded are counted once).
            self._failed_writes = (len(batch.keys() - self.dirty.keys())
                                   + len(metadata.keys() - self.dirty_metadata.keys())
                                   + (1 if delete_all and not self.delete_all_pending else 0))
            instance.host.last_batch = (number, len(batch) + (1 if delete_all else 0), False)
            if bus.active:
                bus.emit(CommitFailed, instance.label, instance.object_id, number,
                         f"{type(exc).__name__}: {exc}", getattr(exc, "injected", False))
            error = instance.commit_failure_error(exc)
            if not done.done():
                done.set_exception(error)
                done.exception()  # retrieved: the output gate and the reset report it
            instance.reset(error, reason="outputGateBroken")
            return
        self.commit_count += 1
        self.flushing = {}
        self._running_flush = None
        host = instance.host
        host.commits += 1
        host.last_batch = (number, len(batch), True)
        if bus.active:
            bus.emit(CommitDone, instance.label, instance.object_id, number, len(batch),
                     clock.now() - started)
        if not done.done():
            done.set_result(None)
        if metadata:
            for callback in self.on_commit:
                callback(metadata)
        if self._next_flush is not None and not self.closed:
            self._start_flush()

    # -- sync, shutdown ------------------------------------------------------------------

    def pending_commits(self) -> list[asyncio.Future[None]]:
        """The commits scheduled or in flight now (what ``sync()`` waits for)."""
        return [f for f in (self._running_flush, self._next_flush) if f is not None]

    @property
    def in_flight(self) -> asyncio.Task[None] | None:
        """The commit that may still be landing in storage (a new instance waits for it)."""
        task = self._flush_task
        return task if task is not None and not task.done() else None

    def close(self, error: BaseException) -> int:
        """Drop the cache (the instance is being reset). Returns how many writes were lost."""
        self.closed = True
        # Written and never durable: what waits for the next flush, and the batch whose
        # commit just failed (the reset that follows a failed commit loses it too).
        lost = len(self.dirty) + len(self.dirty_metadata) + self._failed_writes
        self._failed_writes = 0
        if self._next_flush is not None and not self._next_flush.done():
            self._next_flush.set_exception(error)
            self._next_flush.exception()
        self._next_flush = None
        self.dirty = {}
        self.dirty_metadata = {}
        return lost

    def batch_in_flight(self) -> tuple[int, tuple[str, ...]] | None:
        """(number, keys) of the batch being committed now, keys as its FlushStarted names
        them (puts, deletes, then ``"*"`` for a deleteAll); None if none is."""
        if self._running_flush is None:
            return None
        batch = self.flushing
        keys = (*(k for k, v in batch.items() if v is not ABSENT),
                *(k for k, v in batch.items() if v is ABSENT),
                *(("*",) if self.flushing_delete_all else ()))
        return self.flush_count, keys

    def overlay(self) -> list[tuple[bool, dict[str, bytes | None]]]:
        """The writes not yet durable, oldest first, as (starts with deleteAll, {key: value
        or None for a delete}): the batch being committed, then the pending writes. Laid
        over what storage holds, they give what the object sees (``inspect.kv_snapshot``)."""
        layers = []
        if self._running_flush is not None:
            layers.append((self.flushing_delete_all, self.flushing))
        layers.append((self.delete_all_pending, self.dirty))
        return layers

    def statistics(self) -> CacheStatistics:
        return CacheStatistics(
            known_keys=len(self.values), dirty_keys=len(self.dirty),
            flushing_keys=len(self.flushing), flushes=self.flush_count,
            commits=self.commit_count, flush_in_flight=self._running_flush is not None,
        )
