"""The reference graphs of a finding as Graphviz DOT and as GraphML (standard library only).

Both render the graph before and after (``which="both"``, two clusters in DOT, two ``<graph>``
elements in GraphML) or one of them.  Nodes and edges on the violating path are marked: red in
DOT, an ``on_path`` attribute in GraphML.  Pure functions of the record.

Node ids must be unique in a whole document, so with ``which="both"`` each id is prefixed with
its stage (``before:content/default/sha256:...``); GraphML keeps the record's id in ``node_id``.
"""

from __future__ import annotations

import itertools
from typing import Literal
from xml.sax.saxutils import escape, quoteattr

from unpacksim.reports.records import Finding, GraphData, GraphEdge, GraphNode
from unpacksim.reports.textutil import clean, shorten

__all__ = ["KIND_COLOURS", "Which", "path_edges", "render_dot", "render_graphml", "stages"]

Which = Literal["both", "before", "after"]

#: Fill colours by node kind, shared with the HTML renderer.
KIND_COLOURS = {
    "image": "#dbe8fb",
    "content": "#def2e3",
    "snapshot": "#fdf0cf",
    "lease": "#ece0fa",
    "ingest": "#fbe0dd",
    "container": "#d6f1f5",
}
OTHER_COLOUR = "#eeeeee"
PATH_COLOUR = "#c5221f"


def stages(finding: Finding, which: Which) -> list[tuple[str, GraphData]]:
    """The (stage name, graph) pairs ``which`` selects, before first."""
    if which not in ("both", "before", "after"):
        raise ValueError(f"which must be 'both', 'before' or 'after', got {which!r}")
    pairs = [("before", finding.graph_before), ("after", finding.graph_after)]
    return [(name, graph) for name, graph in pairs if which in ("both", name)]


def path_edges(path: tuple[str, ...]) -> set[tuple[str, str]]:
    """The (source, target) pairs the violating path walks."""
    return set(itertools.pairwise(path))


# --- DOT -----------------------------------------------------------------------------------


def _dot(text: str) -> str:
    """A DOT quoted string: lines joined by DOT's ``\\n``; ``\\`` doubled so Graphviz shows it."""
    lines = (clean(line).replace("\\", "\\\\").replace('"', '\\"') for line in text.split("\n"))
    return '"' + "\\n".join(lines) + '"'


def _dot_attrs(attrs: dict[str, str]) -> str:
    return "[" + ", ".join(f"{k}={_dot(v)}" for k, v in attrs.items()) + "]"


def _dot_node(node: GraphNode, node_id: str, on_path: bool) -> str:
    attrs = {
        "label": f"{node.kind}{'' if node.present else ' (missing)'}\n{shorten(node.label, 40)}",
        "tooltip": f"{node.id}\n{node.label}",
        "fillcolor": KIND_COLOURS.get(node.kind, OTHER_COLOUR),
        "style": "rounded,filled" + ("" if node.present else ",dashed"),
    }
    if on_path:
        attrs |= {"color": PATH_COLOUR, "penwidth": "2.5"}
    return f"{_dot(node_id)} {_dot_attrs(attrs)};"


def _dot_edge(edge: GraphEdge, ids: tuple[str, str], on_path: bool) -> str:
    attrs = {"label": edge.key or edge.kind, "tooltip": f"{edge.kind} {edge.key}".strip()}
    if edge.kind == "parent":
        attrs["style"] = "dashed"
    if on_path:
        attrs |= {"color": PATH_COLOUR, "penwidth": "2.5", "fontcolor": PATH_COLOUR}
    return f"{_dot(ids[0])} -> {_dot(ids[1])} {_dot_attrs(attrs)};"


def _dot_stage(finding: Finding, graph: GraphData, prefix: str, indent: str) -> list[str]:
    on_nodes, on_edges = set(finding.path), path_edges(finding.path)
    lines = [indent + _dot_node(n, prefix + n.id, n.id in on_nodes) for n in graph.nodes]
    for e in graph.edges:
        ends = (prefix + e.source, prefix + e.target)
        lines.append(indent + _dot_edge(e, ends, (e.source, e.target) in on_edges))
    return lines


