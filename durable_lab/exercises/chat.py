"""Exercise 08: a chat room on hibernatable WebSockets."""

from __future__ import annotations

from ..lab import Lab
from ._core import CheckResult, Fail, Scenario, run_check, settle, source_of

__all__ = ["HISTORY_MESSAGES", "check_chat_room"]

#: Messages ann sends before the room is evicted, in the history scenario.
HISTORY_MESSAGES = 3

SOCKETS_HINT = (
    "After hibernation the object is constructed again and its fields start empty, but the "
    "runtime kept the sockets: broadcast to `self.ctx.getWebSockets()`, not to a list you "
    "keep in a field.")
NAME_HINT = (
    "Keep per-socket data ON the socket: `server.serializeAttachment({'name': name})` when you "
    "accept it, `ws.deserializeAttachment()['name']` when a message arrives. A dict of names in "
    "a field is empty after hibernation.")


def _lab() -> Lab:
    return Lab(storage="memory", seed=1, clock="manual", hibernate_after=None)


async def _join(lab: Lab, stub: object, name: str):
    ws = await lab.connect(stub, f"/?name={name}")  # type: ignore[arg-type]
    await settle(lab)
    return ws


async def _say(lab: Lab, ws, text: str) -> None:
    await ws.send(text)
    await settle(lab)


def _chat_lines(ws) -> list[str]:
    return [m for m in ws.messages if isinstance(m, str) and ": " in m]


async def _broadcast(cls: type) -> None:
    lab = _lab()
    async with lab:
        room = lab.bind("ROOM", cls).getByName("lobby")
        ann, bob = await _join(lab, room, "ann"), await _join(lab, room, "bob")
        await _say(lab, ann, "hi bob")
        for who, ws in (("ann", ann), ("bob", bob)):
            if "ann: hi bob" not in _chat_lines(ws):
                raise Fail(f"ann sent 'hi bob'; {who} received {ws.messages}, without "
                           "'ann: hi bob'.",
                           "In webSocketMessage(ws, message), send f'{name}: {message}' to every "
                           "socket of the room, the sender included: "
                           "`for other in self.ctx.getWebSockets(): other.send(line)`.")


async def _hibernation(cls: type) -> None:
    lab = _lab()
    async with lab:
        room = lab.bind("ROOM", cls).getByName("lobby")
        ann, bob = await _join(lab, room, "ann"), await _join(lab, room, "bob")
        await lab.hibernate(room)
        await _say(lab, bob, "still here?")
        got = _chat_lines(ann)
        if "bob: still here?" not in got:
            source = source_of(cls)
            wrong_name = [m for m in got if m.endswith(": still here?")]
            if wrong_name:
                raise Fail(f"after the room hibernated, bob said 'still here?' and ann "
                           f"received {wrong_name[0]!r}: the sender's name was lost.", NAME_HINT)
            raise Fail("the room hibernated (its instance was dropped, the sockets stayed "
                       "open); then bob said 'still here?' and ann received nothing "
                       f"({ann.messages}).",
                       SOCKETS_HINT if "getWebSockets" not in source else
                       "Your handler ran after hibernation but did not reach ann: " +
                       SOCKETS_HINT)


async def _history(cls: type) -> None:
    lab = _lab()
    async with lab:
        room = lab.bind("ROOM", cls).getByName("lobby")
        ann = await _join(lab, room, "ann")
        for i in range(HISTORY_MESSAGES):
            await _say(lab, ann, f"message {i}")
        await lab.hibernate(room)
        await _say(lab, ann, "back again")  # a new instance writes the next line
        await lab.evict(room)
        got = await room.history()
        want = [f"ann: message {i}" for i in range(HISTORY_MESSAGES)] + ["ann: back again"]
        if got != want:
            overwritten = (len(got) == HISTORY_MESSAGES and "ann: back again" in got
                           and "ann: message 0" not in got)
            raise Fail(f"ann sent {HISTORY_MESSAGES} messages, the room hibernated, she sent "
                       f"'back again', the room was evicted, and history() then returned "
                       f"{got!r} instead of {want!r}.",
                       "Your line numbers restarted after hibernation: a counter kept in a "
                       "field (self.count) starts over in every new instance, so 'back again' "
                       "overwrote the first line. Keep the count in storage too." if overwritten
                       else "Store each line in storage as it is sent (e.g. one key per "
                       "message, msg:000001, numbered by a count kept in storage), and have "
                       "history() return the stored lines in order.")


async def check_chat_room(cls: type) -> CheckResult:
    """Exercise 08: a chat room: ``fetch`` accepts ``/?name=ann``, ``webSocketMessage``
    broadcasts ``"ann: text"`` to everyone, ``history()`` returns the stored lines."""
    return await run_check(
        "08", "a chat room that hibernates", cls,
        [Scenario("a message reaches everyone in the room", _broadcast),
         Scenario("after hibernation, messages still reach everyone, with names", _hibernation),
         Scenario("the history survives an eviction", _history)],
        methods=("fetch", "webSocketMessage", "history"),
        praise="Sockets from ctx.getWebSockets(), names in attachments, lines in storage: your "
               "room can hibernate between every message and nobody notices.")
