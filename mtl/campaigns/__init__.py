"""Campaigns: many runs launched together (reproduce a table, sweeps, compare a method, STL reference, the demo)."""
