"""The lab folder: one owner at a time, and a boundary the lab never crosses.

A lab with ``Lab(path="state")`` keeps one SQLite file per object under ``state/``. Two rules
keep the acknowledged writes in that folder safe from mistakes and from hostile files:

- **One owner.** Two labs writing the same files (a second notebook, or a cell re-run that makes
  a new ``Lab(path=...)`` before the old one is closed) would each keep its own cache and its own
  idea of what is committed: increments acknowledged by both collapse into one. So a lab holds an
  exclusive OS lock (``fcntl.flock``) on ``<folder>/.durable_lab.lock`` for as long as it is open.
  ``flock`` locks belong to an *open file description*, so the lock conflicts between processes
  and between two labs of one process alike, and the operating system drops it when the process
  dies: a folder left by a killed kernel is simply taken over. The lock file holds the owner's
  pid, so the refusal can say who holds the folder and how to release it.

  A file can be deleted, renamed or replaced under a lock (a learner "getting past" the in-use
  error): a second lab would then lock a *new* file and be let in. So the lab also locks the
  folder itself (``flock`` on a descriptor of the directory), which no file operation inside
  it can take away; the lock file stays for its pid and for the message. Both are held on
  descriptors the lab owns, and only the process that took them gives them up: a ``fork()``
  child shares the parent's open file descriptions, and an unlock there (its exit handlers)
  would unlock the parent's folder, so the release checks the pid and the child only closes
  its copies.
- **A boundary.** Objects live at ``<folder>/<BINDING>/<id>.sqlite``. The lab never follows a
  symlink found there (a binding folder or a database file that is a link could make a plain
  ``lab.bind()`` switch some outside SQLite file to WAL and write tables into it), and never
  writes into an existing file that is not a lab database (one with tables but no ``_cf_KV``).
  Both are refused with :class:`~durable_lab.errors.LabFolderError` naming the path. The checks
  run when a database is opened, not per operation: an open connection keeps its file.

It also counts the sessions opened on the folder (``.durable_lab-sessions``, replaced atomically
while the lock is held), so that ``newUniqueId()`` under a fixed seed does not hand out, after a
restart, the ids of the previous session (see ``ids.py``).

Platforms without ``fcntl`` (Windows) get no lock: the lab works, unprotected (XX: msvcrt).
"""

from __future__ import annotations

import errno
import os
import stat
import weakref
from pathlib import Path
from typing import Any

from .errors import LabFolderError, StorageCorruptError

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

__all__ = [
    "LAB_APPLICATION_ID", "LAB_TABLES", "LOCK_NAME", "SESSIONS_NAME", "SQL_USER_TABLES",
    "FolderLock", "check_binding_dir", "check_db_path", "check_lab_schema",
    "is_foreign_database", "missing_runtime_table", "not_a_lab_database",
]

LOCK_NAME = ".durable_lab.lock"
SESSIONS_NAME = ".durable_lab-sessions"

_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_CLOEXEC = getattr(os, "O_CLOEXEC", 0)
#: Files SQLite keeps next to a database: a link there would be written through too.
_SIDE_FILES = ("-wal", "-shm", "-journal")


def _open_nofollow(path: Path, flags: int) -> int:
    try:
        return os.open(path, flags | _NOFOLLOW | _CLOEXEC, 0o644)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise LabFolderError(
                f"{path} is a symlink: the lab never follows a link in its folder "
                "(remove the link)"
            ) from None
        raise LabFolderError(f"cannot open {path}: {exc}") from exc


_DIRECTORY = getattr(os, "O_DIRECTORY", 0)


def _release(fds: tuple[int, ...], pid: int) -> None:
    """Unlock and close ``fds``; in a forked child (not ``pid``) only close its copies: the
    lock belongs to the open file descriptions the parent shares, and it keeps them."""
    for fd in fds:
        try:
            if fcntl is not None and os.getpid() == pid:
                fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)


