"""Every error leaves the server as JSON with a message and the right status, never a traceback.

OpenAI clients expect `{"error": {"message", "type", "code"}}`; Ollama clients expect
`{"error": "message"}` on `/api/*`. Both shapes come from one place.
"""

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Receive, Scope, Send

from api.server.asgi import ResponseWatch
from common.errors import NotFoundError, PagedRAGError, UnavailableError, UnsupportedError

logger = logging.getLogger(__name__)


class ApiError(Exception):
    """An error a route raises on purpose, with the status the client should see."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def status_of(error: Exception) -> int:
    """The HTTP status for an error raised below the API layer, by its category."""
    if isinstance(error, ApiError):
        return error.status
    if isinstance(error, NotFoundError):
        return 404
    if isinstance(error, UnsupportedError):
        return 415
    if isinstance(error, UnavailableError):
        return 503
    if isinstance(error, PagedRAGError):
        return 400
    return 500


INTERNAL_ERROR = "internal server error; see the server log"


def client_message(error: Exception) -> str:
    """What a client is told: a user error's own words; for a bug, nothing of its text
    (which may hold server paths or data), only where to look."""
    if isinstance(error, ApiError | PagedRAGError):
        return str(error) or type(error).__name__
    return INTERNAL_ERROR


def error_body(path: str, status: int, message: str) -> dict[str, object]:
    if path.startswith("/api/"):
        return {"error": message}
    return {"error": {"message": message, "type": _error_type(status), "code": status}}


def error_response(request: Request, status: int, message: str) -> JSONResponse:
    return JSONResponse(error_body(request.url.path, status, message), status_code=status)


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, error: RequestValidationError) -> JSONResponse:
        problems = error.errors()
        if any(problem.get("type") == "json_invalid" for problem in problems):
            return error_response(request, 400, "the request body is not valid JSON")
        return error_response(request, 422, "; ".join(_describe(p) for p in problems))

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, error: HTTPException) -> JSONResponse:
        return error_response(request, error.status_code, str(error.detail))

    async def known_error(request: Request, error: Exception) -> JSONResponse:
        return error_response(request, status_of(error), str(error))

    # NOTE: registered one by one so that Starlette answers them itself; a handler for
    # `Exception` alone would also log each 4xx as a crash.
    for error_class in (ApiError, PagedRAGError):
        app.add_exception_handler(error_class, known_error)

    app.add_middleware(UnexpectedErrorMiddleware)


class UnexpectedErrorMiddleware:
    """A bug's exception becomes a 500 with a generic message, its traceback in the log.

    NOTE: a middleware, not an `Exception` handler: Starlette re-raises after such a
    handler answers, and the server then drops the connection, so a client's next
    request on it failed too. Plain ASGI: see api/server/asgi.py.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        watch = ResponseWatch(send)
        try:
            await self.app(scope, receive, watch.send)
        except Exception:
            logger.exception("unexpected error on %s", scope["path"])
            if watch.status is not None:  # the status line is out: the stream just ends
                return
            body = error_body(scope["path"], 500, INTERNAL_ERROR)
            await JSONResponse(body, status_code=500)(scope, receive, send)


def _describe(problem: dict[str, object]) -> str:
    location = ".".join(str(part) for part in problem.get("loc", ()) if part != "body")  # type: ignore[attr-defined]
    return f"{location}: {problem.get('msg')}" if location else str(problem.get("msg"))


def _error_type(status: int) -> str:
    if status == 404:
        return "not_found_error"
    if status == 409:
        return "conflict_error"
    if status == 503:
        return "overloaded_error"
    if status >= 500:
        return "server_error"
    return "invalid_request_error"
