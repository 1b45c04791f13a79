"""Build ``durable_lab_sqlite``: SQLite with workerd's ``rowsRead``/``rowsWritten`` counters.

Usage: ``python native/sqlite_meter/build.py [--force] [--quiet]`` with the Python of the
environment to install into (``scripts/_venv.sh`` runs it). It does nothing when the installed
module was built by this script as it is now.

Why a build: Cloudflare bills SQL by rows read and written and the cursor reports them, counted
by workerd's patched SQLite inside its bytecode engine. Stock SQLite (Debian's, CPython's,
every wheel on PyPI) has no such counters, and nothing outside the engine can reconstruct them,
so the lab compiles its own SQLite with the same counters. Steps:

1. ``pip download`` the source distribution of ``sqlean.py`` (pinned below): it carries a
   DB-API binding (pysqlite's, a drop-in for ``sqlite3``) and SQLite's amalgamation. Its own
   extension functions are left out: workerd has none of them.
2. Edit the sources (:data:`ENGINE_EDITS`, :data:`BINDING_EDITS`): each edit names a text that
   must occur exactly once, so a different release fails here, loudly, instead of counting
   wrong. The counting rules are workerd's (its ``patches/sqlite/0001-row-counts-plain.patch``,
   taken from libSQL): a row read for each seek of a cursor (``OP_SeekGE/GT/LE/LT``,
   ``OP_NotExists``/``OP_SeekRowid``), each ``OP_Rewind``, ``OP_Last``, each step of
   ``OP_Next``/``OP_Prev`` onto a row and ``OP_VNext``, and each row ``OP_Count`` counts; a row
   written for each ``OP_Insert``/``OP_IdxInsert`` and counted ``OP_Delete`` on a
   non-temporary cursor, each row ``OP_Clear`` removes and each ``OP_VUpdate``.
3. ``pip install`` the package in ``native/sqlite_meter``: its setup.py compiles the
   amalgamation once into an object file (kept in build/sqlite-meter by the edited text, the
   flags and the platform: the slow part, ~25 s, shared by every Python) and the binding
   around it.

Needs a C compiler. Without one, the script says so and exits 1; the lab then runs on the
standard ``sqlite3`` and documents that its counts are approximate (docs/semantics.md).
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import re
import shutil
import subprocess
import sys
import sysconfig
import tarfile
import tempfile
from collections.abc import Iterator
from pathlib import Path

try:
    import fcntl
except ImportError:  # Windows: builds are not serialised there
    fcntl = None  # type: ignore[assignment]

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
WORK = ROOT / "build" / "sqlite-meter"

SOURCE_DIST = "sqlean.py==3.50.4.5"

#: Compile options for the amalgamation: Debian's that change what SQL does (full-text search,
#: math functions, dbstat, secure delete, LIKE on blobs), and the binding's host parameter limit.
SQLITE_DEFINES = (
    "SQLITE_ENABLE_FTS3", "SQLITE_ENABLE_FTS3_PARENTHESIS", "SQLITE_ENABLE_FTS4",
    "SQLITE_ENABLE_FTS5", "SQLITE_ENABLE_RTREE", "SQLITE_ENABLE_MATH_FUNCTIONS",
    "SQLITE_ENABLE_DBSTAT_VTAB", "SQLITE_SECURE_DELETE", "SQLITE_LIKE_DOESNT_MATCH_BLOBS",
    "SQLITE_MAX_VARIABLE_NUMBER=250000", "SQLITE_THREADSAFE=1",
)

_READ = "p->aLabRowCounter[1]"
_WRITTEN = "p->aLabRowCounter[2]"

#: (file, where, what to insert) for the amalgamation: ``where`` (without the marker) occurs
#: exactly once; the text goes at ``<<HERE>>`` in it, or after it.
ENGINE_EDITS: tuple[tuple[str, str, str], ...] = (
    ("sqlite3.h", "#define SQLITE_STMTSTATUS_MEMUSED           99\n",
     "#define LIBSQL_STMTSTATUS_BASE              1024\n"
     "#define LIBSQL_STMTSTATUS_ROWS_READ         (LIBSQL_STMTSTATUS_BASE + 1)\n"
     "#define LIBSQL_STMTSTATUS_ROWS_WRITTEN      (LIBSQL_STMTSTATUS_BASE + 2)\n"),
    ("sqlite3.c", "#define SQLITE_STMTSTATUS_MEMUSED           99\n",
     "#define LIBSQL_STMTSTATUS_BASE              1024\n"
     "#define LIBSQL_STMTSTATUS_ROWS_READ         (LIBSQL_STMTSTATUS_BASE + 1)\n"
     "#define LIBSQL_STMTSTATUS_ROWS_WRITTEN      (LIBSQL_STMTSTATUS_BASE + 2)\n"),
    # the counters live beside SQLite's own statement counters
    ("sqlite3.c", "  u32 aCounter[9];        /* Counters used by sqlite3_stmt_status() */\n",
     "  u32 aLabRowCounter[3];  /* durable_lab: rows read [1] and written [2] (workerd's) */\n"),
    # OP_Count without an estimate: every row counted is read
    ("sqlite3.c", "    rc = sqlite3BtreeCount(db, pCrsr, &nEntry);\n",
     f"    {_READ} += (u32)nEntry;\n"),
    # OP_SeekGE/GT/LE/LT: a seek that landed
    ("sqlite3.c", "      goto seek_not_found;\n    }\n  }\n#ifdef SQLITE_TEST\n"
                  "  sqlite3_search_count++;\n#endif\n",
     f"  {_READ}++;\n"),
    # OP_SeekRowid / OP_NotExists: found or not
    ("sqlite3.c", "  pC->seekResult = res;\n<<HERE>>  if( res!=0 ){\n"
                  "    assert( rc==SQLITE_OK );\n",
     f"  {_READ}++;\n"),
    # OP_Insert
    ("sqlite3.c",
     "  assert( (pOp->p5 & OPFLAG_LASTROWID)==0 || (pOp->p5 & OPFLAG_NCHANGE)!=0 );\n",
     f"  if( !pC->isEphemeral ) {_WRITTEN}++;\n"),
    # OP_Delete of a counted row
    ("sqlite3.c", "  /* Invoke the update-hook if required. */\n"
                  "  if( opflags & OPFLAG_NCHANGE ){\n",
     f"    if( !pC->isEphemeral ) {_WRITTEN}++;\n"),
    # OP_Last
    ("sqlite3.c", "  rc = sqlite3BtreeLast(pCrsr, &res);\n  pC->nullRow = (u8)res;\n"
                  "  pC->deferredMoveto = 0;\n  pC->cacheStatus = CACHE_STALE;\n"
                  "  if( rc ) goto abort_due_to_error;\n",
     f"  {_READ}++;\n"),
    # OP_Rewind (a sorter's rewind too, as workerd's patch counts it)
    ("sqlite3.c", "  if( rc ) goto abort_due_to_error;\n  pC->nullRow = (u8)res;\n"
                  "<<HERE>>  if( pOp->p2>0 ){\n",
     f"  {_READ}++;\n"),
    # OP_Next / OP_Prev onto a row
    ("sqlite3.c", "    pC->nullRow = 0;\n    p->aCounter[pOp->p5]++;\n",
     f"    {_READ}++;\n"),
    # OP_IdxInsert
    ("sqlite3.c", "  if( pOp->p5 & OPFLAG_NCHANGE ) p->nChange++;\n"
                  "  assert( pC->eCurType==CURTYPE_BTREE );\n  assert( pC->isTable==0 );\n",
     f"  if( !pC->isEphemeral ) {_WRITTEN}++;\n"),
    # OP_Clear (DELETE without WHERE)
    ("sqlite3.c", "  if( pOp->p3 ){\n    p->nChange += nChange;\n",
     f"    {_WRITTEN} += (u32)nChange;\n"),
    # OP_VNext
    ("sqlite3.c", "  rc = pModule->xNext(pCur->uc.pVCur);\n  sqlite3VtabImportErrmsg(p, pVtab);\n"
                  "  if( rc ) goto abort_due_to_error;\n",
     f"  {_READ}++;\n"),
    # OP_VUpdate that changed a row
    ("sqlite3.c", "        p->errorAction = ((pOp->p5==OE_Replace) ? OE_Abort : pOp->p5);\n"
                  "      }\n    }else{\n",
     f"      {_WRITTEN}++;\n"),
    # sqlite3_stmt_status() answers the two new counters
    ("sqlite3.c", "    db->lookaside.pEnd = db->lookaside.pTrueEnd;\n"
                  "    sqlite3_mutex_leave(db->mutex);\n",
     "  }else if( op>LIBSQL_STMTSTATUS_BASE && op<=LIBSQL_STMTSTATUS_ROWS_WRITTEN ){\n"
     "    v = pVdbe->aLabRowCounter[op - LIBSQL_STMTSTATUS_BASE];\n"
     "    if( resetFlag ) pVdbe->aLabRowCounter[op - LIBSQL_STMTSTATUS_BASE] = 0;\n"),
)

_METER = ("lab_meter(self);\n")

#: (file, where, what to insert) for the DB-API binding, as for the amalgamation.
BINDING_EDITS: tuple[tuple[str, str, str], ...] = (
    ("cursor.h", "    PyObject* next_row;\n",
     "\n    /* durable_lab: the statement's rows read and written, after its last step */\n"
     "    long long lab_rows_read;\n    long long lab_rows_written;\n"),
    ("cursor.c", '#include "util.h"\n',
     "\n/* durable_lab: keep the statement's row counters on the cursor after each step (the\n"
     "   statement is reset and dropped once its rows are done, the counts stay). */\n"
     "static void lab_meter(pysqlite_Cursor *self)\n{\n"
     "    if (self->statement && self->statement->st) {\n"
     "        self->lab_rows_read = sqlite3_stmt_status(self->statement->st,\n"
     "                                                  LIBSQL_STMTSTATUS_ROWS_READ, 0);\n"
     "        self->lab_rows_written = sqlite3_stmt_status(self->statement->st,\n"
     "                                                     LIBSQL_STMTSTATUS_ROWS_WRITTEN, 0);\n"
     "    }\n}\n"),
    # execute(): counts start at zero for each run of the statement
    ("cursor.c", "    pysqlite_statement_reset(self->statement);\n"
                 "    pysqlite_statement_mark_dirty(self->statement);\n",
     "    self->lab_rows_read = 0;\n    self->lab_rows_written = 0;\n"),
    ("cursor.c", "        pysqlite_statement_bind_parameters(self->statement, parameters);\n"
                 "        if (PyErr_Occurred()) {\n            goto error;\n        }\n",
     "        sqlite3_stmt_status(self->statement->st, LIBSQL_STMTSTATUS_ROWS_READ, 1);\n"
     "        sqlite3_stmt_status(self->statement->st, LIBSQL_STMTSTATUS_ROWS_WRITTEN, 1);\n"),
    # iteration: each step
    ("cursor.c", "    if (self->statement) {\n"
                 "        rc = pysqlite_step(self->statement->st, self->connection);\n",
     "        " + _METER),
    ("cursor.c", '    {"rowcount", T_LONG, offsetof(pysqlite_Cursor, rowcount), READONLY},\n',
     '    {"rows_read", T_LONGLONG, offsetof(pysqlite_Cursor, lab_rows_read), READONLY},\n'
     '    {"rows_written", T_LONGLONG, offsetof(pysqlite_Cursor, lab_rows_written), READONLY},\n'),
    # Connection.setlimit / getlimit (the standard module has them since 3.11)
    ("connection.c", "static PyMethodDef connection_methods[] = {\n",
     '    {"setlimit", (PyCFunction)lab_connection_setlimit, METH_VARARGS,\n'
     '        PyDoc_STR("Set a connection run-time limit; returns the previous one.")},\n'
     '    {"getlimit", (PyCFunction)lab_connection_getlimit, METH_VARARGS,\n'
     '        PyDoc_STR("Get a connection run-time limit.")},\n'),
    # the meter right after execute()'s step, and the C functions behind setlimit/getlimit
    ("cursor.c", "<<HERE>>        if (rc != SQLITE_DONE && rc != SQLITE_ROW) {\n"
                 "            if (PyErr_Occurred()) {\n",
     "        " + _METER),
    ("connection.c", "<<HERE>>static PyMethodDef connection_methods[] = {\n",
     "/* durable_lab: sqlite3_limit(), as the standard module's setlimit()/getlimit(). */\n"
     "static PyObject *lab_limit(pysqlite_Connection *self, int category, int value)\n{\n"
     "    int old;\n"
     "    if (!pysqlite_check_thread(self) || !pysqlite_check_connection(self)) {\n"
     "        return NULL;\n    }\n"
     "    old = sqlite3_limit(self->db, category, value);\n"
     "    if (old < 0) {\n"
     "        PyErr_SetString(pysqlite_ProgrammingError, \"'category' is out of bounds\");\n"
     "        return NULL;\n    }\n"
     "    return PyLong_FromLong(old);\n}\n\n"
     "static PyObject *lab_connection_setlimit(pysqlite_Connection *self, PyObject *args)\n{\n"
     "    int category, value;\n"
     "    if (!PyArg_ParseTuple(args, \"ii:setlimit\", &category, &value)) {\n"
     "        return NULL;\n    }\n"
     "    return lab_limit(self, category, value);\n}\n\n"
     "static PyObject *lab_connection_getlimit(pysqlite_Connection *self, PyObject *args)\n{\n"
     "    int category;\n"
     "    if (!PyArg_ParseTuple(args, \"i:getlimit\", &category)) {\n"
     "        return NULL;\n    }\n"
     "    return lab_limit(self, category, -1);\n}\n\n"),
)


#: (file, text that occurs once, what replaces it) in the binding.
BINDING_REPLACEMENTS: tuple[tuple[str, str, str], ...] = (
    # errors carry the extended result code and its name (the runtime words SQL errors as
    # workerd: "...: SQLITE_CONSTRAINT (extended: SQLITE_CONSTRAINT_FOREIGNKEY)"), as the
    # standard module's errors do since Python 3.11
    ("util.c", "    int errorcode = sqlite3_errcode(db);\n\n    switch (errorcode)\n",
     "    int errorcode = sqlite3_extended_errcode(db);\n\n    switch (errorcode & 0xff)\n"),
    # cached_statements=0 caches nothing (the binding kept at least 5): the runtime relies on
    # it, for the authorizer sees a statement only when it is prepared, and a statement the
    # runtime prepared for itself must not be reused, unchecked, for the same text in user SQL
    ("cache.c", "    /* minimum cache size is 5 entries */\n"
                "    if (size < 5) {\n        size = 5;\n",
     "    if (size < 0) {\n        size = 0;\n"),
    ("cache.c", "    PyObject* data;\n\n"
                "    node = (pysqlite_Node*)PyDict_GetItemWithError(self->mapping, key);\n",
     "    PyObject* data;\n\n"
     "    if (self->size == 0) {\n"
     "        return PyObject_CallFunction(self->factory, \"O\", key);\n    }\n"
     "    node = (pysqlite_Node*)PyDict_GetItemWithError(self->mapping, key);\n"),
)

_EXTENDED_CODE = re.compile(
    r"^#define (SQLITE_[A-Z]+_[A-Z0-9_]+) +\(SQLITE_[A-Z]+ *\| *\(\d+<<8\)\)", re.MULTILINE)


def _extended_code_names(header: str) -> str:
    """Entries of the binding's table of result-code names for SQLite's extended codes."""
    names = _EXTENDED_CODE.findall(header)
    if len(names) < 50:
        raise BuildError(f"sqlite3.h: found only {len(names)} extended result codes")
    return "".join(f'  {{"{name}", {name}}},\n' for name in names)


BINDING_FILES = ("blob.c", "blob.h", "cache.c", "cache.h", "connection.c", "connection.h",
                 "cursor.c", "cursor.h", "microprotocols.c", "microprotocols.h", "module.c",
                 "module.h", "prepare_protocol.c", "prepare_protocol.h", "row.c", "row.h",
                 "statement.c", "statement.h", "util.c", "util.h")
ENGINE_FILES = ("sqlite3.c", "sqlite3.h", "sqlite3ext.h")


class BuildError(Exception):
    """The build cannot go on; the message says why."""


def _find_once(text: str, where: str, name: str) -> int:
    count = text.count(where)
    if count != 1:
        raise BuildError(f"{name}: expected the text {where!r} once, found it {count} times "
                         f"(a different release of {SOURCE_DIST}?)")
    return text.index(where)


def _edit(text: str, where: str, insert: str, *, name: str) -> str:
    """``insert`` at the ``<<HERE>>`` marker of ``where``, or after it."""
    offset = where.find("<<HERE>>")
    where = where.replace("<<HERE>>", "")
    at = _find_once(text, where, name) + (offset if offset >= 0 else len(where))
    return text[:at] + insert + text[at:]


def _replace(text: str, old: str, new: str, *, name: str) -> str:
    at = _find_once(text, old, name)
    return text[:at] + new + text[at + len(old):]


def build_id() -> str:
    """What decides the build: this script's edits, the source pin and the flags."""
    digest = hashlib.sha256(Path(__file__).read_bytes())
    digest.update((HERE / "setup.py").read_bytes())
    return digest.hexdigest()[:16]


