"""Benchmarks of renderq: accept rate of the front and end-to-end throughput of the queue."""
