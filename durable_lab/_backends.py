"""Storage backends: where a Durable Object's committed key-value data lives.

Concept
-------
Cloudflare gives every Durable Object its own private SQLite database; the key-value API
(``ctx.storage.get/put/delete/list``) is stored in that database's ``_cf_KV`` table, and the
runtime's own bookkeeping (the alarm time, for instance) in ``_cf_METADATA``. durable_lab does
the same: :class:`SqliteBackend` keeps **one database file per object** at
``<folder>/<namespace>/<object_id>.sqlite`` with the same two tables as workerd.

The layer above (the storage cache with its write coalescing and output gate) turns each batch
of writes into **one** :meth:`StorageBackend.commit`, which is one SQLite transaction: it lands
entirely or not at all. This module is deliberately dumb: keys are ``str``, values are opaque
``bytes`` (the cache encodes values with msgpack, so nothing here ever unpickles anything a
database file contains: reading a database cannot run code).

- **Lazy creation.** An object that has never committed anything has no file. Reading it
  (``read``, ``list``, ``read_metadata``, ``stored_size``) returns empty results without creating
  a file or opening a connection, so merely looking at an id leaves no trace on disk.
- **A bounded pool of connections.** Every open ``aiosqlite`` connection owns a thread, so at
  most ``max_open`` are open at once. They are kept in least-recently-used order; when a new
  object needs a connection and the pool is full, the least recently used *idle* connection is
  closed first. A connection with an operation in flight is never closed; if every connection
  is busy, the new operation waits, first come first served: a connection that becomes idle
  is handed straight to the first waiter (one wake-up per release, and no later arrival can
  take it first). A commit still waiting for its connection is not yet "storage being slow":
  the output gate does not count that time (``queued``).
- **A time limit.** Every job on a connection (opening it, a read, a commit) runs under
  SQLite's progress handler with ``Lab(sql_time_limit)``: a statement that runs longer (a
  slow trigger someone planted in the file) is interrupted and the operation fails with a
  ``StorageError`` saying so, instead of never returning.
- **Durability.** Databases use ``journal_mode=WAL`` and ``synchronous=NORMAL``. A commit that
  returned has been written to the write-ahead log, so it survives the *process* crashing or
  being killed (SIGKILL, a Jupyter kernel restart): the next open replays the log. It is not
  guaranteed to survive an operating-system crash or power loss (that would need
  ``synchronous=FULL``, an fsync per commit), which is the right trade-off for a teaching lab.
  A transaction interrupted half-way is rolled back by SQLite on the next open.

:class:`MemoryBackend` implements the same interface with dictionaries (fast, nothing on disk),
with identical observable behaviour; the test-suite runs the same tests against both.

This is the only module of durable_lab that imports ``aiosqlite``.
"""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import logging
import os
import re
import time
from bisect import bisect_left
from collections import OrderedDict, deque
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, TypeVar, runtime_checkable

import aiosqlite

from ._folder import (
    LAB_APPLICATION_ID,
    SQL_USER_TABLES,
    check_binding_dir,
    check_db_path,
    check_lab_schema,
    is_foreign_database,
    missing_runtime_table,
    not_a_lab_database,
)
from ._turns import spawn
from .errors import StorageCorruptError, StorageError

if TYPE_CHECKING:
    import sqlite3
else:  # one SQLite library for every lab database in a process (see _sql_driver)
    from ._sql_driver import sqlite3

__all__ = [
    "BackendStatistics",
    "MemoryBackend",
    "ObjectKey",
    "SqliteBackend",
    "StorageBackend",
    "validate_object_key",
]

LOG = logging.getLogger(__name__)

ObjectKey = tuple[str, str]
"""``(namespace binding name, object id)``, e.g. ``("COUNTER", "3f2a...")`` (64 hex chars)."""

_T = TypeVar("_T")

_OBJECT_ID_RE = re.compile(r"[0-9a-f]{64}")
_DB_SUFFIX = ".sqlite"

# --------------------------------------------------------------------------------------------
# SQL. Every statement is a constant; values are always bound as ``?`` parameters.
# --------------------------------------------------------------------------------------------

_SQL_PRAGMA_WAL = "PRAGMA journal_mode=WAL"
_SQL_PRAGMA_SYNCHRONOUS = "PRAGMA synchronous=NORMAL"
_SQL_PRAGMA_SYNCHRONOUS_OFF = "PRAGMA synchronous=OFF"
_SQL_CREATE_KV = (
    "CREATE TABLE IF NOT EXISTS _cf_KV (key TEXT PRIMARY KEY, value BLOB) WITHOUT ROWID"
)
_SQL_CREATE_METADATA = (
    "CREATE TABLE IF NOT EXISTS _cf_METADATA (key TEXT PRIMARY KEY, value BLOB) WITHOUT ROWID"
)

_SQL_BEGIN = "BEGIN IMMEDIATE"
_SQL_COMMIT = "COMMIT"
_SQL_ROLLBACK = "ROLLBACK"

