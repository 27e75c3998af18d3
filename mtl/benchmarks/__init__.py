"""Benchmark builders: each module's `build(**config)` returns a `mtl.benchmark.Benchmark`."""
