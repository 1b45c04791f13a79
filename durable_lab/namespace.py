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
from collections.abc import Mapping
from functools import partial
from typing import TYPE_CHECKING, Any

from . import values
from ._futures import relay_outcome as _relay
from ._turns import current_driver, mark_io, spawn
from .errors import LabClosedError
from .events import OutgoingCallHeld, OutgoingCallReleased
from .http import Request, Response
from .ids import DurableObjectId, IdFactory
from .network import JURISDICTIONS, check_jurisdiction, check_location_hint

if TYPE_CHECKING:
    from ._host import ObjectHost
    from .services import LabServices

__all__ = ["GET_OPTIONS", "RESERVED_METHODS", "Client", "DurableObjectNamespace",
           "DurableObjectStub"]

#: Handler names that cannot be called over RPC (workerd worker-rpc.c++).
RESERVED_METHODS = frozenset({
    "fetch", "connect", "alarm", "webSocketMessage", "webSocketClose", "webSocketError", "dup",
    "constructor",
})


#: The options ``get()``/``getByName()`` take (Cloudflare's
#: ``DurableObjectNamespaceGetDurableObjectOptions``).
GET_OPTIONS = ("locationHint",)


def _location_hint(method: str, options: Mapping[str, Any] | None,
                   location_hint: str | None) -> str | None:
    """The hint of ``get(id, {"locationHint": ...})`` or ``get(id, locationHint=...)``."""
    hint = location_hint
    if options is not None:
        if not isinstance(options, Mapping):
            raise TypeError(f"{method}() options must be a dict like {{'locationHint': 'weur'}}, "
                            f"got {type(options).__name__}: {options!r}")
        unknown = [k for k in options if k not in GET_OPTIONS]
        if unknown:
            raise TypeError(f"{method}() got an unknown option {unknown[0]!r}; options: "
                            f"{', '.join(GET_OPTIONS)}")
        if "locationHint" in options:
            if location_hint is not None:
                raise TypeError(f"{method}() got locationHint twice (in the options dict and "
                                "as a keyword): give it once")
            hint = options["locationHint"]
    if hint is None:
        return None
    return check_location_hint(hint)


