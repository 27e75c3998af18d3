"""Scoring runs: Δp/Δm against the single-task reference and the epoch-selection rules; statistics over seeds (stats.py)."""
