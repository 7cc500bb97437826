"""Benchmarks: the connector side by side with raw paho-mqtt (see bench/run.py, docs/performance.md)."""
