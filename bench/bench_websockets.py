"""WebSocket throughput through one hibernating chat room (python bench/bench_websockets.py).

100 clients connect to one room (Hibernation API: ``ctx.acceptWebSocket``). Before each repeat
the room is hibernated (``lab.hibernate``), so the first message of the repeat wakes it (the
constructor runs again). Then every client sends N messages, all at once, and the clock stops
when every client has received everything it should. Three rooms:

  echo           webSocketMessage sends the message back to its sender only;
  broadcast      webSocketMessage sends it to every socket (getWebSockets()): 100 deliveries
                 to clients per message received;
  echo + put     echo, after a storage.put of the message: each reply is output-gated behind
                 the commit of that put (writes of one turn coalesce; memory storage).

Reported, as the median of the repeats: messages received by the room per second (client ->
object deliveries, each one a delivery through the input gate) and, for broadcast, messages
delivered to clients per second. Memory storage, no event subscriber.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from durable_lab import DurableObject, Lab, Response, WebSocketPair

CLIENTS = 100


class Room(DurableObject):
    mode = "echo"
    constructed = 0

    def __init__(self, ctx, env):
        super().__init__(ctx, env)
        type(self).constructed += 1

    async def fetch(self, request):
        client, server = WebSocketPair()
        self.ctx.acceptWebSocket(server)
        return Response(None, status=101, web_socket=client)

    async def webSocketMessage(self, ws, message):
        mode = type(self).mode
        if mode == "broadcast":
            for other in self.ctx.getWebSockets():
                other.send(message)
        elif mode == "echo + put":
            self.ctx.storage.put("last", message)
            ws.send(message)
        else:
            ws.send(message)


async def run(mode: str, per_client: int, repeats: int) -> list[float]:
    Room.mode = mode
    Room.constructed = 0
    lab = Lab(storage="memory", max_queue=10_000_000, hibernate_after=None)
    try:
        stub = lab.bind("ROOM", Room).getByName("bench")
        clients = [await lab.connect(stub) for _ in range(CLIENTS)]
        expected = per_client * (CLIENTS if mode == "broadcast" else 1)
        times = []
        for _ in range(repeats):
            for c in clients:
                c.messages.clear()
                c._inbox.clear()
            assert await lab.hibernate(stub)
            start = time.perf_counter()
            for i in range(per_client):
                for c in clients:
                    c.send(f"m{i}")
            await lab.wait_idle()
            # Yield until every client has its messages: awaiting each client's receive() would
            # time those awaits too.
            while any(len(c.messages) < expected for c in clients):  # noqa: ASYNC110
                await asyncio.sleep(0)
            times.append(time.perf_counter() - start)
        assert all(c.messages[-1] == f"m{per_client - 1}" for c in clients)
        assert Room.constructed == repeats + 1  # woken once per repeat (+ the connects)
        return times
    finally:
        await lab.close()


async def main(quick: bool) -> None:
    per_client = 5 if quick else 20
    repeats = 3 if quick else 5
    print(f"WebSocket bench: {CLIENTS} clients, {per_client} messages each per repeat, "
          f"median of {repeats} repeats, the room hibernated before each repeat")
    for mode in ("echo", "broadcast", "echo + put"):
        times = await run(mode, per_client, repeats)
        t = statistics.median(times)
        incoming = CLIENTS * per_client / t
        line = f"  {mode:<11} {t * 1e3:8.1f} ms/repeat   {incoming:10,.0f} messages in/s"
        if mode == "broadcast":
            line += f"   {incoming * CLIENTS:12,.0f} messages out/s (to clients)"
        print(line)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer, shorter repeats")
    asyncio.run(main(parser.parse_args().quick))