_SQL_GET_KV = "SELECT value FROM _cf_KV WHERE key = ?"
_SQL_PUT_KV = (
    "INSERT INTO _cf_KV (key, value) VALUES (?, ?) "
    "ON CONFLICT (key) DO UPDATE SET value = excluded.value"
)
_SQL_DELETE_KV = "DELETE FROM _cf_KV WHERE key = ?"
_SQL_DELETE_ALL_KV = "DELETE FROM _cf_KV"
_SQL_KV_SIZE = (
    "SELECT COALESCE(SUM(LENGTH(CAST(key AS BLOB)) + LENGTH(value)), 0) FROM _cf_KV"
)

_SQL_GET_ALL_METADATA = "SELECT key, value FROM _cf_METADATA"
_SQL_PUT_METADATA = (
    "INSERT INTO _cf_METADATA (key, value) VALUES (?, ?) "
    "ON CONFLICT (key) DO UPDATE SET value = excluded.value"
)
_SQL_DELETE_METADATA = "DELETE FROM _cf_METADATA WHERE key = ?"

# list(): one statement per (has start, has end, reverse). Bounds are ``?`` parameters; the
# limit is always bound too (``LIMIT -1`` means "no limit" in SQLite). ``key`` is TEXT with the
# default BINARY collation, i.e. memcmp of UTF-8, which is Unicode code point order: the same
# order as Python's ``str`` comparison.
_SQL_LIST: dict[tuple[bool, bool, bool], str] = {
    (True, True, False): "SELECT key, value FROM _cf_KV WHERE key >= ? AND key < ? "
    "ORDER BY key ASC LIMIT ?",
    (True, False, False): "SELECT key, value FROM _cf_KV WHERE key >= ? "
    "ORDER BY key ASC LIMIT ?",
    (False, True, False): "SELECT key, value FROM _cf_KV WHERE key < ? "
    "ORDER BY key ASC LIMIT ?",
    (False, False, False): "SELECT key, value FROM _cf_KV ORDER BY key ASC LIMIT ?",
    (True, True, True): "SELECT key, value FROM _cf_KV WHERE key >= ? AND key < ? "
    "ORDER BY key DESC LIMIT ?",
    (True, False, True): "SELECT key, value FROM _cf_KV WHERE key >= ? "
    "ORDER BY key DESC LIMIT ?",
    (False, True, True): "SELECT key, value FROM _cf_KV WHERE key < ? "
    "ORDER BY key DESC LIMIT ?",
    (False, False, True): "SELECT key, value FROM _cf_KV ORDER BY key DESC LIMIT ?",
}


# --------------------------------------------------------------------------------------------
# Interface
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class BackendStatistics:
    """A snapshot of a backend's counters.

    ``open_connections``: SQLite connections currently open (each one is a thread);
    ``max_open``: the pool's bound (0 for :class:`MemoryBackend`); ``commits``: successful
    commits; ``reads``: successful read-side calls (read, list, read_metadata, stored_size).
    """

    open_connections: int
    max_open: int
    commits: int
    reads: int


@runtime_checkable
class StorageBackend(Protocol):
    """What the storage cache needs from durable storage. See the module docstring."""

    async def read(self, key: ObjectKey, keys: Sequence[str]) -> dict[str, bytes]:
        """Values of those ``keys`` that exist; absent keys are missing from the dict."""
        ...

    async def list(
        self,
        key: ObjectKey,
        *,
        start: str | None,
        end: str | None,
        reverse: bool,
        limit: int | None,
    ) -> list[tuple[str, bytes]]:
        """Rows with ``start <= k < end`` (None: unbounded), in code point order of the keys
        (descending if ``reverse``), at most ``limit`` of them (None: all)."""
        ...

    async def commit(
        self,
        key: ObjectKey,
        *,
        delete_all: bool,
        puts: Mapping[str, bytes],
        deletes: Collection[str],
        metadata: Mapping[str, bytes | None],
    ) -> None:
        """One atomic transaction: optionally delete every KV row (metadata is kept), then
        upsert ``puts`` and delete ``deletes``, then upsert ``metadata`` (None deletes that
        metadata key). Raises :class:`StorageError` (chained) and changes nothing on failure."""
        ...

    async def read_metadata(self, key: ObjectKey) -> dict[str, bytes]:
        """Every metadata row of the object."""
        ...

    async def stored_size(self, key: ObjectKey) -> int:
        """Sum of ``len(key.encode()) + len(value)`` over the object's KV rows."""
        ...

    def stored_objects(self, namespace: str) -> builtins.list[str]:
        """Sorted ids of the objects of ``namespace`` that have stored data."""
        ...

    async def aclose(self) -> None:
        """Release every resource. Idempotent; later operations raise StorageError."""
        ...

    def statistics(self) -> BackendStatistics:
        """A snapshot of the counters."""
        ...


# --------------------------------------------------------------------------------------------
# Validation shared by both backends (so that they fail identically)
# --------------------------------------------------------------------------------------------


def _validate_namespace(namespace: object) -> str:
    if not isinstance(namespace, str) or not namespace.isidentifier():
        raise ValueError(
            f"invalid Durable Object namespace {namespace!r}: a namespace binding name must be "
            "a Python identifier (letters, digits and underscores, not starting with a digit)"
        )
    return namespace


