"""Conversion helpers: what a run produced, as :mod:`unpacksim.reports.records` data.

The simulator, the graph builder and the property checks each have their own types; a
:class:`~unpacksim.reports.records.Finding` holds plain, versioned report data.  This module
turns one into the other, deterministically (the same run gives the same records):

- :func:`trace_events`: the simulator's trace (``unpacksim.sim.trace``) as report
  :class:`~unpacksim.reports.records.TraceEvent` s;
- :func:`graph_data`: a networkx reference graph (``unpacksim.properties.graph``) as
  :class:`~unpacksim.reports.records.GraphData` (metadata objects only; backend objects are
  left out unless they lie on the violating path);
- :func:`fault_rules` / :func:`fault_plan_of`: a fault plan and what it did in a run, as
  :class:`~unpacksim.reports.records.FaultRule` s, and back to a plan for replay;
- :func:`explain`: the plain-words story of a violation (actors, steps, the events that
  touched the objects on the violating path).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import networkx as nx

from unpacksim.model import errdefs
from unpacksim.reports.records import FaultRule, GraphData, GraphEdge, GraphNode, TraceEvent
from unpacksim.sim.faults import FaultPlan, FaultReport, Rule, get_site
from unpacksim.sim.trace import Trace

__all__ = [
    "FindingsError",
    "explain",
    "fault_plan_of",
    "fault_rules",
    "graph_data",
    "short",
    "trace_events",
]

#: Graph node kinds a finding shows (backend objects are an implementation detail of GC).
SHOWN_KINDS = ("image", "content", "snapshot", "lease", "ingest", "container")

#: ``FaultRule.params["plan"]`` of a rule that comes from an exploring plan.
EXPLORE = "explore"
#: ``FaultRule.params["plan"]`` of a scripted rule.
SCRIPTED = "scripted"


class FindingsError(ValueError):
    """A finding's data cannot be turned back into something runnable (e.g. an unknown site)."""


def short(text: str, keep: int = 12) -> str:
    """``sha256:0123456789ab`` for a digest (and digests inside keys); other text unchanged."""
    out = []
    for word in text.split(" "):
        algo, sep, hexpart = word.partition(":")
        if sep and algo == "sha256" and len(hexpart) == 64:
            word = f"{algo}:{hexpart[:keep]}"
        out.append(word)
    return " ".join(out)


# --- trace ---------------------------------------------------------------------------------


def trace_events(trace: Trace, *, limit: int | None = None) -> tuple[TraceEvent, ...]:
    """The simulator's trace as report events (``type`` becomes ``kind``, ``error`` ``message``).

    With ``limit``, only the first ``limit`` events are kept, and calls they open are completed
    as ``indeterminate`` at the last kept time so the history stays well formed.
    """
    events = trace.events if limit is None else trace.events[:limit]
    out = [
        TraceEvent(
            seq=e.seq,
            time=float(e.time),
            process=e.process,
            kind=e.type,  # type: ignore[arg-type]  # "invoke" | "complete" | "fault"
            call=e.call,
            op=e.op,
            args=dict(e.args),
            outcome=e.outcome,
            injected=e.injected,
            message=e.error or "",
        )
        for e in events
    ]
    if limit is not None and len(trace.events) > limit:
        out += _close_open(out)
    return tuple(out)


def _close_open(events: list[TraceEvent]) -> list[TraceEvent]:
    open_calls: dict[int, TraceEvent] = {}
    for e in events:
        if e.kind == "invoke":
            open_calls[e.call] = e
        elif e.kind == "complete":
            open_calls.pop(e.call, None)
    if not events:
        return []
    last = events[-1]
    return [
        TraceEvent(
            seq=last.seq + 1 + i,
            time=last.time,
            process=inv.process,
            kind="complete",
            call=inv.call,
            op=inv.op,
            args=inv.args,
            outcome="indeterminate",
        )
        for i, inv in enumerate(open_calls.values())
    ]


# --- graphs --------------------------------------------------------------------------------


def _node_label(data: Mapping[str, Any]) -> str:
    return short(str(data.get("key", "")))


