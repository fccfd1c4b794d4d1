"""Load on the real server: concurrent clients asking clustered questions, sharing on vs off.

    python -m bench.serve_load [--model NAME] [--clients 8] [--rounds 2] [--requests 64]
        [--max-tokens 32] [--run-timeout 900] [--time-limit 3600] [--index-dir DIR]

Ingests the Debian reference PDF (fetched with `apt-get download`, see
`bench.pdf_corpus`) into a temporary index, then in every round starts `pagedrag serve`
on a free 127.0.0.1 port twice, with prefix caching on and with `--no-prefix-caching`
(the order alternates between rounds), each a fresh process with a cold cache. Each
server answers one warm-up question, then `--clients` closed-loop clients POST /ask
(SSE) with the `REWORDED` questions in one seeded shuffled order until `--requests`
are sent. Client TTFT is the time from sending the request to its first `token`
event; the server's own figures come from the `done` event (`timings`, `usage`) and
from /metrics, read before and after the load.

Hard caps: no request starts after `--run-timeout` seconds of a run, and the server is
stopped (ending its requests) 60 s later; no run starts after `--time-limit` seconds.
"""

import argparse
import http.client
import json
import os
import queue
import random
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from statistics import fmean, median
from typing import Any

from bench.pdf_corpus import REWORDED, WARM_UP_QUESTION, ingested_pdf
from bench.retrieval_metrics import machine, percentile, save_result
from bench.server_process import scrape, serving

DEFAULT_MODEL = "qwen2.5-coder:0.5b-instruct"
CONFIGS = {"on": [], "off": ["--no-prefix-caching"]}  # extra `pagedrag serve` flags
GRACE_S = 60  # in-flight requests get this long after the run's deadline


@dataclass(slots=True)
class Sample:
    """One /ask request as the client saw it."""

    index: int  # position in the work list: the same request in every run
    group: str  # the question group it belongs to
    client_ttft_s: float | None  # send -> first `token` event; None if none came
    latency_s: float  # send -> end of the stream
    done: dict | None  # the `done` event's answer (usage, timings, citations)
    error: str | None


# -- the clients --------------------------------------------------------------------------


def ask(host: str, index: int, group: str, question: str, max_tokens: int) -> Sample:
    """POST /ask with `stream: true`; time the first token event and the whole stream."""
    connection = http.client.HTTPConnection(host, timeout=300)
    body = json.dumps({"question": question, "stream": True, "max_tokens": max_tokens})
    started = time.perf_counter()
    first: float | None = None
    done = error = event = None
    try:
        connection.request("POST", "/ask", body, {"Content-Type": "application/json"})
        response = connection.getresponse()
        if response.status != 200:
            error = f"HTTP {response.status}: {response.read()[:200]!r}"
        for raw in response if error is None else ():
            line = raw.decode().rstrip("\n")
            if line.startswith("event: "):
                event = line.removeprefix("event: ")
            elif line.startswith("data: ") and event == "token" and first is None:
                first = time.perf_counter() - started
            elif line.startswith("data: ") and event in ("done", "error"):
                payload = json.loads(line.removeprefix("data: "))
                done, error = (payload, None) if event == "done" else (None, str(payload))
    except OSError as failure:
        error = f"{type(failure).__name__}: {failure}"
    finally:
        connection.close()
    return Sample(index, group, first, time.perf_counter() - started, done, error)