def _validate_object_id(object_id: object) -> str:
    if not isinstance(object_id, str) or _OBJECT_ID_RE.fullmatch(object_id) is None:
        raise ValueError(
            f"invalid Durable Object id {object_id!r}: an object id must be exactly 64 "
            "lowercase hexadecimal characters (0-9, a-f)"
        )
    return object_id


def validate_object_key(key: ObjectKey) -> ObjectKey:
    """Check ``(namespace, object_id)``; raise ValueError naming the rule that was broken."""
    if not isinstance(key, tuple) or len(key) != 2:
        raise ValueError(f"invalid object key {key!r}: expected a (namespace, object_id) tuple")
    _validate_namespace(key[0])
    _validate_object_id(key[1])
    return key


def _validate_storage_key(k: object) -> None:
    if not isinstance(k, str):
        raise TypeError(f"storage keys must be str, not {type(k).__name__}")
    try:
        k.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError(
            f"storage key {k!r} is not valid Unicode text (it contains a lone surrogate)"
        ) from None


def _validate_value(k: str, v: object, *, optional: bool = False) -> None:
    if isinstance(v, bytes) or (optional and v is None):
        return
    what = "bytes or None" if optional else "bytes"
    raise TypeError(f"the stored value of {k!r} must be {what}, not {type(v).__name__}")


def _validate_commit(
    puts: Mapping[str, bytes], deletes: Collection[str], metadata: Mapping[str, bytes | None]
) -> None:
    for k, v in puts.items():
        _validate_storage_key(k)
        _validate_value(k, v)
    for k in deletes:
        _validate_storage_key(k)
    if puts and deletes:
        both = [k for k in deletes if k in puts]
        if both:
            raise ValueError(f"a commit cannot both put and delete the same key: {both[0]!r}")
    for k, data in metadata.items():
        _validate_storage_key(k)
        _validate_value(k, data, optional=True)


def _validate_list_args(start: str | None, end: str | None, limit: int | None) -> None:
    if start is not None:
        _validate_storage_key(start)
    if end is not None:
        _validate_storage_key(end)
    if limit is not None and (not isinstance(limit, int) or limit < 0):
        raise ValueError(f"list limit must be None or a non-negative int, not {limit!r}")


def _validate_read_keys(keys: Sequence[str]) -> None:
    if isinstance(keys, str):
        raise TypeError("read() takes a sequence of keys, not a single str")
    for k in keys:
        _validate_storage_key(k)


def _closed_error() -> StorageError:
    return StorageError("storage backend is closed")


# --------------------------------------------------------------------------------------------
# MemoryBackend
# --------------------------------------------------------------------------------------------


class _MemoryObject:
    __slots__ = ("kv", "metadata", "size", "sorted_keys")

    def __init__(self) -> None:
        self.kv: dict[str, bytes] = {}
        self.metadata: dict[str, bytes] = {}
        self.size = 0  # sum of len(utf8 key) + len(value) over kv
        self.sorted_keys: list[str] | None = []  # None: must be re-sorted before use


class MemoryBackend:
    """Committed data in dictionaries. Nothing touches the disk; nothing survives the process.

    Its coroutines never suspend (they contain no ``await``): each completes in one step, so a
    commit is trivially atomic with respect to everything else on the event loop. Arguments are
    validated before anything is changed, so a commit that raises has changed nothing.
    """

    def __init__(self) -> None:
        self._objects: dict[ObjectKey, _MemoryObject] = {}
        self._closed = False
        self._commits = 0
        self._reads = 0

    def _check_open(self) -> None:
        if self._closed:
            raise _closed_error()

    async def read(self, key: ObjectKey, keys: Sequence[str]) -> dict[str, bytes]:
        self._check_open()
        validate_object_key(key)
        _validate_read_keys(keys)
        obj = self._objects.get(key)
        self._reads += 1
        if obj is None:
            return {}
        kv = obj.kv
        return {k: kv[k] for k in keys if k in kv}

    async def list(
        self,
        key: ObjectKey,
        *,
        start: str | None,
        end: str | None,
        reverse: bool,
        limit: int | None,
    ) -> list[tuple[str, bytes]]:
        self._check_open()
        validate_object_key(key)
        _validate_list_args(start, end, limit)
        obj = self._objects.get(key)
        self._reads += 1
        if obj is None or limit == 0:
            return []
        if obj.sorted_keys is None:
            obj.sorted_keys = sorted(obj.kv)
        keys = obj.sorted_keys
        lo = 0 if start is None else bisect_left(keys, start)
        hi = len(keys) if end is None else bisect_left(keys, end)
        if hi <= lo:
            return []
        if reverse:
            if limit is not None:
                lo = max(lo, hi - limit)
            selected = keys[hi - 1 : lo - 1 if lo else None : -1]
        else:
            if limit is not None:
                hi = min(hi, lo + limit)
            selected = keys[lo:hi]
        kv = obj.kv
        return [(k, kv[k]) for k in selected]

    async def commit(
        self,
        key: ObjectKey,
        *,
        delete_all: bool,
        puts: Mapping[str, bytes],
        deletes: Collection[str],
        metadata: Mapping[str, bytes | None],
    ) -> None:
        self._check_open()
        validate_object_key(key)
        _validate_commit(puts, deletes, metadata)
        # Everything is valid: from here on nothing can fail half-way.
        obj = self._objects.get(key)
        if obj is None:
            obj = self._objects[key] = _MemoryObject()
        kv = obj.kv
        if delete_all and kv:
            kv.clear()
            obj.size = 0
            obj.sorted_keys = []
        for k, v in puts.items():
            old = kv.get(k)
            if old is None:
                obj.size += len(k.encode("utf-8")) + len(v)
                obj.sorted_keys = None
            else:
                obj.size += len(v) - len(old)
            kv[k] = v
        for k in deletes:
            old = kv.pop(k, None)
            if old is not None:
                obj.size -= len(k.encode("utf-8")) + len(old)
                obj.sorted_keys = None
        for k, data in metadata.items():
            if data is None:
                obj.metadata.pop(k, None)
            else:
                obj.metadata[k] = data
        self._commits += 1

    async def read_metadata(self, key: ObjectKey) -> dict[str, bytes]:
        self._check_open()
        validate_object_key(key)
        obj = self._objects.get(key)
        self._reads += 1
        return {} if obj is None else dict(obj.metadata)

    async def stored_size(self, key: ObjectKey) -> int:
        self._check_open()
        validate_object_key(key)
        obj = self._objects.get(key)
        self._reads += 1
        return 0 if obj is None else obj.size

    def stored_objects(self, namespace: str) -> builtins.list[str]:
        self._check_open()
        _validate_namespace(namespace)
        return sorted(oid for ns, oid in self._objects if ns == namespace)

    async def aclose(self) -> None:
        self._closed = True

    def statistics(self) -> BackendStatistics:
        return BackendStatistics(
            open_connections=0, max_open=0, commits=self._commits, reads=self._reads
        )

    def __repr__(self) -> str:
        state = "closed" if self._closed else f"{len(self._objects)} objects"
        return f"<MemoryBackend {state}>"