class DurableObjectNamespace:
    """``env.NAME``: makes ids and stubs for one Durable Object class.

    ``lab.client(region).env.NAME`` and ``env.NAME.jurisdiction("eu")`` are *views* of the same
    binding (same class, same objects): the first makes stubs that call from ``region``, the
    second makes the ids of one jurisdiction and refuses the others'.
    """

    _durable_lab_by_reference = True

    def __init__(self, services: LabServices, name: str, cls: type, *, sql: bool = False) -> None:
        self._services = services
        self.name = name
        self.cls = cls
        #: True for a SQLite-backed class (ctx.storage.sql available, synchronous storage).
        self.sql = sql
        self._ids = IdFactory(name, services.random, jurisdictions=JURISDICTIONS,
                              session=getattr(services, "session", 0))
        #: The binding itself (a view's base), the region its stubs call from (None: the
        #: lab's default caller), the jurisdiction it is restricted to.
        self._base = self
        self._region: str | None = None
        self._jurisdiction: str | None = None

    def idFromName(self, name: str) -> DurableObjectId:
        """The id for ``name``: always the same id for the same name in this namespace."""
        return self._ids.from_name(name)

    def newUniqueId(self, options: dict[str, Any] | None = None) -> DurableObjectId:
        """A new random id (from the lab's seeded random generator).

        ``{"jurisdiction": "eu"}`` makes it in that jurisdiction (as ``jurisdiction("eu")``
        does).
        """
        if options:
            jurisdiction = options.get("jurisdiction")
            if jurisdiction is not None and jurisdiction != self._jurisdiction:
                return self.jurisdiction(jurisdiction).newUniqueId()
        return self._ids.new_unique()

    def idFromString(self, text: str) -> DurableObjectId:
        """Parse an id printed by ``str(id)``; refuses malformed ids and ids of other namespaces."""
        return self._ids.from_string(text)

    def jurisdiction(self, jurisdiction: str) -> DurableObjectNamespace:
        """A sub-namespace restricted to ``jurisdiction`` (``"eu"``, ``"fedramp"``,
        ``"fedramp-high"``, ``"us"``): its ids differ from this namespace's for the same name,
        its objects are placed only in the jurisdiction's regions, and its ``get()`` refuses
        ids from another jurisdiction."""
        jurisdiction = check_jurisdiction(jurisdiction)
        if self._jurisdiction is not None and jurisdiction != self._jurisdiction:
            # A sub-namespace cannot leave its jurisdiction: ns.jurisdiction("eu")
            # .jurisdiction("us") once quietly gave "us" ids to code that meant "eu".
            raise TypeError(
                f"this namespace is already restricted to the {self._jurisdiction!r} "
                f"jurisdiction, so it cannot be restricted to {jurisdiction!r}: call "
                f"jurisdiction({jurisdiction!r}) on the binding itself (env.{self.name})")
        if jurisdiction == self._jurisdiction:
            return self
        return _NamespaceView(self._base, region=self._region, jurisdiction=jurisdiction)

    def get(self, object_id: DurableObjectId, options: dict[str, Any] | None = None, *,
            locationHint: str | None = None) -> DurableObjectStub:
        """A stub for ``object_id``. Does not start the object.

        ``locationHint`` (``{"locationHint": "weur"}`` or ``locationHint="weur"``) asks for the
        object to be created in that region; only the call that creates it respects the hint.
        """
        self._services.check_open()
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
        if self._jurisdiction is not None and object_id.jurisdiction != self._jurisdiction:
            raise TypeError(
                "get called on jurisdictional subnamespace with an ID from a different "
                f"jurisdiction (the id's jurisdiction is {object_id.jurisdiction!r}, this "
                f"subnamespace's is {self._jurisdiction!r})"
            )
        hint = None if options is None and locationHint is None else _location_hint(
            "get", options, locationHint)
        host = self._services.host(self._base, object_id)
        stub = DurableObjectStub(host, object_id)
        if hint is not None:
            stub._hint = hint
        if self._region is not None:
            stub._region = self._region
        return stub

    def getByName(self, name: str, options: dict[str, Any] | None = None, *,
                  locationHint: str | None = None) -> DurableObjectStub:
        """Shorthand for ``get(idFromName(name), options)``."""
        if options is not None or locationHint is not None:
            locationHint = _location_hint("getByName", options, locationHint)
        return self.get(self.idFromName(name), locationHint=locationHint)

    def _seen_from(self, region: str) -> DurableObjectNamespace:
        """This namespace (its jurisdiction kept) as a caller in ``region`` sees it."""
        return _NamespaceView(self._base, region=region, jurisdiction=self._jurisdiction)

    id_from_name = idFromName
    new_unique_id = newUniqueId
    id_from_string = idFromString
    get_by_name = getByName

    def __repr__(self) -> str:
        where = ""
        if self._jurisdiction is not None:
            where += f", jurisdiction {self._jurisdiction}"
        if self._region is not None:
            where += f", calling from {self._region}"
        return f"<DurableObjectNamespace {self.name} ({self.cls.__qualname__}){where}>"


class _NamespaceView(DurableObjectNamespace):
    """The same binding seen from a region (``lab.client``) or restricted to a jurisdiction.

    Its class and storage kind follow the binding's (a re-bind updates the base only); its
    objects are the binding's objects (hosts are keyed by the base).
    """

    def __init__(self, base: DurableObjectNamespace, *, region: str | None,
                 jurisdiction: str | None) -> None:
        self._services = base._services
        self._base = base
        self._region = region
        self._jurisdiction = jurisdiction
        self._ids = base._ids if jurisdiction is None else IdFactory(
            base.name, base._services.random, jurisdiction=jurisdiction,
            jurisdictions=JURISDICTIONS)

    @property
    def name(self) -> str:  # type: ignore[override]  # (read through the base)
        return self._base.name

    @property
    def cls(self) -> type:  # type: ignore[override]  # (read through the base)
        return self._base.cls

    @property
    def sql(self) -> bool:  # type: ignore[override]  # (read through the base)
        return self._base.sql


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
            kwargs = {k: values.clone(v, what=f"argument {k}= of {name}()")
                      for k, v in kwargs.items()}
        return stub._send("rpc", name, args, kwargs)

    def __repr__(self) -> str:
        return f"<RPC method {self._name} of {self._stub!r}>"


