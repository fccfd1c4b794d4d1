"""Fixtures for the kernel tests: fresh random inputs, and the device the kernels run on.

Without CUDA the Triton kernels run in the interpreter (the root conftest.py sets
TRITON_INTERPRET=1 before any test module imports them).
"""

import os
import secrets

import pytest
import torch

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
