"""Shared fixtures. Nothing may download: the library models come from the local store."""

import os

import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
# NOTE: without a CUDA device the Triton kernels run in Triton's CPU interpreter. Triton
# reads this when a kernel is decorated (when `kernels.triton_*` is first imported), and
# pytest imports this file before any test module, so it holds whatever the test order.
# Only code that imports Triton reads it; the rest of the suite runs the reference.
if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")
