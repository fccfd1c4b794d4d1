"""A short `bench.load` in CI: concurrent clients on every generating route, some leaving
mid-request, against the live server; nothing fails but documented 503s, and every KV
block comes back (`make bench-load` runs 64 clients for 10 minutes)."""

import asyncio

import pytest

from bench.load import run_load, summary
from tests.api.conftest import TEST_MODEL

pytestmark = pytest.mark.slow


def test_clients_that_leave_mid_request_break_nothing_and_leak_no_block(live_server) -> None:
    report = asyncio.run(
        run_load(
            live_server.url,
            TEST_MODEL,
            clients=10,  # more than the engine's queue takes (MAX_PENDING): some get 503
            duration_s=25,
            leave=0.3,
            max_tokens=24,
            seed=1,
        )
    )
    print(summary(report))
    assert report.num_failures == 0, report.failures
    assert report.drained and report.kv_blocks_used_after == 0
    assert report.requests >= 30 and report.left >= 5  # it did load the server
    routes = {key.split()[0] for key in report.statuses}
    assert {"openai-chat", "ask", "ollama-chat", "vllm-generate"} <= routes
