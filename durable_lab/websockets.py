"""WebSockets with hibernation: Cloudflare's WebSocket Hibernation API, in process.

An object upgrades a request in ``fetch`` and hands the sockets to the runtime::

    class Room(DurableObject):
        async def fetch(self, request):
            client, server = WebSocketPair()
            self.ctx.acceptWebSocket(server, ["lobby"])
            return Response(None, status=101, web_socket=client)

        async def webSocketMessage(self, ws, message):
            for other in self.ctx.getWebSockets():
                other.send(message)

    ws = await lab.connect(ROOM.getByName("r1"))      # the client end
    await ws.send("hi")
    print(await ws.receive())                          # "hi"

What the lab mirrors (spec §7.3, workerd ``hibernation-manager.c++``, ``web-socket.c++``):

- **The runtime owns accepted sockets**, not the instance. They are kept on the object's host
  with their tags, attachment and auto-response timestamp. When the instance hibernates
  (``Lab(hibernate_after=10)`` seconds of lab time without work, or ``lab.hibernate(stub)``) it
  is dropped like an evicted one (``InstanceEvicted(reason="hibernation")``): in-memory fields
  are lost, the sockets stay connected, and the next event on any of them constructs the object
  again. ``ctx.getWebSockets()`` in the new instance returns new wrapper objects for the same
  sockets (as on Cloudflare; within one instance the wrapper is always the same object).
- **Each incoming event is a delivery** (``kind_of_delivery="websocket"``): queued at the input
  gate when the client sends, in receive order per socket, numbered like RPC calls, with the
  usual events. The handlers are ``webSocketMessage(ws, message)``,
  ``webSocketClose(ws, code, reason, wasClean)`` and ``webSocketError(ws, error)``; a missing
  handler is ignored. An exception in a handler is logged (logger ``durable_lab``) and shows in
  ``DeliveryFinished``; the socket stays open.
- **Sends are output-gated.** ``ws.send()`` takes the output gate at call time: the message
  reaches the client only once every write made before the send is committed, and messages on
  one socket keep their order. If that commit fails the message is never delivered and the
  reset closes the socket.
- **Auto-response.** With ``ctx.setWebSocketAutoResponse(WebSocketRequestResponsePair(req,
  res))``, a text message exactly equal to ``req`` is answered with ``res`` by the runtime: no
  object code runs and a hibernated object stays hibernated.
  ``ctx.getWebSocketAutoResponseTimestamp(ws)`` tells when it last happened.
- **Closing.** The client's ``close(code, reason)`` is answered at once by the runtime (workerd's
  ``web_socket_auto_reply_to_close``) and dispatched as ``webSocketClose(ws, code, reason,
  True)``, where, as on workerd, the socket is CLOSING, a ``send()`` is dropped without an
  error, and ``getWebSockets()`` (newest first) still lists it; it leaves the list after.
  The object's ``ws.close(code, reason)`` is gated like a message; when the client gets it,
  the client echoes it, which dispatches ``webSocketClose`` too (as a browser peer would).
  ``client.disconnect()`` drops the connection without a close frame:
  ``webSocketClose(ws, 1006, ..., False)``.
- **Resets close sockets.** A failure reset (a failed commit, ``ctx.abort()``, a failed
  ``blockConcurrencyWhile`` or constructor) closes every socket of the object with **1011**
  (internal error); a code update (``lab.bind`` again) with **1012** (service restart), also for
  hibernated objects; ``lab.close()`` with **1001** (going away). Held messages are dropped. The
  auto-response and event timeout settings are cleared with the sockets.

Client side (``lab.connect``): ``await ws.receive(timeout=None)`` returns the next message (str or
bytes) and raises :class:`WebSocketDisconnected` (with ``code``, ``reason``, ``wasClean``) once
the socket is closed and every message before the close was read; ``timeout`` is in wall-clock
seconds (``TimeoutError``). ``async for msg in ws`` stops at the close. ``ws.messages`` lists every
message received so far (read or not).

Limits (spec §8): 10 tags of 256 characters per socket, 32,768 sockets per object, attachments
of 16 KiB once encoded, auto-response request and response of 2,048 bytes, 32 MiB per message
from a client, event timeout of at most 604,800,000 ms (stored and reported, not enforced).
"""

from __future__ import annotations

import asyncio
import datetime as _dt
import logging
from collections import deque
from collections.abc import AsyncIterator, Iterator
from typing import Any

