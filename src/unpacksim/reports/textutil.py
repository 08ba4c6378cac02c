"""What every renderer says the same way: safe text, arguments, outcomes, fault rules, diffs.

Standard library only.  Renderers first make text *safe* (:func:`clean`): control characters,
lone surrogates and bidirectional overrides become visible escapes, so a label cannot move the
terminal's cursor, break an XML file or reorder what a reader sees.  Each renderer then applies
its own syntax escaping (HTML, Markdown, DOT, XML) on top.
"""

from __future__ import annotations

import json
import unicodedata
from dataclasses import dataclass

from unpacksim.reports.jsonform import JSONValue
from unpacksim.reports.records import (
    Call,
    FaultRule,
    Finding,
    GraphData,
    GraphEdge,
    GraphNode,
    TraceEvent,
)

__all__ = [
    "GraphDiff",
    "clean",
    "event_outcome",
    "event_text",
    "format_args",
    "format_outcome",
    "format_rule",
    "format_time",
    "graph_diff",
    "is_error",
    "node_name",
    "path_names",
    "shorten",
]

# Bidirectional embeddings, overrides and isolates ("Trojan Source"), and XML's non-characters.
_INVISIBLE = frozenset("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069\ufffe\uffff")


def clean(text: str, *, keep_newlines: bool = False) -> str:
    """``text`` with unsafe characters made visible (``\\x1b``, ``\\u202e``, ``\\n``)."""
    if text.isprintable() and not _INVISIBLE.intersection(text):
        return text
    return "".join(_clean_char(c, keep_newlines) for c in text)


def _clean_char(c: str, keep_newlines: bool) -> str:
    if c == "\n":
        return c if keep_newlines else "\\n"
    if c == "\t":
        return "    " if keep_newlines else "\\t"
    if c in _INVISIBLE or unicodedata.category(c) in ("Cc", "Cs"):
        code = ord(c)
        return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"
    return c


def shorten(text: str, limit: int) -> str:
    """``text`` cut to ``limit`` characters, an ellipsis marking the cut."""
    return text if len(text) <= limit else text[: max(limit - 1, 0)] + "…"


def format_time(t: float) -> str:
    """Simulated seconds as a short, stable number (six significant digits)."""
    return f"{t:.6g}"


def _value(value: JSONValue) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(", ", ": "))


def format_args(args: dict[str, JSONValue]) -> str:
    """``key=value, ...`` with JSON values (strings quoted), in the record's order."""
    return ", ".join(f"{key}={_value(value)}" for key, value in args.items())


def format_outcome(call: Call) -> str:
    """``ok``, ``NotFound (injected)``, ``indeterminate (never completed)``."""
    if call.outcome is None:
        return "indeterminate (never completed)"
    return f"{call.outcome} (injected)" if call.injected else call.outcome


def event_text(event: TraceEvent) -> str:
    """``-> op(args)`` for an invoke, ``<- op`` for a complete, ``!! fault site(args)``."""
    if event.kind == "complete":
        return f"<- {event.op}"
    call = f"{event.op}({format_args(event.args)})"
    return f"-> {call}" if event.kind == "invoke" else f"!! fault {call}"


def event_outcome(event: TraceEvent) -> str:
    """``NotFound (injected): message`` for a complete or a fault; "" for an invoke."""
    if event.kind == "invoke":
        return ""
    injected = " (injected)" if event.injected and event.kind == "complete" else ""
    message = f": {event.message}" if event.message else ""
    return f"{event.outcome}{injected}{message}"


def is_error(call: Call) -> bool:
    """The call completed with an error (not ok, not indeterminate)."""
    return call.outcome not in (None, "ok", "indeterminate")


def format_rule(rule: FaultRule) -> str:
    """One fault rule in words: where, what, when, and what happened."""
    when = "every hit" if not rule.hits else "hit " + ", ".join(map(str, rule.hits))
    params = f" ({format_args(rule.params)})" if rule.params else ""
    if rule.reached == 0:
        result = "never reached"
    elif rule.fired:
        result = f"reached {rule.reached}x, fired at hit " + ", ".join(map(str, rule.fired))
    else:
        result = f"reached {rule.reached}x, never fired"
    return f"{rule.site} -> {rule.effect} on {when}{params}: {result}"


def node_name(node: GraphNode) -> str:
    """``kind label``, with ``(missing)`` for a node that is not present."""
    missing = " (missing)" if not node.present else ""
    return f"{node.kind} {node.label or node.id}{missing}"


def path_names(finding: Finding) -> list[str]:
    """The violating path's nodes by name, each as the later graph (after, else before) has it."""
    names = []
    for node_id in finding.path:
        after = finding.graph_after.node(node_id)
        node = after or finding.graph_before.node(node_id)
        assert node is not None  # Finding checks every path id is in a graph
        names.append(node_name(node) if after else f"{node_name(node)} (gone after)")
    return names


@dataclass(frozen=True)
class GraphDiff:
    """What changed from one graph to another, in each graph's order."""

    removed: tuple[GraphNode, ...]
    added: tuple[GraphNode, ...]
    now_missing: tuple[GraphNode, ...]
    edges_removed: tuple[GraphEdge, ...]
    edges_added: tuple[GraphEdge, ...]

    def empty(self) -> bool:
        """Nothing changed."""
        return not (
            self.removed or self.added or self.now_missing or self.edges_removed or self.edges_added
        )


def graph_diff(before: GraphData, after: GraphData) -> GraphDiff:
    """The nodes and edges that went away, appeared, or stopped being present."""
    before_ids = {n.id: n for n in before.nodes}
    after_ids = {n.id: n for n in after.nodes}
    before_edges = set(before.edges)
    after_edges = set(after.edges)
    return GraphDiff(
        removed=tuple(n for n in before.nodes if n.id not in after_ids),
        added=tuple(n for n in after.nodes if n.id not in before_ids),
        now_missing=tuple(
            n for n in after.nodes if not n.present and before_ids.get(n.id, n).present
        ),
        edges_removed=tuple(e for e in before.edges if e not in after_edges),
        edges_added=tuple(e for e in after.edges if e not in before_edges),
    )
