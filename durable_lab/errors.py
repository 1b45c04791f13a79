"""Errors raised by durable_lab, and the flags Cloudflare puts on them.

On Cloudflare, an error that reaches a caller from a Durable Object carries boolean properties
that tell the caller what to do next (workerd `jsg/util.c++`, `decodeTunneledException`):

- ``remote``: the error was thrown by the object's own code, on the other side of the stub;
- ``retryable``: the call may be retried (the request may never have reached the object);
- ``overloaded``: the object (or the account) is overloaded; do not retry at once;
- ``durableObjectReset``: the object was reset (its in-memory state is gone, unflushed writes
  are lost) and the stub that saw this error is broken for good: make a new stub.

durable_lab mirrors those names. Runtime errors are subclasses of :class:`DurableObjectError`; an
exception raised by the learner's own handler is re-raised in the caller as a copy of the same
exception type, with the same four attributes set (``remote=True``), so ``except ValueError``
keeps working across a stub.

Hierarchy::

    DurableLabError                  anything durable_lab raises on purpose
    ├── DurableObjectError           an error a caller sees from an object (carries the flags)
    │   ├── DurableObjectResetError  the object was reset; durableObjectReset=True
    │   ├── OverloadedError          too many deliveries queued; overloaded=True
    │   └── LabClosedError           the lab is closed (also a RuntimeError)
    │       └── LabForkedError       the lab was made by the parent of this forked process
    └── StorageError                 the storage backend failed (wrapped sqlite3/aiosqlite error)
        ├── StorageCorruptError      stored bytes are not a value durable_lab wrote (names the
        │                            object and key); only that read fails
        └── LabFolderError           the lab folder is in use by another Lab, or a path in it
                                     leads outside it (a symlink) or to a file the lab did not make

Programmer errors (bad ids, bad keys, values of the wrong type) are builtins (``TypeError``,
``ValueError``, ``RangeError``-like ``ValueError``) whose message states the rule that was broken
and what is allowed, as Cloudflare's own messages do.
"""

from __future__ import annotations

__all__ = [
    "LAB_CLOSED_MESSAGE",
    "DurableLabError",
    "DurableObjectError",
    "DurableObjectResetError",
    "LabClosedError",
    "LabFolderError",
    "LabForkedError",
    "OverloadedError",
    "StorageCorruptError",
    "StorageError",
    "mark_remote",
]


class DurableLabError(Exception):
    """Base class of every error durable_lab raises on purpose."""


class DurableObjectError(DurableLabError):
    """An error a caller receives from a Durable Object, with Cloudflare's flags.

    The attribute names are Cloudflare's (camelCase), so code that inspects
    ``err.durableObjectReset`` or ``err.retryable`` runs unchanged on Cloudflare.
    """

    remote: bool = False
    retryable: bool = False
    overloaded: bool = False
    durableObjectReset: bool = False

    def __init__(
        self,
        message: str,
        *,
        remote: bool = False,
        retryable: bool = False,
        overloaded: bool = False,
        durableObjectReset: bool = False,
    ) -> None:
        super().__init__(message)
        self.remote = remote
        self.retryable = retryable
        self.overloaded = overloaded
        self.durableObjectReset = durableObjectReset

    @property
    def message(self) -> str:
        return str(self.args[0]) if self.args else ""

    @property
    def durable_object_reset(self) -> bool:
        """snake_case alias of ``durableObjectReset``."""
        return self.durableObjectReset


class DurableObjectResetError(DurableObjectError):
    """The object was reset: in-memory state dropped, unflushed writes lost, stub broken.

    ``reason`` names the cause in workerd's vocabulary: ``inputGateBroken`` (a
    ``blockConcurrencyWhile`` callback failed or ran for 30 seconds), ``outputGateBroken`` (a
    commit failed or took 30 seconds, or the object called ``ctx.abort()``),
    ``constructorFailed``, ``codeUpdated``, ``evicted``.

    ``durableObjectReset`` is True except where workerd leaves it unset although the object
    is reset: a SQLite constraint violated at commit ("... rolled back to its last known good
    state ...", whose description has no ``broken.`` prefix).
    """

    def __init__(self, message: str, *, reason: str, remote: bool = False,
                 retryable: bool = False, overloaded: bool = False,
                 durableObjectReset: bool = True) -> None:
        super().__init__(message, remote=remote, retryable=retryable, overloaded=overloaded,
                         durableObjectReset=durableObjectReset)
        self.reason = reason