# --------------------------------------------------------------------------------------------
# SqliteBackend
# --------------------------------------------------------------------------------------------


# The functions below run on a connection's own thread, each as ONE job: nothing else queued on
# that connection (another read, another commit of the same object) can interleave with them.


def _init_db(db: sqlite3.Connection, path: Path) -> None:
    # Never write (WAL, our tables) into a database someone else made.
    tables, ours, application_id = db.execute(SQL_USER_TABLES).fetchone()
    if is_foreign_database(tables, ours, application_id):
        raise not_a_lab_database(path)
    # A SQLite-backed object's database (read here for its alarm when a lab reopens its
    # folder): its tables come with its first KV write or alarm, never from a read.
    sql_backed = application_id == LAB_APPLICATION_ID
    # Setting up a new file (the switch to WAL, our two tables, in one transaction) writes
    # nothing anyone was told is saved: no fsync for it (synchronous=OFF). A burst of new
    # objects would otherwise pay a few fsyncs each (20 ms here) for empty tables. The commits
    # that follow run with synchronous=NORMAL (see the module docstring).
    db.execute(_SQL_PRAGMA_SYNCHRONOUS_OFF)
    db.execute(_SQL_PRAGMA_WAL)
    if not sql_backed:
        db.execute(_SQL_BEGIN)
        try:
            db.execute(_SQL_CREATE_KV)
            db.execute(_SQL_CREATE_METADATA)
            db.execute(_SQL_COMMIT)
        except BaseException:
            if db.in_transaction:
                db.execute(_SQL_ROLLBACK)
            raise
    # A trigger, an index or a changed column on our tables would run on (or break) every
    # commit: refused, naming the file (see _folder.check_lab_schema).
    check_lab_schema(db, f"the database {path}")
    db.execute(_SQL_PRAGMA_SYNCHRONOUS)


#: aiosqlite's rows per trip for cursor iteration (its default; the backend never iterates).
_ITER_CHUNK_SIZE = 64


def _connector(path: Path, watchdog: _Watchdog) -> Callable[[], sqlite3.Connection]:
    """What opens an object's database, run on the connection's own thread as its first job:
    the checks of the lab folder, opening, setting up a new file. The event loop does none of
    that file-system work, and it is one trip to the thread, not four (a burst of 10,000 new
    objects opens 10,000 files)."""

    def connect() -> sqlite3.Connection:
        if not check_db_path(path):  # the lab folder is a boundary (see _folder.py)
            path.parent.mkdir(parents=True, exist_ok=True)
        # isolation_level=None: no implicit transactions; commits use BEGIN IMMEDIATE.
        db = sqlite3.connect(path, isolation_level=None)
        try:
            _install_watchdog(db, watchdog)
            _timed(db, watchdog, _init_db, path)
        except BaseException:
            db.close()
            raise
        return db

    return connect


def _before_close(db: sqlite3.Connection) -> None:
    """Closing the last connection of a WAL database copies the log into the database file (a
    checkpoint), which synchronous=NORMAL fsyncs twice. Every commit in the log already
    survives the process dying (it is in the operating system's cache), which is all the lab
    promises; so the checkpoint is left to the operating system to write out."""
    db.execute(_SQL_PRAGMA_SYNCHRONOUS_OFF)


