"""Tensor and pipeline parallelism on torch.distributed: process groups, the workers and
the rank-0 runner that drives them (gloo on the CPU, NCCL on CUDA)."""
