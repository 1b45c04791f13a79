"""Exercise 08 · a chat room that hibernates: the starter that lesson 08 ships.

Deliberately wrong or incomplete: tests/test_exercises.py proves that
``check_chat_room`` fails it, with the hint the lesson promises.
scripts/build_lessons.py puts the code below the imports into the lesson.
"""

from urllib.parse import parse_qs, urlparse

from durable_lab import DurableObject, Response, WebSocketPair
from durable_lab.exercises import check_chat_room


class ChatRoom(DurableObject):
    def __init__(self, ctx, env):
        super().__init__(ctx, env)
        self.sockets = []          # <- who is in the room, kept in memory
        self.names = {}

    async def fetch(self, request):
        name = parse_qs(urlparse(request.url).query).get("name", ["anon"])[0]
        client, server = WebSocketPair()
        self.ctx.acceptWebSocket(server)
        self.sockets.append(server)
        self.names[server] = name
        return Response(None, status=101, web_socket=client)

    async def webSocketMessage(self, ws, message):
        line = f"{self.names.get(ws, '?')}: {message}"
        for other in self.sockets:
            other.send(line)

    async def history(self):
        return []


if __name__ == "__main__":
    import asyncio

    print(asyncio.run(check_chat_room(ChatRoom)))