def _runtime_rows(db: sqlite3.Connection, sql: str, params: Sequence[object] = ()) -> list[Any]:
    """Rows of a read of the runtime's tables. A SQLite-backed object's database (read here for
    ``lab.objects()``, its alarm on reopen, ...) has each table only from the first write that
    needs it, as on workerd: before that, nothing is stored there."""
    try:
        return db.execute(sql, params).fetchall()
    except sqlite3.OperationalError as exc:
        if missing_runtime_table(exc):
            return []
        raise


def _read_sync(db: sqlite3.Connection, keys: Sequence[str]) -> dict[str, bytes]:
    out: dict[str, bytes] = {}
    for k in keys:
        rows = _runtime_rows(db, _SQL_GET_KV, (k,))
        if rows:
            out[k] = rows[0][0]
    return out


def _list_sync(
    db: sqlite3.Connection,
    start: str | None,
    end: str | None,
    reverse: bool,
    limit: int | None,
) -> list[tuple[str, bytes]]:
    sql = _SQL_LIST[(start is not None, end is not None, reverse)]
    params: list[object] = [b for b in (start, end) if b is not None]
    params.append(-1 if limit is None else limit)
    rows = [(k, v) for k, v in _runtime_rows(db, sql, params)]
    _check_listed_keys(rows)
    return rows


def _check_listed_keys(rows: list[tuple[object, object]]) -> None:
    """``_cf_KV.key`` is declared TEXT, but SQLite stores a BLOB (or a number) written there by
    someone else as is: such a row is not one the lab wrote, and it would break the ordering of
    the keys (str and bytes do not compare)."""
    for k, _ in rows:
        if type(k) is not str:
            raise StorageCorruptError(
                f"the _cf_KV table holds a key that is not text ({type(k).__name__} {k!r:.60}): "
                "storage keys are always str"
            )


def _commit_sync(
    db: sqlite3.Connection,
    delete_all: bool,
    puts: list[tuple[str, bytes]],
    deletes: list[tuple[str]],
    metadata_puts: list[tuple[str, bytes]],
    metadata_deletes: list[tuple[str]],
) -> None:
    db.execute(_SQL_BEGIN)
    try:
        if delete_all:
            db.execute(_SQL_DELETE_ALL_KV)
        if puts:
            db.executemany(_SQL_PUT_KV, puts)
        if deletes:
            db.executemany(_SQL_DELETE_KV, deletes)
        if metadata_puts:
            db.executemany(_SQL_PUT_METADATA, metadata_puts)
        if metadata_deletes:
            db.executemany(_SQL_DELETE_METADATA, metadata_deletes)
        db.execute(_SQL_COMMIT)
    except BaseException:
        if db.in_transaction:
            try:
                db.execute(_SQL_ROLLBACK)
            except sqlite3.Error:  # pragma: no cover - SQLite already rolled back
                LOG.exception("ROLLBACK failed")
        raise


def _metadata_sync(db: sqlite3.Connection) -> dict[str, bytes]:
    return {k: v for k, v in _runtime_rows(db, _SQL_GET_ALL_METADATA)}


def _size_sync(db: sqlite3.Connection) -> int:
    rows = _runtime_rows(db, _SQL_KV_SIZE)
    return int(rows[0][0]) if rows else 0


#: How many SQLite VM instructions run between two looks at a statement's deadline.
_PROGRESS_STEPS = 1000


class _Watchdog:
    """The time limit of one connection's jobs (``Lab(sql_time_limit=...)``), as SQLite's
    progress handler: every statement the backend runs is interrupted once its job has run
    longer than the limit. A database someone tampered with (a slow trigger on ``_cf_KV``)
    then fails that commit, the object is reset, and ``close()`` does not wait forever."""

    __slots__ = ("deadline", "limit", "timed_out")

    def __init__(self, limit: float) -> None:
        self.limit = limit
        self.deadline: float | None = None
        self.timed_out = False

    def __call__(self) -> int:
        deadline = self.deadline
        if deadline is not None and time.monotonic() > deadline:
            self.timed_out = True
            return 1  # SQLITE_INTERRUPT
        return 0


def _timed(db: sqlite3.Connection, watchdog: _Watchdog, fn: Callable[..., _T],
           *args: object) -> _T:
    """Run ``fn(db, *args)`` (on the connection's thread) with the watchdog's clock running."""
    watchdog.deadline = time.monotonic() + watchdog.limit
    watchdog.timed_out = False
    try:
        return fn(db, *args)
    finally:
        watchdog.deadline = None


def _install_watchdog(db: sqlite3.Connection, watchdog: _Watchdog) -> None:
    db.set_progress_handler(watchdog, _PROGRESS_STEPS)


