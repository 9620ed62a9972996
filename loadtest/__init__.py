"""Benchmark harness and locust scenarios for gatekeeper (``make bench``; not part of ``make test``)."""
