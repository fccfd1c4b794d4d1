"""Bodies sent as `curl -d '{...}'` are JSON, whatever content type curl put on them.

Ollama's and vLLM's documented examples post JSON without a content type, which curl
then labels as a form. Those servers read the body as JSON anyway, so this one does too:
every POST except the upload route has its form content type replaced with JSON's.
"""

from starlette.types import ASGIApp, Receive, Scope, Send

FORM_TYPES = (b"application/x-www-form-urlencoded", b"")
UPLOAD_PATH = "/ingest"


class JsonBodyMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "POST" and scope["path"] != UPLOAD_PATH:
            headers = [(k, v) for k, v in scope["headers"] if k != b"content-type"]
            content_type = dict(scope["headers"]).get(b"content-type", b"")
            if content_type.split(b";")[0].strip() in FORM_TYPES:
                scope = {**scope, "headers": [*headers, (b"content-type", b"application/json")]}
        await self.app(scope, receive, send)
