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

    def __init__(self, engine_stats: Callable[[], dict[str, EngineStats]]) -> None:
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


# Each loaded model's engine, read at scrape time: (name, kind, help, its EngineStats field).
ENGINE_METRICS = (
    ("pagedrag_running_requests", "gauge", "Requests being generated.", "num_running"),
    ("pagedrag_waiting_requests", "gauge", "Requests queued.", "num_waiting"),
    ("pagedrag_kv_blocks_used", "gauge", "KV blocks in use.", "kv_blocks_used"),
    ("pagedrag_kv_blocks_total", "gauge", "KV blocks in the pool.", "kv_blocks_total"),
    (
        "pagedrag_kv_blocks_cached",
        "gauge",
        "KV blocks holding a cached prefix block.",
        "kv_blocks_cached",
    ),
    (
        "pagedrag_prefix_cache_queries_tokens",
        "counter",
        "Prompt tokens looked up in the prefix cache.",
        "prefix_cache_query_tokens",
    ),
    (
        "pagedrag_prefix_cache_hits_tokens",
        "counter",
        "Prompt tokens served from the prefix cache.",
        "prefix_cache_hit_tokens",
    ),
    (
        "pagedrag_passage_cache_queries",
        "counter",
        "Retrieved passages looked up in the passage cache.",
        "passage_cache_queries",
    ),
    (
        "pagedrag_passage_cache_hits",
        "counter",
        "Passages whose KV was reused at a new position.",
        "passage_cache_hits",
    ),
    (
        "pagedrag_passage_cache_reused_tokens",
        "counter",
        "Prompt tokens copied from cached passages instead of computed.",
        "passage_cache_reused_tokens",
    ),
    (
        "pagedrag_passage_cache_recomputed_tokens",
        "counter",
        "Head tokens of reused passages computed again in their new context.",
        "passage_cache_recomputed_tokens",
    ),
    (
        "pagedrag_passage_cache_passages",
        "gauge",
        "Passages held in the passage cache.",
        "passages_cached",
    ),
    ("pagedrag_preemptions", "counter", "Sequences preempted for memory.", "num_preemptions"),
    ("pagedrag_engine_steps", "counter", "Engine iterations run.", "num_steps"),
)


class _EngineCollector(Collector):
    """Reads every loaded model's engine when Prometheus scrapes, so its figures are never
    stale; each sample is labelled with the model's name."""

    def __init__(self, engine_stats: Callable[[], dict[str, EngineStats]]) -> None:
        self.engine_stats = engine_stats

    def collect(self) -> Iterator[Metric]:
        engines = self.engine_stats()
        for name, kind, documentation, field in ENGINE_METRICS:
            family: GaugeMetricFamily | CounterMetricFamily
            if kind == "gauge":
                family = GaugeMetricFamily(name, documentation, labels=["model"])
            else:
                family = CounterMetricFamily(name, documentation, labels=["model"])
            for model, stats in engines.items():
                family.add_metric([model], getattr(stats, field))
            yield family
        ranks = GaugeMetricFamily(
            "pagedrag_rank_up",
            "Each process of the engine (tensor x pipeline parallel ranks): 1 up, 0 lost.",
            labels=["model", "rank"],
        )
        for model, stats in engines.items():
            for rank, up in enumerate(stats.ranks_up):
                ranks.add_metric([model, str(rank)], int(up))
        yield ranks


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
