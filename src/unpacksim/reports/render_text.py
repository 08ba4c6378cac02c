"""The terminal form of a finding: plain text, 100 columns, nothing a terminal interprets.

A pure function of the record: the same finding gives the same bytes.  Every string from the
record goes through :func:`~unpacksim.reports.textutil.clean`, so an escape sequence in a
label is shown, not executed.
"""

from __future__ import annotations

import textwrap

from unpacksim.reports.records import Finding, GraphEdge
from unpacksim.reports.textutil import (
    clean,
    event_outcome,
    event_text,
    format_args,
    format_rule,
    format_time,
    graph_diff,
    node_name,
    path_names,
)

__all__ = ["render_text"]

WIDTH = 100


def render_text(finding: Finding) -> str:
    """The finding as terminal text, ending with a newline."""
    sections = [
        _header(finding),
        _section("WHAT HAPPENED", _paragraphs(finding.explanation)),
        _section("ACTORS", _actors(finding)),
        _section("PROGRAM", _program(finding)),
        _section("SCHEDULE", [clean(finding.schedule) or "(FIFO: no decisions)"]),
        _section("FAULT PLAN", [clean(format_rule(r)) for r in finding.fault_plan] or ["(none)"]),
        _section("TRACE", _trace(finding)),
        _section("GRAPH", _graph(finding)),
        _section("REPLAY", _replay(finding)),
        _section("VERSIONS", [_versions(finding)]),
    ]
    return "\n\n".join(sections) + "\n"


def _section(title: str, lines: list[str]) -> str:
    return "\n".join([title, *("  " + line if line else "" for line in lines)])


def _header(finding: Finding) -> str:
    prop = finding.property
    lines = [
        f"FINDING {clean(finding.id)}: {clean(prop.name)} broken "
        f"(implementation: {clean(finding.implementation)})",
        *textwrap.wrap(
            clean(prop.description), WIDTH - 2, initial_indent="  ", subsequent_indent="  "
        ),
    ]
    return "\n".join(lines)


def _paragraphs(text: str) -> list[str]:
    lines: list[str] = []
    for block in clean(text, keep_newlines=True).split("\n\n"):
        if lines:
            lines.append("")
        lines.extend(textwrap.wrap(" ".join(block.split()), WIDTH - 2) or [""])
    return lines or ["(no explanation)"]


def _actors(finding: Finding) -> list[str]:
    width = max((len(clean(a.name)) for a in finding.actors), default=0)
    return [f"{clean(a.name):<{width}}  {clean(a.description)}" for a in finding.actors]


def _program(finding: Finding) -> list[str]:
    return [
        f"{i}. {clean(s.actor)}: {clean(s.action)}({clean(format_args(s.args))})"
        for i, s in enumerate(finding.program, 1)
    ] or ["(empty)"]


def _trace(finding: Finding) -> list[str]:
    if not finding.trace:
        return ["(no events)"]
    width = max(len(clean(e.process)) for e in finding.trace)
    lines = []
    for event in finding.trace:
        head = f"{event.seq:>4}  {format_time(event.time):>10}  {clean(event.process):<{width}}  "
        lines.append(clean(f"{head}{event_text(event)} {event_outcome(event)}".rstrip()))
    lines.extend(
        f"{'':>4}  {'':>10}  {clean(c.process):<{width}}  .. {clean(c.op)} never completed"
        for c in finding.calls()
        if c.end is None
    )
    return lines


def _graph(finding: Finding) -> list[str]:
    before, after = finding.graph_before, finding.graph_after
    lines = [
        f"before: {len(before.nodes)} nodes, {len(before.edges)} edges; "
        f"after: {len(after.nodes)} nodes, {len(after.edges)} edges"
    ]
    diff = graph_diff(before, after)
    for title, nodes in (
        ("removed", diff.removed),
        ("added", diff.added),
        ("no longer present", diff.now_missing),
    ):
        lines.extend(f"{title}: {clean(node_name(n))}" for n in nodes)
    for title, edges in (
        ("reference removed", diff.edges_removed),
        ("reference added", diff.edges_added),
    ):
        lines.extend(f"{title}: {clean(_edge(e))}" for e in edges)
    if finding.path:
        lines.append("violating path: " + " -> ".join(clean(n) for n in path_names(finding)))
    return lines


def _edge(edge: GraphEdge) -> str:
    via = f"{edge.kind} {edge.key}" if edge.key else edge.kind
    return f"{edge.source} -> {edge.target} ({via})"


def _replay(finding: Finding) -> list[str]:
    replay = finding.replay
    lines = [clean(replay.command)]
    if replay.seed is not None:
        lines.append(f"seed: {replay.seed}")
    if replay.hypothesis_blob is not None:
        lines.append(f"hypothesis blob: {clean(replay.hypothesis_blob)}")
    return lines


def _versions(finding: Finding) -> str:
    v = finding.versions
    parts = [
        ("unpacksim", v.unpacksim),
        ("python", v.python),
        ("simpy", v.simpy),
        ("hypothesis", v.hypothesis),
        ("networkx", v.networkx),
    ]
    return ", ".join(f"{name} {clean(version)}" for name, version in parts)