def installed_build_id(python: str) -> str | None:
    probe = subprocess.run(
        [python, "-c", "import durable_lab_sqlite as m; print(m.BUILD_ID)"],
        capture_output=True, text=True, check=False, cwd=tempfile.gettempdir())
    return probe.stdout.strip() if probe.returncode == 0 else None


def fetch_sources(quiet: bool) -> Path:
    """The unpacked source distribution (downloaded once into build/sqlite-meter)."""
    download = WORK / "download"
    archives = sorted(download.glob("sqlean_py-*.tar.gz"))
    if not archives:
        download.mkdir(parents=True, exist_ok=True)
        command = [sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:",
                   "--dest", str(download), SOURCE_DIST]
        if quiet:
            command.insert(4, "--quiet")
        subprocess.run(command, check=True)
        archives = sorted(download.glob("sqlean_py-*.tar.gz"))
    if not archives:
        raise BuildError(f"pip download {SOURCE_DIST} gave no source archive in {download}")
    unpacked = WORK / "unpacked"
    if unpacked.exists():
        shutil.rmtree(unpacked)
    with tarfile.open(archives[-1]) as archive:
        archive.extractall(unpacked, filter="data")
    (top,) = unpacked.iterdir()
    return top


def prepare(top: Path) -> Path:
    """Edited copies of the binding and the amalgamation in build/sqlite-meter/src."""
    out = WORK / "src"
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    texts: dict[str, str] = {}
    for name in BINDING_FILES:
        texts[name] = (top / "src" / name).read_text(encoding="utf-8")
    for name in ENGINE_FILES:
        texts[name] = (top / "sqlite" / name).read_text(encoding="utf-8")
    # sqlean.py appends a hook that loads its own extensions: the amalgamation ends before it
    end = "/************************** End of sqlite3.c ******************************/\n"
    texts["sqlite3.c"] = texts["sqlite3.c"][:_find_once(texts["sqlite3.c"], end, "sqlite3.c")
                                            + len(end)]
    for name, where, insert in ENGINE_EDITS + BINDING_EDITS:
        texts[name] = _edit(texts[name], where, insert, name=name)
    for name, old, new in BINDING_REPLACEMENTS:
        texts[name] = _replace(texts[name], old, new, name=name)
    texts["module.c"] = _edit(texts["module.c"],
                              "#endif\n<<HERE>>  {\"SQLITE_DONE\", SQLITE_DONE},\n",
                              _extended_code_names(texts["sqlite3.h"]), name="module.c")
    for name, text in texts.items():
        (out / name).write_text(text, encoding="utf-8")
    return out