from . import values
from ._turns import current_driver
from .errors import DurableLabError
from .events import (
    WebSocketAccepted,
    WebSocketAutoResponse,
    WebSocketClosed,
    WebSocketMessageReceived,
    WebSocketMessageReleased,
    WebSocketMessageSent,
)

# Handed down from the rooms above, named for the reader, not imported:
# ``_host.Instance``, ``_host.ObjectHost``.
Instance = Any
ObjectHost = Any

__all__ = [
    "ClientWebSocket",
    "WebSocket",
    "WebSocketDisconnected",
    "WebSocketPair",
    "WebSocketRequestResponsePair",
]

log = logging.getLogger("durable_lab")

MAX_TAGS_PER_CONNECTION = 10
MAX_TAG_LENGTH = 256
MAX_SOCKETS = 32768
MAX_ATTACHMENT_SIZE = 16384
MAX_AUTO_RESPONSE_SIZE = 2048
MAX_EVENT_TIMEOUT_MS = 604_800_000
MAX_MESSAGE_SIZE = 32 * 1024 * 1024
MAX_CLOSE_REASON_BYTES = 123

CONNECTING, OPEN, CLOSING, CLOSED = 0, 1, 2, 3

#: Close codes the runtime uses when it closes sockets itself.
CLOSE_RESET = 1011  # internal error: the object was reset by a failure
CLOSE_CODE_UPDATED = 1012  # service restart: the class was bound again
CLOSE_LAB_CLOSED = 1001  # going away
ABNORMAL_CLOSURE = 1006
ABNORMAL_REASON = "WebSocket disconnected without sending Close frame."

SEND_AFTER_CLOSE = "Can't call WebSocket send() after close()."
NOT_ACCEPTED = ("You must call one of accept() or state.acceptWebSocket() on this WebSocket "
                "before sending messages.")


class WebSocketDisconnected(DurableLabError):
    """The WebSocket is closed: raised by ``receive()`` once every earlier message was read,
    and by ``send()`` on a client end that the object (or the runtime) closed."""

    def __init__(self, code: int, reason: str, was_clean: bool) -> None:
        super().__init__(f"WebSocket closed with code {code}" + (f": {reason}" if reason else ""))
        self.code = code
        self.reason = reason
        self.wasClean = was_clean

    @property
    def was_clean(self) -> bool:
        return self.wasClean


# -- values ---------------------------------------------------------------------------------


def _message(message: object, who: str) -> str | bytes:
    if type(message) is str or type(message) is bytes:
        return message
    if isinstance(message, (bytearray, memoryview)):
        return bytes(message)
    if isinstance(message, str):
        return str(message)
    raise TypeError(f"{who} takes a str or bytes message, got {type(message).__name__}")


def _size(message: str | bytes) -> int:
    return len(message) if isinstance(message, bytes) else len(message.encode())


def _check_close(code: object, reason: object) -> tuple[int, str]:
    if isinstance(code, bool) or not isinstance(code, int):
        raise TypeError(f"a WebSocket close code must be an int, got {type(code).__name__}")
    if not (1000 <= code < 5000) or code in (1004, 1005, 1006, 1015):
        raise TypeError(f"Invalid WebSocket close code: {code}.")
    if not isinstance(reason, str):
        raise TypeError(f"a WebSocket close reason must be a str, got {type(reason).__name__}")
    if len(reason.encode()) > MAX_CLOSE_REASON_BYTES:
        raise ValueError(
            f"a WebSocket close reason cannot be longer than {MAX_CLOSE_REASON_BYTES} bytes "
            f"of UTF-8 (got {len(reason.encode())})"
        )
    return code, reason


def _truncate(reason: str) -> str:
    data = reason.encode()[:MAX_CLOSE_REASON_BYTES]
    return data.decode(errors="ignore")


def _retrieve(fut: asyncio.Future[Any]) -> None:
    if not fut.cancelled():
        fut.exception()


# -- the pair and its two ends ----------------------------------------------------------------


