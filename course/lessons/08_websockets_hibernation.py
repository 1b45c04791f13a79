# %% tags=["claim-kit"]
# The source of notebooks/08_websockets_hibernation.ipynb
# (python scripts/build_lessons.py builds it: course/README.md).
# Not in the learner's notebook: this cell, and the cells tagged "claim", which
# tests/test_lesson_claims.py runs in the lesson's kernel, each where it stands.
from claim_kit import claim, settled, text_of

# isort: split

# %% [markdown]
# # 08 · WebSockets and hibernation: a chat room
#
# **Covers:** upgrading a request to a WebSocket (`WebSocketPair`, `ctx.acceptWebSocket`),
# `webSocketMessage`, broadcasting with `ctx.getWebSockets()`, hibernation (the instance goes,
# the sockets stay), `serializeAttachment`, sends held by the output gate, auto-responses.
# **You will be able to:** build a chat room that survives hibernation between any two
# messages.
# **Scenario:** a room with two clients connected through `lab.connect(stub, "/?name=ann")`,
# on a memory lab with a manual clock and `hibernate_after=10`.

# %%
from urllib.parse import parse_qs, urlparse

import widgets  # the live panels: docs/panels.md
from durable_lab import DurableObject, Lab, Response, WebSocketPair, WebSocketRequestResponsePair
from durable_lab.tour import describe


def show(events, *, only=None):
    """Print the events in plain words, one per line (gate bookkeeping left out)."""
    for e in events:
        line = describe(e)
        if line and (only is None or e.object in only):
            print(f"{e.object:<18} {line}")


class Room(DurableObject):
    def __init__(self, ctx, env):
        super().__init__(ctx, env)
        print("  Room constructed")

    async def fetch(self, request):
        name = parse_qs(urlparse(request.url).query).get("name", ["anon"])[0]
        client, server = WebSocketPair()
        self.ctx.acceptWebSocket(server, [name])      # the runtime owns it from now on;
                                                      # its tags: getWebSockets(name) finds it
        server.serializeAttachment({"name": name})     # kept with the socket
        self.ctx.setWebSocketAutoResponse(WebSocketRequestResponsePair("ping", "pong"))
        return Response(None, status=101, web_socket=client)

    async def webSocketMessage(self, ws, message):
        line = f"{ws.deserializeAttachment()['name']}: {message}"
        count = (await self.ctx.storage.get("count")) or 0
        self.ctx.storage.put("count", count + 1)
        for other in self.ctx.getWebSockets():
            other.send(line)


lab = Lab(storage="memory", seed=1, clock="manual", hibernate_after=10)
ROOMS = lab.bind("ROOMS", Room)
room = ROOMS.getByName("lobby")

# %% [markdown]
# ## Two clients
#
# **Predict:** ann sends "hi". Who receives `"ann: hi"`?

# %%
sockets = widgets.websockets(lab, "ROOMS:lobby")   # sockets, awake or hibernated
room_view = widgets.watch(lab, "ROOMS:lobby", timeline=False)
widgets.side_by_side(sockets, room_view)

# %%
ann = await lab.connect(room, "/?name=ann")
bob = await lab.connect(room, "/?name=bob")
await ann.send("hi")
await lab.wait_idle()
print("ann got:", ann.messages)
print("bob got:", bob.messages)

# %% [markdown]
# Both got it, ann included: `getWebSockets()` returns every socket. The WebSockets panel lists
# the two sockets with their names: the tags column shows the tags `acceptWebSocket(server,
# [name])` gave them (`ann`, `bob`), one message in for ann's, one out for each.
#
# ## Hibernation
#
# After `hibernate_after` seconds without events the instance is dropped, but the sockets stay
# open, held by the runtime. **Predict:** 11 s pass in silence. What does the WebSockets panel
# say about the room, and are the sockets still open?

# %% tags=["claim"]
claim(
    "The WebSockets panel lists the two sockets with their names: the tags column shows the tags",
    output=r"ann got: \['ann: hi'\]\s+bob got: \['ann: hi'\]",
    page=(".dl-socket",
          r"\bbob\b"),
)
await settled(lab)
rows = list(sockets.reducer.sockets.values())
assert [r.tags for r in rows] == [("ann",), ("bob",)], rows
assert [(r.received, r.sent) for r in rows] == [(1, 1), (0, 1)], rows
shown = text_of(sockets)
assert "ann open 1 in · 1 out" in shown and "bob open 0 in · 1 out" in shown, shown

