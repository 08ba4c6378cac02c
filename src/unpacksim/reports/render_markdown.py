"""The Markdown form of a finding (CommonMark plus GitHub tables), for issues and pull requests.

A pure function of the record.  Prose is backslash-escaped; identifiers, arguments and
messages go in code spans whose fence is longer than any backtick run inside; table cells also
escape ``|`` (GitHub splits cells before it parses code spans).
"""

from __future__ import annotations

import re

from unpacksim.reports.records import Finding
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

__all__ = ["md_code", "md_text", "render_markdown"]

_SPECIAL = re.compile(r"([\\`*_\[\]<>&|~#!])")
_LINE_START = re.compile(r"^(\s*)([-+=]|\d+(?=[.)]))", re.MULTILINE)


def md_text(text: str) -> str:
    """``text`` as literal Markdown prose: nothing in it formats, links or opens HTML."""
    escaped = _SPECIAL.sub(r"\\\1", clean(text, keep_newlines=True))
    # A leading "-", "+", "=" or "1." would start a list or a heading underline.
    return _LINE_START.sub(lambda m: m.group(1) + _escape_line_start(m.group(2)), escaped)


def _escape_line_start(token: str) -> str:
    return "\\" + token if not token[0].isdigit() else token + "\\"


def md_code(text: str, *, in_table: bool = False) -> str:
    """``text`` as an inline code span (empty text gives an empty string)."""
    body = clean(text)
    if not body:
        return ""
    longest = max((len(run) for run in re.findall(r"`+", body)), default=0)
    fence = "`" * (longest + 1)
    pad = " " if body.startswith("`") or body.endswith("`") else ""
    span = f"{fence}{pad}{body}{pad}{fence}"
    return span.replace("|", "\\|") if in_table else span


def _block(text: str, info: str = "") -> str:
    body = clean(text, keep_newlines=True)
    longest = max((len(run) for run in re.findall(r"`+", body)), default=0)
    fence = "`" * max(3, longest + 1)
    return f"{fence}{info}\n{body}\n{fence}"


def render_markdown(finding: Finding) -> str:
    """The finding as Markdown, ending with a newline."""
    parts = [
        _header(finding),
        "## What happened\n\n" + _paragraphs(finding.explanation),
        "## Actors\n\n" + _actors(finding),
        "## Program\n\n" + _program(finding),
        "## Replay\n\n" + _replay(finding),
        "## Fault plan\n\n" + _faults(finding),
        "## Trace\n\n" + _trace(finding),
        "## Reference graph\n\n" + _graph(finding),
        "## Versions\n\n" + _versions(finding),
    ]
    return "\n\n".join(parts) + "\n"


def _header(finding: Finding) -> str:
    prop = finding.property
    return (
        f"# Finding {md_code(finding.id)}: {md_code(prop.name)} broken\n\n"
        f"> {md_text(prop.description)}\n\n"
        f"**Implementation:** {md_code(finding.implementation)} · "
        f"**Schedule:** {md_code(finding.schedule) or '(FIFO)'}"
    )


def _paragraphs(text: str) -> str:
    blocks = [" ".join(b.split()) for b in text.split("\n\n") if b.strip()]
    return "\n\n".join(md_text(b) for b in blocks) or "(no explanation)"


def _table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines.extend("| " + " | ".join(row) + " |" for row in rows)
    return "\n".join(lines)


def _cell(text: str) -> str:
    return md_text(text).replace("\n", " ")


def _actors(finding: Finding) -> str:
    rows = [[md_code(a.name, in_table=True), _cell(a.description)] for a in finding.actors]
    return _table(["actor", "what it is"], rows)


def _program(finding: Finding) -> str:
    steps = [
        f"{i}. {md_code(s.actor)}: {md_code(f'{s.action}({format_args(s.args)})')}"
        for i, s in enumerate(finding.program, 1)
    ]
    return "\n".join(steps) or "(empty)"


def _replay(finding: Finding) -> str:
    replay = finding.replay
    extra = []
    if replay.seed is not None:
        extra.append(f"Seed: {md_code(str(replay.seed))}")
    if replay.hypothesis_blob is not None:
        extra.append(f"Hypothesis blob: {md_code(replay.hypothesis_blob)}")
    text = _block(replay.command, "sh")
    return text + ("\n\n" + " · ".join(extra) if extra else "")


def _faults(finding: Finding) -> str:
    rules = [f"- {md_code(format_rule(r))}" for r in finding.fault_plan]
    return "\n".join(rules) or "(none)"


def _trace(finding: Finding) -> str:
    rows = []
    for e in finding.trace:
        event = md_code(event_text(e), in_table=True)
        outcome = md_code(event_outcome(e), in_table=True)
        process = md_code(e.process, in_table=True)
        rows.append([str(e.seq), format_time(e.time), process, event, outcome])
    return _table(["seq", "time (s)", "process", "event", "outcome"], rows) if rows else "(none)"


def _graph(finding: Finding) -> str:
    before, after = finding.graph_before, finding.graph_after
    lines = [
        f"Before: {len(before.nodes)} nodes, {len(before.edges)} references. "
        f"After: {len(after.nodes)} nodes, {len(after.edges)} references."
    ]
    if finding.path:
        steps = " → ".join(md_code(name) for name in path_names(finding))
        lines.append(f"**Violating path:** {steps}")
    diff = graph_diff(before, after)
    items = [f"- removed: {md_code(node_name(n))}" for n in diff.removed]
    items += [f"- added: {md_code(node_name(n))}" for n in diff.added]
    items += [f"- no longer present: {md_code(node_name(n))}" for n in diff.now_missing]
    items += [
        f"- reference removed: {md_code(e.source)} → {md_code(e.target)} ({md_code(e.key or e.kind)})"
        for e in diff.edges_removed
    ]
    items += [
        f"- reference added: {md_code(e.source)} → {md_code(e.target)} ({md_code(e.key or e.kind)})"
        for e in diff.edges_added
    ]
    if items:
        lines.append("\n".join(items))
    return "\n\n".join(lines)


def _versions(finding: Finding) -> str:
    v = finding.versions
    pairs = [
        ("unpacksim", v.unpacksim),
        ("python", v.python),
        ("simpy", v.simpy),
        ("hypothesis", v.hypothesis),
        ("networkx", v.networkx),
    ]
    return ", ".join(f"{name} {md_code(version)}" for name, version in pairs)
