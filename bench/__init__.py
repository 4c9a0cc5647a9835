"""Benchmarks that print figures (never part of the pass/fail test run).

``python -m bench.latency_throughput``: latency at a steady offered load and throughput at
saturation, against a direct (no Temporal) baseline and a no-op workflow ceiling.
``python -m bench.waiting_deals``: memory with many deals waiting for a signature, then the drain.
"""
