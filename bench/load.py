"""Many clients on the real server, some leaving mid-request: nothing fails that should not,
and every KV block comes back.

    python -m bench.load [--model NAME] [--clients 64] [--duration 600] [--leave 0.25]
        [--max-tokens 48] [--seed 0]

Starts `pagedrag serve` on a free 127.0.0.1 port over a fresh library of `data/samples`,
then runs `--clients` closed-loop clients for `--duration` seconds. Each request is one
of the routes users load: OpenAI chat (streamed), `/ask` (streamed), OpenAI completions,
vLLM's `/generate`, Ollama's `/api/chat` (streamed), and the document and collection
lists. A share `--leave` of them is abandoned: a stream closed after its first chunk, a
plain request given up after a short timeout. Afterwards the server must drain (no
running or waiting request) and hold no KV block for a request (`pagedrag_kv_blocks_used`
at 0; blocks kept for the prefix cache are free). Statuses other than 200 and the
documented overload 503 count as failures, as does any error but a deliberate leave.
Prints a summary, saves `bench/results/load_*.json`, and exits 1 on any failure or leak.
`make bench-load` runs the long version; `tests/api/test_load.py` a short one in CI.
"""

import argparse
import asyncio
import random
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import httpx

from bench.retrieval_metrics import machine, save_result
from bench.server_process import parse_metrics, scrape, serving

SAMPLES = Path(__file__).resolve().parents[1] / "data" / "samples"
EXPECTED = {200, 503}  # 503: the engine's queue is full, a documented answer
LEAVE_AFTER_S = 0.5  # a plain request left behind gives up this soon
OVERLOAD_BACKOFF_S = 1.0  # a client told 503 waits about this long before its next request
DRAIN_TIMEOUT_S = 120
QUESTIONS = [
    "How does PagedRAG share KV cache blocks between prompts?",
    "What is retrieval-augmented generation?",
    "什么是检索增强生成？",
    "Write a haiku about caching.",
]


Planned = tuple[str, str, str, dict | None, bool]  # route, method, path, JSON body, streamed


@dataclass
class LoadReport:
    """What the clients saw, and what the server held once they were gone."""

    clients: int
    duration_s: float
    requests: int = 0
    left: int = 0  # abandoned on purpose
    statuses: dict[str, int] = field(default_factory=dict)  # "route status" -> count
    failures: list[str] = field(default_factory=list)  # the first few, in words
    num_failures: int = 0
    drained: bool = False
    kv_blocks_used_after: float | None = None
    running_after: float | None = None

    @property
    def ok(self) -> bool:
        return self.num_failures == 0 and self.drained and self.kv_blocks_used_after == 0


async def run_load(
    base_url: str,
    model: str,
    *,
    clients: int,
    duration_s: float,
    leave: float = 0.25,
    max_tokens: int = 48,
    seed: int = 0,
    headers: dict[str, str] | None = None,
) -> LoadReport:
    """Drive the server at `base_url` and report; the server must already be up."""
    report = LoadReport(clients, duration_s)
    deadline = time.monotonic() + duration_s
    limits = httpx.Limits(max_connections=clients + 4)
    async with httpx.AsyncClient(
        base_url=base_url, timeout=300, limits=limits, headers=headers
    ) as http:

        async def client(number: int) -> None:
            rng = random.Random(seed * 1000 + number)
            while time.monotonic() < deadline:
                await _one_request(http, rng, model, leave, max_tokens, report)

        await asyncio.gather(*(client(number) for number in range(clients)))
        await _wait_for_drain(http, report)
    return report


async def _one_request(
    http: httpx.AsyncClient,
    rng: random.Random,
    model: str,
    leave: float,
    max_tokens: int,
    report: LoadReport,
) -> None:
    route, method, path, body, streamed = _pick(rng, model, max_tokens)
    leaving = rng.random() < leave
    report.requests += 1
    try:
        if streamed:
            status = await _stream(http, method, path, body, leaving)
        elif leaving:
            status = await _give_up(http, method, path, body)
        else:
            status = (await http.request(method, path, json=body)).status_code
    except httpx.HTTPError as error:
        _fail(report, f"{route}: {type(error).__name__}: {error}")
        return
    if status is None:
        report.left += 1
        return
    report.statuses[f"{route} {status}"] = report.statuses.get(f"{route} {status}", 0) + 1
    if status not in EXPECTED:
        _fail(report, f"{route}: status {status}")
    if status == 503:  # as a real client would: wait before trying again
        await asyncio.sleep(rng.uniform(0.5, 1.5) * OVERLOAD_BACKOFF_S)


