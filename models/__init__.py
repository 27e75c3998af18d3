"""Encoders, heads and multi-task architectures (HPS, MTAN, Cross-stitch), one module per family."""