class WebSocketPair:
    """Two connected ends: ``client, server = WebSocketPair()``.

    Also ``pair[0]`` / ``pair[1]``, ``pair.values()`` and the JS-FFI spellings
    ``WebSocketPair.new()`` and ``pair.object_values()``. The object keeps ``server`` (and gives
    it to ``ctx.acceptWebSocket``) and returns ``client`` in ``Response(None, status=101,
    web_socket=client)``.
    """

    __slots__ = ("client", "server")

    def __init__(self) -> None:
        self.client = ClientWebSocket()
        self.server = WebSocket()
        self.server._peer = self.client

    @classmethod
    def new(cls) -> WebSocketPair:
        return cls()

    def values(self) -> list[Any]:
        return [self.client, self.server]

    object_values = values

    def __iter__(self) -> Iterator[Any]:
        return iter((self.client, self.server))

    def __getitem__(self, index: int) -> Any:
        return (self.client, self.server)[index]

    def __len__(self) -> int:
        return 2

    def __repr__(self) -> str:
        return "<WebSocketPair>"


class WebSocketRequestResponsePair:
    """A request/response pair for ``ctx.setWebSocketAutoResponse`` (both str)."""

    __slots__ = ("request", "response")

    def __init__(self, request: str, response: str) -> None:
        for name, value in (("request", request), ("response", response)):
            if not isinstance(value, str):
                raise TypeError(
                    f"WebSocketRequestResponsePair {name} must be a str, got {type(value).__name__}"
                )
        self.request = request
        self.response = response

    @classmethod
    def new(cls, request: str, response: str) -> WebSocketRequestResponsePair:
        return cls(request, response)

    def __eq__(self, other: object) -> bool:
        return (isinstance(other, WebSocketRequestResponsePair)
                and (self.request, self.response) == (other.request, other.response))

    def __hash__(self) -> int:
        return hash((self.request, self.response))

    def __repr__(self) -> str:
        return f"WebSocketRequestResponsePair({self.request!r}, {self.response!r})"


class WebSocket:
    """The server end, as the object sees it: ``send``, ``close``, attachments, ``readyState``.

    Made by :class:`WebSocketPair`, usable once ``ctx.acceptWebSocket`` accepted it. Handlers and
    ``ctx.getWebSockets()`` give the object wrappers of the same kind for its accepted sockets.
    """

    CONNECTING = CONNECTING
    OPEN = OPEN
    CLOSING = CLOSING
    CLOSED = CLOSED

    __slots__ = ("__weakref__", "_instance", "_peer", "_record")

    def __init__(self) -> None:
        self._peer: ClientWebSocket | None = None
        self._record: _Socket | None = None
        self._instance: Instance | None = None

    # -- sending ---------------------------------------------------------------------------

    def send(self, message: str | bytes) -> None:
        """Send ``message`` to the client, after the writes made before this call commit."""
        record = self._record
        if record is None:
            raise TypeError(NOT_ACCEPTED)
        if record.peer_closed_first:
            # The client closed and the runtime answered: workerd drops the message without
            # an error (issue #20), the socket stays CLOSING.
            _message(message, "WebSocket send()")
            return
        if record.closed_out:
            raise TypeError(SEND_AFTER_CLOSE)
        data = _message(message, "WebSocket send()")
        record.send(self._gate(), ("message", data), self._delivery())

    def close(self, code: int = 1000, reason: str = "") -> None:
        """Close the connection (gated like a message). A second close is ignored, as in
        workerd; so is a close after the client closed (the runtime already answered it)."""
        record = self._record
        if record is None:
            raise TypeError(NOT_ACCEPTED)
        if record.closed_out:
            return
        code, reason = _check_close(code, reason)
        record.closed_out = True
        record.send(self._gate(), ("close", code, reason), self._delivery())

    def _gate(self) -> asyncio.Future[None] | None:
        inst = self._instance
        if inst is None or inst.broken is not None:
            return None
        return inst.output_gate.wait()

    def _delivery(self) -> int:
        driver = current_driver.get()
        return driver.delivery if driver is not None and driver.instance is self._instance else 0

    # -- attachments -----------------------------------------------------------------------

    def serializeAttachment(self, value: Any) -> None:
        """Keep a structured-clone copy of ``value`` with the socket (survives hibernation)."""
        record = self._accepted("serializeAttachment")
        data = values.encode(value, what="a WebSocket attachment")
        if len(data) > MAX_ATTACHMENT_SIZE:
            raise ValueError(
                f"A WebSocket 'attachment' cannot be larger than {MAX_ATTACHMENT_SIZE} bytes."
                f"'attachment' was {len(data)} bytes."
            )
        record.attachment = data

    def deserializeAttachment(self) -> Any:
        """A fresh copy of the attachment, or None if none was serialized."""
        record = self._accepted("deserializeAttachment")
        return None if record.attachment is None else values.decode(record.attachment)

    serialize_attachment = serializeAttachment
    deserialize_attachment = deserializeAttachment

    def _accepted(self, what: str) -> _Socket:
        if self._record is None:
            raise TypeError(f"{what}() needs a WebSocket accepted with ctx.acceptWebSocket()")
        return self._record

    # -- state -----------------------------------------------------------------------------

    @property
    def readyState(self) -> int:
        """1 (OPEN), 2 (CLOSING: a close was sent or received) or 3 (CLOSED)."""
        record = self._record
        if record is None:
            return OPEN
        if record.peer_closed_first:
            # workerd: CLOSING in webSocketClose after the client's close, though the runtime
            # already answered it (web_socket_auto_reply_to_close), and after a send().
            return CLOSING
        if record.closed_in and record.closed_out:
            return CLOSED
        if record.closed_in or record.closed_out:
            return CLOSING
        return OPEN

    ready_state = readyState

    def __repr__(self) -> str:
        if self._record is None:
            return "<WebSocket (server end, not accepted)>"
        state = ("CONNECTING", "OPEN", "CLOSING", "CLOSED")[self.readyState]
        return f"<WebSocket {self._record.registry.host.label}#{self._record.id} {state}>"


