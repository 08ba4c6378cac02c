"""The differential runner: one scenario on containerd and on the reference, compared.

:func:`run_differential` runs a :class:`~unpacksim.real.scenarios.Scenario` on a fresh real
daemon (:func:`~unpacksim.real.runner.run_real`) and on the reference with the ``v1.6`` preset
(:func:`~unpacksim.real.reference_side.reference_run`), compares outcomes and final states
(:func:`~unpacksim.real.compare.compare_runs`, random names masked), holds the divergences
against the documented ones (:mod:`unpacksim.real.divergences`), and checks the invariants
(``properties.invariants.check_state``) on both final states.  :func:`differential` does the
same for runs made already (no daemon needed).

Every divergence, documented or not, becomes a :class:`~unpacksim.reports.records.Finding`
(:meth:`DifferentialRun.findings`) holding both final states as graphs: ``graph_before`` is
the reference's (what the model predicts), ``graph_after`` containerd's (what it did), both
with random names canonical, so the report's graph diff shows exactly what differs.  A broken
invariant on either side becomes a finding too.

From a shell (as root, with the tier's Debian packages)::

    python -m unpacksim.real.differential layer-error-500 --findings out/
"""

from __future__ import annotations

import argparse
import hashlib
import re
import sys
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from unpacksim.model.db import DB
from unpacksim.properties.findings import graph_data, trace_events
from unpacksim.properties.graph import build_graph
from unpacksim.properties.invariants import Violation, check_state
from unpacksim.real.compare import Comparison, Divergence, compare_runs
from unpacksim.real.divergences import CAUSES, KnownDivergence, classify, render
from unpacksim.real.outcome import ScenarioRun, canonicalize
from unpacksim.real.reference_side import PRESET, ReferenceRun, reference_run
from unpacksim.real.scenarios import CreateLease, PullStep, Scenario
from unpacksim.reports.io import write_finding
from unpacksim.reports.records import (
    Actor,
    Finding,
    GraphData,
    GraphEdge,
    GraphNode,
    PropertyRef,
    Replay,
    Step,
    TraceEvent,
)

__all__ = [
    "DifferentialRun",
    "canonical_graph",
    "differential",
    "main",
    "run_differential",
    "summary_table",
]

_RANDOM_LEASE = "<random>"
#: ``leases.WithRandomID``: ``<nanoseconds>-<4 base64url characters>``.
_RANDOM_ID = re.compile(r"\d+-[A-Za-z0-9_-]{4}")


@dataclass(frozen=True)
class DifferentialRun:
    """One scenario on both sides: the runs, their comparison, and its classification.

    Attributes:
        scenario: the scenario.
        real: the real daemon's run.
        reference: the reference's run.
        comparison: :func:`~unpacksim.real.compare.compare_runs` of the two (real left).
        documented: each divergence the table explains, with its entry.
        undocumented: divergences no entry explains (each one is a finding to act on).
        stale: entries of the scenario that no longer occur (the table must be corrected).
        real_violations: invariants broken by the daemon's final state.
        reference_violations: invariants broken by the reference's final state.
        reference_trace: the reference's history (for findings).
        schedule: the reference's schedule string ("" for FIFO).
    """

    scenario: Scenario
    real: ScenarioRun
    reference: ScenarioRun
    comparison: Comparison
    documented: tuple[tuple[Divergence, KnownDivergence], ...]
    undocumented: tuple[Divergence, ...]
    stale: tuple[KnownDivergence, ...]
    real_violations: tuple[Violation, ...]
    reference_violations: tuple[Violation, ...]
    reference_trace: tuple[TraceEvent, ...] = ()
    schedule: str = ""

    @property
    def explained(self) -> bool:
        """The sides agree, or diverge exactly as documented."""
        return not self.undocumented and not self.stale

    @property
    def verdict(self) -> str:
        """``agrees``, ``documented divergence``, or what is wrong (``undocumented
        divergence``, ``stale documentation``, ``invariant broken``)."""
        if not self.explained:
            return "undocumented divergence" if self.undocumented else "stale documentation"
        if self.real_violations or self.reference_violations:
            return "invariant broken"
        return "documented divergence" if self.documented else "agrees"

    def problems(self) -> list[str]:
        """One line per thing the tier fails on: undocumented or stale divergences, and
        broken invariants on either side (empty when the scenario passes)."""
        lines = [f"undocumented: {render_divergence(d)}" for d in self.undocumented]
        lines += [f"documented but did not occur: {k.where} ({k.cause})" for k in self.stale]
        lines += [f"containerd state: {v}" for v in self.real_violations]
        lines += [f"reference state: {v}" for v in self.reference_violations]
        return lines

    def findings(self) -> list[Finding]:
        """A finding per divergence and per broken invariant (see the module docstring)."""
        graphs = _Graphs.of(self)
        out = [
            _divergence_finding(self, d, self._entry(d), graphs)
            for d in self.comparison.divergences
        ]
        out += [_violation_finding(self, "containerd", v, graphs) for v in self.real_violations]
        out += [_violation_finding(self, "reference", v, graphs) for v in self.reference_violations]
        return out

    def _entry(self, divergence: Divergence) -> KnownDivergence | None:
        return next((k for d, k in self.documented if d is divergence), None)