def engine_dir(src: Path) -> Path:
    """Where the compiled amalgamation is kept: by its edited text, the flags and the platform
    (setup.py compiles it there once; every later build, for any Python, links the same)."""
    text = (src / "sqlite3.c").read_bytes()
    key = hashlib.sha256(text + repr(SQLITE_DEFINES).encode()
                         + sysconfig.get_platform().encode()).hexdigest()[:16]
    return WORK / f"engine-{key}"


def install(python: str, src: Path, engine: Path, ident: str, quiet: bool) -> None:
    """``pip install`` native/sqlite_meter (setup.py) with what prepare() made."""
    (HERE / "durable_lab_sqlite" / "_build.py").write_text(
        f'"""Written by build.py."""\n\nBUILD_ID = "{ident}"\n', encoding="utf-8")
    (HERE / "build.json").write_text(json.dumps(
        {"src": src.as_posix(), "engine": engine.as_posix(), "defines": SQLITE_DEFINES}),
        encoding="utf-8")
    if not quiet and not any(engine.glob("**/sqlite3.o*")):
        print("compiling SQLite (about half a minute)...", flush=True)
    command = [python, "-m", "pip", "install", "--no-deps", "--force-reinstall", str(HERE)]
    if quiet:
        command.insert(4, "--quiet")
    subprocess.run(command, check=True)