class DurableObjectStub:
    """A handle on one object. ``await stub.method(...)``, ``await stub.fetch(request)``."""

    __slots__ = ("_generation", "_hint", "_host", "_last", "_last_arrival", "_region", "id",
                 "name")
    _durable_lab_by_reference = True

    def __init__(self, host: ObjectHost, object_id: DurableObjectId) -> None:
        self._host = host
        self._generation = host.generation
        self.id = object_id
        self.name = object_id.name
        #: With Lab(network=...): the location hint it was taken with, the region it calls
        #: from (None: the lab's default caller), its last message on the way (E-order).
        self._hint: str | None = None
        self._region: str | None = None
        self._last_arrival: asyncio.Future[None] | None = None
        #: The delivery of its most recent call that reached the object (attribution.py:
        #: ``lab.explain(stub)``).
        self._last: Any = None

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
        """Send one call. The steps, in order: refused at once if the lab is closed; from an
        object, held by that object's output gate until its writes are durable (``_send_from``);
        from a client, noted if the lab is paused and recorded if it records; then carried
        (``_carry``)."""
        host = self._host
        services = host.services
        if services.closed:
            # At once, not in the reply: a cell re-run after "Run All" closed the lab says so
            # (check_open raises the lab's own reason: closed, or inherited by a fork).
            services.check_open()
            raise LabClosedError()
        driver = current_driver.get()
        if driver is not None:
            if not driver.instance.broken:
                return self._send_from(driver, kind, method, args, kwargs)
        else:
            if services.scheduler.paused:
                services.scheduler.note_call(host.label, method)  # "the lab is paused: ..."
            if services.recording:
                return services.record_call(
                    host, kind, method, args, kwargs,
                    lambda link: self._carry(kind, method, args, kwargs, link=link))
        if services.network is None:
            # _carry's first case, written out: every plain client call takes it.
            return host.deliver(kind, method, args, kwargs, self._generation, self)
        return self._carry(kind, method, args, kwargs)

    def _send_from(self, driver: Any, kind: str, method: str, args: tuple[Any, ...],
                   kwargs: dict[str, Any]) -> asyncio.Future[Any]:
        """A call made by an object's code: it waits for that object's pending writes. Its reply
        is I/O for the caller: the caller's code comes back through its gate. (The caller's
        delivery keeps the callee's, so its breakdown reaches the callee's.)"""
        caller = driver.instance
        call = driver.call
        link = call.add_call if call is not None else None
        network = self._host.services.network
        if network is not None:
            network.region_of_host(caller.host)  # the caller is placed when it calls
        pending = caller.output_gate.wait()
        if pending is not None:
            reply = self._send_after(pending, driver, kind, method, args, kwargs, link)
        else:
            reply = self._carry(kind, method, args, kwargs, link=link, caller=caller)
        # (Over the network the reply comes back by a lab-clock timer, never inside a turn:
        # as before the one send path, it is not marked.)
        return mark_io(reply) if network is None else reply

    def _carry(self, kind: str, method: str, args: tuple[Any, ...], kwargs: dict[str, Any], *,
               sent: float | None = None, held: float = 0.0, link: Any = None,
               caller: Any = None) -> asyncio.Future[Any]:
        """Hand the call to the object's host: straight, or with ``Lab(network=...)`` carried
        from the caller's region to the object's and the reply carried back (network.py).
        ``sent``/``held``: when the caller made it and how long its output gate held it;
        ``link`` is told the delivery once it exists; ``caller``: the calling instance (None:
        a client)."""
        host = self._host
        network = host.services.network
        if network is None:  # the only cost of geography when there is none
            origin = None if sent is None and link is None else (sent, held, link)
            return host.deliver(kind, method, args, kwargs, self._generation, self, origin)
        if caller is None:
            source, who = self._region or network.default_region, "client"
        else:
            source, who = network.region_of_host(caller.host), caller.label
        deliver = partial(host.deliver, kind, method, args, kwargs, self._generation, self)
        return network.carry(self, source, who, method, deliver, sent=sent, held=held,
                             link=link)

    def _send_after(self, pending: asyncio.Future[None], driver: Any, kind: str, method: str,
                    args: tuple[Any, ...], kwargs: dict[str, Any], link: Any
                    ) -> asyncio.Future[Any]:
        """``_carry`` once ``pending`` (the caller's output gate) lets the call go."""
        loop = asyncio.get_running_loop()
        reply: asyncio.Future[Any] = loop.create_future()
        caller = driver.instance
        bus = caller.bus
        target = self._host.label
        clock = caller.services.clock
        sent = clock.now()  # the call was made now; the caller's output gate holds it

        async def send() -> None:
            caller.outgoing_held += 1  # (kept for snapshots, as the events tell it)
            if bus.active:
                bus.emit(OutgoingCallHeld, caller.label, caller.object_id, driver.delivery, target)
            try:
                await pending
            except BaseException as exc:
                caller.outgoing_held -= 1
                if bus.active:
                    bus.emit(OutgoingCallReleased, caller.label, caller.object_id, driver.delivery,
                             target, False)
                if not reply.done():
                    reply.set_exception(exc if not isinstance(exc, asyncio.CancelledError)
                                        else (caller.broken or exc))
                return
            caller.outgoing_held -= 1
            if bus.active:
                bus.emit(OutgoingCallReleased, caller.label, caller.object_id, driver.delivery,
                         target, True)
            held = clock.now() - sent
            try:
                inner = self._carry(kind, method, args, kwargs, sent=sent, held=held,
                                    link=link, caller=caller)
            except BaseException as exc:
                if not reply.done():
                    reply.set_exception(exc)
                return
            inner.add_done_callback(lambda f: _relay(f, reply))

        caller.track(spawn(send()))
        return reply

    def __repr__(self) -> str:
        return f"<DurableObjectStub {self._host.label}>"


