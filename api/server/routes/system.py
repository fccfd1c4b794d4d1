"""Health, Prometheus metrics and the web page's sign-in."""

from fastapi import APIRouter
from fastapi.responses import Response
from pydantic import BaseModel

from api.server.auth import SESSION_COOKIE
from api.server.deps import StateDep
from api.server.errors import ApiError
from api.server.metrics import CONTENT_TYPE
from api.server.wire.errors import errors
from api.server.wire.native import EngineLoad, Health
from common.version import VERSION

router = APIRouter(tags=["system"])


@router.get("/health", responses=errors())
async def health(state: StateDep) -> Health:
    """Whether the server is up, with the model, the embedder and the engine's load."""
    stats = state.engine.stats()
    load = EngineLoad(
        running=stats.num_running,
        waiting=stats.num_waiting,
        kv_blocks_used=stats.kv_blocks_used,
        kv_blocks_total=stats.kv_blocks_total,
    )
    embedder = state.index.embedder.name
    return Health(
        status="ok", version=VERSION, model=state.model_name, embedder=embedder, engine=load
    )


@router.get(
    "/metrics",
    response_class=Response,
    responses=errors() | {200: {"content": {CONTENT_TYPE: {}}}},
)
async def metrics(state: StateDep) -> Response:
    """Prometheus text format: requests, latency histograms, tokens, KV and prefix-cache use."""
    return Response(state.metrics.render(), media_type=CONTENT_TYPE)


class SignIn(BaseModel):
    key: str


@router.post("/auth/session", status_code=204, responses=errors(422))
async def sign_in(body: SignIn, state: StateDep) -> Response:
    """Trade an API key for the web page's session cookie (HttpOnly, SameSite=Strict)."""
    policy = state.settings.auth
    if policy.enabled and policy.lookup(body.key) is None:
        raise ApiError(401, "that API key is not known to this server")
    response = Response(status_code=204)
    if policy.enabled:
        response.set_cookie(SESSION_COOKIE, body.key, httponly=True, samesite="strict")
    return response
