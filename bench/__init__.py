"""Benchmarks. `make bench` runs bench/delivery.py; see docs/performance.md."""
