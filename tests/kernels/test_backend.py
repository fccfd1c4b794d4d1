"""Which backend runs: the one a caller forces by name, else Triton on CUDA and the
compiled kernel on the CPU; Triton is imported only once it is chosen."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from kernels import AttentionBackendError, reference, select_backend

CPU = torch.device("cpu")
ROOT = Path(__file__).resolve().parents[2]


def run_python(code: str, **env: str) -> subprocess.CompletedProcess:
    environment = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    return subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        env={**environment, **env},
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_an_unknown_name_is_a_one_line_error_naming_the_choices() -> None:
    with pytest.raises(AttentionBackendError) as error:
        select_backend(CPU, "cuda")
    message = str(error.value)
    assert "\n" not in message
    assert "'cuda'" in message and "triton" in message and "reference" in message


def test_the_cpu_runs_the_compiled_kernel_unless_told_otherwise(monkeypatch) -> None:
    monkeypatch.setenv("PAGEDRAG_ATTENTION", "triton")  # the edge's to read, not the kernels'
    assert select_backend(CPU).NAME == "cpu"
    assert select_backend(CPU, "") == select_backend(CPU)  # empty is unset
    assert select_backend(CPU, "cpu") == select_backend(CPU)
    assert select_backend(CPU, "reference") is reference


@pytest.mark.skipif(torch.cuda.is_available(), reason="with CUDA the kernels are compiled")
def test_triton_forced_on_the_cpu_runs_the_kernels_in_the_interpreter() -> None:
    pytest.importorskip("triton", reason="Triton is not installed (the dev extra has it)")
    from kernels import triton_attention

    assert triton_attention.INTERPRETED  # the root conftest.py set TRITON_INTERPRET=1 in time
    assert select_backend(CPU, "triton") is triton_attention


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_runs_the_kernels_unless_told_otherwise() -> None:
    from kernels import triton_attention

    assert select_backend(torch.device("cuda")) is triton_attention
    assert select_backend(torch.device("cuda"), "reference") is reference


def test_the_reference_path_never_imports_triton() -> None:
    result = run_python(
        "import sys, torch, kernels, engine\n"
        "cache, new = torch.zeros(2, 4, 1, 16), torch.ones(1, 1, 16)\n"
        "kernels.write_kv_cache(new, new, cache, cache.clone(), torch.tensor([3]))\n"
        "assert cache[0, 3].eq(1).all()\n"
        "assert 'triton' not in sys.modules, 'triton was imported'\n"
    )
    assert result.returncode == 0, result.stderr


def test_triton_forced_on_the_cpu_without_the_interpreter_says_what_to_set() -> None:
    pytest.importorskip("triton", reason="Triton is not installed (the dev extra has it)")
    code = "import torch, kernels\nkernels.select_backend(torch.device('cpu'), 'triton')"
    result = run_python(code)
    assert result.returncode != 0
    assert "triton attention backend on cpu needs TRITON_INTERPRET=1" in result.stderr
