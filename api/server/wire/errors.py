"""Error bodies and the statuses each route declares in its OpenAPI `responses`.

Every error is JSON (api/server/errors.py): OpenAI's `{"error": {"message", "type",
"code"}}` everywhere but `/api/*`, where Ollama clients read `{"error": "message"}`.
"""

from pydantic import BaseModel


class ErrorDetail(BaseModel):
    message: str
    type: str  # invalid_request_error, not_found_error, overloaded_error, server_error, ...
    code: int  # the HTTP status


class ErrorBody(BaseModel):
    error: ErrorDetail


class OllamaErrorBody(BaseModel):
    error: str


MEANINGS = {
    400: "Invalid input (the message says which), or a Host name this server does not serve.",
    401: "No API key, or one this server does not know (when keys are required).",
    403: "The key's role may not do this, or a cross-site request tried to change state.",
    404: "No such document, job, conversation or model.",
    409: "The model is answering requests; try again once they are done.",
    413: "The upload is larger than the server's limit.",
    415: "An unsupported file type or content type.",
    422: "A field is missing, of the wrong type or out of range.",
    503: "The engine is overloaded or not available; try again.",
    500: "A bug: a generic message, the details in the server log.",
}
Responses = dict[int | str, dict[str, object]]  # a route's OpenAPI `responses=`
# The Host check, the key check and bugs reach every route; 422 is declared everywhere so
# that FastAPI's own 422 schema (`detail`), which these routes never send, is not.
ALWAYS = (400, 401, 403, 422, 500)


def errors(*statuses: int, ollama: bool = False) -> Responses:
    """The `responses=` of a route that can answer these statuses (besides `ALWAYS`)."""
    model = OllamaErrorBody if ollama else ErrorBody
    return {
        status: {"model": model, "description": MEANINGS[status]}
        for status in sorted({*ALWAYS, *statuses})
    }
