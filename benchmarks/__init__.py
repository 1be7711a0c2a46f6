"""Side-by-side benchmarks: direct to a mock upstream, through a naive proxy, through Switchyard.

Run with ``python -m benchmarks`` (see README.md).
"""
