"""Which SQLite the SQL API runs on: the lab's build with workerd's row counters, if installed.

Cloudflare bills SQL by rows read and written, and ``cursor.rowsRead``/``rowsWritten`` report
them as workerd counts them: inside SQLite's bytecode engine, which workerd patches for it. The
standard ``sqlite3`` module has no such counters, so ``scripts/_venv.sh`` builds
``durable_lab_sqlite`` (``native/sqlite_meter``: the same counters in a SQLite of our own, with
a DB-API binding that is a drop-in for ``sqlite3``). This module picks it when it imports, else
the standard module, whose counts are approximations (docs/semantics.md, deviation 17).

Everything of the core that opens a lab database goes through :data:`sqlite3` here: the SQL
engine, ``peek``, and the KV backend too (``aiosqlite`` takes the connection it is handed). Two
SQLite libraries in one process must never open the same file: POSIX locks are per process, so
each would take the other's connections for its own and, closing its last one, checkpoint and
drop the write-ahead log under the other (the crash tests lost committed rows that way).
"""

from __future__ import annotations

import sqlite3 as _standard
from types import ModuleType

try:
    import durable_lab_sqlite as _metered
except ImportError:  # not built here (no C compiler): approximate counts, documented
    _metered = None

__all__ = ["ROW_COUNTERS", "sqlite3"]

#: The DB-API module the SQL API uses.
sqlite3: ModuleType = _metered if _metered is not None else _standard

#: True if cursors count rows read and written as workerd does (``Cursor.rows_read``).
ROW_COUNTERS: bool = _metered is not None