async def _run_on_connection(
    conn: aiosqlite.Connection, fn: Callable[..., _T], *args: object
) -> _T:
    """Run ``fn(sqlite3_connection, *args)`` on the connection's thread as one job.

    aiosqlite's public methods each make a separate trip to the thread, so a transaction built
    from them (BEGIN, executemany, ..., COMMIT) could be interleaved with a read of the same
    object submitted meanwhile (which would then see uncommitted rows) or with a second commit
    (a nested BEGIN). ``Connection._execute`` queues one callable instead; it has existed with
    this signature in every aiosqlite release this project supports.
    """
    return await conn._execute(lambda: fn(conn._conn, *args))


class _PoolEntry:
    """A pooled connection (or one being opened) for one object."""

    __slots__ = ("conn", "failed", "key", "ready", "users", "watchdog")

    def __init__(self, key: ObjectKey) -> None:
        self.key = key
        self.conn: aiosqlite.Connection | None = None
        self.watchdog: _Watchdog | None = None
        self.users = 1  # operations holding or waiting for this entry
        self.ready = asyncio.Event()  # set once opening finished (successfully or not)
        self.failed = False


#: What a waiter for a slot is handed: a new entry for its object, and the idle entry whose
#: connection it must close first (None: the slot was empty).
_Grant = tuple[_PoolEntry, "_PoolEntry | None"]


