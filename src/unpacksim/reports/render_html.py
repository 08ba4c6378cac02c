"""The HTML form of a finding: one self-contained file, readable offline, in any browser.

Inline CSS and inline SVG only: no script, no external font, stylesheet or image, and a
Content-Security-Policy that forbids fetching anything, so opening a report never touches the
network.  From the top: what broke and the story, the program and how to replay it, the
per-actor timeline, the reference graph before and after with the violating path, then the
fault plan, the trace and the versions.  A pure function of the record.
"""

from __future__ import annotations

from unpacksim.reports.records import Finding
from unpacksim.reports.svg import esc, graph_svg, layout_graphs, timeline_svg
from unpacksim.reports.textutil import (
    event_outcome,
    event_text,
    format_args,
    format_rule,
    format_time,
    graph_diff,
    node_name,
    path_names,
)

__all__ = ["render_html"]

_CSP = "default-src 'none'; style-src 'unsafe-inline'; img-src data:"

_CSS = """
:root { color-scheme: light; --ink: #202124; --muted: #5f6368; --line: #dadce0;
  --err: #c5221f; --ok: #1a73e8; --fault: #f29900; }
* { box-sizing: border-box; }
body { margin: 0 auto; max-width: 1200px; padding: 24px; color: var(--ink); background: #fff;
  font: 15px/1.5 system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial,
  sans-serif; }
h1 { font-size: 1.5em; margin: 0 0 4px; } h2 { font-size: 1.15em; margin: 28px 0 8px;
  border-bottom: 1px solid var(--line); padding-bottom: 4px; }
code, pre, .mono { font-family: ui-monospace, "SFMono-Regular", Menlo, Consolas,
  "Liberation Mono", monospace; font-size: 0.9em; }
pre { background: #f8f9fa; border: 1px solid var(--line); border-radius: 6px; padding: 10px;
  overflow-x: auto; white-space: pre-wrap; word-break: break-all; }
.lede { color: var(--muted); margin: 0 0 8px; }
.badge { display: inline-block; border: 1px solid var(--line); border-radius: 10px;
  padding: 0 8px; margin-right: 6px; font-size: 0.85em; background: #f8f9fa; }
.story { border-left: 4px solid var(--err); padding: 4px 14px; background: #fef7f6; }
.scroll { overflow-x: auto; border: 1px solid var(--line); border-radius: 6px; }
table { border-collapse: collapse; width: 100%; font-size: 0.9em; }
th, td { border-bottom: 1px solid var(--line); padding: 3px 8px; text-align: left;
  vertical-align: top; }
td.wrap { word-break: break-all; }
tr.injected td { background: #fef3e0; } tr.error td .outcome { color: var(--err); }
.legend span { margin-right: 14px; font-size: 0.85em; }
.swatch { display: inline-block; width: 14px; height: 10px; border-radius: 2px;
  vertical-align: middle; margin-right: 4px; border: 1px solid #0003; }
ol.path li { word-break: break-all; }
svg text { font-family: ui-monospace, Menlo, Consolas, "Liberation Mono", monospace;
  font-size: 10px; fill: var(--ink); }
svg .lane { fill: #fff; } svg .lane.odd { fill: #f8f9fa; }
svg .lane-name { font-size: 11px; font-weight: 600; }
svg .axis-title, svg .tick-label { fill: var(--muted); } svg .tick { stroke: #e8eaed; }
svg .call rect { stroke-width: 1; } svg .call.ok rect { fill: #d2e3fc; stroke: var(--ok); }
svg .call.err rect { fill: #fad2cf; stroke: var(--err); }
svg .call.indet rect { fill: #eeeeee; stroke: var(--muted); stroke-dasharray: 4 2; }
svg .call rect.hatch { fill: url(#tl-hatch); stroke: var(--fault); stroke-width: 2; }
svg .fault-band { fill: var(--fault); fill-opacity: 0.18; }
svg .fault-label { fill: #b06000; font-weight: 700; }
svg .err-mark { fill: var(--err); stroke: #fff; stroke-width: 1; }
svg .fault-mark { fill: var(--fault); stroke: #b06000; stroke-width: 1; }
svg .node rect { stroke: #80868b; stroke-width: 1; }
svg .node.missing rect { stroke-dasharray: 5 3; } svg .node.missing text { fill: var(--muted); }
svg .node.path rect { stroke: var(--err); stroke-width: 3; }
svg .node .kind { font-weight: 700; font-size: 10px; }
svg .edge path { fill: none; stroke: #5f6368; stroke-width: 1.2; }
svg .edge.parent path { stroke-dasharray: 3 3; }
svg .edge.path path { stroke: var(--err); stroke-width: 3; }
svg .edge.missing path { stroke-dasharray: 6 4; }
svg .edge text { font-size: 9px; fill: var(--muted); paint-order: stroke; stroke: #fff;
  stroke-width: 3px; text-anchor: middle; }
"""


