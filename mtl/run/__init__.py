"""One run: the trainer and its callbacks, the run directory, resume, preemption, device, precision, progress and loggers."""