def render_divergence(divergence: Divergence) -> str:
    """``where: containerd <value> | reference <value>``."""
    left, right = render(divergence.left), render(divergence.right)
    return f"{divergence.where}: containerd {left} | reference {right}"


def differential(
    scenario: Scenario,
    real: ScenarioRun,
    reference: ReferenceRun,
    *,
    known: Sequence[KnownDivergence] | None = None,
) -> DifferentialRun:
    """Compare two runs of ``scenario`` made already; ``known`` replaces the table (tests).

    No daemon is needed: this is the pure part of :func:`run_differential`.
    """
    comparison = compare_runs(scenario, real, reference.run)
    classes = classify(scenario, comparison.divergences, known)
    world = reference.world
    return DifferentialRun(
        scenario=scenario,
        real=real,
        reference=reference.run,
        comparison=comparison,
        documented=classes.documented,
        undocumented=classes.undocumented,
        stale=classes.stale,
        real_violations=tuple(check_state(real.state)),
        reference_violations=tuple(check_state(reference.run.state)),
        reference_trace=trace_events(world.env.trace),
        schedule=world.env.chooser.schedule,
    )


def run_differential(
    scenario: Scenario, *, binary: Path | None = None, timeout: float = 60.0
) -> DifferentialRun:
    """Run ``scenario`` on a fresh containerd and on the reference; compare and classify.

    ``binary`` is a built Go harness (built and cached when None); ``timeout`` bounds each
    harness operation.

    Raises:
        DaemonError, HarnessError: the real side could not run (see ``run_real``).
        ReferenceSideError: the reference did not finish an operation.
        ScenarioError: the scenario names something it does not define.
    """
    from unpacksim.real.runner import run_real

    real = run_real(scenario, binary=binary, timeout=timeout)
    return differential(scenario, real, reference_run(scenario))


# --- graphs ----------------------------------------------------------------------------------


def _lease_kept(scenario: Scenario) -> tuple[str, ...]:
    return tuple(s.lease for s in scenario.steps if isinstance(s, CreateLease))


def canonical_graph(
    db: DB, *, registry_host: str, keep_leases: Sequence[str] = ()
) -> tuple[GraphData, dict[str, str]]:
    """The reference graph of ``db`` as report data with random names canonical.

    Node ids and labels get the canonical registry host and extraction keys
    (:func:`~unpacksim.real.outcome.canonicalize`); lease IDs not in ``keep_leases`` that look
    random become ``<random>``.  Ids that become equal are told apart with ``#2``, ``#3``.
    Returns the graph and the map from each original node id to its canonical id.
    """
    raw = graph_data(build_graph(db))
    kept = {f"lease:{ns}:{lease}" for ns in db.namespaces for lease in keep_leases}
    ids: dict[str, str] = {}
    for node in raw.nodes:
        name = _canonical_id(node, registry_host, node.id in kept)
        count = sum(1 for v in ids.values() if v == name or v.startswith(name + "#"))
        ids[node.id] = name if count == 0 else f"{name}#{count + 1}"
    nodes = tuple(
        GraphNode(ids[n.id], n.kind, canonicalize(n.label, registry_host=registry_host), n.present)
        for n in raw.nodes
    )
    edges = tuple(
        dict.fromkeys(GraphEdge(ids[e.source], ids[e.target], e.kind, e.key) for e in raw.edges)
    )
    return GraphData(nodes=nodes, edges=edges), ids


