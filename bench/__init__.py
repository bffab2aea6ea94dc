"""Benchmarks: each prints its figures and ends with one line of name=value pairs.

Run them from the repository root as modules, e.g. `python -m bench.queue_overhead`.
"""