def graph_data(graph: nx.MultiDiGraph | None, *, keep: Iterable[str] = ()) -> GraphData:
    """``graph`` as report data, nodes and edges sorted; backend objects only if in ``keep``.

    None gives an empty graph.
    """
    if graph is None:
        return GraphData()
    wanted = set(keep)
    ids = sorted(
        n for n, kind in graph.nodes(data="kind") if kind in SHOWN_KINDS or n in wanted
    )
    shown = set(ids)
    nodes = tuple(
        GraphNode(
            id=n,
            kind=str(graph.nodes[n]["kind"]),
            label=_node_label(graph.nodes[n]),
            present=bool(graph.nodes[n]["present"]),
        )
        for n in ids
    )
    edges = sorted(
        (src, dst, str(data.get("kind", "")), str(data.get("key", "")))
        for src, dst, data in graph.edges(data=True)
        if src in shown and dst in shown
    )
    unique = list(dict.fromkeys(edges))
    return GraphData(
        nodes=nodes,
        edges=tuple(GraphEdge(source=s, target=t, kind=k, key=key) for s, t, k, key in unique),
    )


# --- fault plans ---------------------------------------------------------------------------


def _fired_outcomes(trace: Trace | None) -> dict[str, list[str]]:
    """Per site, the outcome (errdefs class or ``effect``) of each fire, in order."""
    out: dict[str, list[str]] = {}
    if trace is None:
        return out
    for e in trace.events:
        if e.type == "fault":
            out.setdefault(e.op, []).append(e.outcome or "effect")
    return out


def _default_effect(site: str) -> str:
    spec = get_site(site)
    return spec.errors[0][0].__name__ if spec.is_error_site else "effect"


def fault_rules(
    plan: FaultPlan, report: FaultReport | None, trace: Trace | None = None
) -> tuple[FaultRule, ...]:
    """The plan's rules with what they did in one run (reached, fired).

    An exploring plan gives one rule per explored site, ``params`` ``{"plan": "explore",
    "fire_one_in": n, "max_fires": m}``, ``hits`` the hits that fired; a scripted rule keeps
    its key, first hit and count in ``params`` (``{"plan": "scripted", ...}``).
    """
    reached = {s.site: s.hits for s in report.sites} if report else {}
    fired: dict[str, list[int]] = {}
    for site, _key, hit in report.fired if report else ():
        fired.setdefault(site, []).append(hit)
    outcomes = _fired_outcomes(trace)
    rules: list[FaultRule] = []
    for rule in plan.rules:
        effect = rule.error.__name__ if rule.error else _default_effect(rule.site)
        params: dict[str, Any] = {"plan": SCRIPTED, "key": rule.key, "hit": rule.hit}
        params["times"] = rule.times
        rules.append(_rule(rule.site, effect, params, reached, fired, hits=()))
    for site in plan.explore:
        effects = sorted(set(outcomes.get(site, []))) or [_default_effect(site)]
        params = {"plan": EXPLORE, "fire_one_in": plan.fire_one_in, "max_fires": plan.max_fires}
        hits = tuple(sorted(set(fired.get(site, []))))
        rules.append(_rule(site, "|".join(effects), params, reached, fired, hits=hits))
    return tuple(rules)


def _rule(
    site: str,
    effect: str,
    params: dict[str, Any],
    reached: Mapping[str, int],
    fired: Mapping[str, list[int]],
    *,
    hits: tuple[int, ...],
) -> FaultRule:
    return FaultRule(
        site=site,
        effect=effect,
        hits=hits,
        params=params,
        reached=reached.get(site, 0),
        fired=tuple(sorted(set(fired.get(site, [])))),
    )


def fault_plan_of(rules: Sequence[FaultRule]) -> FaultPlan:
    """The fault plan that replays a finding's rules (see :func:`fault_rules`).

    Raises:
        FindingsError: a rule names an unknown site or error class, or mixes explore settings.
    """
    scripted: list[Rule] = []
    explore: list[str] = []
    settings: set[tuple[int, int | None]] = set()
    for i, rule in enumerate(rules):
        where = f"fault_plan[{i}]"
        try:
            spec = get_site(rule.site)
        except ValueError as exc:
            raise FindingsError(f"{where}: {exc}") from None
        mode = rule.params.get("plan", SCRIPTED)
        if mode == EXPLORE:
            explore.append(rule.site)
            settings.add(_explore_settings(rule.params, where))
        elif mode == SCRIPTED:
            scripted.append(_scripted_rule(rule, spec.is_error_site, where))
        else:
            raise FindingsError(f"{where}.params.plan: {mode!r} is not 'explore' or 'scripted'")
    if len(settings) > 1:
        raise FindingsError("fault_plan: explored sites disagree on fire_one_in/max_fires")
    fire_one_in, max_fires = next(iter(settings)) if settings else (2, None)
    return FaultPlan(
        rules=scripted, explore=explore, fire_one_in=fire_one_in, max_fires=max_fires
    )