def render_html(finding: Finding) -> str:
    """The finding as one self-contained HTML document."""
    title = f"{finding.id}: {finding.property.name}"
    body = "\n".join(
        [
            _header(finding),
            _story(finding),
            _program(finding),
            _replay(finding),
            _timeline(finding),
            _graphs(finding),
            _faults(finding),
            _trace(finding),
            _versions(finding),
        ]
    )
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        f'<meta http-equiv="Content-Security-Policy" content="{_CSP}">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        '<link rel="icon" href="data:,">\n'
        f"<title>unpacksim finding {esc(title)}</title>\n"
        f"<style>{_CSS}</style>\n</head>\n<body>\n{body}\n</body>\n</html>\n"
    )


def _header(finding: Finding) -> str:
    prop = finding.property
    return (
        f"<header><h1>{esc(prop.name)} broken</h1>"
        f'<p class="lede">{esc(prop.description)}</p>'
        f'<p><span class="badge">finding <code>{esc(finding.id)}</code></span>'
        f'<span class="badge">implementation <code>{esc(finding.implementation)}</code></span>'
        f'<span class="badge">schedule <code>{esc(finding.schedule or "FIFO")}</code></span>'
        "</p></header>"
    )


def _story(finding: Finding) -> str:
    blocks = [" ".join(b.split()) for b in finding.explanation.split("\n\n") if b.strip()]
    paragraphs = "".join(f"<p>{esc(b)}</p>" for b in blocks) or "<p>(no explanation)</p>"
    return f'<section><h2>What happened</h2><div class="story">{paragraphs}</div></section>'


def _program(finding: Finding) -> str:
    actors = "".join(
        f"<tr><td><code>{esc(a.name)}</code></td><td>{esc(a.description)}</td></tr>"
        for a in finding.actors
    )
    steps = "".join(
        f"<li><code>{esc(s.actor)}</code>: <code>{esc(s.action)}({esc(format_args(s.args))})"
        "</code></li>"
        for s in finding.program
    )
    return (
        "<section><h2>Actors and program</h2>"
        f"<table><tr><th>actor</th><th>what it is</th></tr>{actors}</table>"
        f"<ol>{steps}</ol></section>"
    )


def _replay(finding: Finding) -> str:
    replay = finding.replay
    extra = []
    if replay.seed is not None:
        extra.append(f"seed <code>{replay.seed}</code>")
    if replay.hypothesis_blob is not None:
        extra.append(f"Hypothesis blob <code>{esc(replay.hypothesis_blob)}</code>")
    more = f"<p>{' · '.join(extra)}</p>" if extra else ""
    return f"<section><h2>Replay</h2><pre>{esc(replay.command)}</pre>{more}</section>"


def _legend(items: list[tuple[str, str]]) -> str:
    spans = "".join(
        f'<span><i class="swatch" style="{style}"></i>{text}</span>' for style, text in items
    )
    return f'<p class="legend">{spans}</p>'


