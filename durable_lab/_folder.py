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

from .errors import LabFolderError

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

__all__ = [
    "LOCK_NAME", "SESSIONS_NAME", "SQL_USER_TABLES", "FolderLock", "check_binding_dir",
    "check_db_path", "not_a_lab_database",
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
            try:
                dir_fd = os.open(folder, os.O_RDONLY | _DIRECTORY | _CLOEXEC)
            except OSError as exc:
                raise LabFolderError(f"cannot open the lab folder {folder}: {exc}") from exc
            fds.append(dir_fd)
            if fcntl is not None:
                _lock_or_refuse(dir_fd, folder)
            path = folder / LOCK_NAME
            fd = _open_nofollow(path, os.O_RDWR | os.O_CREAT)
            fds.append(fd)
            if fcntl is not None:
                _lock_or_refuse(fd, folder)
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


#: Run on a freshly opened connection before the lab writes anything (WAL, its tables).
SQL_USER_TABLES = (
    "SELECT count(*), sum(name = '_cf_KV') FROM sqlite_master WHERE type = 'table'"
)


def not_a_lab_database(path: Path) -> LabFolderError:
    return LabFolderError(
        f"{path} is not a durable_lab database (it has tables but no _cf_KV): the lab never "
        "writes into a file it did not create (move that file out of the lab folder)"
    )
