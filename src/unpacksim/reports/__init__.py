"""Findings as data (standard library only) and their renderers.

- ``records``: :class:`~unpacksim.reports.records.Finding` and its parts, frozen, with a
  versioned JSON form (``summary`` holds the per-command :class:`Summary`);
- ``io``: atomic writes and checked loads of finding files;
- ``render_text``, ``render_markdown``, ``render_html`` (with ``svg``), ``render_graph`` (DOT,
  GraphML), and ``formats.render(finding, fmt)`` over all of them.

This package imports nothing at import time, so ``import unpacksim.reports.records`` stays a
standard-library leaf.
"""
