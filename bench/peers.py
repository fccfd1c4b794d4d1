"""PagedRAG's server side by side with llama.cpp's and vLLM's (CPU build), on one RAG load.

    python -m bench.peers [--servers pagedrag,llamacpp,vllm] [--pagedrag-quantization int4]
        [--llamacpp-weights q4_k_m,bf16]
        [--rounds 2] [--requests 32] [--run-timeout 2400] [--time-limit 14400] [--setup-only]

Each server gets the same 32 streamed chat requests (greedy, 64 tokens): a system
message with 4 real SciFact abstracts numbered [1]..[4], and a user message asking about
a claim one of them judges (BEIR's qrels pair them); 8 passage sets x 4 claims, sent
round-robin over the sets, as users of one document collection would ask them. For 1
client and then 8 concurrent closed-loop clients, every server is started fresh (a cold
cache), answers one unrelated warm-up request, then the load; the single-client process
also times one 128-token answer for decode speed. Rounds go A B C, A B C, ...

The peers must have the two cores to themselves: before each round the 1-minute load
must fall to `--max-load` (waiting up to `--load-wait` s), else the run stops, unless
`--ignore-load` (then it says so, loudly). Hard caps: every request has a timeout
(`--request-timeout`), no request starts after `--run-timeout` s of a run (the server is
then stopped, ending the rest), and no round starts after `--time-limit` s.
Peers are installed by `bench.peer_setup` under bench/work/peers/; one that does not
install or start is reported with its error and the others carry on.
"""

import argparse
import os
import signal
import sys
import time
from dataclasses import asdict
from pathlib import Path

import torch
from transformers import AutoTokenizer

from bench.peer_client import (
    DECODE_BODY,
    WARM_UP_BODY,
    ChatRequest,
    TokenCounter,
    build_requests,
    chat_body,
    decode_rate,
    drive,
    stream_chat,
    summarize,
)
from bench.peer_report import Run, notes, report
from bench.peer_servers import (
    ServerError,
    ServerSpec,
    bf16_gguf,
    library_gguf,
    llamacpp_spec,
    pagedrag_spec,
    running,
    vllm_spec,
)
from bench.peer_setup import PEERS, WORK_DIR, PeerInstall, ensure_installed, summary
from bench.retrieval_metrics import machine, save_result
from bench.workload import DEFAULT_CORPUS_DIR
from engine.device import resolve_dtype
from engine.library import resolve_model

DEFAULT_MODEL = "qwen2.5-coder:0.5b-instruct"
SERVERS = ("pagedrag", "llamacpp", "vllm")
CLIENT_COUNTS = (1, 8)
QUANTIZATIONS = ("none", "int8", "int4")
GRACE_S = 30  # requests in flight at a run's deadline get this long before the server stops


def main() -> None:
    args = parse_args()
    # NOTE: a SIGTERM (a `timeout` around the run) unwinds like Ctrl-C, so every server
    # started is stopped on the way out instead of being left running in its own session.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    started = time.monotonic()
    installs = {name: ensure_installed(PEERS[name]) for name in args.servers if name in PEERS}
    for record in installs.values():
        print(summary(record), flush=True)
    model_dir = resolve_model(args.model)
    specs, broken = server_specs(args, model_dir, installs)
    if args.setup_only:
        print(f"ready: {', '.join(spec.name for spec in specs)}", flush=True)
        for name, error in broken.items():
            print(f"NOT READY: {name}: {error}")
        return
    requests = build_requests(args.corpus_dir)[: args.requests]
    runs: list[Run] = []
    try:
        run_rounds(specs, requests, token_counter(model_dir), args, started, runs)
    except (KeyboardInterrupt, SystemExit):
        print("interrupted: the runs done so far are reported and saved", flush=True)
    table, setup = report(runs, [spec.name for spec in specs], broken), notes(specs, installs)
    print(f"\n{table}\n\n{setup}")
    result = {
        "date": time.strftime("%Y-%m-%d %H:%M"),
        "machine": machine(),
        "args": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        "installs": {name: asdict(record) for name, record in installs.items()},
        "servers": {spec.name: {"command": spec.command, "env": spec.env} for spec in specs},
        "broken": broken,
        "requests": [asdict(request) for request in requests],
        "runs": [asdict(run) for run in runs],
        "report": table,
        "notes": setup,
    }
    print(f"\nsaved {save_result('peers', result)}")


def run_rounds(
    specs: list[ServerSpec],
    requests: list[ChatRequest],
    count: TokenCounter,
    args: argparse.Namespace,
    started: float,
    runs: list[Run],
) -> None:
    """Rounds of every server and client count, appended to `runs` as each one ends (so
    an interrupted benchmark still reports what it measured)."""
    for index in range(args.rounds):
        if time.monotonic() - started > args.time_limit:
            print(f"time limit reached: no round {index + 1}")
            return
        if not quiet_enough(args):
            return
        for spec in specs:
            for clients in CLIENT_COUNTS:
                runs.append(run_once(spec, clients, index, requests, count, args))
                print(runs[-1].line(), flush=True)


def server_specs(
    args: argparse.Namespace, model_dir: Path, installs: dict[str, PeerInstall]
) -> tuple[list[ServerSpec], dict[str, str]]:
    """The servers to run, and those that cannot run with the error that says why."""
    specs: list[ServerSpec] = []
    broken: dict[str, str] = {}
    for name in args.servers:
        record = installs.get(name)
        if record is not None and not record.ok:
            broken[name] = f"install failed: {record.error}"
        elif name == "pagedrag":
            data_dir = WORK_DIR / "pagedrag-data"
            specs += [
                pagedrag_spec(args.model, q, data_dir, args.dtype)
                for q in args.pagedrag_quantization
            ]
        elif name == "vllm":
            specs.append(vllm_spec(args.model, model_dir, args.vllm_kv_cache_gb, args.dtype))
        else:
            specs += llamacpp_specs(args, model_dir, broken)
    return specs, broken


