"""Recording what clients saw: a :class:`History` of calls, each an :class:`Operation`.

A history is the list of calls the clients made, as the clients saw them: who called (the
*client*), which object, which method with which arguments, what came back (a result or an
error), and *when* the call started and when its answer arrived. "When" is kept twice: as
wall-clock seconds, and as a *logical time*, a counter that goes up by one at every start and
every answer, so two events never tie and "A finished before B started" is exact.

Two ways in: ``Lab(record=True)`` writes every client call into ``lab.history()`` (the lab's
``record_call`` hook), and :func:`recorded` wraps one stub so every call through it is written
into a history of your own. ``check.py`` reads histories (linearizability, lost updates); this
module only keeps them, so the lab can keep one without depending on the checks.
"""

from __future__ import annotations

import asyncio
import json
import math
import time
from collections.abc import Awaitable, Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any, Literal

from .attribution import Breakdown
from .errors import LabClosedError

__all__ = ["INF", "ClientId", "ErrorInfo", "History", "Operation", "RecordedStub", "Status",
           "error_kind", "recorded"]

#: The return time given to calls that failed or never answered: "any time after they started".
INF = math.inf

Status = Literal["pending", "ok", "error"]
ClientId = str | int


# -- errors ------------------------------------------------------------------------------------


def error_kind(error: BaseException) -> str:
    """Name the kind of failure a caller saw, from Cloudflare's flags on the error.

    ``"overloaded"`` (the call was refused, never queued), ``"reset"`` (the object was reset),
    ``"remote"`` (the object's own code raised), ``"timeout"`` (the caller stopped waiting),
    ``"closed"`` (the lab was closed: ``LabClosedError``), ``"local"`` (anything else: raised
    on the caller's side, e.g. a method that does not exist).
    """
    if isinstance(error, LabClosedError):
        return "closed"
    if getattr(error, "overloaded", False):
        return "overloaded"
    if getattr(error, "durableObjectReset", False):
        return "reset"
    if getattr(error, "remote", False):
        return "remote"
    if isinstance(error, TimeoutError):
        return "timeout"
    return "local"


@dataclass(frozen=True, slots=True)
class ErrorInfo:
    """What is kept of an error: its type name, message and kind (see :func:`error_kind`)."""

    type: str
    message: str
    kind: str = "local"

    @classmethod
    def of(cls, error: BaseException | str) -> ErrorInfo:
        if isinstance(error, str):
            return cls("Error", error, "local")
        return cls(type(error).__name__, str(error), error_kind(error))

    def __str__(self) -> str:
        return f"{self.type}: {self.message}" if self.message else self.type


# -- operations and histories ------------------------------------------------------------------


def _short(value: Any, limit: int = 40) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


