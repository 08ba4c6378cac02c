"""Inline SVG for the HTML report: the per-actor timeline and the reference graphs.

Pure functions of the records, laid out in Python so the same finding always gives the same
picture (no layout engine, no script).  Every string from the record is made safe with
:func:`~unpacksim.reports.textutil.clean` and escaped with :func:`html.escape`.

Timeline: one lane per process, in order of first appearance.  The x axis is simulated time,
except that events at one instant are spread out in trace order (a race lives in the order of
same-instant events, which a linear axis would draw on top of each other); the gaps between
instants share a fixed width in proportion to their length.  A bar runs from an invoke to its
complete: blue ok, red error, grey dashed never completed; an injected outcome is hatched.  A
fault event is an orange diamond in its lane, labelled, with a shaded band across all lanes at
the moment it fired (a hand-built trace with injected outcomes but no fault events gets the band
at the injected complete instead).

Graphs: layered top-down by longest path from the roots (nodes nothing references), in the
order of the records, with one barycentre pass to reduce crossings.  Both stages share one
layout, so a node sits at the same place before and after.
"""

from __future__ import annotations

import html
import itertools
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass

from unpacksim.reports.records import Call, Finding, GraphData, GraphEdge, GraphNode, TraceEvent
from unpacksim.reports.render_graph import KIND_COLOURS, OTHER_COLOUR, path_edges
from unpacksim.reports.textutil import (
    clean,
    event_outcome,
    format_args,
    format_outcome,
    format_time,
    is_error,
    shorten,
)

__all__ = ["GraphLayout", "esc", "graph_svg", "layout_graphs", "timeline_svg"]


def esc(text: str) -> str:
    """``text`` safe for HTML and SVG text and attribute values."""
    return html.escape(clean(text), quote=True)


def _num(value: float) -> str:
    """Coordinates with two decimals at most: stable text for the same layout."""
    return f"{value:.2f}".rstrip("0").rstrip(".")


# --- timeline --------------------------------------------------------------------------------

GUTTER = 170  # lane names
TOP = 34  # the time axis
LANE_H = 34
BAR_H = 16
SLOT = 14  # between consecutive events
CHAR_W = 6.1  # 10px monospace
TIME_SPAN = 360  # shared by the gaps between instants
LABEL_CHARS = 24


def _label_width(op: str) -> float:
    return len(shorten(op, LABEL_CHARS)) * CHAR_W + 10


def _event_x(finding: Finding) -> list[float]:
    """The x offset of each trace event (see the module docstring)."""
    trace = finding.trace
    duration = trace[-1].time - trace[0].time if trace else 0.0
    xs = [0.0] * len(trace)
    for i in range(1, len(trace)):
        prev = trace[i - 1]
        step = max(SLOT, _label_width(prev.op)) if prev.kind == "invoke" else SLOT
        gap = (trace[i].time - prev.time) / duration * TIME_SPAN if duration > 0 else 0.0
        xs[i] = xs[i - 1] + step + gap
    return xs


def timeline_svg(finding: Finding) -> str:
    """The per-actor timeline as one ``<svg>`` element ("" for an empty trace)."""
    if not finding.trace:
        return ""
    xs = _event_x(finding)
    index = {event.seq: i for i, event in enumerate(finding.trace)}
    lanes = list(dict.fromkeys(e.process for e in finding.trace))
    end = xs[-1] + 3 * SLOT
    width, height = GUTTER + end + 20, TOP + len(lanes) * LANE_H + 8
    parts = [
        f'<svg class="timeline" xmlns="http://www.w3.org/2000/svg" width="{_num(width)}" '
        f'height="{_num(height)}" viewBox="0 0 {_num(width)} {_num(height)}" role="img" '
        f'aria-label="timeline of {len(lanes)} processes">',
        '<defs><pattern id="tl-hatch" width="6" height="6" patternUnits="userSpaceOnUse" '
        'patternTransform="rotate(45)"><rect width="3" height="6" fill="#f29900" '
        'fill-opacity="0.75"/></pattern></defs>',
    ]
    parts += _lanes(lanes, width)
    parts += _axis(finding, xs, height)
    faulted = {e.call for e in finding.trace if e.kind == "fault"}
    for call in finding.calls():
        start = GUTTER + xs[index[call.invoke_seq]]
        stop = GUTTER + (xs[index[call.complete_seq]] if call.complete_seq is not None else end)
        lane_y = TOP + lanes.index(call.process) * LANE_H
        announce = call.injected and call.call not in faulted
        parts += _bar(call, start, stop, lane_y, height, announce=announce)
    for event, x in zip(finding.trace, xs, strict=True):  # on top of the bars
        if event.kind == "fault":
            parts += _fault(event, GUTTER + x, TOP + lanes.index(event.process) * LANE_H, height)
    parts.append("</svg>")
    return "\n".join(parts)


