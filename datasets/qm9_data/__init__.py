"""Data files shipped with the QM9 benchmark (see README.md here for provenance)."""