class SqliteBackend:
    """One SQLite database per object under ``folder``, through a bounded connection pool.

    ``max_open`` bounds how many connections (threads) are open at once. See the module
    docstring for the layout, durability and pooling rules.
    """

    def __init__(self, folder: str | os.PathLike[str], *, max_open: int = 64,
                 time_limit: float = 5.0) -> None:
        if not isinstance(max_open, int) or max_open < 1:
            raise ValueError(f"max_open must be a positive int, not {max_open!r}")
        self._folder = Path(folder)
        self._max_open = max_open
        #: Seconds one job (a read, a commit, opening a database) may run on its connection.
        self._time_limit = time_limit
        # ObjectKey -> entry, least recently used first. Entries being opened count toward
        # max_open: a slot is reserved before the connection is opened.
        self._pool: dict[ObjectKey, _PoolEntry] = {}
        #: Entries nobody uses (their connection open, ready for reuse or to be closed),
        #: least recently used first.
        self._idle: OrderedDict[ObjectKey, _PoolEntry] = OrderedDict()
        #: Operations waiting for a slot, first come first served: (key, future). A slot that
        #: frees up is handed to the first of them directly (see _hand_over).
        self._waiters: deque[tuple[ObjectKey, asyncio.Future[_Grant | None]]] = deque()
        #: Objects with operations waiting for a slot, and how many.
        self._queued: dict[ObjectKey, int] = {}
        #: Entries with users > 0 (close() waits until there are none).
        self._busy = 0
        self._drained: asyncio.Future[None] | None = None
        self._open_connections = 0  # threads actually started and not yet stopped
        self._closed = False
        self._close_task: asyncio.Future[None] | None = None
        self._commits = 0
        self._reads = 0

    @property
    def folder(self) -> Path:
        return self._folder

    def _path(self, key: ObjectKey) -> Path:
        validate_object_key(key)
        return self._folder / key[0] / (key[1] + _DB_SUFFIX)

    def _check_open(self) -> None:
        if self._closed:
            raise _closed_error()

    # -- pool ----------------------------------------------------------------------------------

    def _hand_over(self, victim: _PoolEntry | None) -> None:
        """A slot is free: ``victim`` (an idle entry, still in the pool) or, if None, an empty
        slot. Give it to the first waiter; with none waiting, ``victim`` joins the idle list.

        The waiter gets a new entry for its key, already in the pool with one user, and the
        victim to close before it opens its own connection: the handover happens here, at
        once, so an operation arriving meanwhile cannot take the slot (no barging), and each
        release wakes one waiter at most (O(1), not every waiter at every release).
        """
        waiters = self._waiters
        while waiters:
            key, fut = waiters.popleft()
            if fut.done():  # (cancelled while waiting)
                continue
            if key in self._pool:
                # Its object got a connection meanwhile: it joins that one, needing no slot.
                fut.set_result(None)
                continue
            if victim is not None:
                del self._pool[victim.key]
            entry = _PoolEntry(key)
            self._pool[key] = entry
            self._busy += 1
            fut.set_result((entry, victim))
            return
        if victim is not None:
            self._idle[victim.key] = victim

    def queued(self, key: ObjectKey) -> bool:
        """Whether an operation of ``key`` has not reached its connection yet: it waits for a
        slot, for the connection it replaces to close, or for its own to open (the output
        gate does not count that time against the object: see ``_host``)."""
        return key in self._queued

    async def _acquire(self, key: ObjectKey, path: Path, *, create: bool) -> _PoolEntry | None:
        """A ready entry for ``key`` with ``users`` incremented, or None if ``create`` is false
        and the object has no database file. The caller must :meth:`_release` the entry."""
        queued = self._queued
        queued[key] = queued.get(key, 0) + 1
        try:
            return await self._acquire_slot(key, path, create=create)
        finally:
            left = queued[key] - 1
            if left:
                queued[key] = left
            else:
                del queued[key]

    async def _wait_for_slot(self, key: ObjectKey) -> _Grant | None:
        """Queue for a slot; the grant (see _hand_over), or None: look again."""
        fut: asyncio.Future[_Grant | None] = asyncio.get_running_loop().create_future()
        self._waiters.append((key, fut))
        try:
            return await fut
        except BaseException:
            if fut.done() and not fut.cancelled() and fut.exception() is None:
                grant = fut.result()
                if grant is not None:  # granted, then cancelled before it could run
                    entry, victim = grant
                    self._give_back(entry, victim)
            else:
                fut.cancel()  # (skipped by _hand_over)
            raise

    def _give_back(self, entry: _PoolEntry, victim: _PoolEntry | None) -> None:
        """A granted slot is not used after all: the entry fails (its joiners look again), and
        the victim, never closed, is handed over again."""
        entry.failed = True
        if self._pool.get(entry.key) is entry:
            del self._pool[entry.key]
        entry.ready.set()
        self._leave(entry)
        if victim is not None:
            if victim.key in self._pool:  # its object has another connection now: close it
                spawn(self._close_connection(victim))
                self._hand_over(None)
            else:
                self._pool[victim.key] = victim
                self._hand_over(victim)
        else:
            self._hand_over(None)

    def _leave(self, entry: _PoolEntry) -> None:
        """One user of ``entry`` is done with it (waiting or holding)."""
        entry.users -= 1
        if entry.users == 0:
            self._busy -= 1
            if self._busy == 0 and self._drained is not None and not self._drained.done():
                self._drained.set_result(None)

    async def _acquire_slot(self, key: ObjectKey, path: Path, *,
                            create: bool) -> _PoolEntry | None:
        while True:
            self._check_open()
            entry = self._pool.get(key)
            if entry is not None:
                if entry.users == 0:
                    self._busy += 1
                    self._idle.pop(key, None)
                entry.users += 1
                if not entry.ready.is_set():
                    try:
                        await entry.ready.wait()
                    except BaseException:
                        self._release(entry)
                        raise
                if entry.failed:
                    # The opener raised its own StorageError; try again ourselves.
                    self._release(entry)
                    continue
                return entry

            if not create and not check_db_path(path):  # (refuses symlinks)
                return None

            victim: _PoolEntry | None = None
            if len(self._pool) < self._max_open:
                entry = _PoolEntry(key)
                self._pool[key] = entry
                self._busy += 1
            elif self._idle and not self._waiters:
                _, victim = self._idle.popitem(last=False)  # the least recently used
                del self._pool[victim.key]
                entry = _PoolEntry(key)
                self._pool[key] = entry
                self._busy += 1
            else:
                grant = await self._wait_for_slot(key)
                if grant is None:
                    continue
                entry, victim = grant
            # The slot is reserved (entry is in the pool): concurrent first operations on this
            # object join this entry instead of opening a second connection.
            try:
                if victim is not None:
                    await self._close_connection(victim)
                entry.watchdog = _Watchdog(self._time_limit)
                entry.conn = await self._open_connection(path, entry.watchdog)
            except BaseException as exc:
                entry.failed = True
                if self._pool.get(key) is entry:
                    del self._pool[key]
                entry.ready.set()
                self._leave(entry)
                self._hand_over(None)  # the slot is free again
                if isinstance(exc, Exception) and not isinstance(exc, StorageError):
                    raise StorageError(
                        f"cannot open the database of {key[0]} object {key[1]} at {path}: {exc}"
                    ) from exc
                raise
            entry.ready.set()
            return entry

    def _release(self, entry: _PoolEntry) -> None:
        self._leave(entry)
        if entry.users == 0 and not entry.failed and self._pool.get(entry.key) is entry:
            self._hand_over(entry)

    async def _open_connection(self, path: Path, watchdog: _Watchdog) -> aiosqlite.Connection:
        conn = aiosqlite.Connection(_connector(path, watchdog), _ITER_CHUNK_SIZE)
        # aiosqlite (0.22) runs each connection on a NON-daemon thread, started by
        # ``__await__`` below. If a notebook or script never closes the lab, those threads
        # would keep the interpreter from exiting. A daemon thread is simply stopped at exit;
        # that is safe because every acknowledged commit is already in the WAL, and a
        # transaction cut short is rolled back by SQLite when the database is next opened.
        thread = getattr(conn, "_thread", None)
        if thread is not None:
            thread.daemon = True
        self._open_connections += 1
        try:
            await conn
        except BaseException:
            self._open_connections -= 1
            # aiosqlite stops the thread itself, and its last act is to report that to this
            # loop: wait for it, so that it never reports to a loop closed meanwhile.
            if thread is not None and thread.is_alive():
                await asyncio.to_thread(thread.join)
            raise
        return conn

    async def _close_aiosqlite(self, conn: aiosqlite.Connection) -> None:
        try:
            with contextlib.suppress(Exception):
                await _run_on_connection(conn, _before_close)
            await conn.close()
        finally:
            self._open_connections -= 1

    async def _close_connection(self, entry: _PoolEntry) -> None:
        conn, entry.conn = entry.conn, None
        if conn is None:
            return
        try:
            await self._close_aiosqlite(conn)
        except Exception:
            LOG.exception("error while closing a pooled SQLite connection")

    async def _run(
        self, key: ObjectKey, fn: Callable[..., _T], *args: object, create: bool, empty: _T
    ) -> _T:
        path = self._path(key)
        self._check_open()
        entry = await self._acquire(key, path, create=create)
        if entry is None:
            return empty
        watchdog = entry.watchdog
        try:
            assert entry.conn is not None and watchdog is not None
            return await _run_on_connection(entry.conn, _timed, watchdog, fn, *args)
        except StorageCorruptError as exc:
            raise StorageCorruptError(f"{key[0]} object {key[1]}: {exc}") from exc
        except StorageError:
            raise
        except Exception as exc:
            if (watchdog is not None and watchdog.timed_out
                    and getattr(exc, "sqlite_errorcode", None) == sqlite3.SQLITE_INTERRUPT):
                raise StorageError(
                    f"SQLite {fn.__name__.removesuffix('_sync')} of {key[0]} object {key[1]} "
                    f"ran longer than {self._time_limit:g} s, the lab's limit for one statement "
                    "(Lab(sql_time_limit=...)), and was interrupted: something stored in its "
                    "database makes it slow"
                ) from exc
            raise StorageError(
                f"SQLite {fn.__name__.removesuffix('_sync')} failed for {key[0]} object "
                f"{key[1]}: {exc}"
            ) from exc
        finally:
            self._release(entry)

    # -- the interface -------------------------------------------------------------------------

    async def read(self, key: ObjectKey, keys: Sequence[str]) -> dict[str, bytes]:
        _validate_read_keys(keys)
        result: dict[str, bytes] = await self._run(key, _read_sync, list(keys), create=False,
                                                   empty={})
        self._reads += 1
        return result

    async def list(
        self,
        key: ObjectKey,
        *,
        start: str | None,
        end: str | None,
        reverse: bool,
        limit: int | None,
    ) -> list[tuple[str, bytes]]:
        _validate_list_args(start, end, limit)
        result: builtins.list[tuple[str, bytes]] = await self._run(
            key, _list_sync, start, end, bool(reverse), limit, create=False, empty=[]
        )
        self._reads += 1
        return result

    async def commit(
        self,
        key: ObjectKey,
        *,
        delete_all: bool,
        puts: Mapping[str, bytes],
        deletes: Collection[str],
        metadata: Mapping[str, bytes | None],
    ) -> None:
        _validate_commit(puts, deletes, metadata)
        # Snapshot the arguments now: the caller may reuse its dicts once we are suspended.
        await self._run(
            key,
            _commit_sync,
            bool(delete_all),
            list(puts.items()),
            [(k,) for k in deletes],
            [(k, v) for k, v in metadata.items() if v is not None],
            [(k,) for k, v in metadata.items() if v is None],
            create=True,
            empty=None,
        )
        self._commits += 1

    async def read_metadata(self, key: ObjectKey) -> dict[str, bytes]:
        result: dict[str, bytes] = await self._run(key, _metadata_sync, create=False, empty={})
        self._reads += 1
        return result

    async def stored_size(self, key: ObjectKey) -> int:
        result = await self._run(key, _size_sync, create=False, empty=0)
        self._reads += 1
        return result

    def stored_objects(self, namespace: str) -> builtins.list[str]:
        self._check_open()
        _validate_namespace(namespace)
        if not check_binding_dir(self._folder / namespace):
            return []
        try:
            names = os.listdir(self._folder / namespace)
        except FileNotFoundError:
            return []
        except OSError as exc:
            raise StorageError(f"cannot list {self._folder / namespace}: {exc}") from exc
        ids = [
            name[: -len(_DB_SUFFIX)]
            for name in names
            if name.endswith(_DB_SUFFIX) and _OBJECT_ID_RE.fullmatch(name[: -len(_DB_SUFFIX)])
        ]
        return sorted(ids)

    async def aclose(self) -> None:
        """Wait for operations in flight, then close every connection. Idempotent."""
        if self._close_task is None:
            self._closed = True
            self._close_task = spawn(self._close_all())
            # Operations waiting for a slot look again, and raise StorageError.
            while self._waiters:
                _, fut = self._waiters.popleft()
                if not fut.done():
                    fut.set_result(None)
        await asyncio.shield(self._close_task)

    async def _close_all(self) -> None:
        if self._busy:
            self._drained = asyncio.get_running_loop().create_future()
            await self._drained
        errors: list[BaseException] = []
        self._idle.clear()
        while self._pool:
            _, entry = self._pool.popitem()
            conn, entry.conn = entry.conn, None
            if conn is None:
                continue
            try:
                await self._close_aiosqlite(conn)
            except Exception as exc:
                errors.append(exc)
        if errors:
            raise StorageError(f"closing SQLite connections failed: {errors[0]}") from errors[0]

    def statistics(self) -> BackendStatistics:
        return BackendStatistics(
            open_connections=self._open_connections,
            max_open=self._max_open,
            commits=self._commits,
            reads=self._reads,
        )

    def __repr__(self) -> str:
        state = "closed" if self._closed else f"{self._open_connections} open connections"
        return f"<SqliteBackend {str(self._folder)!r} {state}>"