class Client:
    """``lab.client(region)``: a Worker running in ``region``, and the bindings it sees.

    ``client.env.CHAT`` (or ``client.CHAT``) is the ``CHAT`` binding seen from ``region``: the
    stubs it makes call from there, so with ``Lab(network=...)`` every call pays the round trip
    from ``region`` to wherever the object lives, and an object it creates without a location
    hint is placed in ``region``. On a lab without a network the region changes nothing.
    """

    def __init__(self, services: LabServices, region: str) -> None:
        self._services = services
        self.region = region
        self.env = _ClientEnv(self)

    def __getattr__(self, name: str) -> DurableObjectNamespace:
        if name.startswith("_"):
            raise AttributeError(name)
        return getattr(self.env, name)

    def __repr__(self) -> str:
        return f"<Client in {self.region}>"


class _ClientEnv:
    """``client.env``: the lab's bindings, each seen from the client's region."""

    def __init__(self, client: Client) -> None:
        self._client = client
        self._views: dict[str, DurableObjectNamespace] = {}

    def __getattr__(self, name: str) -> DurableObjectNamespace:
        if name.startswith("_"):
            raise AttributeError(name)
        client = self._client
        base = getattr(client._services.env, name)  # the lab's own error for an unknown binding
        view = self._views.get(name)
        if view is None or view._base is not base:
            view = self._views[name] = _NamespaceView(base, region=client.region,
                                                      jurisdiction=None)
        return view

    def __dir__(self) -> list[str]:
        return dir(self._client._services.env)

    def __repr__(self) -> str:
        return f"<Env seen from {self._client.region}: {', '.join(dir(self)) or '(no bindings)'}>"