class ClientWebSocket:
    """The client end (what ``lab.connect`` returns): ``await ws.send(m)``, ``await
    ws.receive()``, ``await ws.close()``, ``ws.messages``, ``async for m in ws``."""

    CONNECTING = CONNECTING
    OPEN = OPEN
    CLOSING = CLOSING
    CLOSED = CLOSED

    __slots__ = ("_close", "_closed_by_me", "_inbox", "_record", "_waiters", "messages")

    def __init__(self) -> None:
        self._record: _Socket | None = None
        self._inbox: deque[str | bytes] = deque()
        self._waiters: list[asyncio.Future[None]] = []
        self._close: WebSocketDisconnected | None = None
        self._closed_by_me = False
        #: Every message received so far, read or not (handy in a notebook).
        self.messages: list[str | bytes] = []

    # -- sending ---------------------------------------------------------------------------

    def send(self, message: str | bytes) -> asyncio.Future[None]:
        """Send ``message`` to the object. Queued at once (so calls keep their order); the
        returned future is already done, so ``await ws.send(m)`` and ``ws.send(m)`` both work."""
        if self._closed_by_me:
            raise TypeError(SEND_AFTER_CLOSE)
        if self._close is not None:
            raise WebSocketDisconnected(self._close.code, self._close.reason,
                                        self._close.wasClean)
        record = self._connected()
        data = _message(message, "send()")
        size = _size(data)
        if size > MAX_MESSAGE_SIZE:
            raise ValueError(
                f"a WebSocket message cannot be larger than {MAX_MESSAGE_SIZE} bytes "
                f"(got {size})"
            )
        record.registry.receive(record, data, size)
        return _done()

    async def close(self, code: int = 1000, reason: str = "") -> None:
        """Close the connection: the object gets ``webSocketClose(ws, code, reason, True)``."""
        if self._close is not None:
            return
        code, reason = _check_close(code, reason)
        record = self._connected()
        self._closed_by_me = True
        self._closed(code, reason, True)
        record.registry.peer_closed(record, code, reason, True, initiator="client")

    def disconnect(self) -> None:
        """Drop the connection without a close frame (a lost network): the object gets
        ``webSocketClose(ws, 1006, "WebSocket disconnected without sending Close frame.",
        False)``."""
        if self._close is not None:
            return
        record = self._connected()
        self._closed_by_me = True
        self._closed(ABNORMAL_CLOSURE, ABNORMAL_REASON, False)
        record.registry.peer_closed(record, ABNORMAL_CLOSURE, ABNORMAL_REASON, False,
                                    initiator="client")

    def fail(self, message: str = "WebSocket protocol error") -> None:
        """Break the connection with an error: the object gets ``webSocketError(ws, error)``
        (``error`` is a ``ConnectionError``) and no close event; the socket is gone."""
        if self._close is not None:
            return
        record = self._connected()
        self._closed_by_me = True
        self._closed(ABNORMAL_CLOSURE, message, False)
        record.registry.peer_failed(record, message)

    def _connected(self) -> _Socket:
        if self._record is None:
            raise RuntimeError(
                "this WebSocket is not connected: the object must accept the server end with "
                "self.ctx.acceptWebSocket(server) before the client end can be used"
            )
        return self._record

    # -- receiving -------------------------------------------------------------------------

    async def receive(self, timeout: float | None = None  # noqa: ASYNC109 - the API's name
                      ) -> str | bytes:
        """The next message (str or bytes). Raises :class:`WebSocketDisconnected` once closed
        and drained, ``TimeoutError`` after ``timeout`` wall-clock seconds without a message."""
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        while True:
            if self._inbox:
                return self._inbox.popleft()
            if self._close is not None:
                close = self._close
                raise WebSocketDisconnected(close.code, close.reason, close.wasClean)
            waiter: asyncio.Future[None] = loop.create_future()
            self._waiters.append(waiter)
            try:
                if deadline is None:
                    await waiter
                else:
                    await asyncio.wait_for(waiter, max(0.0, deadline - loop.time()))
            finally:
                if waiter in self._waiters:
                    self._waiters.remove(waiter)

    def __aiter__(self) -> AsyncIterator[str | bytes]:
        return self

    async def __anext__(self) -> str | bytes:
        try:
            return await self.receive()
        except WebSocketDisconnected:
            raise StopAsyncIteration from None

    def _push(self, data: str | bytes) -> None:
        if self._close is not None:
            return
        self._inbox.append(data)
        self.messages.append(data)
        self._wake()

    def _closed(self, code: int, reason: str, was_clean: bool) -> None:
        if self._close is None:
            self._close = WebSocketDisconnected(code, reason, was_clean)
            self._wake()

    def _wake(self) -> None:
        waiters, self._waiters = self._waiters, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)

    # -- state -----------------------------------------------------------------------------

    @property
    def closed(self) -> bool:
        return self._close is not None

    @property
    def close_code(self) -> int | None:
        return None if self._close is None else self._close.code

    @property
    def close_reason(self) -> str | None:
        return None if self._close is None else self._close.reason

    @property
    def readyState(self) -> int:
        if self._record is None:
            return CONNECTING
        return CLOSED if self._close is not None else OPEN

    ready_state = readyState

    @property
    def pending(self) -> int:
        """Messages received and not yet read with ``receive()``."""
        return len(self._inbox)

    def __repr__(self) -> str:
        state = ("CONNECTING", "OPEN", "CLOSING", "CLOSED")[self.readyState]
        record = self._record
        where = "" if record is None else f" {record.registry.host.label}#{record.id}"
        return f"<ClientWebSocket{where} {state}, {len(self.messages)} received>"


