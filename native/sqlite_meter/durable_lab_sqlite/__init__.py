"""SQLite with workerd's row counters, for the lab's SQLite-backed objects.

Cloudflare bills SQL by the rows a statement reads and writes, and ``cursor.rowsRead`` /
``rowsWritten`` report them. workerd counts them inside SQLite's bytecode engine (a patched
SQLite: one row read per cursor seek, rewind, last, step onto a row, and per row ``count(*)``
counts; one row written per table row inserted or deleted and per index entry inserted,
temporary tables excluded). Stock SQLite has no such counters, so the lab builds this module:
the DB-API binding and SQLite amalgamation of the ``sqlean.py`` source distribution, with the
same counters added (``native/sqlite_meter/build.py`` makes the edits and compiles it).

It is a drop-in for the standard library's ``sqlite3`` as the runtime uses it, plus:

- ``Cursor.rows_read`` / ``Cursor.rows_written``: the counters of the cursor's current
  statement, reset when it is executed and read after every step;
- ``Connection.setlimit`` / ``getlimit`` and the ``SQLITE_LIMIT_*`` categories.

``durable_lab._sql_driver`` uses it when it is installed and falls back to ``sqlite3``.
"""

#: Set by the build: which edits made this module (``build.py`` rebuilds when it changes).
from ._build import BUILD_ID as BUILD_ID
from ._sqlite3 import *  # noqa: F403 - the DB-API names, as sqlite3 exports them
from ._sqlite3 import sqlite_version

#: ``sqlite3_limit`` categories (SQLite's numbering; the standard module exports the same).
SQLITE_LIMIT_LENGTH = 0
SQLITE_LIMIT_SQL_LENGTH = 1
SQLITE_LIMIT_COLUMN = 2
SQLITE_LIMIT_EXPR_DEPTH = 3
SQLITE_LIMIT_COMPOUND_SELECT = 4
SQLITE_LIMIT_VDBE_OP = 5
SQLITE_LIMIT_FUNCTION_ARG = 6
SQLITE_LIMIT_ATTACHED = 7
SQLITE_LIMIT_LIKE_PATTERN_LENGTH = 8
SQLITE_LIMIT_VARIABLE_NUMBER = 9
SQLITE_LIMIT_TRIGGER_DEPTH = 10
SQLITE_LIMIT_WORKER_THREADS = 11

#: Result codes the runtime compares with (the standard module exports them since 3.11).
SQLITE_OK = 0
SQLITE_INTERRUPT = 9

#: Marks this module apart from the standard library's.
ROW_COUNTERS = True

sqlite_version_info = tuple(int(part) for part in sqlite_version.split("."))
