"""Hydra launcher that spreads a multirun over one machine's GPUs with Ray (`launcher=gpus`)."""
