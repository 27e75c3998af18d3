"""Reporting: the run store (every finished run as one DataFrame), tables and plots."""