def _lock_or_refuse(fd: int, folder: Path) -> None:
    """``flock`` ``fd`` exclusively, or raise LabFolderError naming the holder."""
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        if exc.errno not in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
            raise LabFolderError(f"cannot lock the lab folder {folder}: {exc}") from exc
        raise LabFolderError(_in_use_message(folder, _holder_of(folder))) from None


def _lock_folder(folder: Path) -> int | None:
    """A descriptor of ``folder`` holding an exclusive ``flock`` on it; LabFolderError if
    another lab holds it; None if this filesystem cannot lock a directory (some network
    filesystems emulate ``flock`` with byte-range locks, which need a file open for writing):
    there the lock file alone guards the folder, as before."""
    try:
        fd = os.open(folder, os.O_RDONLY | _DIRECTORY | _CLOEXEC)
    except OSError as exc:
        raise LabFolderError(f"cannot open the lab folder {folder}: {exc}") from exc
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        os.close(fd)
        if exc.errno in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
            raise LabFolderError(_in_use_message(folder, _holder_of(folder))) from None
        return None
    return fd


def _same_file(fd: int, path: Path) -> bool:
    """Whether ``path`` still names the file open as ``fd`` (same device and inode)."""
    try:
        found = os.lstat(path)
    except FileNotFoundError:
        return False
    mine = os.fstat(fd)
    return (found.st_dev, found.st_ino) == (mine.st_dev, mine.st_ino)


def _holder_of(folder: Path) -> str:
    """The pid written in the folder's lock file ("" if it is gone or unreadable)."""
    try:
        fd = os.open(folder / LOCK_NAME, os.O_RDONLY | _NOFOLLOW | _CLOEXEC)
    except OSError:
        return ""
    try:
        return _read_holder(fd)
    finally:
        os.close(fd)


