"""The serving engine's thread keeps the process's only lasting OpenMP team.

A second team (the caller's, had it loaded the model) makes every worker sleep between
parallel regions, which slowed single-stream decode by about a fifth
(`common/own_thread.py`). Counted in a fresh process, where no test ran torch before.
"""

import subprocess
import sys
from pathlib import Path

import pytest

from tests.tiny_model import save_tiny_llama

pytestmark = pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="needs /proc")

SCRIPT = """
import os, sys, time, torch
from engine import AsyncLLMEngine, SamplingParams
from engine.config import EngineConfig
torch.set_num_threads(2)
def threads():
    return len(os.listdir("/proc/self/task"))
before = threads()
config = EngineConfig(model=sys.argv[1], kv_cache_memory=16 << 20, home=sys.argv[2])
serving = AsyncLLMEngine.from_config(config)
deadline = time.monotonic() + 5  # a joined thread leaves the OS a moment later
while threads() > before + 1 and time.monotonic() < deadline:
    time.sleep(0.01)
loaded = threads()
list(serving.stream([5, 6, 7, 8], SamplingParams(temperature=0, max_tokens=4)))
print(before, loaded, threads())
serving.shutdown()
"""


def test_loading_leaves_the_caller_without_a_team(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    model_dir = save_tiny_llama(tmp_path / "tiny")
    monkeypatch.setenv("TOKENIZERS_PARALLELISM", "false")  # no tokenizer thread pool
    run = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(model_dir), str(tmp_path / "home")],
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    )
    before, loaded, streamed = map(int, run.stdout.split())
    assert loaded == before + 1  # the engine thread only: the loader's team left with it
    assert streamed == loaded + 1  # the engine's own team: one worker beside it