def llamacpp_specs(
    args: argparse.Namespace, model_dir: Path, broken: dict[str, str]
) -> list[ServerSpec]:
    """llama.cpp on the library's Q4_K_M GGUF and, if asked, on a bf16 one."""
    specs = []
    for weights in args.llamacpp_weights:
        name = "llamacpp" if weights == "q4_k_m" else f"llamacpp-{weights}"
        try:
            gguf = (
                library_gguf(args.model)
                if weights == "q4_k_m"
                else bf16_gguf(args.model, model_dir)
            )
        except ServerError as error:
            broken[name] = str(error)
            continue
        specs.append(llamacpp_spec(args.model, gguf, name))
    return specs


def run_once(
    spec: ServerSpec,
    clients: int,
    index: int,
    requests: list[ChatRequest],
    count: TokenCounter,
    args: argparse.Namespace,
) -> Run:
    """A fresh server: warm-up, the decode probe (1 client only), then the load."""
    run = Run(spec.name, clients, index + 1, os.getloadavg()[0])
    log = WORK_DIR / "logs" / f"{spec.name}-{clients}c-round{index + 1}.log"
    try:
        with running(spec, log, args.start_timeout) as host:
            warm_up = stream_chat(host, WARM_UP_BODY | {"model": spec.model}, args.request_timeout)
            if warm_up.error:
                raise ServerError(f"warm-up failed: {warm_up.error}")
            if clients == 1:
                body = DECODE_BODY | {"model": spec.model} | spec.ignore_eos
                probe = stream_chat(host, body, args.request_timeout)
                run.decode_tokens, run.decode_tokens_per_s = decode_rate(probe, count)
                run.decode_error = probe.error
            bodies = [chat_body(spec.model, request, args.max_tokens) for request in requests]
            deadline = time.monotonic() + args.run_timeout
            began = time.perf_counter()
            samples = drive(host, bodies, clients, deadline, args.request_timeout, GRACE_S)
            run.figures = summarize(samples, time.perf_counter() - began, count)
            run.timed_out = len(samples) < len(bodies)
    except ServerError as error:
        run.error = str(error)
    return run


def token_counter(model_dir: Path) -> TokenCounter:
    """Tokens of an answer's text under the model's own tokenizer."""
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    return lambda text: len(tokenizer(text, add_special_tokens=False).input_ids)


def quiet_enough(args: argparse.Namespace) -> bool:
    """Wait for the 1-minute load to fall to --max-load; False (stop) if it does not."""
    waited_until = time.monotonic() + args.load_wait
    load = os.getloadavg()[0]
    while load > args.max_load and time.monotonic() < waited_until:
        time.sleep(10)
        load = os.getloadavg()[0]
    if load <= args.max_load:
        return True
    banner = "!" * 78
    print(f"{banner}\n1-minute load {load:.2f} > {args.max_load}: the servers would share the")
    print(f"cores with something else, and the figures would not be comparable.\n{banner}")
    if args.ignore_load:
        print("--ignore-load: running anyway; the load is recorded with each run")
    return bool(args.ignore_load)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--servers", type=names(SERVERS), default=list(SERVERS))
    parser.add_argument(
        "--pagedrag-quantization", type=names(QUANTIZATIONS), default=["int4"], metavar="Q,..."
    )
    parser.add_argument(
        "--llamacpp-weights", type=names(("q4_k_m", "bf16")), default=["q4_k_m"], metavar="W,..."
    )
    parser.add_argument("--model", default=DEFAULT_MODEL)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument(
        "--requests", type=int, default=32, choices=range(1, 33), metavar="1..32", help="per run"
    )
    parser.add_argument("--max-tokens", type=int, default=64)
    parser.add_argument("--request-timeout", type=float, default=1200, help="s per request")
    parser.add_argument("--run-timeout", type=float, default=2400, help="s of load per run")
    parser.add_argument("--start-timeout", type=float, default=900, help="s to become ready")
    parser.add_argument("--time-limit", type=float, default=4 * 3600, help="s, all rounds")
    parser.add_argument("--max-load", type=float, default=0.5, help="1-minute load average")
    parser.add_argument("--load-wait", type=float, default=300, help="s to wait for it")
    parser.add_argument("--ignore-load", action="store_true", help="run on a busy machine")
    parser.add_argument("--vllm-kv-cache-gb", type=int, default=4)
    # NOTE: PagedRAG's and vLLM's activations; bf16 only where the CPU has it natively
    # (AVX-512 BF16, AMX): on an AVX2-only CPU bf16 matmuls run several times slower.
    parser.add_argument("--dtype", choices=["float32", "bfloat16"], default=native_dtype())
    parser.add_argument("--corpus-dir", type=Path, default=DEFAULT_CORPUS_DIR)
    parser.add_argument("--setup-only", action="store_true", help="install the peers, stop")
    return parser.parse_args()


def native_dtype() -> str:
    """What the engine itself picks for this CPU when not told."""
    return "bfloat16" if resolve_dtype(None, torch.device("cpu")) == torch.bfloat16 else "float32"


def names(known: tuple[str, ...]):
    """An argparse type: a comma-separated list of some of `known`, in the order given."""

    def parse(text: str) -> list[str]:
        chosen = [name.strip() for name in text.split(",") if name.strip()]
        if not chosen or any(name not in known for name in chosen):
            raise argparse.ArgumentTypeError(f"pick from {', '.join(known)}, got {text!r}")
        return chosen

    return parse


if __name__ == "__main__":
    main()