class FolderLock:
    """The exclusive lock of one lab on its folder, and the folder's session number.

    Raises LabFolderError if another lab (in this process or another) holds the folder.
    ``release()`` is idempotent; a lock never released is released when this object is
    collected or the process ends.
    """

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.pid = os.getpid()
        fds: list[int] = []
        try:
            # The folder itself first: nothing done to the files in it can take this one away.
            dir_fd = _lock_folder(folder) if fcntl is not None else None
            if dir_fd is not None:
                fds.append(dir_fd)
            path = folder / LOCK_NAME
            for _ in range(5):
                fd = _open_nofollow(path, os.O_RDWR | os.O_CREAT)
                fds.append(fd)
                if fcntl is None:
                    break
                _lock_or_refuse(fd, folder)
                # Locked the file that the path names now? If it was replaced between our
                # open and our lock, another lab may lock the new one: start again on it.
                # (What guards the folder where the directory lock is not available.)
                if _same_file(fd, path):
                    break
                os.close(fds.pop())
            else:
                raise LabFolderError(f"{path} keeps being replaced: cannot lock {folder}")
        except BaseException:
            for opened in fds:
                os.close(opened)  # never locked by us, or locked a moment ago: closing frees it
            raise
        self._finalizer = weakref.finalize(self, _release, tuple(fds), self.pid)
        try:
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
            #: How many labs opened this folder before this one (0 for a new folder).
            self.session = self._next_session()
        except BaseException:
            self.release()
            raise

    def _next_session(self) -> int:
        path = self.folder / SESSIONS_NAME
        try:
            fd = os.open(path, os.O_RDONLY | _NOFOLLOW | _CLOEXEC)
        except FileNotFoundError:
            previous = 0
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                raise LabFolderError(
                    f"{path} is a symlink: the lab never follows a link in its folder"
                ) from None
            raise LabFolderError(f"cannot read {path}: {exc}") from exc
        else:
            try:
                text = os.read(fd, 64).decode("ascii", "replace").strip()
            finally:
                os.close(fd)
            if not text.isdigit():
                raise LabFolderError(
                    f"{path} should hold the number of sessions opened on this folder, but "
                    f"holds {text[:20]!r}: delete it only if no object of this folder was made "
                    "with newUniqueId() (new unique ids could then repeat old ones)"
                )
            previous = int(text)
        # Write the next number beside it and rename it over: a kill half-way leaves either
        # the old or the new count, never an empty file.
        tmp = self.folder / (SESSIONS_NAME + ".tmp")
        fd = _open_nofollow(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
        try:
            os.write(fd, f"{previous + 1}\n".encode())
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
        return previous

    @property
    def held(self) -> bool:
        return self._finalizer.alive

    def release(self) -> None:
        """Let go of the folder (idempotent)."""
        self._finalizer()


def _read_holder(fd: int) -> str:
    try:
        return os.pread(fd, 32, 0).decode("ascii", "replace").strip()
    except OSError:  # pragma: no cover - reading a file we just opened
        return ""


def _in_use_message(folder: Path, holder: str) -> str:
    if holder.isdigit() and int(holder) == os.getpid():
        who = f"another Lab in this process (pid {holder}: this kernel)"
        how = ("close that Lab with `await lab.close()` (a cell re-run makes a new Lab without "
               "closing the old one), or restart this kernel")
    else:
        who = f"a Lab in process {holder}" if holder.isdigit() else "another Lab"
        how = ("close that Lab with `await lab.close()`, or restart or stop the kernel or "
               "script that runs it")
    return (
        f"the lab folder {folder} is in use by {who}. Only one Lab may use a folder at a time: "
        f"two would each acknowledge writes the other overwrites. To release it, {how}; or "
        "give this Lab another path."
    )


def _lstat(path: Path) -> os.stat_result | None:
    try:
        return os.lstat(path)
    except FileNotFoundError:
        return None


def _refuse_link(path: Path) -> LabFolderError:
    return LabFolderError(
        f"{path} is a symlink: the lab never follows a link out of its folder and refuses to "
        "use it (remove the link, or copy the file into the folder)"
    )


def check_db_path(path: Path) -> bool:
    """Check the database ``<folder>/<BINDING>/<id>.sqlite`` before it is opened.

    Returns whether the file exists. Raises LabFolderError if the binding folder, the file or
    one of SQLite's side files is a symlink, or the file is not a regular file.
    """
    parent = _lstat(path.parent)
    if parent is None:
        return False
    if stat.S_ISLNK(parent.st_mode):
        raise _refuse_link(path.parent)
    if not stat.S_ISDIR(parent.st_mode):
        raise LabFolderError(f"{path.parent} should be the folder of a binding, not a file")
    found = _lstat(path)
    if found is not None:
        if stat.S_ISLNK(found.st_mode):
            raise _refuse_link(path)
        if not stat.S_ISREG(found.st_mode):
            raise LabFolderError(f"{path} should be an object's database, not a special file")
    for suffix in _SIDE_FILES:
        side = _lstat(path.with_name(path.name + suffix))
        if side is not None and stat.S_ISLNK(side.st_mode):
            raise _refuse_link(path.with_name(path.name + suffix))
    return found is not None


def check_binding_dir(path: Path) -> bool:
    """Whether the binding folder ``path`` exists; LabFolderError if it is a link or a file."""
    found = _lstat(path)
    if found is None:
        return False
    if stat.S_ISLNK(found.st_mode):
        raise _refuse_link(path)
    if not stat.S_ISDIR(found.st_mode):
        raise LabFolderError(f"{path} should be the folder of a binding, not a file")
    return True


#: ``PRAGMA application_id`` of a SQLite-backed object's database ("DLab"). Such a database
#: may hold no table of the runtime's: like workerd, the lab creates ``_cf_KV`` at the first
#: KV write and ``_cf_METADATA`` at the first alarm (trace ``sql_schema``), so the header says
#: whose file it is. (User SQL cannot read or set it: not on workerd's pragma allow-list.)
LAB_APPLICATION_ID = 0x444C6162

#: Run on a freshly opened connection before the lab writes anything (WAL, its tables):
#: (tables, tables of the lab's, application_id). A file with tables is the lab's if one of
#: them is one of its own or its header carries LAB_APPLICATION_ID (a lab file whose other
#: table was tampered with is then refused by check_lab_schema, naming what changed).
SQL_USER_TABLES = (
    "SELECT count(*), sum(name IN ('_cf_KV', '_cf_METADATA')), "
    "(SELECT application_id FROM pragma_application_id) FROM sqlite_master WHERE type = 'table'"
)


def missing_runtime_table(exc: BaseException) -> bool:
    """A read of ``_cf_KV``/``_cf_METADATA`` in a SQLite-backed object's database before the
    first write that makes it (see LAB_APPLICATION_ID): nothing is stored there yet."""
    return type(exc).__name__ == "OperationalError" and str(exc).startswith("no such table: _cf_")


def is_foreign_database(tables: int, ours: int | None, application_id: int) -> bool:
    """From SQL_USER_TABLES' row: a file someone else made (the lab never writes into it)."""
    return bool(tables) and not ours and application_id != LAB_APPLICATION_ID


def not_a_lab_database(path: Path) -> LabFolderError:
    return LabFolderError(
        f"{path} is not a durable_lab database (it has tables but neither _cf_KV nor "
        "_cf_METADATA, and not the lab's application id): the lab never writes into a file it "
        "did not create (move that file out of the lab folder)"
    )


#: The runtime's own tables, exactly as it creates them (``sqlite_master.sql`` keeps this text;
#: it never changed since the first release).
LAB_TABLES = {
    "_cf_KV": "CREATE TABLE _cf_KV (key TEXT PRIMARY KEY, value BLOB) WITHOUT ROWID",
    "_cf_METADATA": "CREATE TABLE _cf_METADATA (key TEXT PRIMARY KEY, value BLOB) WITHOUT ROWID",
}
#: Everything in the schema that is a ``_cf_`` object or hangs on one (a trigger, an index,
#: a view over it...). ``_`` is a LIKE wildcard: escaped.
_SQL_LAB_SCHEMA = (
    "SELECT type, name, tbl_name, sql FROM sqlite_master "
    "WHERE name LIKE '\\_cf\\_%' ESCAPE '\\' OR tbl_name LIKE '\\_cf\\_%' ESCAPE '\\'"
)


def check_lab_schema(conn: Any, where: str) -> None:
    """Refuse a database whose ``_cf_`` tables are not exactly what the lab creates.

    The runtime's own statements on ``_cf_KV`` and ``_cf_METADATA`` run without the guard
    rails of user SQL, so a trigger planted on them in a stored file would run on every
    ``put()`` (one deleted the write acknowledged before it), and a table with a column
    missing, an added constraint or a unique index would fail the runtime's statements with
    raw SQLite errors. The lab never runs schema objects it did not create on its tables:
    such a file raises StorageCorruptError naming ``where`` (the object's database) and the
    object found, and nothing in it is changed. Run after the tables were created.
    """
    problems: list[str] = []
    for kind, name, table, sql in conn.execute(_SQL_LAB_SCHEMA).fetchall():
        expected = LAB_TABLES.get(name)
        if expected is not None and kind == "table" and sql == expected:
            continue
        if expected is not None:
            problems.append(f"the {kind} {name} is not the lab's ({sql!r:.160}; expected "
                            f"{expected!r})")
        elif name == table or kind == "table":
            problems.append(f"the {kind} {name} was not made by the lab (the _cf_ prefix "
                            "is the runtime's)")
        else:
            problems.append(f"the {kind} {name} on the lab's table {table} was not made by "
                            "the lab")
    if problems:
        raise StorageCorruptError(
            f"{where}: " + "; ".join(problems) + ". The lab never runs schema objects it did "
            "not create on its own tables (they would run on, or break, its writes): remove "
            "them with the sqlite3 shell, or move this file out of the lab folder."
        )
