"""``ctx.storage.sql``: the SQL API of SQLite-backed Durable Objects, with Cloudflare's names.

SQL API and transactions
------------------------
A class bound with ``lab.bind("NAME", Cls, sql=True)`` is *SQLite-backed* (Cloudflare's
``new_sqlite_classes``): each object owns one SQLite database, and ``ctx.storage.sql`` runs
statements on it directly::

    sql = self.ctx.storage.sql
    sql.exec("CREATE TABLE IF NOT EXISTS msgs(id INTEGER PRIMARY KEY, body TEXT)")
    sql.exec("INSERT INTO msgs(body) VALUES (?)", body)        # bindings are SQL parameters
    rows = sql.exec("SELECT id, body FROM msgs").toArray()     # [{"id": 1, "body": "hi"}, ...]
    n = sql.exec("SELECT count(*) AS n FROM msgs").one().n     # one() gives attribute access

What each call does (workerd ``SqlStorage``, spec section 4.3):

- ``exec(query, *bindings)`` is **synchronous and eager**: it returns a
  :class:`SqlStorageCursor` with the statement already run (an INSERT takes effect even if the
  cursor is never read; rows of a SELECT after the first are read as you iterate). Several
  statements separated by ``;`` run in order; only the last may have bindings, and the cursor
  is for the last one.
- Writes are never committed one by one: the first write of a turn opens a transaction that
  commits after the turn, together with the turn's ``put()``/``delete()`` calls and the alarm.
  Replies wait for that commit (the output gate). If the commit fails (for example a deferred
  foreign key still violated at COMMIT), everything of that transaction is rolled back and the
  object is reset.
- Bindings are always SQL parameters, never pasted into the text, stored as a Python Worker's
  are after Pyodide made them JavaScript values: ``None`` NULL, ``int`` REAL (beyond 2**53 - 1
  refused: a BigInt), ``bool`` the TEXT ``'true'``/``'false'``, ``float``, ``str``, ``bytes``;
  any other type is a ``TypeError``.
- ``BEGIN``/``COMMIT``/``ROLLBACK``/``SAVEPOINT``/``RELEASE`` are refused: use
  ``ctx.storage.transactionSync(fn)`` (synchronous, SAVEPOINT-based) or
  ``await ctx.storage.transaction(async_fn)``. Tables whose name starts with ``_cf_`` (the
  key-value data and the runtime's metadata) cannot be read, written, created or inspected.
- ``databaseSize``: bytes in use, ``(page_count - freelist_count) * page_size``.

Rows are ``dict`` keyed by column name (duplicate names: the last wins, as with a JavaScript
object); ``one()`` returns a :class:`Row`, a ``dict`` that also allows ``row.column``, as the
Python examples in Cloudflare's docs use (``result.greeting``). Results are plain Python values as
a Python Worker gets them (every number is a JavaScript Number on its way): an integral number
within 2**53 - 1 -> int, any other number -> float, TEXT -> str, BLOB -> bytes, NULL -> None.

``rowsRead``/``rowsWritten`` are counted as workerd counts them (and Cloudflare bills them):
every row SQLite steps over, every table row and index entry written, for the last statement,
growing as the cursor is read. That needs the lab's own SQLite build (``_sql_driver``); without
it ``rowsRead`` counts the rows returned and ``rowsWritten`` the rows changed.

Deviations from Cloudflare (docs/semantics.md): SQL errors are :class:`SqlError`
(Cloudflare: ``Error``) with SQLite's message in workerd's words (``"no such table: t:
SQLITE_ERROR"``, ``" at offset N"``); virtual tables other than fts5 are refused.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from ._sql_driver import ROW_COUNTERS
from .errors import DurableLabError

if TYPE_CHECKING:
    import sqlite3
else:
    from ._sql_driver import sqlite3

# Handed down from the rooms above, named for the reader, not imported:
# ``_sql_engine.SqliteEngine``, ``storage.DurableObjectStorage``.
SqliteEngine = Any
DurableObjectStorage = Any

__all__ = ["Row", "SqlError", "SqlStorage", "SqlStorageCursor"]

NOT_SQLITE_MESSAGE = (
    "This Durable Object is not backed by SQLite storage, so the SQL API is not available. "
    "SQL can be enabled on a new Durable Object class by using the `new_sqlite_classes` instead "
    "of `new_classes` under `migrations` in your wrangler.toml (in durable_lab: "
    "lab.bind(NAME, Cls, sql=True))."
)
NOT_SQL_MESSAGE = "Durable Object is not backed by SQL."
TRANSACTION_STATEMENT_MESSAGE = (
    "To execute a transaction, please use the state.storage.transaction() or "
    "state.storage.transactionSync() APIs instead of the SQL BEGIN TRANSACTION or SAVEPOINT "
    "statements. The JavaScript API is safer because it will automatically roll back on "
    "exceptions, and because it interacts correctly with Durable Objects' automatic atomic "
    "write coalescing."
)
MULTI_STATEMENT_BINDINGS_MESSAGE = (
    "When executing multiple SQL statements in a single call, only the last statement can have "
    "parameters."
)


class SqlError(DurableLabError):
    """A SQL statement failed: SQLite's message (and result code name), as Cloudflare words it.

    ``__cause__`` is the ``sqlite3`` exception, when there is one.
    """


class Row(dict):
    """A result row: a ``dict`` keyed by column name that also allows ``row.column``.

    It crosses a stub as a plain dict; to store it with ``put()``, convert it: ``dict(row)``.
    """

    __slots__ = ()
    #: Asks ``values.clone`` to copy a Row as a plain dict when it crosses a stub.
    _durable_lab_clone_as_dict = True

    def __getattr__(self, name: str) -> Any:
        try:
            return self[name]
        except KeyError:
            raise AttributeError(
                f"the row has no column {name!r} (columns: {', '.join(map(str, self)) or 'none'})"
            ) from None

    def __dir__(self) -> list[str]:
        return sorted({*super().__dir__(), *(k for k in self if isinstance(k, str))})


#: Number.MAX_SAFE_INTEGER: Pyodide passes a Python int to JavaScript as a Number up to this
#: magnitude, as a BigInt beyond it.
MAX_SAFE_INTEGER = 2**53 - 1
BIGINT_BINDING_MESSAGE = "Cannot convert a BigInt value to a number"


def check_bindings(bindings: tuple[Any, ...]) -> tuple[Any, ...]:
    """The bindings as SQLite parameters, converted as a Python Worker's are on their way to
    workerd (issue #20): Pyodide turns each into a JavaScript value (its type-conversion
    table, docs/usage/type-conversions.md), and workerd binds a Number as a double, a string
    as TEXT, a boolean as the text ``true``/``false``, ``undefined`` as NULL, and refuses a
    BigInt. So ``True`` is stored as TEXT ``'true'``, an ``int`` as REAL (a column of INTEGER
    affinity turns it back into an integer), and an ``int`` beyond 2**53 - 1 (a BigInt) is
    refused with workerd's TypeError."""
    out: list[Any] = []
    for i, value in enumerate(bindings, 1):
        kind = type(value)
        if value is None or kind is str or kind is float or kind is bytes:
            out.append(value)
        elif kind is bool:
            out.append("true" if value else "false")  # String(true) in JavaScript
        elif isinstance(value, int):
            if not -MAX_SAFE_INTEGER <= value <= MAX_SAFE_INTEGER:
                raise TypeError(
                    f"{BIGINT_BINDING_MESSAGE} (SQL binding {i}, {value}, is beyond 2**53 - 1, "
                    "so Pyodide passes it to JavaScript as a BigInt, which workerd refuses: "
                    "bind it as a str)"
                )
            out.append(float(value))  # a JavaScript Number
        elif isinstance(value, (bytearray, memoryview)):
            out.append(bytes(value))
        else:
            raise TypeError(
                f"SQL binding {i} has type {kind.__name__}, which SQLite cannot store: "
                "bindings must be None, bool, int, float, str or bytes"
            )
    return tuple(out)


