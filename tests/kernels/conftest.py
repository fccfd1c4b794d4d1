"""Without a CUDA device, the Triton kernels run here in Triton's CPU interpreter.

NOTE: Triton reads TRITON_INTERPRET when a kernel is decorated, that is when a
`kernels.triton_*` module is first imported. pytest imports this file before any test
module of this folder, and nothing outside it imports the kernels, so the setting is in
place whatever the order the tests run in.
"""

import os
import secrets

import pytest
import torch

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")

SEED_VARIABLE = "PAGEDRAG_TEST_SEED"


@pytest.fixture
def generator() -> torch.Generator:
    """Fresh random values every run; a failure's captured output names the seed to rerun."""
    seed = int(os.environ.get(SEED_VARIABLE) or secrets.randbits(63))
    print(f"random inputs from seed {seed}: rerun with {SEED_VARIABLE}={seed}")
    return torch.Generator().manual_seed(seed)


@pytest.fixture
def device() -> torch.device:
    """The GPU where there is one (compiled kernels), else the CPU (the interpreter)."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")