def _done() -> asyncio.Future[None]:
    fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    fut.set_result(None)
    return fut


# -- what the runtime keeps per socket and per object --------------------------------------------


class _Socket:
    """One accepted connection, kept by the host across hibernation."""

    __slots__ = ("attachment", "auto_response_at", "client", "closed_in", "closed_out", "id",
                 "outbox", "peer_closed_first", "registry", "tags", "wrapper")

    def __init__(self, registry: HostSockets, socket_id: int, client: ClientWebSocket,
                 tags: tuple[str, ...]) -> None:
        self.registry = registry
        self.id = socket_id
        self.client = client
        self.tags = tags
        self.attachment: bytes | None = None
        self.auto_response_at: _dt.datetime | None = None
        self.closed_in = False  # the client closed (or the connection is gone)
        self.closed_out = False  # the object (or the runtime) closed
        #: The client's close came first (the runtime answered it for the object).
        self.peer_closed_first = False
        #: Messages held by the output gate: (gate, item, delivery), in send order.
        self.outbox: deque[tuple[asyncio.Future[None] | None, tuple[Any, ...], int]] = deque()
        self.wrapper: WebSocket | None = None

    def wrapper_for(self, instance: Instance) -> WebSocket:
        """The object-side wrapper of this socket in ``instance`` (one per instance)."""
        ws = self.wrapper
        if ws is None or ws._instance is not instance:
            ws = WebSocket()
            ws._record = self
            ws._instance = instance
            self.wrapper = ws
        return ws

    # -- outgoing --------------------------------------------------------------------------

    def send(self, gate: asyncio.Future[None] | None, item: tuple[Any, ...], delivery: int) -> None:
        held = gate is not None or bool(self.outbox)
        if item[0] == "message":
            bus = self.registry.host.services.bus
            if bus.active:
                host = self.registry.host
                data = item[1]
                bus.emit(WebSocketMessageSent, host.label, host.object_id, delivery, self.id,
                         _size(data), type(data) is bytes, held)
        if not held:
            self._out(item, delivery)
            return
        if gate is not None:
            gate.add_done_callback(_retrieve)
        self.outbox.append((gate, item, delivery))
        if len(self.outbox) == 1:
            self._pump()

    def _pump(self, _: object = None) -> None:
        outbox = self.outbox
        while outbox:
            gate, item, delivery = outbox[0]
            if gate is not None and not gate.done():
                gate.add_done_callback(self._pump)
                return
            outbox.popleft()
            ok = gate is None or (not gate.cancelled() and gate.exception() is None)
            if item[0] == "message":
                bus = self.registry.host.services.bus
                if bus.active:
                    host = self.registry.host
                    bus.emit(WebSocketMessageReleased, host.label, host.object_id, delivery,
                             self.id, ok)
            if ok:
                self._out(item, delivery)
            # else: the commit before it failed; the reset closes the socket.

    def _out(self, item: tuple[Any, ...], delivery: int) -> None:
        if item[0] == "message":
            self.client._push(item[1])
            return
        _, code, reason = item
        self.client._closed(code, reason, True)
        registry = self.registry
        registry.emit_closed(self, code, reason, True, "object")
        # The client echoes the close frame, as a browser does: the object hears it.
        registry.peer_closed(self, code, reason, True, initiator="")

    def drop_outbox(self) -> None:
        bus = self.registry.host.services.bus
        while self.outbox:
            _gate, item, delivery = self.outbox.popleft()
            if item[0] == "message" and bus.active:
                host = self.registry.host
                bus.emit(WebSocketMessageReleased, host.label, host.object_id, delivery, self.id,
                         False)