def _band(x: float, height: float, title: str) -> str:
    """A shaded band across every lane at the moment a fault fired."""
    return (
        f'<rect class="fault-band" x="{_num(x - 3)}" y="{TOP}" width="6" '
        f'height="{_num(height - TOP)}"><title>{esc(title)}</title></rect>'
    )


def _fault(event: TraceEvent, x: float, lane_y: float, height: float) -> list[str]:
    """A fault event: a band, a diamond in its lane, and what the site produced."""
    title = f"fault {event.op} fired in {event.process}: {event_outcome(event)}"
    if event.args:
        title += f" ({format_args(event.args)})"
    y = lane_y + LANE_H / 2
    diamond = f"M{_num(x)},{_num(y - 6)} l6,6 l-6,6 l-6,-6 z"
    return [
        _band(x, height, title),
        f'<g class="fault"><title>{esc(title)}</title><path class="fault-mark" d="{diamond}"/>'
        f'<text class="fault-label" x="{_num(x + 8)}" y="{_num(lane_y + 8)}">'
        f"fault {esc(shorten(event.op, LABEL_CHARS))}: {esc(event.outcome or '')}</text></g>",
    ]


def _lanes(lanes: list[str], width: float) -> list[str]:
    parts = []
    for i, name in enumerate(lanes):
        y = TOP + i * LANE_H
        shade = "lane odd" if i % 2 else "lane"
        parts.append(
            f'<rect class="{shade}" x="0" y="{y}" width="{_num(width)}" height="{LANE_H}"/>'
        )
        parts.append(
            f'<text class="lane-name" x="8" y="{y + LANE_H / 2 + 4}"><title>{esc(name)}</title>'
            f"{esc(shorten(name, 24))}</text>"
        )
    return parts


def _axis(finding: Finding, xs: list[float], height: float) -> list[str]:
    parts = ['<text class="axis-title" x="8" y="14">simulated time (s)</text>']
    last_label = -1e9
    previous: float | None = None
    for event, x in zip(finding.trace, xs, strict=True):
        if event.time == previous:
            continue
        previous = event.time
        gx = GUTTER + x
        parts.append(
            f'<line class="tick" x1="{_num(gx)}" y1="24" x2="{_num(gx)}" y2="{_num(height)}"/>'
        )
        if gx - last_label >= 56:
            parts.append(
                f'<text class="tick-label" x="{_num(gx)}" y="20">{format_time(event.time)}</text>'
            )
            last_label = gx
    return parts


def _bar(
    call: Call, start: float, stop: float, lane_y: float, height: float, *, announce: bool
) -> list[str]:
    """One call's bar; ``announce`` draws its injected outcome's band (no fault event did)."""
    state = "err" if is_error(call) else ("ok" if call.outcome == "ok" else "indet")
    y = lane_y + (LANE_H - BAR_H) / 2
    w = max(stop - start, 4.0)
    detail = f"{call.process}: {call.op}({format_args(call.args)})\n"
    detail += f"{format_time(call.start)}s to "
    detail += f"{format_time(call.end)}s" if call.end is not None else "the end of the run"
    detail += f": {format_outcome(call)}" + (f": {call.message}" if call.message else "")
    box = f'x="{_num(start)}" y="{_num(y)}" width="{_num(w)}" height="{BAR_H}"'
    parts = [_band(stop, height, f"fault injected: {format_outcome(call)}")] if announce else []
    parts.append(f'<g class="call {state}"><title>{esc(detail)}</title><rect {box} rx="3"/>')
    if call.injected:
        parts.append(f'<rect class="hatch" {box} rx="3" fill="url(#tl-hatch)"/>')
    if announce:
        parts.append(
            f'<text class="fault-label" x="{_num(stop + 4)}" y="{_num(y - 2)}">'
            f"injected {esc(call.outcome or '')}</text>"
        )
    if w >= _label_width(call.op):
        parts.append(
            f'<text class="op" x="{_num(start + 4)}" y="{_num(y + 12)}">'
            f"{esc(shorten(call.op, LABEL_CHARS))}</text>"
        )
    if state == "err":
        parts.append(f'<circle class="err-mark" cx="{_num(stop)}" cy="{_num(y)}" r="4"/>')
    parts.append("</g>")
    return parts