def _timeline(finding: Finding) -> str:
    svg = timeline_svg(finding)
    if not svg:
        return "<section><h2>Timeline</h2><p>(no events)</p></section>"
    legend = _legend(
        [
            ("background:#d2e3fc;border-color:#1a73e8", "ok"),
            ("background:#fad2cf;border-color:#c5221f", "error"),
            ("background:#eee;border-style:dashed", "never completed"),
            ("background:#f29900", "fault fired (diamond, shaded band); injected outcome hatched"),
        ]
    )
    note = (
        '<p class="lede">One lane per process; bars run from invoke to complete. Gaps between '
        "instants are to scale; events at the same instant are spread out in trace order.</p>"
    )
    return f'<section><h2>Timeline</h2>{note}<div class="scroll">{svg}</div>{legend}</section>'


def _graphs(finding: Finding) -> str:
    before, after = finding.graph_before, finding.graph_after
    layout = layout_graphs([before, after])
    path = ""
    if finding.path:
        items = "".join(f"<li><code>{esc(name)}</code></li>" for name in path_names(finding))
        path = f'<p>The path that proves the violation:</p><ol class="path">{items}</ol>'
    changes = _changes(finding)
    legend = _legend(
        [
            ("background:#fff;border:2px solid #c5221f", "on the violating path"),
            ("background:#f6f6f6;border-style:dashed", "missing (referenced, not present)"),
        ]
    )
    stages = "".join(
        f"<h3>{stage} ({len(g.nodes)} nodes, {len(g.edges)} references)</h3>"
        + (
            f'<div class="scroll">{graph_svg(g, layout, finding.path, stage)}</div>'
            if g.nodes
            else ""
        )
        for stage, g in (("before", before), ("after", after))
    )
    return f"<section><h2>Reference graph</h2>{path}{changes}{stages}{legend}</section>"


def _changes(finding: Finding) -> str:
    diff = graph_diff(finding.graph_before, finding.graph_after)
    if diff.empty():
        return "<p>The graph did not change.</p>"
    rows = [("removed", node_name(n)) for n in diff.removed]
    rows += [("added", node_name(n)) for n in diff.added]
    rows += [("no longer present", node_name(n)) for n in diff.now_missing]
    rows += [
        (f"reference removed ({e.key or e.kind})", f"{e.source} → {e.target}")
        for e in diff.edges_removed
    ]
    rows += [
        (f"reference added ({e.key or e.kind})", f"{e.source} → {e.target}")
        for e in diff.edges_added
    ]
    cells = "".join(
        f'<tr><td>{esc(a)}</td><td class="wrap"><code>{esc(b)}</code></td></tr>' for a, b in rows
    )
    return f"<details><summary>What changed ({len(rows)})</summary><table>{cells}</table></details>"


def _faults(finding: Finding) -> str:
    if not finding.fault_plan:
        return "<section><h2>Fault plan</h2><p>(none)</p></section>"
    items = "".join(f"<li><code>{esc(format_rule(r))}</code></li>" for r in finding.fault_plan)
    return f"<section><h2>Fault plan</h2><ul>{items}</ul></section>"


def _trace(finding: Finding) -> str:
    rows = []
    for e in finding.trace:
        cls = ' class="injected"' if e.injected else ""
        if e.outcome not in (None, "ok", "indeterminate"):
            cls = cls or ' class="error"'
        event, outcome = event_text(e), event_outcome(e)
        rows.append(
            f"<tr{cls}><td>{e.seq}</td><td>{format_time(e.time)}</td>"
            f'<td><code>{esc(e.process)}</code></td><td class="wrap"><code>{esc(event)}</code></td>'
            f'<td class="wrap"><span class="outcome">{esc(outcome)}</span></td></tr>'
        )
    head = "<tr><th>seq</th><th>time (s)</th><th>process</th><th>event</th><th>outcome</th></tr>"
    table = f"<table>{head}{''.join(rows)}</table>" if rows else "<p>(no events)</p>"
    return f"<section><h2>Trace</h2>{table}</section>"


def _versions(finding: Finding) -> str:
    v = finding.versions
    pairs = [
        ("unpacksim", v.unpacksim),
        ("python", v.python),
        ("simpy", v.simpy),
        ("hypothesis", v.hypothesis),
        ("networkx", v.networkx),
    ]
    items = " · ".join(f"{name} <code>{esc(version)}</code>" for name, version in pairs)
    return f'<section><h2>Versions</h2><p class="lede">{items}</p></section>'
