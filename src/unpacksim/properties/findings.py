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

import re
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import networkx as nx

from unpacksim.model import errdefs
from unpacksim.properties import checks
from unpacksim.properties.invariants import Violation
from unpacksim.properties.monitors import Found
from unpacksim.properties.scenario import Program, Pull
from unpacksim.reports.records import (
    Actor,
    FaultRule,
    Finding,
    GraphData,
    GraphEdge,
    GraphNode,
    PropertyRef,
    Replay,
    Step,
    TraceEvent,
)
from unpacksim.sim.errors import SimUsageError
from unpacksim.sim.faults import FaultPlan, FaultReport, Rule, get_site
from unpacksim.sim.trace import Trace

if TYPE_CHECKING:
    from unpacksim.properties.catalogue import CatalogueEntry
    from unpacksim.properties.program import RunResult

__all__ = [
    "FindingsError",
    "actors_of",
    "build_finding",
    "explain",
    "fault_plan_of",
    "fault_rules",
    "graph_data",
    "key_events",
    "pick",
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


_DIGEST = re.compile(r"sha256:([0-9a-f]{64})")


def short(text: str, keep: int = 12) -> str:
    """``text`` with every ``sha256:<64 hex>`` digest cut to ``sha256:<keep hex>``."""
    return _DIGEST.sub(lambda m: f"sha256:{m.group(1)[:keep]}", text)


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
    ids = sorted(n for n, kind in graph.nodes(data="kind") if kind in SHOWN_KINDS or n in wanted)
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
        except SimUsageError as exc:
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
    return FaultPlan(rules=scripted, explore=explore, fire_one_in=fire_one_in, max_fires=max_fires)


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


def key_events(trace: Trace, keys: Sequence[str], *, limit: int = 10) -> list[str]:
    """Lines for the trace events that matter to a story: faults, failed calls, and completed
    calls whose arguments mention one of ``keys`` (digests, chain IDs, snapshot keys)."""
    lines: list[str] = []
    for e in trace.events:
        if e.type == "fault":
            lines.append(f"t={e.time:.4f} {e.process}: fault {e.op} fired ({e.outcome})")
        elif e.type != "complete" or not keys or not _mentions(e.args, keys):
            continue
        elif e.outcome not in ("ok", None):
            what = short(e.error or e.outcome or "")
            lines.append(f"t={e.time:.4f} {e.process}: {e.op} failed: {what}")
        else:
            args = ", ".join(
                f"{k}={short(str(v))}"
                for k, v in e.args.items()
                if v not in ("", None) and not isinstance(v, dict | list)
            )
            lines.append(f"t={e.time:.4f} {e.process}: {e.op}({args}) ok")
    if len(lines) > limit:
        head = lines[: limit - 1]
        return [*head, f"... and {len(lines) - len(head)} more (see the trace)"]
    return lines


#: What the two graphs of a finding show when a property that holds at rest was broken
#: (``checks._found``: the graph at quiescence and the final one).
AT_REST_GRAPHS = (
    "The graphs: 'before' is the state at rest, once every action ended and GC ran with the "
    "leases as the pulls left them (where this was seen); 'after' is the state once every "
    "lease was deleted and GC ran again."
)


def explain(
    *,
    description: str,
    message: str,
    steps: Sequence[str],
    events: Sequence[str],
    mechanism: str = "",
) -> str:
    """The plain-words story: what broke, the program's steps, the key events, and why."""
    parts = [f"{description.rstrip('.')}. This did not hold: {short(message)}."]
    if steps:
        parts.append("The program: " + "; ".join(steps) + ".")
    if events:
        parts.append("What happened: " + "; ".join(events) + ".")
    if mechanism:
        parts.append(f"Why: {mechanism}")
    return "\n\n".join(parts)


# --- findings ------------------------------------------------------------------------------


def pick(found: Sequence[Found], order: Sequence[str]) -> Found:
    """The violation a finding reports: of the first property in ``order`` that has one,
    the earliest.

    Raises:
        FindingsError: nothing was found.
    """
    for name in order:
        mine = [f for f in found if f.property == name]
        if mine:
            return min(mine, key=lambda f: f.time)
    if found:
        return found[0]
    raise FindingsError("the run broke no property: there is nothing to report")


def _story_keys(violation: Violation) -> list[str]:
    keys: list[str] = []
    if violation.node:
        keys.append(violation.node.rsplit(":", 1)[-1].split("/", 1)[-1])
    for name in ("key", "parent", "digest", "chain_id", "layer", "blob"):
        value = violation.evidence.get(name)
        if isinstance(value, str) and len(value) >= 8:
            keys.append(value)
    return list(dict.fromkeys(keys))


def _actor_description(program: Program, actor: str, implementation: str) -> str:
    if actor == "daemon":
        return "the containerd daemon: snapshotters " + ", ".join(program.snapshotters)
    if actor == "registry":
        return "the registry serving " + ", ".join(i.name for i in program.images)
    mine = [a for a in program.actions if a.actor == actor]
    first = mine[0]
    if isinstance(first, Pull):
        return f"pulls {first.image} with unpack ({first.implementation or implementation})"
    return "; ".join(a.describe().split(": ", 1)[-1] for a in mine)


def actors_of(program: Program, implementation: str) -> tuple[Actor, ...]:
    """Every actor of ``program``'s steps (the daemon and registry first)."""
    names = ["daemon", "registry", *program.actors()]
    return tuple(Actor(n, _actor_description(program, n, implementation)) for n in names)


def _path(violation: Violation, before: GraphData, after: GraphData) -> tuple[str, ...]:
    path = violation.path or ((violation.node,) if violation.node else ())
    return tuple(n for n in path if n and (before.node(n) or after.node(n)))


def build_finding(
    result: RunResult,
    order: Sequence[str],
    *,
    seed: int | None = None,
    blob: str | None = None,
    entry: CatalogueEntry | None = None,
    command: str | None = None,
    implementation: str | None = None,
) -> Finding:
    """The finding of a failing run: the violation of the first property in ``order`` it
    broke, with the program, schedule, fault plan, trace, graphs and replay information.

    ``command`` is the replay command line (default ``unpacksim replay <id>.json``);
    ``implementation`` the name findings give the implementation (default: its own name; give
    the spec it was loaded by, e.g. ``mypkg.mod:Unpacker``, so the finding replays).

    Raises:
        FindingsError: the run broke no property.
    """
    found = pick(result.found, order)
    violation = found.violation
    keep = [*violation.path, *([violation.node] if violation.node else [])]
    before = graph_data(found.before, keep=keep)
    after = graph_data(found.after, keep=keep)
    prop = checks.PROPERTIES.get(found.property)
    description = prop.description if prop else found.property
    program = result.program
    story = explain(
        description=description,
        message=violation.message,
        steps=[a.describe() for a in program.actions],
        events=key_events(result.trace, _story_keys(violation)),
        mechanism=entry.mechanism if entry is not None else "",
    )
    if found.before is not None and found.before is result.quiescent_graph:
        story += "\n\n" + AT_REST_GRAPHS
    fields: dict[str, Any] = {
        "property": PropertyRef(found.property, description),
        "explanation": story,
        "actors": actors_of(program, result.implementation),
        "program": tuple(Step(s["actor"], s["action"], s["args"]) for s in program.to_json()),
        "schedule": result.schedule,
        "fault_plan": fault_rules(result.runner.plan, result.faults, result.trace),
        "trace": trace_events(result.trace),
        "graph_before": before,
        "graph_after": after,
        "path": _path(violation, before, after),
        "implementation": implementation or result.implementation,
    }
    finding_id = Finding.derive_id(**fields)
    replay = Replay(
        command=command or f"unpacksim replay {finding_id}.json", seed=seed, hypothesis_blob=blob
    )
    return Finding.new(id=finding_id, replay=replay, **fields)