# %%
rec = lab.record()
lab.clock.advance(11)
await lab.wait_idle()
rec.close()
print([e.reason for e in rec.events if e.kind == "InstanceEvicted"])

# %% [markdown]
# **HIBERNATED**: no instance in memory, and both sockets still open. **Predict:** bob now sends
# a message. Does the room answer? Is the constructor called again? Does it still know bob's
# name?

# %% tags=["claim"]
claim(
    "**HIBERNATED**: no instance in memory, and both sockets still open",
    output=r"^\['hibernation'\]$",
    page=(".dl-websockets .dl-instance",
          "HIBERNATED"),
)
await settled(lab)
assert sockets.reducer.instance == "hibernated", sockets.reducer
assert [r.state for r in sockets.reducer.sockets.values()] == ["open", "open"], sockets.reducer
assert "HIBERNATED" in text_of(sockets), text_of(sockets)

# %%
await bob.send("anyone there?")
await lab.wait_idle()
print("ann got:", ann.messages[-1])

# %% [markdown]
# A new instance was constructed for bob's message (the panel says AWAKE again, woken once);
# `getWebSockets()` found both sockets and the attachment still held bob's name. Anything
# kept in fields would have been lost.
#
# ## Sends wait for the output gate
#
# **Predict:** the handler writes `count`, then sends. If that write's commit fails, do the
# clients receive the message?

# %% tags=["claim"]
claim(
    "A new instance was constructed for bob's message (the panel says AWAKE again, woken once)",
    output=r"Room constructed\s+ann got: bob: anyone there\?",
)
await settled(lab)
r = sockets.reducer
assert (r.instance, r.wakeups, r.hibernations) == ("awake", 1, 1), r
assert "AWAKE" in text_of(sockets) and "woken 1 time(s)" in text_of(sockets), text_of(sockets)

# %%
lab.faults.fail_next_commit(room)
rec = lab.record()
await ann.send("will this arrive?")
await lab.wait_idle()
rec.close()
print("bob's last message:", bob.messages[-1])
print("ann's socket closed with code", ann.close_code)
print([e.kind for e in rec.events if e.kind.startswith("WebSocket")])

# %% [markdown]
# The message was held behind the commit and dropped when it failed; the reset closed the
# sockets with 1011. Clients reconnect (a new `lab.connect`), exactly as browsers do.
#
# ## Auto-responses: answering pings without waking up
#
# `fetch` above also set `ctx.setWebSocketAutoResponse(WebSocketRequestResponsePair("ping",
# "pong"))`. **Predict:** carol pings a hibernated room. Is the object constructed to answer?

# %% tags=["claim"]
claim(
    "The message was held behind the commit and dropped when it failed; the reset closed the socke"
    "ts with 1011",
    output=r"bob's last message: bob: anyone there\?\s+ann's socket closed with code 1011",
)
await settled(lab)
rows = list(sockets.reducer.sockets.values())
assert [(r.dropped, r.state, r.close.split()[0]) for r in rows] == [
    (1, "closed", "1011"), (1, "closed", "1011")], rows
assert "1 dropped" in text_of(sockets) and "closed 1011" in text_of(sockets), text_of(sockets)

# %%
room2 = ROOMS.getByName("quiet")
carol = await lab.connect(room2, "/?name=carol")
await lab.hibernate(room2)
rec = lab.record()
await carol.send("ping")
await lab.wait_idle()
rec.close()
print("constructed:", sum(e.kind == "InstanceConstructed" for e in rec.events),
      "| carol got:", carol.messages[-1:])

# %% [markdown]
# ## Exercise 08 · a chat room that hibernates
#
# `ChatRoom` keeps its sockets and names in fields. The check connects ann and bob, hibernates
# the room, and talks again; it also asks `history()` for the stored lines after a
# hibernation, one more line and an eviction.
# Make every line reach everyone, with the right name, and keep the history in storage.

# %% exercise="08"
# Filled in from course/starters/ex08.py: its starter, then its check.

# %% [markdown]
# ---
# The lab stays open, so you can keep experimenting and its panels stay live. When you are
# done, `await lab.close()` closes it (every panel then says **LAB CLOSED**); restarting the
# kernel ends it too (each panel then says *Kernel restarted* and how to go on).

# %% [markdown]
# **Next:** [09 · capstone](09_capstone.ipynb).
