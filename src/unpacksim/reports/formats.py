"""Every output form of a finding behind one name: ``render(finding, "html")``."""

from __future__ import annotations

from collections.abc import Callable

from unpacksim.reports.records import Finding
from unpacksim.reports.render_graph import Which, render_dot, render_graphml
from unpacksim.reports.render_html import render_html
from unpacksim.reports.render_markdown import render_markdown
from unpacksim.reports.render_text import render_text

__all__ = ["FORMATS", "GRAPH_FORMATS", "render"]

_RENDERERS: dict[str, Callable[[Finding], str]] = {
    "text": render_text,
    "md": render_markdown,
    "html": render_html,
}
_GRAPH_RENDERERS: dict[str, Callable[[Finding, Which], str]] = {
    "dot": render_dot,
    "graphml": render_graphml,
}

#: The format names, in the order ``--help`` lists them.
FORMATS: tuple[str, ...] = ("html", "md", "text", "dot", "graphml")
#: The formats that draw only the graphs, and so take ``graph=`` (both, before or after).
GRAPH_FORMATS: tuple[str, ...] = tuple(_GRAPH_RENDERERS)


def render(finding: Finding, fmt: str, *, graph: Which = "both") -> str:
    """``finding`` in format ``fmt`` (one of :data:`FORMATS`).

    Raises:
        ValueError: ``fmt`` is not a known format, or ``graph`` is not both/before/after.
    """
    if fmt in _GRAPH_RENDERERS:
        return _GRAPH_RENDERERS[fmt](finding, graph)
    if fmt not in _RENDERERS:
        raise ValueError(f"unknown report format {fmt!r}: use one of {', '.join(FORMATS)}")
    return _RENDERERS[fmt](finding)
