"""Locust load tests for the ``recommend`` ensemble and the helpers they share with
``cascade loadtest`` and ``benchmarks/bench_serving.py`` (see loadtests/README.md)."""