def _js_number(value: Any) -> Any:
    """``value`` (an int or float from SQLite) as it reaches Python through a JavaScript
    Number (Pyodide: an int when integral and within 2**53 - 1, else a float)."""
    if type(value) is float:
        if value.is_integer() and -MAX_SAFE_INTEGER <= value <= MAX_SAFE_INTEGER:
            return int(value)
    elif type(value) is int and not -MAX_SAFE_INTEGER <= value <= MAX_SAFE_INTEGER:
        return float(value)
    return value


def _as_python_worker_sees(row: tuple[Any, ...]) -> tuple[Any, ...]:
    """A row as a Python Worker receives it: workerd gives every number to JavaScript as a
    Number, and Pyodide makes it a Python value (``_js_number``): REAL 42.0 reads as 42,
    INTEGER 2**60 as a float."""
    for value in row:
        if _js_number(value) is not value:
            return tuple(map(_js_number, row))
    return row


class SqlStorageCursor:
    """The result of ``sql.exec()``: iterate it (dict rows), or ``toArray()``, ``one()``,
    ``raw()``. Rows after the first are read from SQLite as you go: consume a cursor before the
    next ``await`` (Cloudflare: cursors that cross an await have no snapshot isolation)."""

    __slots__ = ("__weakref__", "_cursor", "_done", "_engine", "_invalid", "_names",
                 "_rows_read", "_rows_returned", "_rows_written", "wrote")

    def __init__(self, engine: SqliteEngine, cursor: sqlite3.Cursor | None, rows_read: int,
                 rows_written: int, wrote: bool) -> None:
        self._engine = engine
        self._cursor = cursor
        description = cursor.description if cursor is not None else None
        self._names: list[str] = [d[0] for d in description] if description else []
        self._done = description is None
        self._invalid: str | None = None
        self._rows_read = rows_read
        #: Rows handed to the object's code so far (the exercises' checks read it: how much of
        #: a table the code took in, which rowsRead no longer tells apart from a scan).
        self._rows_returned = 0
        self._rows_written = rows_written
        #: True if the call wrote to the database (it is part of the open transaction).
        self.wrote = wrote

    # -- reading -------------------------------------------------------------------------

    def _fetch(self) -> tuple[Any, ...] | None:
        if self._done:
            return None
        self._engine.instance.check_usable()
        if self._invalid is not None:
            raise SqlError(f"This cursor can no longer be read: {self._invalid}.")
        assert self._cursor is not None
        engine = self._engine
        armed = engine.arm_time_limit()  # each row read is bounded by Lab(sql_time_limit)
        try:
            row = self._cursor.fetchone()
        except sqlite3.Error as exc:
            self._done = True
            raise engine.sql_error(exc) from exc
        finally:
            if armed:
                engine.disarm_time_limit()
        if ROW_COUNTERS:  # workerd's count: every row SQLite stepped over so far
            self._rows_read = self._cursor.rows_read  # type: ignore[attr-defined]
        if row is None:
            self._done = True
            return None
        self._rows_returned += 1
        return _as_python_worker_sees(row)

    def _invalidate(self, why: str) -> None:
        """The database changed under this cursor (deleteAll, reset): further reads fail."""
        if not self._done:
            self._invalid = why
        if self._cursor is not None:
            with contextlib.suppress(sqlite3.Error):  # closing never fails in practice
                self._cursor.close()

    def __iter__(self) -> SqlStorageCursor:
        return self

    def __next__(self) -> dict[str, Any]:
        row = self._fetch()
        if row is None:
            raise StopIteration
        return dict(zip(self._names, row, strict=True))

    def next(self) -> Row:
        """Cloudflare's iterator protocol: ``{"done": bool, "value": row}`` (also ``.done``)."""
        row = self._fetch()
        if row is None:
            return Row(done=True, value=None)
        return Row(done=False, value=dict(zip(self._names, row, strict=True)))

    def toArray(self) -> list[dict[str, Any]]:
        """Every remaining row, as a list of dicts (all of them within one time limit)."""
        engine = self._engine
        armed = engine.arm_time_limit()
        try:
            return list(self)
        finally:
            if armed:
                engine.disarm_time_limit()

    to_array = toArray

    def one(self) -> Row:
        """The only row; raises if the query gave none or more than one."""
        first = self._fetch()
        if first is None:
            raise SqlError("Expected exactly one result from SQL query, but got no results.")
        if self._fetch() is not None:
            self._done = True
            if self._cursor is not None:
                self._cursor.close()
            raise SqlError("Expected exactly one result from SQL query, but got multiple results.")
        return Row(zip(self._names, first, strict=True))

    def raw(self) -> _RawIterator:
        """The remaining rows as lists of values (same position as the row iterator)."""
        return _RawIterator(self)

    # -- metadata ------------------------------------------------------------------------

    @property
    def columnNames(self) -> list[str]:
        return list(self._names)

    column_names = columnNames

    @property
    def rowsRead(self) -> int:
        """Rows SQLite read for the statement so far, as workerd counts them: every row it
        stepped over, not only those returned (grows as you iterate). Without the lab's SQLite
        build: the rows returned so far (docs/semantics.md, deviation 17)."""
        return self._rows_read if ROW_COUNTERS else self._rows_returned

    rows_read = rowsRead

    @property
    def rowsWritten(self) -> int:
        """Rows the statement wrote, as workerd counts them: each table row inserted, updated
        or deleted and each index entry inserted."""
        return self._rows_written

    rows_written = rowsWritten

    def __repr__(self) -> str:
        state = "finished" if self._done else "more rows"
        return f"<SqlStorageCursor columns={self._names} ({state})>"


