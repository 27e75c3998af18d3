"""Multi-task loss and gradient balancing: methods, gradient engine, trainer, metrics."""

__version__ = "0.1.0"
