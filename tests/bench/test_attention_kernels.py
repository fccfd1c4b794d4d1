"""The kernel benchmark: refuses a machine without CUDA, and its cases hold together.

Its real run needs a GPU; here its decode and prefill cases run at toy sizes on the
CPU (Triton's interpreter, timing faked), so a broken case is found before a GPU
session is spent on it.
"""

import argparse
import subprocess
import sys

import pytest
import torch

from bench import attention_kernels


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")
def test_without_cuda_it_says_so_and_exits_2() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "bench.attention_kernels"], capture_output=True, text=True
    )
    assert result.returncode == 2
    assert (
        result.stderr.strip() == "bench.attention_kernels needs a CUDA GPU; this machine has none"
    )


@pytest.mark.skipif(torch.cuda.is_available(), reason="runs the real thing on a GPU instead")
def test_every_case_runs_and_the_kernels_agree_with_sdpa(monkeypatch, capsys) -> None:
    pytest.importorskip("triton", reason="Triton is not installed (the dev extra has it)")
    monkeypatch.setattr(attention_kernels, "DEVICE", torch.device("cpu"))
    monkeypatch.setattr(attention_kernels, "DECODE_BATCHES", (1, 3))
    monkeypatch.setattr(attention_kernels, "DECODE_CONTEXTS", (40,))
    monkeypatch.setattr(attention_kernels, "PREFILL_CASES", ((1, 0, 17), (2, 20, 9)))
    monkeypatch.setattr(attention_kernels, "time_ms", lambda fn: (fn(), [1.0, 2.0, 3.0])[1])
    args = argparse.Namespace(
        num_heads=4, num_kv_heads=2, head_dim=64, dtype="float16", block_size=16, max_kv_gib=1
    )
    decode = attention_kernels.decode_rows(args, bandwidth=1e9)
    prefill = attention_kernels.prefill_rows(args)
    assert [(row["batch"], row["context"]) for row in decode] == [(1, 40), (3, 40)]
    # 3 sequences x 40 tokens x (K and V) x 2 KV heads x 64 x 2 bytes
    assert decode[1]["kv_bytes"] == 3 * 40 * 2 * 2 * 64 * 2
    assert [(row["seqs"], row["prefix"], row["new"]) for row in prefill] == [(1, 0, 17), (2, 20, 9)]
    for row in decode + prefill:
        assert row["rel_error_vs_sdpa"] < 1e-3  # fp16
    assert "| 3 | 40 |" in capsys.readouterr().out
