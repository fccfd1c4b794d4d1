"""`pagedrag serve` stops on SIGTERM within its grace period, even mid-generation."""

import http.client
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from bench.server_process import stop, wait_until_ready
from tests.api.conftest import free_port
from tests.api.test_cli import ROOT, assert_one_line_error, pagedrag

pytestmark = pytest.mark.slow
MODEL = ("--model", "smollm2:135m-instruct", "--kv-cache-memory", "128M")
GRACE_S = 2.0


def long_completion(host: str, outcome: dict[str, object]) -> None:
    """A non-streaming request that would run for minutes; records how it ended."""
    connection = http.client.HTTPConnection(host, timeout=120)
    counting = ", ".join(str(n) for n in range(1, 30))  # a raw prompt the model continues
    body = {"prompt": counting + ",", "max_tokens": 2000, "temperature": 0}
    try:
        connection.request("POST", "/v1/completions", json.dumps(body))
        outcome["status"] = connection.getresponse().status
    except (OSError, http.client.HTTPException) as error:
        outcome["error"] = type(error).__name__


def test_sigterm_stops_a_server_busy_with_a_long_generation(tmp_path: Path) -> None:
    port = free_port()
    command = [sys.executable, "-m", "api.cli", "serve", "--port", str(port)]
    server = subprocess.Popen(
        [*command, "--data-dir", str(tmp_path), "--shutdown-timeout", str(GRACE_S), *MODEL],
        cwd=ROOT,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        host = f"127.0.0.1:{port}"
        assert wait_until_ready(server, host, "/health", 300) is None
        outcome: dict[str, object] = {}
        client = threading.Thread(target=long_completion, args=(host, outcome))
        client.start()
        time.sleep(2)  # the generation is under way
        assert not outcome, "the 2,000-token request finished before the signal"
        signalled = time.monotonic()
        server.send_signal(signal.SIGTERM)
        returncode = server.wait(timeout=GRACE_S + 30)
        took = time.monotonic() - signalled
        client.join(timeout=30)
        assert server.stderr is not None
        log = server.stderr.read().decode()
    finally:
        stop(server)
    assert returncode == 0
    assert took < GRACE_S + 15, f"exited {took:.1f} s after SIGTERM"
    assert outcome, "the client never heard back"  # a response or a closed connection
    # An expected end, logged as one line: an operator reads no traceback into it.
    assert "Traceback" not in log and "never retrieved" not in log, log
    assert "was aborted" in log


def test_a_negative_shutdown_timeout_is_refused(tmp_path: Path) -> None:
    result = pagedrag("serve", "--shutdown-timeout", "-1", "--data-dir", str(tmp_path), *MODEL)
    assert_one_line_error(result, "--shutdown-timeout")


@pytest.mark.parametrize(
    ("flags", "named"),
    [
        (["--keep-alive", "soon"], "keep_alive must be"),
        (["--keep-alive", "5 minutes"], "keep_alive must be"),
        (["--max-loaded-models", "0"], "--max-loaded-models"),
    ],
)
def test_bad_model_pool_flags_are_refused(tmp_path: Path, flags: list[str], named: str) -> None:
    result = pagedrag("serve", *flags, "--data-dir", str(tmp_path), *MODEL)
    assert_one_line_error(result, named)
