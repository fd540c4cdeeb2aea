"""Benchmarks: ``python -m bench.deid`` and ``python -m bench.crosswalk``; see bench/README.md."""
