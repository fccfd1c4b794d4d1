"""Benchmarks: `make bench`. Results go to bench/results/ (not committed) and docs/benchmarks.md."""
