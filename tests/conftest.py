"""Shared fixtures. Nothing may download: the library models come from the local store."""

import os
from collections.abc import Iterator

import pytest
import torch

from tests.postgres import PostgresCluster, server_binaries, throwaway_cluster

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
# NOTE: without a CUDA device the Triton kernels run in Triton's CPU interpreter. Triton
# reads this when a kernel is decorated (when `kernels.triton_*` is first imported), and
# pytest imports this file before any test module, so it holds whatever the test order.
# Only code that imports Triton reads it; the rest of the suite runs the reference.
if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresCluster]:
    """A PostgreSQL server of the tests' own, for the whole session."""
    binaries = server_binaries()
    if binaries is None:
        pytest.skip("PostgreSQL's server programs (initdb, pg_ctl) are not installed")
    with throwaway_cluster(binaries) as cluster:
        yield cluster
