"""A `pagedrag serve` subprocess on a free 127.0.0.1 port, for benchmarks that load it.

Each use is a fresh process, so every run starts with a cold prefix cache.
"""

import http.client
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

READY_TIMEOUT_S = 600  # model and index loading, on a busy machine


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextmanager
def serving(data_dir: Path, model: str, flags: list[str], log: Path) -> Iterator[str]:
    """A `pagedrag serve` subprocess, ready to answer; yields its `host:port`."""
    port = free_port()
    command = [str(Path(sys.executable).with_name("pagedrag")), "serve", "--port", str(port)]
    command += ["--data-dir", str(data_dir), "--model", model, "--dtype", "bfloat16"]
    command += ["--kv-cache-memory", "2G", *flags]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    with log.open("w") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=env)
    try:
        _wait_ready(process, port, log)
        yield f"127.0.0.1:{port}"
    finally:
        stop(process)


def _wait_ready(process: subprocess.Popen, port: int, log: Path) -> None:
    failure = wait_until_ready(process, f"127.0.0.1:{port}", "/health", READY_TIMEOUT_S)
    if failure is not None:
        raise SystemExit(f"pagedrag serve {failure}; see {log}:\n{log.read_text()}")


def wait_until_ready(process: subprocess.Popen, host: str, path: str, timeout: float) -> str | None:
    """Poll `path` until it answers 200: None then, else why not (the caller says it)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            return f"exited ({process.returncode})"
        try:
            if get(host, path, timeout=5)[0] == 200:
                return None
        except OSError:
            pass
        time.sleep(0.5)
    return f"was not ready after {timeout:.0f} s"


def stop(process: subprocess.Popen) -> None:
    """Ctrl-C (uvicorn shuts down cleanly), then a kill if it hangs."""
    if process.poll() is None:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def get(host: str, path: str, timeout: float = 30) -> tuple[int, str]:
    connection = http.client.HTTPConnection(host, timeout=timeout)
    try:
        connection.request("GET", path)
        response = connection.getresponse()
        return response.status, response.read().decode()
    finally:
        connection.close()


def scrape(host: str) -> dict[str, float]:
    """The samples of /metrics by name without the `_total` suffix, each summed over its
    labels (the engine figures are per loaded model)."""
    return parse_metrics(get(host, "/metrics")[1])


def parse_metrics(text: str) -> dict[str, float]:
    values: dict[str, float] = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            sample, value = line.rsplit(" ", 1)
            name = sample.partition("{")[0].removesuffix("_total")
            values[name] = values.get(name, 0.0) + float(value)
    return values
