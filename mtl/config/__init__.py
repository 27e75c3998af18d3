"""Configuration: composing a run's config (`compose`) and the declared schema of its keys."""
