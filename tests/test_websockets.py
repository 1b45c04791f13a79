"""WebSockets with hibernation: upgrade, broadcast, tags, attachments, auto-response, gates,
limits."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any, ClassVar

import pytest

from durable_lab import (
    DurableObject,
    Lab,
    Request,
    Response,
    WebSocketDisconnected,
    WebSocketPair,
    WebSocketRequestResponsePair,
)
from durable_lab.events import (
    CommitDone,
    DeliveryFinished,
    DeliveryQueued,
    InstanceConstructed,
    InstanceEvicted,
    WebSocketAccepted,
    WebSocketAutoResponse,
    WebSocketClosed,
    WebSocketMessageReceived,
    WebSocketMessageReleased,
    WebSocketMessageSent,
)


class ChatRoom(DurableObject):
    constructed = 0
    closes: ClassVar[list[Any]] = []
    errors: ClassVar[list[Any]] = []

    def __init__(self, ctx, env):
        super().__init__(ctx, env)
        type(self).constructed += 1
        self.in_memory = 0
        # Cloudflare's pattern: rebuild in-memory sessions from the sockets kept by the runtime.
        self.sessions = {ws: ws.deserializeAttachment() for ws in ctx.getWebSockets()}

    async def fetch(self, request):
        client, server = WebSocketPair()
        name = request.headers.get("x-name", "anon")
        tags = [t for t in request.headers.get("x-tags", "").split(",") if t]
        self.ctx.acceptWebSocket(server, tags)
        server.serializeAttachment({"name": name})
        self.sessions[server] = {"name": name}
        return Response(None, status=101, web_socket=client)

    async def webSocketMessage(self, ws, message):
        self.in_memory += 1
        if message == "whoami":
            ws.send(repr({
                "name": ws.deserializeAttachment()["name"],
                "tags": self.ctx.getTags(ws),
                "in_memory": self.in_memory,
                "session": self.sessions[ws]["name"],
            }))
            return
        if message == "bye":
            ws.close(4001, "asked to leave")
            return
        count = (await self.ctx.storage.get("count")) or 0
        self.ctx.storage.put("count", count + 1)
        self.ctx.storage.put(f"msg:{count:04}", message)
        sender = ws.deserializeAttachment()["name"]
        for other in self.ctx.getWebSockets():
            other.send(f"{sender}: {message}")

    async def webSocketClose(self, ws, code, reason, wasClean):
        type(self).closes.append((ws.deserializeAttachment()["name"], code, reason, wasClean,
                                  ws.readyState, len(self.ctx.getWebSockets())))
        ws.close(code, "closing too")  # Cloudflare's usual pattern: ignored, already answered

    async def webSocketError(self, ws, error):
        type(self).errors.append((ws.deserializeAttachment()["name"], type(error).__name__,
                                  str(error)))

    async def history(self):
        return list((await self.ctx.storage.list(prefix="msg:")).values())

    async def names(self, tag=None):
        return [ws.deserializeAttachment()["name"] for ws in self.ctx.getWebSockets(tag)]

    async def stamps(self):
        return [self.ctx.getWebSocketAutoResponseTimestamp(ws) for ws in self.ctx.getWebSockets()]

    async def set_auto(self, request, response):
        self.ctx.setWebSocketAutoResponse(WebSocketRequestResponsePair(request, response))
        pair = self.ctx.getWebSocketAutoResponse()
        return [pair.request, pair.response]

    async def clear_auto(self):
        self.ctx.setWebSocketAutoResponse()
        return self.ctx.getWebSocketAutoResponse()

    async def boom(self):
        self.ctx.abort("boom")


@pytest.fixture(autouse=True)
def fresh():
    ChatRoom.constructed = 0
    ChatRoom.closes = []
    ChatRoom.errors = []


def who(name, tags, in_memory):
    """What ChatRoom answers to "whoami"."""
    return repr({"name": name, "tags": tags, "in_memory": in_memory, "session": name})


async def join(lab, stub, name, tags=()):
    return await lab.connect(stub, "/chat", headers={"x-name": name, "x-tags": ",".join(tags)})


async def test_chat_room_every_client_receives_every_message_in_order(lab):
    stub = lab.bind("ROOM", ChatRoom).getByName("lobby")
    clients = {name: await join(lab, stub, name) for name in ("ann", "bob", "cy")}
    sent = []
    for i in range(5):
        for name, ws in clients.items():
            await ws.send(f"m{i}")
            sent.append(f"{name}: m{i}")
    for ws in clients.values():
        got = [await ws.receive(timeout=5) for _ in sent]
        assert got == sent
        assert ws.messages == sent and ws.pending == 0
    assert await stub.history() == [s.split(": ")[1] for s in sent]
    assert ChatRoom.constructed == 1


async def test_each_incoming_message_is_a_gated_delivery(memory_lab):
    stub = memory_lab.bind("ROOM", ChatRoom).getByName("deliveries")
    ws = await join(memory_lab, stub, "ann")
    rec = memory_lab.record()
    await ws.send("hello")
    assert await ws.receive(timeout=5) == "ann: hello"
    (received,) = rec.of(WebSocketMessageReceived)
    (queued,) = rec.of(DeliveryQueued)
    assert (queued.kind_of_delivery, queued.method) == ("websocket", "webSocketMessage")
    assert received.delivery == queued.delivery and received.size == 5 and not received.binary
    (finished,) = rec.of(DeliveryFinished)
    assert finished.delivery == queued.delivery and finished.ok
    (sent,) = rec.of(WebSocketMessageSent)
    assert sent.delivery == queued.delivery and sent.socket == received.socket


async def test_tags_and_get_websockets_by_tag(memory_lab):
    stub = memory_lab.bind("ROOM", ChatRoom).getByName("tags")
    rec = memory_lab.record()
    await join(memory_lab, stub, "ann", ["red", "blue", "red"])  # duplicate dropped
    await join(memory_lab, stub, "bob", ["blue"])
    cy = await join(memory_lab, stub, "cy")
    assert await stub.names() == ["cy", "bob", "ann"]  # newest first, as workerd lists them
    assert await stub.names("blue") == ["bob", "ann"]
    assert await stub.names("red") == ["ann"]
    assert await stub.names("green") == []
    assert [e.tags for e in rec.of(WebSocketAccepted)] == [("red", "blue"), ("blue",), ()]
    await cy.send("whoami")
    assert await cy.receive(timeout=5) == who("cy", [], 1)


async def test_attachments_and_tags_survive_hibernation(memory_lab):
    stub = memory_lab.bind("ROOM", ChatRoom).getByName("sleepy")
    ann = await join(memory_lab, stub, "ann", ["vip"])
    await ann.send("whoami")
    await ann.send("whoami")
    assert await ann.receive(timeout=5) == who("ann", ["vip"], 1)
    assert await ann.receive(timeout=5) == who("ann", ["vip"], 2)
    rec = memory_lab.record()
    assert await memory_lab.hibernate(stub) is True
    assert [e.reason for e in rec.of(InstanceEvicted)] == ["hibernation"]
    assert ChatRoom.constructed == 1
    assert not ann.closed  # the socket stays connected while the object sleeps
    await ann.send("whoami")  # wakes it: constructor again, in-memory field reset
    assert await ann.receive(timeout=5) == who("ann", ["vip"], 1)
    assert ChatRoom.constructed == 2
    assert [e.incarnation for e in rec.of(InstanceConstructed)] == [2]
    assert await memory_lab.hibernate(stub) is True
    assert await memory_lab.hibernate(stub) is False  # already hibernated
    assert await stub.names("vip") == ["ann"]  # an RPC wakes it too; sockets are there


async def test_idle_instances_with_sockets_hibernate_after_the_timeout():
    lab = Lab(storage="memory", clock="manual", hibernate_after=10)
    try:
        stub = lab.bind("ROOM", ChatRoom).getByName("timer")
        ws = await join(lab, stub, "ann")
        rec = lab.record()
        lab.clock.advance(9)
        await lab.wait_idle()
        assert rec.of(InstanceEvicted) == []
        lab.clock.advance(1.5)
        await lab.wait_idle()
        assert [e.reason for e in rec.of(InstanceEvicted)] == ["hibernation"]
        await ws.send("hi")
        assert await ws.receive(timeout=5) == "ann: hi"
        assert ChatRoom.constructed == 2
    finally:
        await lab.close()


async def test_objects_without_sockets_do_not_hibernate():
    lab = Lab(storage="memory", clock="manual", hibernate_after=10)
    try:
        stub = lab.bind("ROOM", ChatRoom).getByName("plain")
        await stub.history()
        lab.clock.advance(60)
        await lab.wait_idle()
        await stub.history()
        assert ChatRoom.constructed == 1
    finally:
        await lab.close()


async def test_auto_response_does_not_wake_a_hibernated_object(memory_lab):
    stub = memory_lab.bind("ROOM", ChatRoom).getByName("auto")
    ann = await join(memory_lab, stub, "ann")
    bob = await join(memory_lab, stub, "bob")
    assert await stub.set_auto("ping", "pong") == ["ping", "pong"]
    assert await stub.stamps() == [None, None]
    await memory_lab.hibernate(stub)
    rec = memory_lab.record()
    before = memory_lab.clock.now()
    await ann.send("ping")
    assert await ann.receive(timeout=5) == "pong"
    assert ChatRoom.constructed == 1  # still hibernated: no object code ran
    assert rec.of(DeliveryQueued) == [] and len(rec.of(WebSocketAutoResponse)) == 1
    assert bob.messages == []
    await ann.send("PING")  # not an exact match: an ordinary message, which wakes it
    assert await ann.receive(timeout=5) == "ann: PING"
    assert ChatRoom.constructed == 2
    bob_stamp, ann_stamp = await stub.stamps()  # newest first
    assert bob_stamp is None
    assert before - 1 <= ann_stamp.timestamp() <= memory_lab.clock.now()
    assert await stub.clear_auto() is None
    await ann.send("ping")
    assert await ann.receive(timeout=5) == "ann: ping"


async def test_a_send_waits_for_the_writes_before_it():
    lab = Lab(storage="memory", commit_latency=0.02)
    try:
        stub = lab.bind("ROOM", ChatRoom).getByName("gated")
        ws = await join(lab, stub, "ann")
        rec = lab.record()
        start = time.monotonic()
        await ws.send("hello")
        await asyncio.sleep(0.005)
        assert ws.messages == []  # the put is not committed yet: the message is held
        assert await ws.receive(timeout=5) == "ann: hello"
        assert time.monotonic() - start >= 0.02
        (sent,) = rec.of(WebSocketMessageSent)
        assert sent.held
        kinds = [e.kind for e in rec.of(CommitDone, WebSocketMessageReleased)]
        assert kinds == ["CommitDone", "WebSocketMessageReleased"]
        assert rec.of(WebSocketMessageReleased)[0].ok
    finally:
        await lab.close()


async def test_a_failed_commit_drops_the_message_and_closes_the_socket(memory_lab):
    stub = memory_lab.bind("ROOM", ChatRoom).getByName("fails")
    ann = await join(memory_lab, stub, "ann")
    bob = await join(memory_lab, stub, "bob")
    rec = memory_lab.record()
    memory_lab.fail_next_commit(stub)
    await ann.send("lost")
    for ws in (ann, bob):
        with pytest.raises(WebSocketDisconnected) as caught:
            await ws.receive(timeout=5)
        assert caught.value.code == 1011
        assert ws.messages == []
    assert [e.ok for e in rec.of(WebSocketMessageReleased)] == [False, False]
    assert {(e.code, e.initiator) for e in rec.of(WebSocketClosed)} == {(1011, "runtime")}
    with pytest.raises(WebSocketDisconnected):
        await ann.send("again")
    fresh_stub = memory_lab.env.ROOM.getByName("fails")
    assert await fresh_stub.history() == []
    assert await fresh_stub.names() == []


async def test_abort_and_code_update_close_sockets(memory_lab):
    ns = memory_lab.bind("ROOM", ChatRoom)
    aborted = await join(memory_lab, ns.getByName("a"), "ann")
    with pytest.raises(Exception, match="boom"):
        await ns.getByName("a").boom()
    assert aborted.closed and aborted.close_code == 1011

    live = await join(memory_lab, ns.getByName("b"), "bob")
    sleeping = await join(memory_lab, ns.getByName("c"), "cy")
    await memory_lab.hibernate(ns.getByName("c"))
    memory_lab.bind("ROOM", ChatRoom)  # a code update
    assert (live.close_code, sleeping.close_code) == (1012, 1012)
    with pytest.raises(WebSocketDisconnected) as caught:
        await sleeping.receive()
    assert caught.value.code == 1012


async def test_lab_close_closes_every_socket():
    lab = Lab(storage="memory")
    stub = lab.bind("ROOM", ChatRoom).getByName("x")
    live = await join(lab, stub, "ann")
    other = lab.env.ROOM.getByName("y")
    sleeping = await join(lab, other, "bob")
    await lab.hibernate(other)
    await lab.close()
    assert (live.close_code, sleeping.close_code) == (1001, 1001)


async def test_close_from_the_client_calls_webSocketClose(memory_lab):
    stub = memory_lab.bind("ROOM", ChatRoom).getByName("closing")
    ann = await join(memory_lab, stub, "ann")
    bob = await join(memory_lab, stub, "bob")
    await ann.close(4000, "gone")
    await ann.close()  # a second close is ignored
    await memory_lab.wait_idle()
    # workerd: CLOSING inside webSocketClose, and still listed until the handler is done
    assert ChatRoom.closes == [("ann", 4000, "gone", True, 2, 2)]
    assert await stub.names() == ["bob"]
    with pytest.raises(TypeError, match=r"send\(\) after close"):
        await ann.send("late")
    with pytest.raises(WebSocketDisconnected):
        await ann.receive()
    await bob.send("still here")
    assert await bob.receive(timeout=5) == "bob: still here"


async def test_close_from_the_object_reaches_the_client_in_order(memory_lab):
    stub = memory_lab.bind("ROOM", ChatRoom).getByName("kick")
    ann = await join(memory_lab, stub, "ann")
    await ann.send("first")
    await ann.send("bye")
    assert [m async for m in ann] == ["ann: first"]  # iteration stops at the close
    assert (ann.close_code, ann.close_reason) == (4001, "asked to leave")
    await memory_lab.wait_idle()
    # the client echoed the close: the object hears it, as from a browser
    assert ChatRoom.closes == [("ann", 4001, "asked to leave", True, 3, 1)]


async def test_disconnect_and_error_reach_the_object(memory_lab):
    stub = memory_lab.bind("ROOM", ChatRoom).getByName("errors")
    ann = await join(memory_lab, stub, "ann")
    bob = await join(memory_lab, stub, "bob")
    ann.disconnect()
    await memory_lab.wait_idle()
    bob.fail("bad frame")
    await memory_lab.wait_idle()
    assert ChatRoom.closes == [
        ("ann", 1006, "WebSocket disconnected without sending Close frame.", False, 3, 2)]
    assert ChatRoom.errors == [("bob", "ConnectionError", "bad frame")]
    assert await stub.names() == []


class Echo(DurableObject):
    """Echoes binary and text, has no close handler; raises on "raise"."""

    async def fetch(self, request):
        client, server = WebSocketPair.new().object_values()
        self.ctx.acceptWebSocket(server)
        return Response(None, status=101, web_socket=client)

    def webSocketMessage(self, ws, message):  # a plain def handler works too
        if message == "raise":
            raise ValueError("handler failed")
        ws.send(message)


async def test_binary_messages_sync_handlers_and_handler_errors(memory_lab, caplog):
    stub = memory_lab.bind("ECHO", Echo).getByName("e")
    ws = await memory_lab.connect(stub)
    await ws.send(b"\x00\x01")
    await ws.send(bytearray(b"\x02"))
    assert await ws.receive(timeout=5) == b"\x00\x01"
    assert await ws.receive(timeout=5) == b"\x02"
    rec = memory_lab.record()
    with caplog.at_level(logging.WARNING, logger="durable_lab"):
        await ws.send("raise")
        await memory_lab.wait_idle()
    (finished,) = rec.of(DeliveryFinished)
    assert not finished.ok and "handler failed" in finished.error
    assert "handler failed" in caplog.text
    await ws.send("still open")  # the socket survives a failing handler
    assert await ws.receive(timeout=5) == "still open"
    await ws.close()  # no webSocketClose handler: ignored
    await memory_lab.wait_idle()
    with pytest.raises(TimeoutError):
        await (await memory_lab.connect(stub)).receive(timeout=0.01)


class Silent(DurableObject):
    """Accepts sockets but defines no handler at all."""

    async def fetch(self, request):
        pair = WebSocketPair()
        self.ctx.acceptWebSocket(pair[1])
        return Response(None, status=101, web_socket=pair[0])

    async def count(self):
        return len(self.ctx.getWebSockets())


async def test_a_class_without_handlers_ignores_messages(memory_lab):
    stub = memory_lab.bind("SILENT", Silent).getByName("s")
    ws = await memory_lab.connect(stub)
    rec = memory_lab.record()
    await ws.send("anyone?")
    await memory_lab.wait_idle()
    assert [e.ok for e in rec.of(DeliveryFinished)] == [True]
    assert ws.messages == [] and not ws.closed
    assert await stub.count() == 1
    await ws.close()
    await memory_lab.wait_idle()
    assert await stub.count() == 0


class Limits(DurableObject):
    async def check(self):
        outcomes = {}

        def attempt(name, fn):
            try:
                fn()
                outcomes[name] = "ok"
            except Exception as exc:
                outcomes[name] = f"{type(exc).__name__}: {exc}"

        client, server = WebSocketPair()
        attempt("11 tags", lambda: self.ctx.acceptWebSocket(server, [f"t{i}" for i in range(11)]))
        attempt("long tag", lambda: self.ctx.acceptWebSocket(server, ["x" * 257]))
        attempt("str tags", lambda: self.ctx.acceptWebSocket(server, "abc"))
        attempt("client end", lambda: self.ctx.acceptWebSocket(client))
        attempt("not a socket", lambda: self.ctx.acceptWebSocket("ws"))
        attempt("send first", lambda: server.send("x"))
        attempt("10 tags", lambda: self.ctx.acceptWebSocket(server, [f"t{i}" for i in range(10)]))
        attempt("twice", lambda: self.ctx.acceptWebSocket(server))
        attempt("attachment 16384", lambda: server.serializeAttachment(b"x" * 16000))
        attempt("attachment too big", lambda: server.serializeAttachment(b"x" * 16384))
        attempt("attachment type", lambda: server.serializeAttachment(object()))
        attempt("auto request", lambda: self.ctx.setWebSocketAutoResponse(
            WebSocketRequestResponsePair("p" * 2049, "q")))
        attempt("auto response", lambda: self.ctx.setWebSocketAutoResponse(
            WebSocketRequestResponsePair("p", "q" * 2049)))
        attempt("auto 2048", lambda: self.ctx.setWebSocketAutoResponse(
            WebSocketRequestResponsePair("p" * 2048, "q" * 2048)))
        attempt("auto type", lambda: self.ctx.setWebSocketAutoResponse(("p", "q")))
        attempt("timeout", lambda: self.ctx.setHibernatableWebSocketEventTimeout(604_800_001))
        attempt("timeout ok", lambda: self.ctx.setHibernatableWebSocketEventTimeout(5000))
        outcomes["timeout value"] = self.ctx.getHibernatableWebSocketEventTimeout()
        attempt("close code", lambda: server.close(1005))
        attempt("getTags", lambda: self.ctx.getTags(WebSocketPair().server))
        attempt("close", lambda: server.close(1000, "done"))
        attempt("close again", lambda: server.close())
        attempt("send after close", lambda: server.send("x"))
        return outcomes


async def test_limits_and_misuse_give_clear_errors(memory_lab):
    outcomes = await memory_lab.bind("LIMITS", Limits).getByName("l").check()
    assert outcomes == {
        "11 tags": "ValueError: a Hibernatable WebSocket cannot have more than 10 tags",
        "long tag": f'ValueError: "{"x" * 257}" is longer than the max tag length '
                    "(256 characters).",
        "str tags": "TypeError: acceptWebSocket() tags must be a list of str, got str",
        "client end": outcomes["client end"],
        "not a socket": outcomes["not a socket"],
        "send first": "TypeError: You must call one of accept() or state.acceptWebSocket() on "
                      "this WebSocket before sending messages.",
        "10 tags": "ok",
        "twice": "RuntimeError: Cannot call `acceptWebSocket()` if the WebSocket was already "
                 "accepted via `accept()`",
        "attachment 16384": "ok",
        "attachment too big": outcomes["attachment too big"],
        "attachment type": outcomes["attachment type"],
        "auto request": "ValueError: Request cannot be larger than 2048 bytes. A request of "
                        "size 2049 was provided.",
        "auto response": "ValueError: Response cannot be larger than 2048 bytes. A response of "
                         "size 2049 was provided.",
        "auto 2048": "ok",
        "auto type": outcomes["auto type"],
        "timeout": "ValueError: Event timeout should not exceed 604800000 ms.",
        "timeout ok": "ok",
        "timeout value": 5000,
        "close code": "TypeError: Invalid WebSocket close code: 1005.",
        "getTags": outcomes["getTags"],
        "close": "ok",
        "close again": "ok",
        "send after close": "TypeError: Can't call WebSocket send() after close().",
    }
    assert outcomes["client end"].startswith("TypeError: acceptWebSocket() takes the server end")
    assert outcomes["not a socket"].startswith("TypeError: Failed to execute 'acceptWebSocket'")
    assert outcomes["attachment too big"].startswith(
        "ValueError: A WebSocket 'attachment' cannot be larger than 16384 bytes.")
    assert outcomes["attachment type"].startswith("TypeError: a WebSocket attachment cannot hold")
    assert outcomes["auto type"].startswith("TypeError: setWebSocketAutoResponse() takes")
    assert outcomes["getTags"].startswith("TypeError: getTags() takes a WebSocket accepted")


class NoUpgrade(DurableObject):
    async def fetch(self, request):
        if request.path == "/forgot":
            client, _server = WebSocketPair()
            return Response(None, status=101, web_socket=client)
        return Response("no sockets here", status=426)


async def test_connect_checks_the_upgrade(memory_lab):
    stub = memory_lab.bind("NO", NoUpgrade).getByName("n")
    with pytest.raises(RuntimeError, match="426"):
        await memory_lab.connect(stub)
    with pytest.raises(RuntimeError, match="never accepted"):
        await memory_lab.connect(stub, "/forgot")
    with pytest.raises(ValueError, match="path starting with '/'"):
        await memory_lab.connect(stub, "chat")
    response = await stub.fetch(Request("https://lab/", headers={"Upgrade": "websocket"}))
    assert response.status == 426
