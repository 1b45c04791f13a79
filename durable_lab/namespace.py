"""Namespaces and stubs: how code reaches the one owner of a piece of state.

A namespace (a *binding*, ``env.COUNTER``) is one Durable Object class plus the space of ids it
owns. A stub is a client-side handle on one id: every method call on it is a message to that
object (an RPC), delivered in the order the calls were made, answered once the object's writes
before the answer are durable.

Creating a stub does not start the object; the first call does. Arguments and results cross the
stub as copies (structured-clone rules, ``values.py``).

If the caller is itself an object, its outgoing call first waits for its own pending writes (its
output gate), exactly like a reply would: the callee can never observe state the caller might
still lose.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

from . import values
from ._futures import relay_outcome as _relay
from ._turns import current_driver, mark_io, spawn
from .errors import LabClosedError
from .events import OutgoingCallHeld, OutgoingCallReleased
from .http import Request, Response
from .ids import DurableObjectId, IdFactory

if TYPE_CHECKING:
    from ._host import ObjectHost
    from .lab import Lab

__all__ = ["RESERVED_METHODS", "DurableObjectNamespace", "DurableObjectStub"]

#: Handler names that cannot be called over RPC (workerd worker-rpc.c++).
RESERVED_METHODS = frozenset({
    "fetch", "connect", "alarm", "webSocketMessage", "webSocketClose", "webSocketError", "dup",
    "constructor",
})


class DurableObjectNamespace:
    """``env.NAME``: makes ids and stubs for one Durable Object class."""

    _durable_lab_by_reference = True

    def __init__(self, lab: Lab, name: str, cls: type, *, sql: bool = False) -> None:
        self._lab = lab
        self.name = name
        self.cls = cls
        #: True for a SQLite-backed class (ctx.storage.sql available, synchronous storage).
        self.sql = sql
        self._ids = IdFactory(name, lab.random, session=getattr(lab, "session", 0))

    def idFromName(self, name: str) -> DurableObjectId:  # noqa: N802
        """The id for ``name``: always the same id for the same name in this namespace."""
        return self._ids.from_name(name)

    def newUniqueId(self, options: dict[str, Any] | None = None) -> DurableObjectId:  # noqa: N802
        """A new random id (from the lab's seeded random generator)."""
        if options and options.get("jurisdiction") is not None:
            raise NotImplementedError("Jurisdiction restrictions are not implemented in durable_lab.")
        return self._ids.new_unique()

    def idFromString(self, text: str) -> DurableObjectId:  # noqa: N802
        """Parse an id printed by ``str(id)``; refuses malformed ids and ids of other namespaces."""
        return self._ids.from_string(text)

    def get(self, object_id: DurableObjectId, options: dict[str, Any] | None = None
            ) -> DurableObjectStub:
        """A stub for ``object_id``. Does not start the object."""
        self._lab._check_open()
        if not isinstance(object_id, DurableObjectId):
            raise TypeError(
                f"get() takes a DurableObjectId (from idFromName, newUniqueId or idFromString), "
                f"got {type(object_id).__name__}: {object_id!r}"
            )
        if object_id.namespace != self.name:
            raise TypeError(
                f"Durable Object ID is not valid for this namespace: the id belongs to "
                f"{object_id.namespace!r}, not {self.name!r}"
            )
        host = self._lab._host(self, object_id)
        return DurableObjectStub(host, object_id)

    def getByName(self, name: str, options: dict[str, Any] | None = None) -> DurableObjectStub:  # noqa: N802
        """Shorthand for ``get(idFromName(name))``."""
        return self.get(self.idFromName(name), options)

    id_from_name = idFromName
    new_unique_id = newUniqueId
    id_from_string = idFromString
    get_by_name = getByName

    def __repr__(self) -> str:
        return f"<DurableObjectNamespace {self.name} ({self.cls.__qualname__})>"


class _RpcMethod:
    """``stub.name``: calling it sends the call and returns an awaitable reply."""

    __slots__ = ("_name", "_stub")

    def __init__(self, stub: DurableObjectStub, name: str) -> None:
        self._stub = stub
        self._name = name

    def __call__(self, *args: Any, **kwargs: Any) -> asyncio.Future[Any]:
        stub = self._stub
        name = self._name
        cls = stub._host.namespace.cls
        if name in RESERVED_METHODS:
            raise TypeError(f"'{name}' is a reserved method and cannot be called over RPC.")
        target = getattr(cls, name, None)
        if target is None or not callable(target):
            public = sorted(n for n in dir(cls) if not n.startswith("_")
                            and callable(getattr(cls, n, None)) and n not in RESERVED_METHODS)
            raise TypeError(
                f'The RPC receiver does not implement the method "{name}". '
                f"{cls.__qualname__} has: {', '.join(public) or 'no public methods'}"
            )
        if args:
            args = tuple(values.clone(a, what=f"an argument of {name}()") for a in args)
        if kwargs:
            kwargs = {k: values.clone(v, what=f"argument {k}= of {name}()") for k, v in kwargs.items()}
        return stub._send("rpc", name, args, kwargs)

    def __repr__(self) -> str:
        return f"<RPC method {self._name} of {self._stub!r}>"


class DurableObjectStub:
    """A handle on one object. ``await stub.method(...)``, ``await stub.fetch(request)``."""

    __slots__ = ("_generation", "_host", "id", "name")
    _durable_lab_by_reference = True

    def __init__(self, host: ObjectHost, object_id: DurableObjectId) -> None:
        self._host = host
        self._generation = host.generation
        self.id = object_id
        self.name = object_id.name

    def __getattr__(self, name: str) -> _RpcMethod:
        if name.startswith("_"):
            raise AttributeError(
                f"{name!r} is private: only public methods (names not starting with '_') "
                "can be called through a stub"
            )
        return _RpcMethod(self, name)

    def fetch(self, request: Request | str, **init: Any) -> asyncio.Future[Response]:
        """Send an HTTP request to the object's ``fetch`` handler. The URL must be absolute."""
        if isinstance(request, str):
            request = Request(request, **init)
        elif not isinstance(request, Request):
            raise TypeError(f"fetch() takes a Request or a URL str, got {type(request).__name__}")
        elif init:
            raise TypeError("fetch(request, ...) takes no options when given a Request")
        if not callable(getattr(self._host.namespace.cls, "fetch", None)):
            raise TypeError(
                f"{self._host.namespace.cls.__qualname__} has no fetch() handler: "
                "define async def fetch(self, request) to receive HTTP requests"
            )
        return self._send("fetch", "fetch", (request._copy(),), {})

    def _send(self, kind: str, method: str, args: tuple[Any, ...], kwargs: dict[str, Any]
              ) -> asyncio.Future[Any]:
        host = self._host
        if host.lab.closed:
            # At once, not in the reply: a cell re-run after "Run All" closed the lab says so.
            raise LabClosedError()
        driver = current_driver.get()
        if driver is None and host.lab.scheduler.paused:
            host.lab.scheduler.note_call(host.label, method)  # "the lab is paused: ..."
        if driver is not None and not driver.instance.broken:
            # An outgoing call from an object waits for that object's pending writes. Its
            # reply is I/O for the caller: the caller's code comes back through its gate.
            pending = driver.instance.output_gate.wait()
            if pending is not None:
                return mark_io(self._send_after(pending, driver, kind, method, args, kwargs))
            return mark_io(host.deliver(kind, method, args, kwargs, self._generation))
        elif driver is None and host.lab.recording:
            return host.lab._record_call(
                host, kind, method, args, kwargs,
                lambda: host.deliver(kind, method, args, kwargs, self._generation))
        return host.deliver(kind, method, args, kwargs, self._generation)

    def _send_after(self, pending: asyncio.Future[None], driver: Any, kind: str, method: str,
                    args: tuple[Any, ...], kwargs: dict[str, Any]) -> asyncio.Future[Any]:
        loop = asyncio.get_running_loop()
        reply: asyncio.Future[Any] = loop.create_future()
        caller = driver.instance
        bus = caller.bus
        target = self._host.label

        async def send() -> None:
            if bus.active:
                bus.emit(OutgoingCallHeld, object=caller.label, object_id=caller.object_id,
                         delivery=driver.delivery, target=target)
            try:
                await pending
            except BaseException as exc:
                if bus.active:
                    bus.emit(OutgoingCallReleased, object=caller.label,
                             object_id=caller.object_id, delivery=driver.delivery,
                             target=target, ok=False)
                if not reply.done():
                    reply.set_exception(exc if not isinstance(exc, asyncio.CancelledError)
                                        else (caller.broken or exc))
                return
            if bus.active:
                bus.emit(OutgoingCallReleased, object=caller.label, object_id=caller.object_id,
                         delivery=driver.delivery, target=target, ok=True)
            try:
                inner = self._host.deliver(kind, method, args, kwargs, self._generation)
            except BaseException as exc:
                if not reply.done():
                    reply.set_exception(exc)
                return
            inner.add_done_callback(lambda f: _relay(f, reply))

        caller.track(spawn(send()))
        return reply

    def __repr__(self) -> str:
        return f"<DurableObjectStub {self._host.label}>"
