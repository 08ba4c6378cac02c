"""Hold two runs of one scenario against each other: outcomes, then final states.

:func:`compare_runs` takes two :class:`~unpacksim.real.outcome.ScenarioRun` s (the real
daemon's and the reference's, or two runs of one side to check it is deterministic) and
returns a :class:`Comparison`: every :class:`Divergence`, with both canonical states kept for
the report.  Outcomes are compared by word (``ok`` or the errdefs class) and message shape
(:func:`~unpacksim.real.outcome.message_shape`); states by their canonical form
(:func:`~unpacksim.real.outcome.canonical_state`), object by object.  A scenario's documented
``divergence`` marks the comparison as explained rather than silently passing it.  The
catalogue's divergences are documented divergence by divergence in
:mod:`unpacksim.real.divergences`, which :mod:`unpacksim.real.differential` holds each
comparison against (an undocumented or a stale entry fails the tier).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from unpacksim.real.outcome import ScenarioRun
from unpacksim.real.scenarios import CreateLease, Scenario

__all__ = ["Comparison", "Divergence", "compare_runs", "compare_states"]


@dataclass(frozen=True)
class Divergence:
    """One difference: where (``step 2 pull 0``, ``content sha256:...``) and both sides."""

    where: str
    left: Any
    right: Any

    def __str__(self) -> str:
        return f"{self.where}: {self.left!r} != {self.right!r}"


@dataclass(frozen=True)
class Comparison:
    """The comparison of two runs of ``scenario``.

    ``explained`` carries the scenario's documented divergence ("" if none): divergences
    there are expected and explained, not a finding.
    """

    scenario: str
    left_side: str
    right_side: str
    divergences: tuple[Divergence, ...]
    left_state: Mapping[str, Any]
    right_state: Mapping[str, Any]
    explained: str = ""

    @property
    def agrees(self) -> bool:
        return not self.divergences

    @property
    def findings(self) -> tuple[Divergence, ...]:
        """The divergences nobody explained."""
        return () if self.explained else self.divergences


def _outcome_divergences(left: ScenarioRun, right: ScenarioRun) -> list[Divergence]:
    out: list[Divergence] = []
    if len(left.steps) != len(right.steps):
        return [Divergence("steps", len(left.steps), len(right.steps))]
    for step, ls, rs in zip(left.steps, left.shapes(), right.shapes(), strict=True):
        if len(ls) != len(rs):
            out.append(Divergence(f"step {step.index} ({step.kind})", ls, rs))
            continue
        for i, (a, b) in enumerate(zip(ls, rs, strict=True)):
            if a != b:
                out.append(Divergence(f"step {step.index} {step.kind} {i}", a, b))
    return out


def _section_divergences(where: str, left: Any, right: Any) -> list[Divergence]:
    if isinstance(left, dict) and isinstance(right, dict):
        keys = list(left) + [k for k in right if k not in left]
        return [
            Divergence(f"{where} {k}", left.get(k, "<absent>"), right.get(k, "<absent>"))
            for k in keys
            if left.get(k) != right.get(k)
        ]
    if isinstance(left, list) and isinstance(right, list):
        only_left = [x for x in left if x not in right]
        only_right = [x for x in right if x not in left]
        if only_left or only_right or len(left) != len(right):
            return [Divergence(where, only_left or left, only_right or right)]
        return []
    return [] if left == right else [Divergence(where, left, right)]


def compare_states(left: Mapping[str, Any], right: Mapping[str, Any]) -> list[Divergence]:
    """The divergences between two canonical states, per namespace and object."""
    out: list[Divergence] = []
    for ns in sorted(set(left) | set(right)):
        a, b = left.get(ns, {}), right.get(ns, {})
        for section in ("content", "ingests", "snapshots", "leases", "images"):
            sa, sb = a.get(section, {}), b.get(section, {})
            if section == "snapshots":
                for sn in sorted(set(sa) | set(sb)):
                    where = f"{ns} snapshots/{sn}"
                    out += _section_divergences(where, sa.get(sn, []), sb.get(sn, []))
            else:
                out += _section_divergences(f"{ns} {section}", sa, sb)
    return out


def compare_runs(scenario: Scenario, left: ScenarioRun, right: ScenarioRun) -> Comparison:
    """Compare two runs of ``scenario`` (outcomes first, then the final states)."""
    keep = tuple(s.lease for s in scenario.steps if isinstance(s, CreateLease))
    racy = scenario.racy_labels
    left_state = left.canonical(keep_leases=keep, racy_labels=racy)
    right_state = right.canonical(keep_leases=keep, racy_labels=racy)
    divergences = _outcome_divergences(left, right) + compare_states(left_state, right_state)
    return Comparison(
        scenario=scenario.name,
        left_side=left.side,
        right_side=right.side,
        divergences=tuple(divergences),
        left_state=left_state,
        right_state=right_state,
        explained=scenario.divergence,
    )
