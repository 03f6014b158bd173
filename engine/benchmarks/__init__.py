"""Benchmarks: each module is runnable with `python -m engine.benchmarks.NAME` and prints JSON."""
