"""Prometheus metrics: what the server counts itself, plus the engine's state at scrape time."""

from collections.abc import Callable, Iterator

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from starlette.types import ASGIApp, Receive, Scope, Send

from api.server.asgi import ResponseWatch
from engine.engine_stats import EngineStats

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
# NOTE: CPU answers take seconds to start; the buckets reach far enough to tell 5 s from 50 s.
TTFT_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2, 4, 8, 15, 30, 60, 120)
ITL_BUCKETS = (0.005, 0.01, 0.02, 0.04, 0.08, 0.15, 0.3, 0.6, 1.2, 2.5, 5)


class ServerMetrics:
    """One registry per app, so two servers in one process (tests) never mix counts."""

    def __init__(self, engine_stats: Callable[[], EngineStats | None]) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "pagedrag_http_requests",
            "HTTP requests by route and status code.",
            ["route", "method", "status"],
            registry=self.registry,
        )
        self.ttft = Histogram(
            "pagedrag_time_to_first_token_seconds",
            "From the request's arrival to its first generated token.",
            buckets=TTFT_BUCKETS,
            registry=self.registry,
        )
        self.inter_token = Histogram(
            "pagedrag_inter_token_latency_seconds",
            "Between consecutive tokens of one streamed answer.",
            buckets=ITL_BUCKETS,
            registry=self.registry,
        )
        self.prompt_tokens = Counter(
            "pagedrag_prompt_tokens", "Prompt tokens of finished requests.", registry=self.registry
        )
        self.generation_tokens = Counter(
            "pagedrag_generation_tokens", "Tokens generated.", registry=self.registry
        )
        self.ingested_documents = Counter(
            "pagedrag_ingested_documents",
            "Documents ingested, by outcome.",
            ["outcome"],
            registry=self.registry,
        )
        self.ingest_jobs = Counter(
            "pagedrag_ingest_jobs",
            "Ingestion jobs, by outcome.",
            ["outcome"],
            registry=self.registry,
        )
        self.registry.register(_EngineCollector(engine_stats))

    def render(self) -> bytes:
        return generate_latest(self.registry)


class _EngineCollector(Collector):
    """Reads the engine's counters when Prometheus scrapes, so they are never stale."""

    def __init__(self, engine_stats: Callable[[], EngineStats | None]) -> None:
        self.engine_stats = engine_stats

    def collect(self) -> Iterator[Metric]:
        stats = self.engine_stats()
        if stats is None:
            return
        yield _gauge("pagedrag_running_requests", "Requests being generated.", stats.num_running)
        yield _gauge("pagedrag_waiting_requests", "Requests queued.", stats.num_waiting)
        yield _gauge("pagedrag_kv_blocks_used", "KV blocks in use.", stats.kv_blocks_used)
        yield _gauge("pagedrag_kv_blocks_total", "KV blocks in the pool.", stats.kv_blocks_total)
        yield _gauge(
            "pagedrag_kv_blocks_cached",
            "KV blocks holding a cached prefix block.",
            stats.kv_blocks_cached,
        )
        yield _counter(
            "pagedrag_prefix_cache_queries_tokens",
            "Prompt tokens looked up in the prefix cache.",
            stats.prefix_cache_query_tokens,
        )
        yield _counter(
            "pagedrag_prefix_cache_hits_tokens",
            "Prompt tokens served from the prefix cache.",
            stats.prefix_cache_hit_tokens,
        )
        yield _counter(
            "pagedrag_preemptions", "Sequences preempted for memory.", stats.num_preemptions
        )
        yield _counter("pagedrag_engine_steps", "Engine iterations run.", stats.num_steps)


def _gauge(name: str, documentation: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, documentation, value=value)


def _counter(name: str, documentation: str, value: float) -> CounterMetricFamily:
    return CounterMetricFamily(name, documentation, value=value)


class RequestCountMiddleware:
    """Counts every HTTP request by route, method and status (`pagedrag_requests_total`).

    NOTE: plain ASGI, see api/server/asgi.py.
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
        finally:
            state = getattr(scope["app"].state, "pagedrag", None)
            path = getattr(scope.get("route"), "path", "unmatched")
            status = watch.status or 500  # a request that ended without a response: 500
            if state is not None:
                state.metrics.requests.labels(path, scope["method"], str(status)).inc()
