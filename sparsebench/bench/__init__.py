"""Benchmark sweeps built on the exporters and interleaved timing (scripts in benchmarks/)."""
