"""Benchmarks (run as scripts, e.g. ``python benchmarks/bench_serving.py --help``)."""
