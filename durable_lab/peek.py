"""Peeking inside an object from outside: what its storage holds right now.

(Named ``peek``, not ``inspect``: a module of that name would shadow the standard library's.)

For the storage inspector, the SQL panel and lessons. Read-only and outside the object's turns:
nothing is delivered to the object, no gate is touched, no event is emitted, nothing is written
(a never-written object gets no file). Two views:

- :func:`kv_snapshot`: the key-value data (``ctx.storage.get/put``). For a KV-backed class,
  what is committed in storage overlaid with the writes still in the live instance's cache
  (pending or on their way to storage), so a value shows the moment ``put()`` ran. For a
  SQLite-backed class, the ``_cf_KV`` table as the object sees it.
- :func:`sql_snapshot`: the tables of a SQLite-backed object (``sql=True``): columns, row count
  and the first rows, as the object sees them now (inside its open implicit transaction, if
  any: the rows a turn just inserted show before their commit).

A value that cannot be decoded (corrupt data) is shown as ``<undecodable: ...>`` rather than
raising: an inspector must never be the thing that fails.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import _sql_engine, values
from ._folder import check_db_path, missing_runtime_table
from .errors import StorageError

if TYPE_CHECKING:
    import sqlite3

    from ._backends import StorageBackend
else:  # the SQL API's own SQLite: one library per database file in a process (_sql_driver)
    from ._sql_driver import sqlite3

__all__ = ["TableSnapshot", "kv_snapshot", "sql_snapshot"]


@dataclass(frozen=True, slots=True)
class TableSnapshot:
    name: str
    columns: tuple[str, ...]
    count: int
    rows: tuple[tuple[Any, ...], ...]  # the first rows, in rowid order


def _decode(data: bytes | None) -> Any:
    try:
        return values.decode(data) if data is not None else None
    except Exception as exc:  # corrupt bytes: show, never raise
        return f"<undecodable: {type(exc).__name__}>"


async def kv_snapshot(host: Any, backend: StorageBackend, path: Path | None, *,
                      limit: int = 500) -> dict[str, Any]:
    """``host``'s key-value data now: ``{key: value}``, at most ``limit`` keys, in key order.

    ``host`` is an ``_host.ObjectHost``; ``backend`` and ``path`` the lab's storage (``path``:
    its folder, None for a memory lab)."""
    instance = host.instance
    cache = instance.cache if instance is not None else None
    if (cache is not None and cache.is_sqlite) or _sql_backed(host):
        rows = _sql_rows(path, host, "SELECT key, value FROM _cf_KV ORDER BY key LIMIT ?",
                         (limit,))
        return {key: _decode(value) for key, value in rows}
    found: dict[str, bytes | None] = dict(await backend.list(
        host.storage_key, start=None, end=None, reverse=False, limit=limit))
    # The cache as it is now, after the read: writes not committed yet win over what storage
    # holds (a batch that landed meanwhile is in both: the same values).
    instance = host.instance
    cache = instance.cache if instance is not None else None
    if cache is not None and not cache.is_sqlite:
        for delete_all, layer in cache.overlay():
            if delete_all:
                found = {}
            found.update(layer)
    return {key: _decode(found[key]) for key in sorted(found)[:limit]
            if found[key] is not None}


def sql_snapshot(host: Any, path: Path | None, *, rows: int = 20) -> list[TableSnapshot]:
    """The user tables of ``host``'s SQLite-backed object (``_cf_*`` and ``sqlite_*`` left
    out)."""
    names = [r[0] for r in _sql_rows(
        path, host, "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE "
                   "'\\_cf\\_%' ESCAPE '\\' AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\' "
                   "ORDER BY name")]
    tables = []
    for name in names:
        quoted = '"' + name.replace('"', '""') + '"'
        columns = tuple(r[1] for r in _sql_rows(path, host, f"PRAGMA table_info({quoted})"))
        count = _sql_rows(path, host, f"SELECT COUNT(*) FROM {quoted}")[0][0]
        first = tuple(tuple(r) for r in _sql_rows(path, host, f"SELECT * FROM {quoted} LIMIT ?",
                                                  (rows,)))
        tables.append(TableSnapshot(name, columns, count, first))
    return tables


def _sql_backed(host: Any) -> bool:
    return bool(getattr(host.namespace, "sql", False))


def _sql_rows(path: Path | None, host: Any, query: str, params: tuple[Any, ...] = ()) -> list[Any]:
    """Run a read-only query on the object's database: through the live instance's connection
    (so its open transaction is visible), else on the stored database, opened read-only. A
    runtime table not made yet (by the object's first KV write or alarm) holds no rows."""
    try:
        return _query(path, host, query, params)
    except sqlite3.OperationalError as exc:
        if missing_runtime_table(exc):
            return []
        raise


def _query(path: Path | None, host: Any, query: str, params: tuple[Any, ...]) -> list[Any]:
    instance = host.instance
    engine = instance.cache if instance is not None else None
    if engine is not None and getattr(engine, "is_sqlite", False) and engine._conn is not None:
        return list(engine.read_rows(query, params))
    # Elsewhere too, nothing the lab runs may outlast Lab(sql_time_limit=...).
    limit = host.services.sql_time_limit
    if path is None:
        conn = _sql_engine._memory_db(host, create=False)
        if conn is None:
            return []
        conn.set_progress_handler(_sql_engine.watchdog(limit), _sql_engine.PROGRESS_STEPS)
        try:
            return conn.execute(query, params).fetchall()
        finally:
            conn.set_progress_handler(None, 0)
    db = Path(path) / host.storage_key[0] / f"{host.storage_key[1]}.sqlite"
    if not check_db_path(db):  # (a symlink is refused: the lab folder is a boundary)
        return []
    with contextlib.closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True)) as conn:
        conn.set_progress_handler(_sql_engine.watchdog(limit), _sql_engine.PROGRESS_STEPS)
        try:
            return conn.execute(query, params).fetchall()
        except sqlite3.OperationalError as exc:
            if getattr(exc, "sqlite_errorcode", None) == sqlite3.SQLITE_INTERRUPT:
                raise StorageError(
                    f"{host.label}: reading its database ({query[:60]!r}) took longer than "
                    f"{limit:g} s, the lab's limit for one statement (Lab(sql_time_limit=...)), "
                    "and was interrupted") from exc
            return []  # no such table yet (a KV-only database)
