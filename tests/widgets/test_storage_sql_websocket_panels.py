"""Storage values, SQL tables and WebSockets, as the lessons show them (headless)."""

from __future__ import annotations

import asyncio

import widgets
from durable_lab import DurableObject, Lab, Response, WebSocketPair
from widgets.storage_view import preview


class Notes(DurableObject):
    def __init__(self, ctx, env):
        super().__init__(ctx, env)
        ctx.storage.sql.exec("CREATE TABLE IF NOT EXISTS notes (id INTEGER PRIMARY KEY, "
                             "text TEXT)")

    async def add(self, text):
        self.ctx.storage.sql.exec("INSERT INTO notes (text) VALUES (?)", text)
        return self.ctx.storage.sql.exec("SELECT COUNT(*) AS n FROM notes").one()["n"]


class Room(DurableObject):
    async def fetch(self, request):
        client, server = WebSocketPair()
        self.ctx.acceptWebSocket(server, ["lobby"])
        return Response(None, status=101, web_socket=client)

    async def webSocketMessage(self, ws, message):
        self.ctx.storage.put("last", message)
        for peer in self.ctx.getWebSockets():
            peer.send(message)


async def _settle(panel, rounds: int = 6) -> None:
    for _ in range(rounds):
        panel._feed.flush(force=True)
        await asyncio.sleep(0.02)


async def test_the_storage_inspector_shows_values_and_keys_stored_before_it_opened(lab):
    stub = lab.env.COUNTER.getByName("a")
    await stub.write_many(3)  # item:0..2 stored before the panel opens
    inspector = widgets.storage(lab, stub)
    inspector.refresh_every = 0.0
    await stub.increment()
    await _settle(inspector)
    html = inspector.html.value
    assert "item:0" in html and 'data-state="stored"' in html
    assert '<td class="dl-value"' in html and ">1</td>" in html  # n = 1, its value shown
    assert inspector.values == {"item:0": 0, "item:1": 1, "item:2": 2, "n": 1}
    inspector.close()


def test_long_values_are_shortened():
    assert preview("x" * 500).endswith("…") and len(preview("x" * 500)) == 48
    assert preview({"a": 1}) == "{'a': 1}"


async def test_peek_reads_pending_writes_without_delivering_anything(lab):
    stub = lab.env.COUNTER.getByName("a")
    await stub.increment()
    rec = lab.record()
    assert await lab.peek(stub) == {"n": 1}
    assert await lab.peek("COUNTER:a") == {"n": 1}
    assert await lab.peek("COUNTER:never") == {}
    rec.close()
    assert rec.events == []  # nothing happened to the object


async def test_sql_panel_shows_tables_and_rows_of_the_object():
    lab = Lab(storage="memory", seed=1)
    notes = lab.bind("NOTES", Notes, sql=True).getByName("me")
    panel = widgets.sql_tables(lab, notes)
    panel.refresh_every = 0.0
    for text in ("milk", "eggs", "bread"):
        await notes.add(text)
    await _settle(panel)
    html = panel.html.value
    assert 'data-table="notes"' in html and 'data-rows="3"' in html
    assert "&#x27;eggs&#x27;" in html or "'eggs'" in html
    assert [t.name for t in lab.tables(notes)] == ["notes"]
    panel.close()
    await lab.close()


async def test_websockets_panel_shows_sockets_hibernation_and_held_messages():
    lab = Lab(storage="memory", seed=1, commit_latency=0.05)
    room = lab.bind("ROOMS", Room).getByName("lobby")
    panel = widgets.websockets(lab, room)
    ann = await lab.connect(room)
    await lab.connect(room)
    send = asyncio.ensure_future(ann.send("hi"))
    held_seen = False
    for _ in range(40):
        await asyncio.sleep(0.005)
        panel._feed.flush()
        if any(s.held for s in panel.reducer.sockets.values()):
            held_seen = True
            assert 'data-held="1"' in panel.html.value
            break
    await send
    await lab.wait_idle()
    assert held_seen, "the broadcast should wait behind the commit of 'last'"
    await lab.hibernate(room)
    panel._feed.flush()
    html = panel.html.value
    assert 'data-sockets="2"' in html and "lobby" in html
    assert 'data-instance="hibernated"' in html
    await lab.close()
    panel._feed.flush()
    assert 'data-state="closed"' in panel.html.value
    panel.close()


async def test_websockets_panel_tells_a_hibernation_after_a_message_woke_the_object():
    # Hibernated and woken again within one cell: the panel's header still says it hibernated.
    lab = Lab(storage="memory", seed=1, clock="manual", hibernate_after=10)
    room = lab.bind("ROOMS", Room).getByName("lobby")
    panel = widgets.websockets(lab, room)
    ann = await lab.connect(room)
    lab.clock.advance(11)
    await lab.wait_idle()
    await ann.send("hi")
    await lab.wait_idle()
    panel._feed.flush()
    html = panel.html.value
    assert 'data-instance="awake"' in html
    assert 'data-hibernations="1"' in html and "hibernated 1 time(s) · woken 1 time(s)" in html
    assert panel.reducer.hibernations == 1 and panel.reducer.wakeups == 1
    await lab.close()
    panel.close()