# --- graph layout ----------------------------------------------------------------------------

NODE_W, NODE_H = 220, 42
GAP_X, GAP_Y = 28, 58
MARGIN = 16


@dataclass(frozen=True)
class GraphLayout:
    """Node positions (top-left corners) shared by the graphs drawn with it."""

    positions: dict[str, tuple[float, float]]
    depth: dict[str, int]
    width: float
    height: float


def _union(graphs: Iterable[GraphData]) -> tuple[list[str], list[tuple[str, str]]]:
    nodes: dict[str, None] = {}
    edges: dict[tuple[str, str], None] = {}
    for graph in graphs:
        nodes.update((n.id, None) for n in graph.nodes)
        edges.update(((e.source, e.target), None) for e in graph.edges)
    return list(nodes), list(edges)


def _acyclic(nodes: list[str], edges: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """``edges`` without the back edges a depth-first walk in node order finds."""
    children: dict[str, list[str]] = {n: [] for n in nodes}
    for s, t in edges:
        children[s].append(t)
    state: dict[str, int] = {}  # 1 on the stack, 2 done
    back: set[tuple[str, str]] = set()
    for root in nodes:
        if root in state:
            continue
        stack = [(root, iter(children[root]))]
        state[root] = 1
        while stack:
            node, todo = stack[-1]
            child = next(todo, None)
            if child is None:
                state[node] = 2
                stack.pop()
            elif state.get(child) == 1:
                back.add((node, child))
            elif child not in state:
                state[child] = 1
                stack.append((child, iter(children[child])))
    return [e for e in edges if e not in back]


def _depths(nodes: list[str], edges: list[tuple[str, str]]) -> dict[str, int]:
    """Longest-path depth from the roots (Kahn's order, ties in node order)."""
    dag = _acyclic(nodes, edges)
    indegree = dict.fromkeys(nodes, 0)
    children: dict[str, list[str]] = {n: [] for n in nodes}
    for s, t in dag:
        indegree[t] += 1
        children[s].append(t)
    depth = dict.fromkeys(nodes, 0)
    ready = deque(n for n in nodes if indegree[n] == 0)
    while ready:
        node = ready.popleft()
        for child in children[node]:
            depth[child] = max(depth[child], depth[node] + 1)
            indegree[child] -= 1
            if indegree[child] == 0:
                ready.append(child)
    return depth


def _barycentre(parents: list[str], slot: dict[str, int], default: int) -> float:
    """The mean slot of the parents already placed (``default`` when there are none)."""
    placed = [slot[p] for p in parents if p in slot]
    return sum(placed) / len(placed) if placed else float(default)


def layout_graphs(graphs: Iterable[GraphData]) -> GraphLayout:
    """One layered layout for the union of ``graphs``."""
    nodes, edges = _union(graphs)
    depth = _depths(nodes, edges)
    layers: dict[int, list[str]] = {}
    for node in nodes:
        layers.setdefault(depth[node], []).append(node)
    parents: dict[str, list[str]] = {n: [] for n in nodes}
    for source, target in edges:
        parents[target].append(source)
    slot: dict[str, int] = {}
    for d in sorted(layers):
        order = {n: i for i, n in enumerate(layers[d])}
        layers[d].sort(key=lambda n: (_barycentre(parents[n], slot, order[n]), order[n]))
        slot.update((n, i) for i, n in enumerate(layers[d]))
    widest = max((len(layer) for layer in layers.values()), default=0)
    width = 2 * MARGIN + widest * NODE_W + max(widest - 1, 0) * GAP_X
    positions: dict[str, tuple[float, float]] = {}
    for d, layer in layers.items():
        span = len(layer) * NODE_W + (len(layer) - 1) * GAP_X
        left = (width - span) / 2
        for i, node in enumerate(layer):
            positions[node] = (left + i * (NODE_W + GAP_X), MARGIN + d * (NODE_H + GAP_Y))
    height = 2 * MARGIN + len(layers) * NODE_H + max(len(layers) - 1, 0) * GAP_Y
    return GraphLayout(positions, depth, width, height)


# --- graph drawing ---------------------------------------------------------------------------


def graph_svg(graph: GraphData, layout: GraphLayout, path: tuple[str, ...], stage: str) -> str:
    """One stage of the reference graph as an ``<svg>``; the violating path in red."""
    on_nodes, on_edges = set(path), path_edges(path)
    drawn = {n.id for n in graph.nodes}
    w, h = _num(layout.width), _num(layout.height)
    parts = [
        f'<svg class="graph" xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" '
        f'viewBox="0 0 {w} {h}" role="img" aria-label="reference graph {esc(stage)}">',
        "<defs>"
        + _marker(f"{stage}-arrow", "#5f6368")
        + _marker(f"{stage}-arrow-path", "#c5221f")
        + "</defs>",
    ]
    for edge in graph.edges:
        parts.append(_edge(edge, layout, (edge.source, edge.target) in on_edges, stage))
    present_edges = {(e.source, e.target) for e in graph.edges}
    for s, t in itertools.pairwise(path):
        if s in drawn and t in drawn and (s, t) not in present_edges:
            parts.append(_missing_step(s, t, layout, stage))
    parts += [_node(n, layout, n.id in on_nodes) for n in graph.nodes]
    parts.append("</svg>")
    return "\n".join(parts)


def _marker(marker_id: str, colour: str) -> str:
    return (
        f'<marker id="{marker_id}" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="9" '
        f'markerHeight="9" markerUnits="userSpaceOnUse" orient="auto"><path d="M0,0 L10,5 L0,10 z" '
        f'fill="{colour}"/></marker>'
    )


def _ends(s: str, t: str, layout: GraphLayout) -> str:
    (sx, sy), (tx, ty) = layout.positions[s], layout.positions[t]
    if layout.depth[t] > layout.depth[s]:
        x1, y1, x2, y2 = sx + NODE_W / 2, sy + NODE_H, tx + NODE_W / 2, ty
        return f"M{_num(x1)},{_num(y1)} L{_num(x2)},{_num(y2)}"
    # Same layer or upwards (a cycle): a curve between the right-hand sides.
    x1, y1, x2, y2 = sx + NODE_W, sy + NODE_H / 2, tx + NODE_W, ty + NODE_H / 2
    bulge = max(x1, x2) + GAP_X + abs(y2 - y1) / 4
    return f"M{_num(x1)},{_num(y1)} C{_num(bulge)},{_num(y1)} {_num(bulge)},{_num(y2)} {_num(x2)},{_num(y2)}"


def _edge(edge: GraphEdge, layout: GraphLayout, on_path: bool, stage: str) -> str:
    cls = "edge path" if on_path else "edge"
    cls += " parent" if edge.kind == "parent" else ""
    marker = f"{stage}-arrow-path" if on_path else f"{stage}-arrow"
    d = _ends(edge.source, edge.target, layout)
    (sx, sy), (tx, ty) = layout.positions[edge.source], layout.positions[edge.target]
    mx, my = (sx + tx + NODE_W) / 2, (sy + ty + NODE_H) / 2
    label = edge.key.removeprefix("containerd.io/") or edge.kind
    title = f"{edge.kind} {edge.key}: {edge.source} -> {edge.target}"
    return (
        f'<g class="{cls}"><title>{esc(title)}</title>'
        f'<path d="{d}" marker-end="url(#{marker})"/>'
        f'<text x="{_num(mx)}" y="{_num(my)}">{esc(shorten(label, 30))}</text></g>'
    )


def _missing_step(s: str, t: str, layout: GraphLayout, stage: str) -> str:
    title = f"path step {s} -> {t}: no such reference in this graph"
    return (
        f'<g class="edge path missing"><title>{esc(title)}</title>'
        f'<path d="{_ends(s, t, layout)}" marker-end="url(#{stage}-arrow-path)"/></g>'
    )


def _node(node: GraphNode, layout: GraphLayout, on_path: bool) -> str:
    x, y = layout.positions[node.id]
    cls = "node" + (" path" if on_path else "") + ("" if node.present else " missing")
    fill = KIND_COLOURS.get(node.kind, OTHER_COLOUR) if node.present else "#f6f6f6"
    kind = node.kind + ("" if node.present else " · missing")
    title = f"{node.id}\n{node.kind}: {node.label}" + ("" if node.present else " (missing)")
    return (
        f'<g class="{cls}"><title>{esc(title)}</title>'
        f'<rect x="{_num(x)}" y="{_num(y)}" width="{NODE_W}" height="{NODE_H}" rx="6" fill="{fill}"/>'
        f'<text class="kind" x="{_num(x + 8)}" y="{_num(y + 16)}">{esc(kind)}</text>'
        f'<text class="label" x="{_num(x + 8)}" y="{_num(y + 32)}">'
        f"{esc(shorten(node.label or node.id, 32))}</text></g>"
    )