def drive(host: str, work: list[tuple[str, str]], args: argparse.Namespace) -> list[Sample]:
    """`args.clients` closed-loop clients share the work list until it or the time runs out."""
    todo: queue.SimpleQueue[tuple[int, str, str]] = queue.SimpleQueue()
    for index, (group, question) in enumerate(work):
        todo.put((index, group, question))
    samples: list[Sample] = []
    stop_at = time.monotonic() + args.run_timeout

    def client() -> None:
        while time.monotonic() < stop_at:
            try:
                index, group, question = todo.get_nowait()
            except queue.Empty:
                return
            samples.append(ask(host, index, group, question, args.max_tokens))

    threads = [threading.Thread(target=client, daemon=True) for _ in range(args.clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(max(0.0, stop_at + GRACE_S - time.monotonic()))
    return list(samples)  # the caller stops the server, ending any request still running


def run_once(config: str, data_dir: Path, work: list, args: argparse.Namespace) -> dict:
    """One fresh server, warmed up by one question, under the load; its figures."""
    log = Path(tempfile.gettempdir()) / f"serve_load_{config}.log"
    with serving(data_dir, args.model, CONFIGS[config], log) as host:
        ask(host, -1, "warm-up", WARM_UP_QUESTION, 4)
        before, load = scrape(host), os.getloadavg()[0]
        started = time.perf_counter()
        samples = drive(host, work, args)
        wall = time.perf_counter() - started
        after = scrape(host)
    return summarize(samples, wall, before, after) | {"load_average_1m": load}


# -- the figures --------------------------------------------------------------------------


def summarize(samples: list[Sample], wall: float, before: dict, after: dict) -> dict:
    ok = [s for s in samples if s.done is not None and s.done["found"]]
    if not ok:
        raise SystemExit(f"no request was answered; errors: {[s.error for s in samples][:5]}")
    usage = [s.done["usage"] for s in ok if s.done]
    timings = [s.done["timings"] for s in ok if s.done]
    client_ttft = [s.client_ttft_s for s in ok if s.client_ttft_s is not None]
    server_ttft = [t["ttft_ms"] / 1000 for t in timings]

    def delta(name: str) -> float:
        return after.get(name, 0.0) - before.get(name, 0.0)

    figures = {
        "requests_ok": len(ok),
        "requests_failed": sum(1 for s in samples if s.error),
        "requests_not_found": sum(1 for s in samples if s.done and not s.done["found"]),
        "wall_s": wall,
        "requests_per_s": len(ok) / wall,
        "output_tokens_per_s": sum(u["completion_tokens"] for u in usage) / wall,
        "hit_rate_metrics": delta("pagedrag_prefix_cache_hits_tokens")
        / max(1.0, delta("pagedrag_prefix_cache_queries_tokens")),
        "cached_share_usage": sum(u["cached_tokens"] for u in usage)
        / max(1, sum(u["prompt_tokens"] for u in usage)),
        "prompt_tokens_mean": fmean(u["prompt_tokens"] for u in usage),
        "retrieve_ms_mean": fmean(t["retrieve_ms"] for t in timings),
        "prefill_ms_mean": fmean(t["ttft_ms"] - t["retrieve_ms"] for t in timings),
        "decode_ms_mean": fmean(t["total_ms"] - t["ttft_ms"] for t in timings),
        "total_ms_mean": fmean(t["total_ms"] for t in timings),
        "preemptions": delta("pagedrag_preemptions"),
    }
    for pct in (50, 90, 99):
        figures[f"client_ttft_p{pct}_s"] = percentile(client_ttft, pct)
        figures[f"server_ttft_p{pct}_s"] = percentile(server_ttft, pct)
    figures["same_set_share"] = same_set_share(ok)
    for kind, kind_samples in by_passage_set_use(ok).items():
        kind_ttft = [s.client_ttft_s for s in kind_samples if s.client_ttft_s is not None]
        figures[f"{kind}_requests"] = len(kind_samples)
        figures[f"{kind}_ttft_p50_s"] = percentile(kind_ttft, 50) if kind_ttft else None
    figures["requests"] = {  # by work index, for comparing runs request by request
        str(s.index): {
            "group": s.group,
            "client_ttft_s": s.client_ttft_s,
            "passages": _chunks(s),
            "usage": s.done["usage"] if s.done else None,
            "answer": s.done["answer"] if s.done else None,
        }
        for s in ok
    }
    figures["errors"] = [s.error for s in samples if s.error][:5]
    return figures


def _chunks(sample: Sample) -> list[int]:
    return [c["chunk_id"] for c in sample.done["citations"]] if sample.done else []


def same_set_share(samples: list[Sample]) -> float:
    """Share of answers whose passages (in prompt order) are their group's most common set."""
    by_group: dict[str, Counter] = {}
    for sample in samples:
        by_group.setdefault(sample.group, Counter())[tuple(_chunks(sample))] += 1
    modal = sum(counts.most_common(1)[0][1] for counts in by_group.values())
    return modal / max(1, len(samples))


def by_passage_set_use(samples: list[Sample]) -> dict[str, list[Sample]]:
    """Requests split into the first to use their passage set and those after it.

    Only the second kind can find its whole passage prefix in the cache; the work list
    is sent in index order, so the lowest index with a set is its first use.
    """
    seen: set[tuple[int, ...]] = set()
    kinds: dict[str, list[Sample]] = {"first_set": [], "seen_set": []}
    for sample in sorted(samples, key=lambda s: s.index):
        passages = tuple(_chunks(sample))
        kinds["seen_set" if passages in seen else "first_set"].append(sample)
        seen.add(passages)
    return kinds


RATIOS = {  # name: (figure, numerator config, denominator config)
    "client TTFT p50, off / on": ("client_ttft_p50_s", "off", "on"),
    "client TTFT p90, off / on": ("client_ttft_p90_s", "off", "on"),
    "server TTFT p50, off / on": ("server_ttft_p50_s", "off", "on"),
    "client TTFT p50 of first uses of a set, off / on": ("first_set_ttft_p50_s", "off", "on"),
    "client TTFT p50 on a set used before, off / on": ("seen_set_ttft_p50_s", "off", "on"),
    "requests/s, on / off": ("requests_per_s", "on", "off"),
    "output tokens/s, on / off": ("output_tokens_per_s", "on", "off"),
}
ROWS = [
    ("requests_ok", "requests answered"),
    ("requests_per_s", "requests/s"),
    ("output_tokens_per_s", "output tokens/s"),
    ("client_ttft_p50_s", "client TTFT p50, s"),
    ("client_ttft_p90_s", "client TTFT p90, s"),
    ("client_ttft_p99_s", "client TTFT p99, s"),
    ("first_set_requests", "requests first to use their passage set"),
    ("first_set_ttft_p50_s", "  their client TTFT p50, s"),
    ("seen_set_requests", "requests on a passage set used before"),
    ("seen_set_ttft_p50_s", "  their client TTFT p50, s"),
    ("server_ttft_p50_s", "server ttft_ms p50, s"),
    ("server_ttft_p90_s", "server ttft_ms p90, s"),
    ("server_ttft_p99_s", "server ttft_ms p99, s"),
    ("hit_rate_metrics", "prefix-cache hit rate (/metrics hits / queries)"),
    ("cached_share_usage", "cached share of prompt tokens (usage)"),
    ("prompt_tokens_mean", "prompt tokens, mean"),
    ("retrieve_ms_mean", "retrieve, ms (mean)"),
    ("prefill_ms_mean", "prefill incl. queueing = ttft - retrieve, ms (mean)"),
    ("decode_ms_mean", "decode = total - ttft, ms (mean)"),
    ("total_ms_mean", "/ask total, ms (mean)"),
    ("preemptions", "preemptions"),
]


def spread(values: list[float | None]) -> str:
    """Median (min–max) of the rounds that have the figure (a short run may lack a kind)."""
    present = [v for v in values if v is not None]
    if not present:
        return "–"
    return f"{median(present):.3g} ({min(present):.3g}–{max(present):.3g})"


def ratio(top: float | None, bottom: float | None) -> float | None:
    return top / bottom if top is not None and bottom else None


def paired(on: dict, off: dict) -> dict:
    """On vs off over the requests both runs answered (a run cut short answers fewer)."""
    both = [
        i
        for i in sorted(set(on["requests"]) & set(off["requests"]), key=int)
        if on["requests"][i]["client_ttft_s"] and off["requests"][i]["client_ttft_s"]
    ]
    ttft = {
        c: [run["requests"][i]["client_ttft_s"] for i in both]
        for c, run in (("on", on), ("off", off))
    }
    same = sum(on["requests"][i]["answer"] == off["requests"][i]["answer"] for i in both)
    return {
        "requests": len(both),
        "ttft_p50_ratio": percentile(ttft["off"], 50) / percentile(ttft["on"], 50),
        "same_answer_share": same / max(1, len(both)),
    }


def report(rounds: list[dict]) -> str:
    lines = ["| figure | prefix sharing on | prefix sharing off |", "|---|---|---|"]
    for key, label in ROWS:
        cells = [spread([r[config][key] for r in rounds]) for config in ("on", "off")]
        lines.append(f"| {label} | {cells[0]} | {cells[1]} |")
    lines += ["", "| ratio (within each round) | median (min–max) |", "|---|---|"]
    for label, (key, top, bottom) in RATIOS.items():
        cell = spread([ratio(r[top][key], r[bottom][key]) for r in rounds])
        lines.append(f"| {label} | {cell} |")
    for key, label in [
        ("requests", "requests answered by both runs"),
        ("ttft_p50_ratio", "client TTFT p50 over those requests, off / on"),
        ("same_answer_share", "share of those with the same answer text on and off"),
    ]:
        lines.append(f"| {label} | {spread([r['paired'][key] for r in rounds])} |")
    loads = ", ".join(f"{r['load_average_1m']:.2f}" for r in rounds)
    lines += ["", f"1-minute load average at each round start: {loads}"]
    share = spread([r["off"]["same_set_share"] for r in rounds])
    lines.append(f"answers retrieving their group's most common passage set: {share}")
    return "\n".join(lines)


# -- main ---------------------------------------------------------------------------------


def workload(requests: int, seed: int) -> list[tuple[str, str]]:
    """`requests` (group, question) pairs: every question once, shuffled, then again.

    With the default 64 requests each of the 32 questions is asked twice, as the same
    questions recur among the users of one set of documents.
    """
    questions = [(group, q) for group, qs in REWORDED.items() for q in qs]
    random.Random(seed).shuffle(questions)
    return [questions[i % len(questions)] for i in range(requests)]


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default=DEFAULT_MODEL, help="e.g. smollm2:135m-instruct")
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--requests", type=int, default=64, help="per server run")
    parser.add_argument("--max-tokens", type=int, default=32)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--run-timeout", type=float, default=900, help="s; see the doc")
    parser.add_argument("--time-limit", type=float, default=3600, help="s for the whole run")
    parser.add_argument("--index-dir", type=Path, help="keep (or reuse) the index here")
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    started = time.monotonic()
    result = {
        "date": time.strftime("%Y-%m-%d %H:%M"),
        "machine": machine(),
        "args": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
    }
    work = workload(args.requests, args.seed)
    rounds: list[dict] = []
    with ingested_pdf(args.index_dir) as pdf:
        print(f"{pdf.pdf_name}: {pdf.pages} pages, {pdf.chunks} chunks in {pdf.ingest_s:.0f} s")
        for index in range(args.rounds):
            if time.monotonic() - started > args.time_limit:
                print(f"time limit reached: stopping after {index} rounds")
                break
            this: dict[str, Any] = {"load_average_1m": os.getloadavg()[0]}
            for config in ("on", "off") if index % 2 == 0 else ("off", "on"):
                this[config] = run_once(config, pdf.data_dir, work, args)
                print(f"round {index + 1} {config}: " + _line(this[config]), flush=True)
            this["paired"] = paired(this["on"], this["off"])
            rounds.append(this)
    result |= {"pdf": pdf.pdf_name, "rounds": rounds}
    if rounds:
        print("\n" + report(rounds))
    print(f"\nsaved {save_result('serve_load', result)}")


def _line(figures: dict) -> str:
    return (
        f"{figures['requests_ok']} ok, {figures['requests_failed']} failed in "
        f"{figures['wall_s']:.0f} s; client TTFT p50 {figures['client_ttft_p50_s']:.2f} s; "
        f"hit rate {figures['hit_rate_metrics']:.2f}; load {figures['load_average_1m']:.2f}"
    )


if __name__ == "__main__":
    main()