@dataclass(slots=True)
class Operation:
    """One call as its client saw it.

    ``invoke_time`` / ``return_time`` are logical times (see :class:`History`); ``return_time``
    is ``None`` while the call has not answered. ``invoke_wall`` / ``return_wall`` are
    ``time.time()`` seconds.
    """

    id: int
    client: ClientId
    object: str
    method: str
    args: tuple[Any, ...]
    kwargs: dict[str, Any]
    invoke_time: int
    invoke_wall: float
    return_time: int | None = None
    return_wall: float | None = None
    status: Status = "pending"
    result: Any = None
    error: ErrorInfo | None = None
    #: Where its time went (lab clock; ``durable_lab.attribution``), for calls recorded by a
    #: ``Lab(record=True)`` once they answered: ``lab.explain(op)``.
    breakdown: Breakdown | None = None

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    @property
    def failed(self) -> bool:
        return self.status == "error"

    @property
    def pending(self) -> bool:
        return self.status == "pending"

    @property
    def latency(self) -> float | None:
        """Wall seconds from start to answer (``None`` while pending)."""
        return None if self.return_wall is None else self.return_wall - self.invoke_wall

    def call_text(self) -> str:
        parts = [_short(a) for a in self.args]
        parts += [f"{k}={_short(v)}" for k, v in self.kwargs.items()]
        return f"{self.method}({', '.join(parts)})"

    def outcome_text(self) -> str:
        if self.status == "ok":
            return f"→ {_short(self.result)}"
        if self.status == "error":
            return f"✗ {self.error}"
        return "… (no answer)"

    def describe(self) -> str:
        """``#3 client alice: obj-0.increment(1) → 5 [t=4..9]`` (t: logical start..answer)."""
        end = "∞" if self.return_time is None else str(self.return_time)
        return (f"#{self.id} client {self.client}: {self.object}.{self.call_text()} "
                f"{self.outcome_text()} [t={self.invoke_time}..{end}]")

    def __str__(self) -> str:
        return self.describe()

    def overlaps(self, other: Operation) -> bool:
        """True if neither call answered before the other started."""
        mine = INF if self.return_time is None else self.return_time
        theirs = INF if other.return_time is None else other.return_time
        return self.invoke_time < theirs and other.invoke_time < mine

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "client": self.client,
            "object": self.object,
            "method": self.method,
            "args": list(self.args),
            "kwargs": dict(self.kwargs),
            "invoke_time": self.invoke_time,
            "invoke_wall": self.invoke_wall,
            "return_time": self.return_time,
            "return_wall": self.return_wall,
            "status": self.status,
            "result": self.result,
            "error": None if self.error is None else {
                "type": self.error.type, "message": self.error.message, "kind": self.error.kind},
            "breakdown": None if self.breakdown is None else self.breakdown.to_dict(),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Operation:
        error = data.get("error")
        return cls(
            id=int(data["id"]),
            client=data["client"],
            object=str(data["object"]),
            method=str(data["method"]),
            args=tuple(data.get("args", ())),
            kwargs=dict(data.get("kwargs", {})),
            invoke_time=int(data["invoke_time"]),
            invoke_wall=float(data.get("invoke_wall", 0.0)),
            return_time=None if data.get("return_time") is None else int(data["return_time"]),
            return_wall=None if data.get("return_wall") is None else float(data["return_wall"]),
            status=data.get("status", "pending"),
            result=data.get("result"),
            error=None if error is None else ErrorInfo(
                str(error["type"]), str(error.get("message", "")), str(error.get("kind", "local"))),
            breakdown=(None if data.get("breakdown") is None
                       else Breakdown.from_dict(data["breakdown"])),
        )


def _json_default(value: Any) -> Any:
    if isinstance(value, (set, frozenset)):
        return sorted(value, key=repr)
    if isinstance(value, (bytes, bytearray)):
        return {"$bytes": bytes(value).hex()}
    return {"$repr": repr(value)}