class HostSockets:
    """The hibernatable sockets of one object and its auto-response (``host.websockets``).

    Kept by the host, not the instance, so they outlive hibernation; cleared by a reset.
    """

    def __init__(self, host: ObjectHost) -> None:
        self.host = host
        self.sockets: dict[int, _Socket] = {}
        #: Sockets the client closed whose webSocketClose handler has not finished: workerd
        #: still lists them in getWebSockets() meanwhile (issue #20 trace websocket_close).
        self.closing: dict[int, _Socket] = {}
        self.count = 0
        self.auto_response: WebSocketRequestResponsePair | None = None
        self.event_timeout: int | None = None

    def __len__(self) -> int:
        return len(self.sockets)

    # -- accepting -------------------------------------------------------------------------

    def accept(self, instance: Instance, ws: WebSocket, tags: tuple[str, ...]) -> None:
        if len(self.sockets) >= MAX_SOCKETS:
            raise ValueError(
                f"only {MAX_SOCKETS} websockets can be accepted on a single Durable Object "
                "instance"
            )
        client = ws._peer
        assert client is not None
        self.count += 1
        record = _Socket(self, self.count, client, tags)
        self.sockets[record.id] = record
        ws._record = record
        ws._instance = instance
        record.wrapper = ws
        client._record = record
        bus = self.host.services.bus
        if bus.active:
            driver = current_driver.get()
            bus.emit(WebSocketAccepted, self.host.label, self.host.object_id,
                     driver.delivery if driver is not None else 0, record.id, tags)

    # -- incoming --------------------------------------------------------------------------

    def receive(self, record: _Socket, data: str | bytes, size: int) -> None:
        host = self.host
        services = host.services
        bus = services.bus
        pair = self.auto_response
        if pair is not None and type(data) is str and data == pair.request:
            record.auto_response_at = _dt.datetime.fromtimestamp(services.clock.now(), tz=_dt.UTC)
            if bus.active:
                bus.emit(WebSocketAutoResponse, host.label, host.object_id, record.id)
            record.send(None, ("message", pair.response), 0)
            return
        if bus.active:
            bus.emit(WebSocketMessageReceived, host.label, host.object_id,
                     services.coming_delivery_id(), record.id, size, type(data) is bytes)
        reply = self._dispatch(record, "webSocketMessage", (data,))
        if reply.done() and not reply.cancelled() and reply.exception() is not None:
            raise reply.exception()  # type: ignore[misc]  # refused: overloaded

    def peer_closed(self, record: _Socket, code: int, reason: str, was_clean: bool, *,
                    initiator: str) -> None:
        """The client's close frame (or its loss) reached the object."""
        if record.closed_in or record.id not in self.sockets:
            return
        record.closed_in = True
        if not record.closed_out and was_clean:
            # (Recorded on workerd for a clean close; a lost connection keeps CLOSED.)
            record.peer_closed_first = True
        record.closed_out = True  # the runtime answers the close (auto_reply_to_close)
        record.drop_outbox()
        del self.sockets[record.id]
        if initiator:
            self.emit_closed(record, code, reason, was_clean, initiator)
        self.closing[record.id] = record
        reply = self._dispatch(record, "webSocketClose", (code, reason, was_clean))
        reply.add_done_callback(lambda _: self.closing.pop(record.id, None))

    def peer_failed(self, record: _Socket, message: str) -> None:
        if record.id not in self.sockets:
            return
        record.closed_in = record.closed_out = True
        record.drop_outbox()
        del self.sockets[record.id]
        self.emit_closed(record, ABNORMAL_CLOSURE, message, False, "client")
        self._dispatch(record, "webSocketError", (ConnectionError(message),))

    def _dispatch(self, record: _Socket, method: str, args: tuple[Any, ...]) -> asyncio.Future[Any]:
        host = self.host
        if host.services.closed:
            fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
            fut.set_result(None)
            return fut
        reply = host.deliver("websocket", method, (record, *args), {}, host.generation)
        reply.add_done_callback(self._handled)
        return reply

    def _handled(self, reply: asyncio.Future[Any]) -> None:
        if reply.cancelled():
            return
        exc = reply.exception()
        if exc is not None and getattr(exc, "remote", False):
            log.warning("%s: a WebSocket handler raised %s: %s", self.host.label,
                        type(exc).__name__, exc)

    # -- closing by the runtime ------------------------------------------------------------

    def close_all(self, code: int, reason: str) -> None:
        """Close every socket from the runtime's side (no handler runs); clear the settings."""
        for record in list(self.sockets.values()):
            record.closed_in = record.closed_out = True
            record.drop_outbox()
            del self.sockets[record.id]
            record.client._closed(code, reason, True)
            self.emit_closed(record, code, reason, True, "runtime")
        self.closing.clear()
        self.auto_response = None
        self.event_timeout = None

    def reset(self, reason: str, error: BaseException | None) -> None:
        """The instance was reset: disconnect everything (see the module docstring)."""
        if reason == "codeUpdated":
            self.close_all(CLOSE_CODE_UPDATED, "Durable Object code was updated")
        elif reason == "labClosed":
            self.close_all(CLOSE_LAB_CLOSED, "the lab was closed")
        else:
            self.close_all(CLOSE_RESET, _truncate(f"Durable Object reset: {error}"))

    def emit_closed(self, record: _Socket, code: int, reason: str, was_clean: bool,
                    initiator: str) -> None:
        bus = self.host.services.bus
        if bus.active:
            bus.emit(WebSocketClosed, self.host.label, self.host.object_id, record.id, code,
                     reason, was_clean, initiator)


