"""Health, Prometheus metrics and the web page's sign-in."""

import asyncio

from fastapi import APIRouter
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel

from api.server.auth import SESSION_COOKIE
from api.server.deps import StateDep
from api.server.errors import ApiError
from api.server.metrics import CONTENT_TYPE
from api.server.wire.errors import Responses, errors
from api.server.wire.native import DatabaseHealth, EngineLoad, Health, RankHealth
from common.version import VERSION

router = APIRouter(tags=["system"])


# A load balancer takes a server whose database or engine is down out of its rotation.
DATABASE_DOWN: Responses = {
    503: {
        "model": Health,
        "description": "The library's database cannot be reached, or a rank of the engine is lost.",
    }
}


@router.get("/health", responses=errors() | DATABASE_DOWN, response_model=Health)
async def health(state: StateDep) -> Health | JSONResponse:
    """Whether the server is up, with the model, the embedder, the engine's load and
    ranks, and the library's database (503 when that or a rank is down)."""
    stats = state.engine.stats()
    load = EngineLoad(
        running=stats.num_running,
        waiting=stats.num_waiting,
        kv_blocks_used=stats.kv_blocks_used,
        kv_blocks_total=stats.kv_blocks_total,
    )
    embedder = state.index.embedder.name
    found = await asyncio.to_thread(state.index.database_status)
    database = DatabaseHealth(
        kind=found.kind, status="ok" if found.error is None else "error", error=found.error
    )
    ranks = [
        RankHealth(
            rank=rank.rank,
            node=rank.node,
            status={True: "ok", False: "error", None: "unknown"}[rank.alive],
            pid=rank.pid,
            exitcode=rank.exitcode,
        )
        for rank in state.engine.rank_health()
    ]
    healthy = found.error is None and all(rank.status != "error" for rank in ranks)
    body = Health(
        status="ok" if healthy else "error",
        version=VERSION,
        model=state.model_name,
        embedder=embedder,
        engine=load,
        database=database,
        ranks=ranks,
    )
    if healthy:
        return body
    return JSONResponse(body.model_dump(), status_code=503)


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
