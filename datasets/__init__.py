"""Benchmark data: real on-disk formats, validation, and tiny-fixture writers (this project's own
`datasets` package, not the Hugging Face one; the environment must not install that)."""