class History:
    """The calls clients made, in the order their starts and answers happened.

    Every :meth:`invoke`, :meth:`complete` and :meth:`fail` advances one logical clock, so the
    history knows exactly which calls overlapped. Calls are numbered from 1 (``#1``) in the order
    they started.
    """

    def __init__(self) -> None:
        self.operations: list[Operation] = []
        self._clock = 0

    def _tick(self) -> int:
        self._clock += 1
        return self._clock

    @property
    def ticks(self) -> int:
        """The logical time now: how many starts and answers were recorded so far."""
        return self._clock

    def invoke(self, client: ClientId, object: str, method: str,
               args: Iterable[Any] = (), kwargs: dict[str, Any] | None = None) -> int:
        """Record that ``client`` called ``object.method(*args)``; returns the call's token (id)."""
        op = Operation(id=len(self.operations) + 1, client=client, object=str(object),
                       method=str(method), args=tuple(args), kwargs=dict(kwargs or {}),
                       invoke_time=self._tick(), invoke_wall=time.time())
        self.operations.append(op)
        return op.id

    def _pending(self, token: int | Operation) -> Operation:
        op = self.op(token.id if isinstance(token, Operation) else token)
        if op.status != "pending":
            raise ValueError(f"call #{op.id} already answered ({op.outcome_text()})")
        return op

    def complete(self, token: int | Operation, result: Any = None) -> None:
        """Record that the call answered ``result``."""
        op = self._pending(token)
        op.return_time, op.return_wall = self._tick(), time.time()
        op.status, op.result = "ok", result

    def fail(self, token: int | Operation, error: BaseException | str) -> None:
        """Record that the call failed with ``error`` (it may or may not have taken effect)."""
        op = self._pending(token)
        op.return_time, op.return_wall = self._tick(), time.time()
        op.status, op.error = "error", ErrorInfo.of(error)

    def op(self, op_id: int) -> Operation:
        """The call numbered ``op_id`` (``#op_id``)."""
        if not 1 <= op_id <= len(self.operations):
            raise KeyError(f"no call #{op_id} in this history ({len(self.operations)} calls)")
        return self.operations[op_id - 1]

    def objects(self) -> list[str]:
        """Object labels, in the order they were first called."""
        return list(dict.fromkeys(op.object for op in self.operations))

    def __len__(self) -> int:
        return len(self.operations)

    def __iter__(self) -> Iterator[Operation]:
        return iter(self.operations)

    # -- persistence --

    def to_dict(self) -> dict[str, Any]:
        return {"format": "durable_lab.history/1", "clock": self._clock,
                "operations": [op.to_dict() for op in self.operations]}

    def to_json(self, indent: int | None = None) -> str:
        """The history as JSON text. Values JSON cannot hold are kept as ``{"$repr": ...}``."""
        return json.dumps(self.to_dict(), indent=indent, default=_json_default)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> History:
        history = cls()
        history.operations = [Operation.from_dict(d) for d in data.get("operations", [])]
        times = [t for op in history.operations
                 for t in (op.invoke_time, op.return_time) if t is not None]
        history._clock = max([int(data.get("clock", 0)), *times])
        return history

    @classmethod
    def from_json(cls, text: str) -> History:
        return cls.from_dict(json.loads(text))

    # -- display --

    def __str__(self) -> str:
        if not self.operations:
            return "History: no calls"
        lines = [f"History: {len(self.operations)} calls on {len(self.objects())} object(s)"]
        lines += [f"  {op.describe()}" for op in self.operations]
        return "\n".join(lines)

    def __repr__(self) -> str:
        return f"<History {len(self.operations)} calls, {len(self.objects())} objects>"

    def _repr_pretty_(self, p: Any, cycle: bool) -> None:
        p.text(str(self))


class RecordedStub:
    """A stub whose calls are written into a history (see :func:`recorded`)."""

    def __init__(self, stub: Any, history: History, client: ClientId, object: str) -> None:
        self._stub = stub
        self._history = history
        self._client = client
        self._object = object

    def __getattr__(self, name: str) -> Callable[..., Awaitable[Any]]:
        if name.startswith("_"):
            raise AttributeError(name)
        method = getattr(self._stub, name)
        history, client, label = self._history, self._client, self._object

        def call(*args: Any, **kwargs: Any) -> asyncio.Future[Any]:
            token = history.invoke(client, label, name, args, kwargs)
            try:
                reply: asyncio.Future[Any] = asyncio.ensure_future(method(*args, **kwargs))
            except BaseException as exc:
                history.fail(token, exc)
                raise
            reply.add_done_callback(lambda fut: _record_reply(history, token, fut))
            return reply

        call.__name__ = name
        return call

    def __repr__(self) -> str:
        return f"<recorded {self._stub!r} as client {self._client!r}>"


def _record_reply(history: History, token: int, fut: asyncio.Future[Any]) -> None:
    if fut.cancelled():
        return  # the caller gave up: the call stays "no answer" (it may still take effect)
    error = fut.exception()
    if error is not None:
        history.fail(token, error)
    else:
        history.complete(token, fut.result())


def _label_of(stub: Any) -> str:
    name = getattr(stub, "name", None)
    if name is not None:
        return str(name)
    object_id = getattr(stub, "id", None)
    return str(object_id)[:12] if object_id is not None else repr(stub)


def recorded(stub: Any, history: History, *, client: ClientId = "client",
             object: str | None = None) -> RecordedStub:
    """Wrap ``stub`` so every call through it is recorded in ``history``.

    ``await recorded(stub, h, client="alice").increment(1)``: the start is recorded before the
    call is sent, the answer (or the error) as soon as it arrives. ``object`` labels the object
    in the history (default: the name the stub was made from, ``getByName(name)``).
    """
    return RecordedStub(stub, history, client, object if object is not None else _label_of(stub))
