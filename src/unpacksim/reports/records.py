"""Findings as data: frozen records with a stable, versioned JSON form.

A :class:`Finding` is everything a reader needs to understand and replay one broken property:
what broke, the story in plain words, the minimal program, the schedule and fault plan, the
trace, the reference graph before and after with the path that proves the violation, and what
replays it.  Every other layer converts into these records; renderers are pure functions of them.

This module is a leaf: it imports only the standard library (``tests/test_layering.py`` keeps
it so), so anything, including a process reading a finding file on a machine without SimPy or
networkx, can use it.

JSON form: ``record.to_json()`` gives plain JSON data (objects keep field order), ``dumps``
gives the canonical text, ``Finding.from_json`` reads it back and refuses unknown, missing or
mistyped fields with a :class:`RecordError` naming the field (``trace[3].kind``).  The
``schema`` field carries the version (:data:`FINDING_SCHEMA`); a change that old readers cannot
read bumps the number after the slash.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import platform
from dataclasses import dataclass, field
from typing import Any, ClassVar, Self

from unpacksim.reports.history import Call, TraceEvent, TraceKind, pair_calls
from unpacksim.reports.jsonform import (
    Fields,
    JSONObject,
    JSONValue,
    RecordError,
    check_schema,
    dumps,
    field_names,
    json_object,
    require,
    to_json_data,
)

__all__ = [
    "FINDING_SCHEMA",
    "Actor",
    "Call",
    "FaultRule",
    "Finding",
    "GraphData",
    "GraphEdge",
    "GraphNode",
    "JSONValue",
    "PropertyRef",
    "RecordError",
    "Replay",
    "Step",
    "TraceEvent",
    "TraceKind",
    "Versions",
    "dumps",
    "pair_calls",
]

FINDING_SCHEMA = "unpacksim.finding/1"


# --- the parts of a finding --------------------------------------------------------------


@dataclass(frozen=True)
class PropertyRef:
    """The property that broke.

    Attributes:
        name: the invariant's registered name (``parent_reachable_at_prepare``).
        description: one sentence saying what must hold.
    """

    name: str
    description: str

    def __post_init__(self) -> None:
        require(bool(self.name), "PropertyRef", "name", "must not be empty")

    @classmethod
    def from_json(cls, data: object, path: str = "property") -> Self:
        f = Fields(data, path, field_names(cls))
        return f.build(cls, name=f.text("name"), description=f.text("description"))


@dataclass(frozen=True)
class Actor:
    """One actor of the story: a simulated process (a pull, the GC, a user deleting a lease).

    Attributes:
        name: the process name as it appears in steps and the trace (``pull-1``).
        description: what the actor is, in plain words (``Pull of app:v1 with unpack``).
    """

    name: str
    description: str

    def __post_init__(self) -> None:
        require(bool(self.name), "Actor", "name", "must not be empty")

    @classmethod
    def from_json(cls, data: object, path: str) -> Self:
        f = Fields(data, path, field_names(cls))
        return f.build(cls, name=f.text("name"), description=f.text("description"))


@dataclass(frozen=True)
class Step:
    """One step of the minimal program: an actor starts an action.

    Attributes:
        actor: the name of one of the finding's actors.
        action: the program action (``pull``, ``delete_lease``, ``gc``, ``remove_label``).
        args: the action's arguments as JSON data, in a stable order.
    """

    actor: str
    action: str
    args: JSONObject = field(default_factory=dict)

    def __post_init__(self) -> None:
        require(bool(self.action), "Step", "action", "must not be empty")
        object.__setattr__(self, "args", json_object(self.args, "args"))

    @classmethod
    def from_json(cls, data: object, path: str) -> Self:
        f = Fields(data, path, field_names(cls))
        return f.build(cls, actor=f.text("actor"), action=f.text("action"), args=f.obj("args"))


@dataclass(frozen=True)
class FaultRule:
    """One rule of the fault plan: a named fault site, what it does, and when it fired.

    Attributes:
        site: the fault site's name (``snapshots.prepare``, ``content.writer.ref_lock``).
        effect: what firing does: an errdefs class name (``AlreadyExists``) or an action
            (``gc``, ``cancel``, ``remove_label``).
        hits: which hits of the site (1-based, counted per run) the plan fires on; empty
            means every hit.
        params: the rule's extra parameters as JSON data (``{"layer": 1}``).
        reached: how many times the run hit the site (0: never reached).
        fired: the hits at which the fault was injected, ascending.
    """

    site: str
    effect: str
    hits: tuple[int, ...] = ()
    params: JSONObject = field(default_factory=dict)
    reached: int = 0
    fired: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        require(bool(self.site), "FaultRule", "site", "must not be empty")
        require(bool(self.effect), "FaultRule", "effect", "must not be empty")
        require(all(h >= 1 for h in self.hits), "FaultRule", "hits", "hits count from 1")
        require(self.reached >= 0, "FaultRule", "reached", "must not be negative")
        ok = list(self.fired) == sorted(set(self.fired)) and all(
            1 <= h <= self.reached for h in self.fired
        )
        require(ok, "FaultRule", "fired", "must be ascending hits between 1 and `reached`")
        object.__setattr__(self, "hits", tuple(self.hits))
        object.__setattr__(self, "fired", tuple(self.fired))
        object.__setattr__(self, "params", json_object(self.params, "params"))

    @classmethod
    def from_json(cls, data: object, path: str) -> Self:
        f = Fields(data, path, field_names(cls))
        return f.build(
            cls,
            site=f.text("site"),
            effect=f.text("effect"),
            hits=f.integers("hits"),
            params=f.obj("params"),
            reached=f.integer("reached"),
            fired=f.integers("fired"),
        )


@dataclass(frozen=True)
class GraphNode:
    """A node of the GC reference graph.

    Attributes:
        id: a stable, unique id (the graph builder's key, e.g. ``content/default/sha256:...``).
        kind: ``content``, ``snapshot``, ``lease``, ``image``, ``ingest`` or ``container``.
        label: the short text a reader sees (an image name, a digest, a snapshot name).
        present: the object exists in the store; False for a node known only as the target of
            a reference (a dangling ``gc.ref.*`` label, a parent already swept).
    """

    id: str
    kind: str
    label: str
    present: bool = True

    def __post_init__(self) -> None:
        require(bool(self.id), "GraphNode", "id", "must not be empty")
        require(bool(self.kind), "GraphNode", "kind", "must not be empty")

    @classmethod
    def from_json(cls, data: object, path: str) -> Self:
        f = Fields(data, path, field_names(cls))
        return f.build(
            cls,
            id=f.text("id"),
            kind=f.text("kind"),
            label=f.text("label"),
            present=f.flag("present"),
        )


@dataclass(frozen=True)
class GraphEdge:
    """A reference from ``source`` to ``target`` (node ids of the same graph).

    Attributes:
        kind: what makes the reference: ``label`` (a ``containerd.io/gc.ref.*`` label),
            ``parent`` (snapshot parent), ``lease`` (a lease resource), ``target`` (an image's
            target), ``root`` or another builder-defined word.
        key: the label key or resource type behind it (``containerd.io/gc.ref.content.1``);
            empty when there is none.
    """

    source: str
    target: str
    kind: str
    key: str = ""

    @classmethod
    def from_json(cls, data: object, path: str) -> Self:
        f = Fields(data, path, field_names(cls))
        return f.build(
            cls,
            source=f.text("source"),
            target=f.text("target"),
            kind=f.text("kind"),
            key=f.text("key"),
        )


@dataclass(frozen=True)
class GraphData:
    """A reference graph as plain data: nodes in a stable order, edges between them.

    Raises (on construction):
        RecordError: duplicate node ids, or an edge naming a node not in ``nodes``.
    """

    nodes: tuple[GraphNode, ...] = ()
    edges: tuple[GraphEdge, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "nodes", tuple(self.nodes))
        object.__setattr__(self, "edges", tuple(self.edges))
        ids = [n.id for n in self.nodes]
        seen: set[str] = set()
        for i, node_id in enumerate(ids):
            require(node_id not in seen, "GraphData", f"nodes[{i}].id", f"duplicate {node_id!r}")
            seen.add(node_id)
        for i, edge in enumerate(self.edges):
            for end in ("source", "target"):
                name = getattr(edge, end)
                require(name in seen, "GraphData", f"edges[{i}].{end}", f"no node {name!r}")

    def node(self, node_id: str) -> GraphNode | None:
        """The node with ``node_id``, or None."""
        return next((n for n in self.nodes if n.id == node_id), None)

    @classmethod
    def from_json(cls, data: object, path: str) -> Self:
        f = Fields(data, path, field_names(cls))
        return f.build(
            cls,
            nodes=f.records("nodes", GraphNode.from_json),
            edges=f.records("edges", GraphEdge.from_json),
        )


@dataclass(frozen=True)
class Replay:
    """What replays the finding.

    Attributes:
        command: the command line that replays it (``unpacksim replay findings/f-1a2b.json``).
        seed: the explorer's seed, when a seeded chooser found it.
        hypothesis_blob: Hypothesis's ``@reproduce_failure`` blob, when Hypothesis found it.
    """

    command: str
    seed: int | None = None
    hypothesis_blob: str | None = None

    def __post_init__(self) -> None:
        require(bool(self.command.strip()), "Replay", "command", "must give a command line")

    @classmethod
    def from_json(cls, data: object, path: str = "replay") -> Self:
        f = Fields(data, path, field_names(cls))
        return f.build(
            cls,
            command=f.text("command"),
            seed=f.opt_integer("seed"),
            hypothesis_blob=f.opt_text("hypothesis_blob"),
        )


_UNKNOWN_VERSION = "not installed"


@dataclass(frozen=True)
class Versions:
    """The versions that produced the finding (``not installed`` for an absent package)."""

    unpacksim: str
    python: str
    simpy: str
    hypothesis: str
    networkx: str

    @classmethod
    def collect(cls) -> Self:
        """The versions of this interpreter and the installed distributions, read now."""
        return cls(
            unpacksim=_distribution_version("unpacksim"),
            python=platform.python_version(),
            simpy=_distribution_version("simpy"),
            hypothesis=_distribution_version("hypothesis"),
            networkx=_distribution_version("networkx"),
        )

    @classmethod
    def from_json(cls, data: object, path: str = "versions") -> Self:
        f = Fields(data, path, field_names(cls))
        return f.build(cls, **{name: f.text(name) for name in field_names(cls)})


def _distribution_version(name: str) -> str:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return _UNKNOWN_VERSION


# --- the finding -------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class Finding:
    """One broken property, with its story, its evidence and what replays it.

    Build one with :meth:`new` (it fills ``id`` and ``versions``) or directly.

    Attributes:
        schema: the format version, :data:`FINDING_SCHEMA`.
        id: a stable id (``f-`` and 12 hex digits from :meth:`new`), also the file name stem.
        property: the property that broke.
        explanation: the story in plain words, naming the actors and the steps that made it
            happen ("pull-2 saw the chain ID as committed and skipped it; gc removed it ...").
        actors: every actor of the program, in the order they first act.
        program: the minimal program: the steps each actor starts, in order.
        schedule: the chooser's decisions that replay the interleaving, as the explorer's
            schedule string (index 0 is FIFO).
        fault_plan: the fault rules of the run, fired or not.
        trace: the history of invoke and complete events (see :class:`TraceEvent`).
        graph_before: the reference graph when the violating step began.
        graph_after: the reference graph when the violation was observed.
        path: node ids of the path that proves the violation (from a root to the node that
            should or should not be reachable); every id is a node of one of the two graphs.
        implementation: the unpack implementation or era preset that ran (``seed``).
        replay: what replays it.
        versions: the versions that produced it.

    Raises (on construction):
        RecordError: a step's actor is not among ``actors``, a path node is in neither graph,
            the trace is malformed (see :func:`pair_calls`), or ``schema`` is not this one.
    """

    schema: str = FINDING_SCHEMA
    id: str
    property: PropertyRef
    explanation: str
    actors: tuple[Actor, ...]
    program: tuple[Step, ...]
    schedule: str
    fault_plan: tuple[FaultRule, ...] = ()
    trace: tuple[TraceEvent, ...] = ()
    graph_before: GraphData = field(default_factory=GraphData)
    graph_after: GraphData = field(default_factory=GraphData)
    path: tuple[str, ...] = ()
    implementation: str
    replay: Replay
    versions: Versions

    _SEQUENCES: ClassVar[tuple[str, ...]] = ("actors", "program", "fault_plan", "trace", "path")

    def __post_init__(self) -> None:
        rec = "Finding"
        require(self.schema == FINDING_SCHEMA, rec, "schema", f"must be {FINDING_SCHEMA!r}")
        require(bool(self.id), rec, "id", "must not be empty")
        require(bool(self.implementation), rec, "implementation", "must name one")
        for name in self._SEQUENCES:
            object.__setattr__(self, name, tuple(getattr(self, name)))
        names = [a.name for a in self.actors]
        for i, step in enumerate(self.program):
            known = f"declare it in actors (known: {', '.join(names) or 'none'})"
            require(step.actor in names, rec, f"program[{i}].actor", f"{step.actor!r}: {known}")
        for i, node_id in enumerate(self.path):
            found = self.graph_before.node(node_id) or self.graph_after.node(node_id)
            require(found is not None, rec, f"path[{i}]", f"{node_id!r} is in neither graph")
        try:
            pair_calls(self.trace)
        except RecordError as err:
            raise RecordError(f"trace{err.field}", err.problem, record=rec) from None

    @classmethod
    def new(cls, *, id: str | None = None, versions: Versions | None = None, **fields: Any) -> Self:
        """A finding with ``versions`` collected now and, unless given, a content-derived id.

        The id hashes the property, implementation, program, schedule and fault plan, so the
        same minimal story found twice gets the same id (and the same file name).
        """
        versions = versions or Versions.collect()
        return cls(id=id or cls.derive_id(**fields), versions=versions, **fields)

    @staticmethod
    def derive_id(**fields: Any) -> str:
        """``f-`` and 12 hex digits of a hash of the fields that identify the story."""
        keys = ("property", "implementation", "program", "schedule", "fault_plan")
        identity = {k: to_json_data(fields.get(k)) for k in keys}
        text = json.dumps(identity, sort_keys=True, ensure_ascii=False, allow_nan=False)
        return "f-" + hashlib.sha256(text.encode()).hexdigest()[:12]

    def calls(self) -> tuple[Call, ...]:
        """The trace's invokes paired with their completes (see :func:`pair_calls`)."""
        return pair_calls(self.trace)

    def to_json(self) -> JSONObject:
        """This finding as JSON data (fields in declaration order)."""
        data = to_json_data(self)
        assert isinstance(data, dict)
        return data

    @classmethod
    def from_json(cls, data: object) -> Self:
        """Read a finding from JSON data, checking the schema version first.

        Raises:
            RecordError: not a finding, another schema version, or a field unknown, missing or
                of the wrong type (the error names it, e.g. ``trace[3].kind``).
        """
        check_schema(data, FINDING_SCHEMA, "finding")
        f = Fields(data, "", field_names(cls))
        return f.build(
            cls,
            schema=f.text("schema"),
            id=f.text("id"),
            property=PropertyRef.from_json(f.data["property"], "property"),
            explanation=f.text("explanation"),
            actors=f.records("actors", Actor.from_json),
            program=f.records("program", Step.from_json),
            schedule=f.text("schedule"),
            fault_plan=f.records("fault_plan", FaultRule.from_json),
            trace=f.records("trace", TraceEvent.from_json),
            graph_before=GraphData.from_json(f.data["graph_before"], "graph_before"),
            graph_after=GraphData.from_json(f.data["graph_after"], "graph_after"),
            path=f.texts("path"),
            implementation=f.text("implementation"),
            replay=Replay.from_json(f.data["replay"]),
            versions=Versions.from_json(f.data["versions"]),
        )