# -- the delivery of an event to the object (called by _host.Delivery.invoke) -------------------


def call_handler(obj: Any, method: str, args: tuple[Any, ...]) -> Any:
    """Call ``obj.<method>(ws, ...)`` for a WebSocket event; a missing handler is ignored."""
    handler = getattr(obj, method, None)
    if handler is None or not callable(handler):
        return None
    driver = current_driver.get()
    assert driver is not None  # (called by the delivery's own code: Delivery.invoke)
    record: _Socket = args[0]
    return handler(record.wrapper_for(driver.instance), *args[1:])


# -- ctx methods (DurableObjectState delegates here) --------------------------------------------


def _registry(instance: Instance, create: bool = True) -> HostSockets | None:
    host = instance.host
    if host.websockets is None and create:
        host.websockets = HostSockets(host)
    return host.websockets


def accept_web_socket(instance: Instance, ws: object, tags: object = None) -> None:
    instance.check_usable()
    if isinstance(ws, ClientWebSocket):
        raise TypeError(
            "acceptWebSocket() takes the server end of a WebSocketPair; this is the client end. "
            "Write: client, server = WebSocketPair(); self.ctx.acceptWebSocket(server); "
            "return Response(None, status=101, web_socket=client)"
        )
    if not isinstance(ws, WebSocket):
        raise TypeError(
            "Failed to execute 'acceptWebSocket' on 'DurableObjectState': parameter 1 is not of "
            f"type 'WebSocket' (got {type(ws).__name__}; make one with WebSocketPair())"
        )
    if ws._record is not None or ws._peer is None:
        raise RuntimeError(
            "Cannot call `acceptWebSocket()` if the WebSocket was already accepted via `accept()`"
        )
    if tags is None:
        tags = ()
    if isinstance(tags, (str, bytes)) or not isinstance(tags, (list, tuple)):
        raise TypeError(f"acceptWebSocket() tags must be a list of str, got {type(tags).__name__}")
    distinct: list[str] = []
    for tag in tags:
        if not isinstance(tag, str):
            raise TypeError(f"a WebSocket tag must be a str, got {type(tag).__name__}: {tag!r}")
        if len(distinct) >= MAX_TAGS_PER_CONNECTION:
            raise ValueError(
                f"a Hibernatable WebSocket cannot have more than {MAX_TAGS_PER_CONNECTION} tags"
            )
        if len(tag) > MAX_TAG_LENGTH:
            raise ValueError(
                f'"{tag}" is longer than the max tag length ({MAX_TAG_LENGTH} characters).'
            )
        if tag not in distinct:
            distinct.append(tag)
    _registry(instance).accept(instance, ws, tuple(distinct))  # type: ignore[union-attr]


