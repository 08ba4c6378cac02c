"""Findings as data (standard library only) and their renderers."""
