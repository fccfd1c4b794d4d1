"""Health and Prometheus metrics."""

from typing import Any

from fastapi import APIRouter
from fastapi.responses import Response

from api.server.deps import StateDep
from api.server.metrics import CONTENT_TYPE
from api.server.settings import VERSION

router = APIRouter(tags=["system"])


@router.get("/health")
async def health(state: StateDep) -> dict[str, Any]:
    """Whether the server is up, with the model, the embedder and the engine's load."""
    stats = state.engine.stats()
    return {
        "status": "ok",
        "version": VERSION,
        "model": state.model_name,
        "embedder": state.rag.index.embedder.name,
        "engine": {
            "running": stats.num_running,
            "waiting": stats.num_waiting,
            "kv_blocks_used": stats.kv_blocks_used,
            "kv_blocks_total": stats.kv_blocks_total,
        },
    }


@router.get("/metrics", response_class=Response)
async def metrics(state: StateDep) -> Response:
    """Prometheus text format: requests, latency histograms, tokens, KV and prefix-cache use."""
    return Response(state.metrics.render(), media_type=CONTENT_TYPE)