def get_web_sockets(instance: Instance, tag: str | None = None) -> list[WebSocket]:
    registry = instance.host.websockets
    if registry is None:
        return []
    if tag is not None and not isinstance(tag, str):
        raise TypeError(f"getWebSockets() takes a tag (str) or nothing, got {type(tag).__name__}")
    # Newest first, as workerd lists them (issue #20); a socket the client closed stays
    # listed until its webSocketClose handler has finished.
    records = list(registry.sockets.values())
    if registry.closing:
        records.extend(registry.closing.values())
        records.sort(key=lambda r: r.id)
    return [r.wrapper_for(instance) for r in reversed(records)
            if tag is None or tag in r.tags]


def get_tags(ws: object) -> list[str]:
    if not isinstance(ws, WebSocket) or ws._record is None:
        raise TypeError(
            "getTags() takes a WebSocket accepted with ctx.acceptWebSocket() "
            "(a hibernatable WebSocket)"
        )
    return list(ws._record.tags)


def set_auto_response(instance: Instance, pair: object = None) -> None:
    if pair is None:
        registry = instance.host.websockets
        if registry is not None:
            registry.auto_response = None
        return
    if not isinstance(pair, WebSocketRequestResponsePair):
        raise TypeError(
            "setWebSocketAutoResponse() takes a WebSocketRequestResponsePair(request, response) "
            f"or nothing, got {type(pair).__name__}"
        )
    for name, text in (("Request", pair.request), ("Response", pair.response)):
        size = len(text.encode())
        if size > MAX_AUTO_RESPONSE_SIZE:
            raise ValueError(
                f"{name} cannot be larger than {MAX_AUTO_RESPONSE_SIZE} bytes. "
                f"A {name.lower()} of size {size} was provided."
            )
    _registry(instance).auto_response = WebSocketRequestResponsePair(  # type: ignore[union-attr]
        pair.request, pair.response)


def get_auto_response(instance: Instance) -> WebSocketRequestResponsePair | None:
    registry = instance.host.websockets
    pair = None if registry is None else registry.auto_response
    return None if pair is None else WebSocketRequestResponsePair(pair.request, pair.response)


def get_auto_response_timestamp(ws: object) -> _dt.datetime | None:
    if not isinstance(ws, WebSocket):
        raise TypeError(
            f"getWebSocketAutoResponseTimestamp() takes a WebSocket, got {type(ws).__name__}"
        )
    return None if ws._record is None else ws._record.auto_response_at


def set_event_timeout(instance: Instance, timeout_ms: object = None) -> None:
    if timeout_ms is not None and (isinstance(timeout_ms, bool)
                                   or not isinstance(timeout_ms, int) or timeout_ms < 0):
        raise TypeError(
            f"setHibernatableWebSocketEventTimeout() takes milliseconds (an int >= 0) or "
            f"nothing, got {timeout_ms!r}"
        )
    if not timeout_ms:
        registry = instance.host.websockets
        if registry is not None:
            registry.event_timeout = None
        return
    if timeout_ms > MAX_EVENT_TIMEOUT_MS:
        raise ValueError(f"Event timeout should not exceed {MAX_EVENT_TIMEOUT_MS} ms.")
    _registry(instance).event_timeout = timeout_ms  # type: ignore[union-attr]


def get_event_timeout(instance: Instance) -> int | None:
    registry = instance.host.websockets
    return None if registry is None else registry.event_timeout
