"""Tensor parallelism from the command line, over real HTTP and over loopback "nodes":
`pagedrag serve --tensor-parallel-size 2` answers as one process does (the default model
in fp32), reports its ranks, and exits with one line when a rank dies; `pagedrag worker`
joins a job node 0 starts."""

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest

from bench.server_process import stop, wait_until_ready
from engine import LLM, SamplingParams
from tests.api.conftest import free_port
from tests.api.test_cli import ROOT, assert_one_line_error, pagedrag
from tests.tiny_model import save_tiny_llama

pytestmark = pytest.mark.slow
PROMPT = "The three primary colours are"
EXACT = ("--dtype", "float32", "--quantization", "none")
SERVE = (sys.executable, "-m", "api.cli", "serve", "--tensor-parallel-size", "2", *EXACT)


@pytest.fixture(scope="module")
def single_process_completion() -> str:
    """The default model's greedy continuation in this process, fp32."""
    with LLM(dtype="float32", quantization="none", kv_cache_memory=64 << 20) as llm:
        params = SamplingParams(temperature=0, max_tokens=8)
        return llm.generate([PROMPT], params)[0].outputs[0].text


def long_completion(host: str, outcome: dict[str, object]) -> None:
    counting = ", ".join(str(n) for n in range(1, 30))  # a raw prompt the model continues
    body = {"prompt": counting + ",", "max_tokens": 2000, "temperature": 0}
    try:
        response = httpx.post(f"http://{host}/v1/completions", json=body, timeout=300)
        outcome["status"], outcome["body"] = response.status_code, response.json()
    except httpx.HTTPError as error:
        outcome["error"] = type(error).__name__


def test_serve_with_two_tensor_parallel_ranks(tmp_path: Path, single_process_completion) -> None:
    port = free_port()
    server = subprocess.Popen(
        [*SERVE, "--port", str(port), "--data-dir", str(tmp_path), "--kv-cache-memory", "128M"],
        cwd=ROOT,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    host = f"127.0.0.1:{port}"
    try:
        assert wait_until_ready(server, host, "/health", 600) is None
        health = httpx.get(f"http://{host}/health").json()
        assert [(r["rank"], r["status"]) for r in health["ranks"]] == [(0, "ok"), (1, "ok")]
        body = {"prompt": PROMPT, "max_tokens": 8, "temperature": 0}
        answer = httpx.post(f"http://{host}/v1/completions", json=body, timeout=300).json()
        assert answer["choices"][0]["text"] == single_process_completion
        metrics = httpx.get(f"http://{host}/metrics").text
        assert 'pagedrag_rank_up{model="qwen2.5-coder:1.5b-instruct",rank="1"} 1.0' in metrics

        outcome: dict[str, object] = {}
        client = threading.Thread(target=long_completion, args=(host, outcome))
        client.start()
        time.sleep(5)  # under way
        os.kill(health["ranks"][1]["pid"], signal.SIGKILL)
        returncode = server.wait(timeout=120)
        client.join(timeout=30)
        assert server.stderr is not None
        log = server.stderr.read().decode()
    finally:
        stop(server)
    assert outcome.get("status") == 503, outcome
    message = json.dumps(outcome["body"])
    assert "the engine was lost" in message and "rank 1" in message
    assert returncode == 1
    last = log.strip().splitlines()[-1]
    assert last.startswith("pagedrag: error: the engine was lost"), log


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_tiny_llama(tmp_path_factory.mktemp("nodes") / "tiny")


def test_a_worker_node_joins_the_job_node_0_starts(tiny_dir: Path) -> None:
    port = str(free_port())
    common = ("-tp", "2", "-pp", "2", "--nnodes", "2", "--master-port", port)
    code = "import sys; from api.cli import main; sys.exit(main(sys.argv[1:]))"
    worker = subprocess.Popen(
        [sys.executable, "-c", code, "worker", "--node-rank", "1", *common],
        cwd=ROOT,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        generate = ("generate", "--raw", "Hello there", "--model", str(tiny_dir), *EXACT)
        split = pagedrag(*generate, "--max-tokens", "8", *common)
        worker_out, worker_err = worker.communicate(timeout=120)
    finally:
        worker.kill()
    assert split.returncode == 0, split.stderr
    assert worker.returncode == 0, worker_err
    assert "node 1 of 2, ranks 2-3" in worker_out
    single = pagedrag(*generate, "--max-tokens", "8")
    assert split.stdout == single.stdout and single.stdout.strip()


def test_parallel_settings_a_model_cannot_take_are_one_line(tiny_dir: Path) -> None:
    result = pagedrag("generate", "hi", "--model", str(tiny_dir), "-tp", "3", *EXACT)
    assert_one_line_error(result, "tensor parallel size 3 must divide the model's 4 attention")
    two_nodes = ("worker", "-tp", "2", "--nnodes", "2")
    result = pagedrag(*two_nodes, "--node-rank", "0", "--master-port", "29400")
    assert_one_line_error(result, "node 0 runs the engine")
    result = pagedrag(*two_nodes, "--node-rank", "1")
    assert_one_line_error(result, "needs --master-port")
    result = pagedrag("worker", "--nnodes", "2", "--node-rank", "1", "--master-port", "29400")
    assert_one_line_error(result, "1 ranks (tensor x pipeline parallel size) cannot be spread")
