"""Exercise 08 · a chat room that hibernates: a solution (for instructors).

It passes every scenario of ``check_chat_room`` (tests/test_exercises.py); other
correct answers exist. scripts/build_lessons.py puts it into
course/solutions/08_websockets_hibernation_solutions.ipynb.
"""

from urllib.parse import parse_qs, urlparse

from durable_lab import DurableObject, Response, WebSocketPair
from durable_lab.exercises import check_chat_room


class ChatRoom(DurableObject):
    async def fetch(self, request):
        name = parse_qs(urlparse(request.url).query).get("name", ["anon"])[0]
        client, server = WebSocketPair()
        self.ctx.acceptWebSocket(server)
        server.serializeAttachment({"name": name})       # survives hibernation with the socket
        return Response(None, status=101, web_socket=client)

    async def webSocketMessage(self, ws, message):
        line = f"{ws.deserializeAttachment()['name']}: {message}"
        count = (await self.ctx.storage.get("count")) or 0
        self.ctx.storage.put("count", count + 1)
        self.ctx.storage.put(f"msg:{count:06}", line)
        for other in self.ctx.getWebSockets():          # the runtime keeps the sockets
            other.send(line)                             # held until the line is committed

    async def history(self):
        rows = await self.ctx.storage.list(prefix="msg:", reverse=True, limit=50)
        return list(reversed(list(rows.values())))


if __name__ == "__main__":
    import asyncio

    print(asyncio.run(check_chat_room(ChatRoom)))