def render_dot(finding: Finding, which: Which = "both") -> str:
    """The graphs as one DOT ``digraph`` (a cluster per stage when ``which`` is ``both``)."""
    title = {"label": f"{finding.id}: {finding.property.name}", "rankdir": "TB"}
    lines = [
        f"digraph {_dot(finding.id)} {{",
        f"  graph {_dot_attrs(title | {'fontname': 'Helvetica'})};",
        '  node [shape="box", fontname="Helvetica", fontsize="10"];',
        '  edge [fontname="Helvetica", fontsize="8"];',
    ]
    for stage, graph in stages(finding, which):
        if which != "both":
            lines += _dot_stage(finding, graph, "", "  ")
            continue
        lines += [f"  subgraph {_dot('cluster_' + stage)} {{", f"    label={_dot(stage)};"]
        lines += _dot_stage(finding, graph, f"{stage}:", "    ")
        lines.append("  }")
    lines.append("}")
    return "\n".join(lines) + "\n"


# --- GraphML ---------------------------------------------------------------------------------

_KEYS = (
    ("n_id", "node", "node_id", "string"),
    ("n_kind", "node", "kind", "string"),
    ("n_label", "node", "label", "string"),
    ("n_present", "node", "present", "boolean"),
    ("n_path", "node", "on_path", "boolean"),
    ("e_kind", "edge", "kind", "string"),
    ("e_key", "edge", "key", "string"),
    ("e_path", "edge", "on_path", "boolean"),
    ("g_stage", "graph", "stage", "string"),
    ("g_finding", "graph", "finding", "string"),
)


def _xml(text: str) -> str:
    return escape(clean(text))


def _attr(text: str) -> str:
    return quoteattr(clean(text))


def _data(key: str, value: str | bool) -> str:
    text = ("true" if value else "false") if isinstance(value, bool) else value
    return f'<data key="{key}">{_xml(text)}</data>'


def _graphml_graph(finding: Finding, stage: str, graph: GraphData, prefix: str) -> list[str]:
    on_nodes, on_edges = set(finding.path), path_edges(finding.path)
    lines = [f'  <graph id={_attr(stage)} edgedefault="directed">']
    lines.append(f"    {_data('g_stage', stage)}{_data('g_finding', finding.id)}")
    for n in graph.nodes:
        data = _data("n_id", n.id) + _data("n_kind", n.kind) + _data("n_label", n.label)
        data += _data("n_present", n.present) + _data("n_path", n.id in on_nodes)
        lines.append(f"    <node id={_attr(prefix + n.id)}>{data}</node>")
    for i, e in enumerate(graph.edges):
        ends = f"source={_attr(prefix + e.source)} target={_attr(prefix + e.target)}"
        data = _data("e_kind", e.kind) + _data("e_key", e.key)
        data += _data("e_path", (e.source, e.target) in on_edges)
        lines.append(f'    <edge id="{stage}-e{i}" {ends}>{data}</edge>')
    lines.append("  </graph>")
    return lines


def render_graphml(finding: Finding, which: Which = "both") -> str:
    """The graphs as GraphML: one ``<graph>`` per stage, attributes declared as keys."""
    both = which == "both"
    lines = [
        '<?xml version="1.0" encoding="UTF-8"?>',
        '<graphml xmlns="http://graphml.graphdrawing.org/xmlns"'
        ' xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"'
        ' xsi:schemaLocation="http://graphml.graphdrawing.org/xmlns'
        ' http://graphml.graphdrawing.org/xmlns/1.0/graphml.xsd">',
    ]
    lines += [
        f'  <key id="{k}" for="{scope}" attr.name="{name}" attr.type="{kind}"/>'
        for k, scope, name, kind in _KEYS
    ]
    for stage, graph in stages(finding, which):
        lines += _graphml_graph(finding, stage, graph, f"{stage}:" if both else "")
    lines.append("</graphml>")
    return "\n".join(lines) + "\n"