def _canonical_id(node: GraphNode, host: str, kept: bool) -> str:
    name = canonicalize(node.id, registry_host=host)
    if node.kind == "lease" and not kept:
        prefix, _, lease = name.rpartition(":")
        if _RANDOM_ID.fullmatch(lease):
            return f"{prefix}:{_RANDOM_LEASE}"
    return name


@dataclass(frozen=True)
class _Graphs:
    """Both final states as canonical graphs, and the id maps."""

    reference: GraphData
    real: GraphData
    reference_ids: dict[str, str]
    real_ids: dict[str, str]

    @classmethod
    def of(cls, run: DifferentialRun) -> _Graphs:
        keep = _lease_kept(run.scenario)
        ref, ref_ids = canonical_graph(
            run.reference.state, registry_host=run.reference.registry_host, keep_leases=keep
        )
        real, real_ids = canonical_graph(
            run.real.state, registry_host=run.real.registry_host, keep_leases=keep
        )
        return cls(ref, real, ref_ids, real_ids)

    def has(self, node: str) -> bool:
        return self.reference.node(node) is not None or self.real.node(node) is not None


# --- findings --------------------------------------------------------------------------------


def _actors_and_program(scenario: Scenario) -> tuple[tuple[Actor, ...], tuple[Step, ...]]:
    actors = [Actor("client", "the scenario's client: deletions, leases, garbage collection")]
    program: list[Step] = []
    for i, step in enumerate(scenario.steps):
        if not isinstance(step, PullStep):
            program.append(Step("client", type(step).__name__, {"step": i, **asdict(step)}))
            continue
        for j, pull in enumerate(step.pulls):
            name = f"pull-{i}.{j}"
            actors.append(Actor(name, f"Client.Pull of {pull.image} (step {i})"))
            program.append(Step(name, "pull", {"step": i, **asdict(pull)}))
    return tuple(actors), tuple(program)


def _finding_id(scenario: str, what: str) -> str:
    return "f-" + hashlib.sha256(f"differential/{scenario}/{what}".encode()).hexdigest()[:12]


def _path(divergence: Divergence, graphs: _Graphs) -> tuple[str, ...]:
    """The node a per-object state divergence names (``default content sha256:...``)."""
    ns, _, rest = divergence.where.partition(" ")
    section, _, key = rest.partition(" ")
    kind = {"content": "content", "images": "image", "ingests": "ingest"}.get(section)
    node = f"{kind}:{ns}:{key}" if kind and key else ""
    return (node,) if node and graphs.has(node) else ()


def _explain(run: DifferentialRun, divergence: Divergence, known: KnownDivergence | None) -> str:
    scenario = run.scenario
    lines = [
        f"Scenario {scenario.name}: {scenario.description}",
        f"{divergence.where}: containerd ({run.real.side}) gave {render(divergence.left)}; "
        f"the reference ({run.reference.side}) gave {render(divergence.right)}.",
        "graph_before is the reference's final state, graph_after containerd's (random names "
        "canonical).",
    ]
    if known is None:
        lines.append(
            "This divergence is not documented in unpacksim.real.divergences: fix the reference "
            "if it is wrong, or document the containerd behaviour the model lacks."
        )
    else:
        cause = CAUSES[known.cause]
        lines += [
            f"Documented ({cause.id}): {cause.summary}.",
            f"containerd: {cause.containerd}",
            f"reference: {cause.reference}",
            f"verdict: {cause.verdict}",
        ]
    return "\n".join(lines)


