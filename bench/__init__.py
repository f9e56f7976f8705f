"""Benchmarks of DESIGN §8: ``python -m bench.run`` (see docs/benchmarks.md)."""
