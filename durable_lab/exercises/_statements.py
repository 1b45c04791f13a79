"""Watching the SQL statements a learner's object runs, and the rows each returned to its code.

Some mistakes give the right answer the wrong way: ``top(n)`` that reads the whole table and
sorts it in Python returns the same rows as ``ORDER BY total DESC LIMIT ?``. Only what the
object *ran* tells them apart. :func:`watching` makes a subclass of the learner's class whose
``ctx`` is a thin stand-in: everything goes through to the real ``ctx``, except that
``ctx.storage.sql.exec(...)`` also notes the statement and keeps its cursor, so a check can read
how many rows the object's code took out of each cursor after the call (not ``rowsRead``:
that counts every row SQLite stepped over, a sort's whole table included, as Cloudflare
bills). Nothing about the runtime changes, and the learner's code cannot tell.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

__all__ = ["Statements", "watching"]


@dataclass
class Statements:
    """The statements run through a watched class's ``ctx.storage.sql``, in order."""

    runs: list[tuple[str, Any]] = field(default_factory=list)

    def clear(self) -> None:
        self.runs.clear()

    def rows(self) -> list[tuple[str, int]]:
        """``(statement, rows its code read from the cursor so far)`` for each statement."""
        return [(" ".join(query.split()), cursor._rows_returned) for query, cursor in self.runs]


class _Sql:
    __slots__ = ("_log", "_sql")

    def __init__(self, sql: Any, log: Statements) -> None:
        self._sql, self._log = sql, log

    def exec(self, query: str, *bindings: Any) -> Any:
        cursor = self._sql.exec(query, *bindings)
        self._log.runs.append((query, cursor))
        return cursor

    def __getattr__(self, name: str) -> Any:
        return getattr(self._sql, name)


class _Storage:
    __slots__ = ("_log", "_storage")

    def __init__(self, storage: Any, log: Statements) -> None:
        self._storage, self._log = storage, log

    @property
    def sql(self) -> _Sql:
        return _Sql(self._storage.sql, self._log)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._storage, name)


class _Ctx:
    __slots__ = ("_ctx", "_log")

    def __init__(self, ctx: Any, log: Statements) -> None:
        self._ctx, self._log = ctx, log

    @property
    def storage(self) -> _Storage:
        return _Storage(self._ctx.storage, self._log)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._ctx, name)


def watching(cls: type, log: Statements) -> type:
    """A subclass of ``cls`` that notes every SQL statement it runs in ``log``."""

    def __init__(self: Any, ctx: Any, env: Any) -> None:
        cls.__init__(self, _Ctx(ctx, log), env)  # type: ignore[misc]  # (cls's own, on purpose)

    return type(cls.__name__, (cls,), {"__init__": __init__, "__qualname__": cls.__qualname__,
                                       "__module__": cls.__module__})