def _finding(
    run: DifferentialRun, what: str, prop: PropertyRef, explanation: str, graphs: _Graphs
) -> Finding:
    actors, program = _actors_and_program(run.scenario)
    faults = tuple(rule for step in run.real.steps for rule in step.faults)
    return Finding.new(
        id=_finding_id(run.scenario.name, what),
        property=prop,
        explanation=explanation,
        actors=actors,
        program=program,
        schedule=run.schedule,
        fault_plan=faults,
        trace=run.reference_trace,
        graph_before=graphs.reference,
        graph_after=graphs.real,
        implementation=PRESET,
        replay=Replay(f"python -m unpacksim.real.differential {run.scenario.name}"),
    )


def _divergence_finding(
    run: DifferentialRun, divergence: Divergence, known: KnownDivergence | None, graphs: _Graphs
) -> Finding:
    kind = "state" if divergence.where.split(" ")[0] != "step" else "outcome"
    prop = PropertyRef(
        f"agrees-with-containerd-{kind}",
        f"{divergence.where} of {run.scenario.name}: the reference gives what containerd does",
    )
    finding = _finding(run, divergence.where, prop, _explain(run, divergence, known), graphs)
    path = _path(divergence, graphs)
    return finding if not path else _with_path(finding, path)


def _with_path(finding: Finding, path: tuple[str, ...]) -> Finding:
    return replace(finding, path=path)


def _violation_finding(
    run: DifferentialRun, side: str, violation: Violation, graphs: _Graphs
) -> Finding:
    ids = graphs.real_ids if side == "containerd" else graphs.reference_ids
    prop = PropertyRef(violation.invariant, f"the invariant {violation.invariant} holds")
    explanation = (
        f"Scenario {run.scenario.name}: {run.scenario.description}\n"
        f"The {side} final state breaks {violation.invariant}: {violation.message}\n"
        "graph_before is the reference's final state, graph_after containerd's."
    )
    what = f"{side}/{violation.invariant}/{violation.node or violation.message}"
    finding = _finding(run, what, prop, explanation, graphs)
    path = tuple(ids[n] for n in violation.path if n in ids)
    return _with_path(finding, path) if path else finding


# --- reporting -------------------------------------------------------------------------------


def summary_table(runs: Sequence[DifferentialRun]) -> str:
    """A Markdown table: scenario, verdict, and the causes of its divergences."""
    lines = ["| scenario | verdict | divergences |", "| --- | --- | --- |"]
    for run in runs:
        causes = sorted({k.cause for _, k in run.documented})
        extra = [f"{len(run.undocumented)} undocumented"] if run.undocumented else []
        detail = ", ".join(causes + extra) or "-"
        lines.append(f"| {run.scenario.name} | {run.verdict} | {detail} |")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m unpacksim.real.differential [SCENARIO ...] [--findings DIR]``.

    Runs the named catalogue scenarios (all if none) on both sides, prints the summary table
    and every problem, writes each finding as ``DIR/<id>.json``; exit status 1 when a
    scenario has an undocumented or stale divergence or a broken invariant, 2 when the
    machine cannot run the tier.
    """
    from unpacksim.real.catalogue import SCENARIOS, scenario
    from unpacksim.real.prereqs import skip_reason

    parser = argparse.ArgumentParser(prog="python -m unpacksim.real.differential")
    parser.add_argument("scenarios", nargs="*", help="catalogue scenario names (default: all)")
    parser.add_argument("--findings", type=Path, help="write findings here as JSON")
    args = parser.parse_args(argv)
    reason = skip_reason()
    if reason is not None:
        print(reason, file=sys.stderr)
        return 2
    chosen = [scenario(n) for n in args.scenarios] or list(SCENARIOS)
    runs = [run_differential(s) for s in chosen]
    print(summary_table(runs))
    for run in runs:
        for line in run.problems():
            print(f"{run.scenario.name}: {line}")
    if args.findings is not None:
        args.findings.mkdir(parents=True, exist_ok=True)
        for run in runs:
            for finding in run.findings():
                write_finding(finding, args.findings)
    return 0 if all(not run.problems() for run in runs) else 1


if __name__ == "__main__":
    raise SystemExit(main())
