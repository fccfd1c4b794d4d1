"""What the plain-ASGI middlewares share: seeing the status a response went out with.

NOTE: the middlewares are plain ASGI, not `@app.middleware("http")`: Starlette's
BaseHTTPMiddleware hides a client's disconnect from `request.is_disconnected()`, so a
non-streaming generation ran on after its client had gone.
"""

from starlette.types import Message, Send


class ResponseWatch:
    """Wraps a `send` and remembers the status of the response it started, if any."""

    def __init__(self, send: Send) -> None:
        self._send = send
        self.status: int | None = None  # None: no response has started yet

    async def send(self, message: Message) -> None:
        if message["type"] == "http.response.start":
            self.status = message["status"]
        await self._send(message)