class _RawIterator:
    """``cursor.raw()``: rows as lists; ``toArray()`` and ``next()`` as on the cursor."""

    __slots__ = ("_cursor",)

    def __init__(self, cursor: SqlStorageCursor) -> None:
        self._cursor = cursor

    def __iter__(self) -> Iterator[list[Any]]:
        return self

    def __next__(self) -> list[Any]:
        row = self._cursor._fetch()
        if row is None:
            raise StopIteration
        return list(row)

    def next(self) -> Row:
        row = self._cursor._fetch()
        return Row(done=row is None, value=None if row is None else list(row))

    def toArray(self) -> list[list[Any]]:
        engine = self._cursor._engine
        armed = engine.arm_time_limit()
        try:
            return list(self)
        finally:
            if armed:
                engine.disarm_time_limit()

    to_array = toArray

    @property
    def columnNames(self) -> list[str]:
        return self._cursor.columnNames


class SqlStorage:
    """``ctx.storage.sql`` of a SQLite-backed object."""

    __slots__ = ("_storage",)

    def __init__(self, storage: DurableObjectStorage) -> None:
        self._storage = storage

    @property
    def _engine(self) -> SqliteEngine:
        return self._storage._cache

    def exec(self, query: str, *bindings: Any) -> SqlStorageCursor:
        """Run ``query`` now (``?`` placeholders take ``bindings``); returns its cursor."""
        storage = self._storage
        storage._instance.check_usable()
        if type(query) is not str:
            raise TypeError(f"exec() takes the SQL text as a str, got {type(query).__name__}")
        params = check_bindings(bindings)
        cursor = self._engine.exec(query, params)
        if storage._instance.bus.active or storage._instance.awaits:
            storage._emit("sql", (), "write" if cursor.wrote else "hit")
        return cursor

    @property
    def databaseSize(self) -> int:
        """Bytes of the database in use: (page_count - freelist_count) * page_size."""
        self._storage._instance.check_usable()
        return self._engine.database_size()

    database_size = databaseSize

    def __repr__(self) -> str:
        return f"<SqlStorage of {self._storage._instance.label}>"