def _pick(rng: random.Random, model: str, max_tokens: int) -> Planned:
    """(route name, method, path, JSON body, streamed) of one random request."""
    question = rng.choice(QUESTIONS)
    messages = [{"role": "user", "content": question}]
    tokens = rng.randint(1, max_tokens)
    choices: list[Planned] = [
        (
            "openai-chat",
            "POST",
            "/v1/chat/completions",
            {"model": model, "messages": messages, "max_tokens": tokens, "stream": True},
            True,
        ),
        ("ask", "POST", "/ask", {"question": question, "max_tokens": tokens, "stream": True}, True),
        (
            "openai-completions",
            "POST",
            "/v1/completions",
            {"model": model, "prompt": question, "max_tokens": tokens},
            False,
        ),
        ("vllm-generate", "POST", "/generate", {"prompt": question, "max_tokens": tokens}, False),
        (
            "ollama-chat",
            "POST",
            "/api/chat",
            {"model": model, "messages": messages, "options": {"num_predict": tokens}},
            True,
        ),
        ("documents", "GET", "/documents", None, False),
        ("collections", "GET", "/collections", None, False),
    ]
    return rng.choice(choices)


async def _stream(
    http: httpx.AsyncClient, method: str, path: str, body: dict | None, leaving: bool
) -> int | None:
    """The status of a streamed request read to its end; None if left after one chunk."""
    async with http.stream(method, path, json=body) as response:
        async for _ in response.aiter_bytes():
            if leaving and response.status_code == 200:
                return None  # the context manager closes the connection mid-stream
        return response.status_code


async def _give_up(
    http: httpx.AsyncClient, method: str, path: str, body: dict | None
) -> int | None:
    try:
        return (await http.request(method, path, json=body, timeout=LEAVE_AFTER_S)).status_code
    except httpx.TimeoutException:
        return None


async def _wait_for_drain(http: httpx.AsyncClient, report: LoadReport) -> None:
    deadline = time.monotonic() + DRAIN_TIMEOUT_S
    while time.monotonic() < deadline:
        metrics = parse_metrics((await http.get("/metrics")).text)
        report.running_after = metrics.get("pagedrag_running_requests", 0) + metrics.get(
            "pagedrag_waiting_requests", 0
        )
        report.kv_blocks_used_after = metrics.get("pagedrag_kv_blocks_used")
        if report.running_after == 0 and report.kv_blocks_used_after == 0:
            report.drained = True
            return
        await asyncio.sleep(0.5)


def _fail(report: LoadReport, message: str) -> None:
    report.num_failures += 1
    if len(report.failures) < 20:
        report.failures.append(message)


def summary(report: LoadReport) -> str:
    lines = [
        f"{report.clients} clients for {report.duration_s:.0f} s: {report.requests} requests, "
        f"{report.left} left on purpose, {report.num_failures} failures",
        f"after the load: drained {report.drained}, running+waiting {report.running_after}, "
        f"KV blocks used {report.kv_blocks_used_after}",
        *(f"  {key}: {count}" for key, count in sorted(report.statuses.items())),
        *(f"  failure: {message}" for message in report.failures),
    ]
    return "\n".join(lines)


def main() -> None:
    args = parse_args()
    with tempfile.TemporaryDirectory(prefix="pagedrag-load-") as scratch:
        data_dir = Path(scratch) / "data"
        log = Path(scratch) / "server.log"
        with serving(data_dir, args.model, [], log) as host:
            base_url = f"http://{host}"
            _ingest_samples(base_url)
            started = time.time()
            report = asyncio.run(
                run_load(
                    base_url,
                    args.model,
                    clients=args.clients,
                    duration_s=args.duration,
                    leave=args.leave,
                    max_tokens=args.max_tokens,
                    seed=args.seed,
                )
            )
            final_metrics = scrape(host)
    print(summary(report))
    path = save_result(
        "load",
        {
            "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started)),
            "machine": machine(),
            "args": vars(args),
            "report": asdict(report),
            "ok": report.ok,
            "metrics_after": final_metrics,
        },
    )
    print(f"saved {path}")
    sys.exit(0 if report.ok else 1)


def _ingest_samples(base_url: str) -> None:
    """Put data/samples in the library through the API, waiting for the job."""
    files = [("files", (p.name, p.read_bytes())) for p in sorted(SAMPLES.iterdir()) if p.is_file()]
    with httpx.Client(base_url=base_url, timeout=600) as http:
        http.post("/ingest", params={"wait": "true"}, files=files).raise_for_status()


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="qwen2.5-coder:1.5b-instruct")
    parser.add_argument("--clients", type=int, default=64)
    parser.add_argument("--duration", type=float, default=600, help="seconds of load")
    parser.add_argument("--leave", type=float, default=0.25, help="share abandoned mid-way")
    parser.add_argument("--max-tokens", type=int, default=48)
    parser.add_argument("--seed", type=int, default=0)
    return parser.parse_args()


if __name__ == "__main__":
    main()