def _explore_settings(params: Mapping[str, Any], where: str) -> tuple[int, int | None]:
    fire_one_in = params.get("fire_one_in", 2)
    max_fires = params.get("max_fires")
    ok = isinstance(fire_one_in, int) and fire_one_in >= 2
    ok = ok and (max_fires is None or (isinstance(max_fires, int) and max_fires >= 0))
    if not ok:
        raise FindingsError(f"{where}.params: bad fire_one_in {fire_one_in!r} or max_fires")
    return fire_one_in, max_fires


def _scripted_rule(rule: FaultRule, error_site: bool, where: str) -> Rule:
    params = rule.params
    key, hit, times = params.get("key"), params.get("hit", 1), params.get("times", 1)
    if not (key is None or isinstance(key, str)) or not isinstance(hit, int):
        raise FindingsError(f"{where}.params: key must be a string or null, hit an integer")
    if not (times is None or isinstance(times, int)):
        raise FindingsError(f"{where}.params.times: must be an integer or null")
    error = None
    if error_site:
        cls = getattr(errdefs, rule.effect, None)
        if not (isinstance(cls, type) and issubclass(cls, errdefs.ContainerdError)):
            raise FindingsError(f"{where}.effect: {rule.effect!r} is not an errdefs class")
        error = cls
    return Rule(rule.site, key=key, hit=hit, times=times, error=error)


# --- the story -----------------------------------------------------------------------------


def _mentions(args: Mapping[str, Any], keys: Sequence[str]) -> bool:
    text = repr(sorted(args.items()))
    return any(k and k in text for k in keys)


def key_events(
    trace: Trace, keys: Sequence[str], *, limit: int = 8
) -> list[str]:
    """Lines for the trace events that matter to a story: faults, failed calls, and completed
    calls whose arguments mention one of ``keys`` (digests, chain IDs, snapshot keys)."""
    lines: list[str] = []
    for e in trace.events:
        if e.type == "fault":
            lines.append(f"t={e.time:g} {e.process}: fault {e.op} fired ({e.outcome})")
        elif e.type == "complete" and e.outcome not in ("ok", None):
            what = short(e.error or e.outcome or "")
            lines.append(f"t={e.time:g} {e.process}: {e.op} failed: {what}")
        elif e.type == "complete" and keys and _mentions(e.args, keys):
            args = ", ".join(f"{k}={short(str(v))}" for k, v in e.args.items())
            lines.append(f"t={e.time:g} {e.process}: {e.op}({args}) ok")
    if len(lines) > limit:
        head = lines[: limit - 1]
        return [*head, f"... and {len(lines) - len(head)} more events (see the trace)"]
    return lines


def explain(
    *,
    description: str,
    message: str,
    steps: Sequence[tuple[str, str, Mapping[str, Any]]],
    events: Sequence[str],
    mechanism: str = "",
) -> str:
    """The plain-words story: what broke, the program's steps, the key events, and why."""
    parts = [f"{description.rstrip('.')} did not hold: {short(message)}."]
    if steps:
        said = [f"{actor} {action}" + _args_text(args) for actor, action, args in steps]
        parts.append("The program: " + "; ".join(said) + ".")
    if events:
        parts.append("What happened: " + "; ".join(events) + ".")
    if mechanism:
        parts.append(mechanism)
    return "\n".join(parts)


def _args_text(args: Mapping[str, Any]) -> str:
    shown = [f"{k}={short(str(v))}" for k, v in args.items() if not isinstance(v, dict | list)]
    return f" ({', '.join(shown)})" if shown else ""