@contextlib.contextmanager
def _exclusive() -> Iterator[None]:
    """One build at a time on this checkout (two environments set up at once share
    build/sqlite-meter and native/sqlite_meter/build.json)."""
    WORK.mkdir(parents=True, exist_ok=True)
    with open(WORK / ".lock", "w") as handle:
        if fcntl is not None:
            fcntl.flock(handle, fcntl.LOCK_EX)
        yield


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--force", action="store_true", help="build even if up to date")
    parser.add_argument("--quiet", action="store_true", help="print only what went wrong")
    parser.add_argument("--python", default=sys.executable,
                        help="the Python to install into (default: this one)")
    args = parser.parse_args(argv)
    ident = build_id()
    if not args.force and installed_build_id(args.python) == ident:
        return 0
    try:
        with _exclusive():
            src = prepare(fetch_sources(args.quiet))
            install(args.python, src, engine_dir(src), ident, args.quiet)
    except (BuildError, subprocess.CalledProcessError, OSError) as exc:
        print(f"durable_lab: could not build SQLite with workerd's row counters ({exc}); the lab "
              "runs on the standard sqlite3 and its rowsRead/rowsWritten are approximate "
              "(docs/semantics.md).", file=sys.stderr)
        return 1
    if installed_build_id(args.python) != ident:
        print("durable_lab: the SQLite build installed but does not import", file=sys.stderr)
        return 1
    if not args.quiet:
        print(f"durable_lab_sqlite {ident} installed for {args.python}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