class OverloadedError(DurableObjectError):
    """The object's queue of waiting deliveries is full; the call was refused, not queued."""

    def __init__(self,
                 message: str = "Durable Object is overloaded. Too many requests queued.") -> None:
        super().__init__(message, overloaded=True)


#: What a call, a new stub or a binding on a closed lab is told. A notebook's "Run All" ends
#: with ``await lab.close()``; re-running one cell afterwards must say why nothing works.
LAB_CLOSED_MESSAGE = ("the lab is closed (await lab.close() ran), so it takes no more calls. "
                      "Make a new Lab(): re-run the cell that makes the lab and the cells that "
                      "bind your classes, then this one.")


class LabClosedError(DurableObjectError, RuntimeError):
    """The lab is closed: calls, new stubs and bindings are refused at once.

    Raised by ``stub.method(...)``, ``namespace.get(...)``, ``lab.bind(...)`` and
    ``run_workload(...)`` on a closed lab, and given to every call still in flight when
    ``lab.close()`` reset its object. It is a :class:`DurableObjectError` (what such calls failed
    with before) and a ``RuntimeError`` (what ``lab.bind`` raised before), so existing
    ``except`` clauses still catch it.
    """

    def __init__(self, message: str = LAB_CLOSED_MESSAGE) -> None:
        super().__init__(message)


class LabForkedError(LabClosedError):
    """This process is a ``fork()`` of the one that made the lab: the lab is not usable here.

    A fork copies the lab's memory but not the threads its SQLite connections run on, nor
    the right to write its folder (the parent still owns it): a call would wait forever for a
    thread that does not exist, or two processes would write the same files. So in the child
    every use of an inherited lab (calls, new stubs, bindings, ``close()``) raises this at once,
    naming both processes; the parent's lab is untouched.
    """

    def __init__(self, parent: int, child: int) -> None:
        super().__init__(
            f"this Lab was made in process {parent}, and this is process {child}, a fork() of "
            "it: a forked process cannot use its parent's lab (the storage threads were not "
            "copied, and the parent still owns the lab folder). Make a new Lab in this "
            "process, on a folder of its own, or use the lab only in the parent."
        )
        self.parent = parent
        self.child = child

    def __reduce__(self) -> tuple[type, tuple[int, int]]:  # copy and pickle by the two pids
        return (type(self), (self.parent, self.child))


class StorageError(DurableLabError):
    """The storage backend failed to read or commit. The cause is chained (``__cause__``)."""


class StorageCorruptError(StorageError):
    """Stored data cannot be decoded into a value durable_lab writes.

    Raised by the read that met it (``get``, ``list``, ``getAlarm``...), naming the object and
    the key, so one damaged row fails only the calls that read it: the object keeps running and
    its other keys stay readable. Decoding never builds anything but the documented value types.
    """


class LabFolderError(StorageError):
    """The lab folder cannot be used as asked: another ``Lab`` owns it (the message names the
    process and how to release it), or a path inside it is a symlink or a file the lab did not
    create (the message names the path)."""


def mark_remote(exc: BaseException) -> BaseException:
    """Return a copy of ``exc`` flagged as thrown by a Durable Object's own code.

    The copy has the same type, arguments and traceback, plus Cloudflare's flags
    (``remote=True``, the others False), so ``except ValueError`` still catches it in the caller
    and ``err.remote`` tells the caller where it came from. The original is untouched: the object
    may keep a reference to it.
    """
    import copy

    try:
        clone = copy.copy(exc)
        clone.remote = True  # type: ignore[attr-defined]
        for flag in ("retryable", "overloaded", "durableObjectReset"):
            if not hasattr(clone, flag):
                setattr(clone, flag, False)
    except Exception:
        # Exceptions without a __dict__ or with an exotic constructor cannot be copied: say
        # what it was in a DurableObjectError instead of losing it.
        clone = DurableObjectError(f"{type(exc).__name__}: {exc}", remote=True)
    return clone.with_traceback(exc.__traceback__)
