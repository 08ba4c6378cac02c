"""What one side of a differential run produced, and its canonical, comparable form.

A :class:`ScenarioRun` is the same record whichever side made it (the real daemon, through
:mod:`unpacksim.real.runner`, or the reference): the outcome of every step and the final state
as a :class:`~unpacksim.model.db.DB`.  :func:`canonical_state` and :func:`message_shape` turn
them into plain data where the names that are random by design no longer differ:

- extraction keys ``extract-<nanos>-<4 base64url chars> <chainID>`` (``unpacker.go``
  ``uniquePart``) become ``extract-<unique> <chainID>``;
- lease IDs from ``leases.WithRandomID`` (the same ``<nanos>-<4 chars>`` shape) become
  ``<random>``; a scenario's own lease IDs are kept;
- ``containerd.io/gc.expire`` values (wall-clock times) become ``<time>``;
- the registry's ``host:port`` becomes ``<registry>``, in image names, messages and the
  ``containerd.io/distribution.source.<host>`` label key (containerd drops the port there).

Labels a scenario declares racy (``Scenario.racy_labels``) get the value ``<racy>``: their
value depends on thread timing on either side.  The one known case is
``containerd.io/distribution.source.<registry>`` on a blob that pulls of two repositories
fetch at once: ``AppendDistributionSourceLabel`` (``remotes/docker/handler.go``) reads the
label with ``Info`` and writes the merged list with ``Update``, so concurrent pullers lose
each other's updates and the value is any non-empty subset of the repositories.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from unpacksim.model.db import DB
from unpacksim.model.labels import DISTRIBUTION_SOURCE_PREFIX, GC_EXPIRE
from unpacksim.reports.records import FaultRule

__all__ = [
    "DISTRIBUTION_SOURCE",
    "Outcome",
    "ScenarioRun",
    "StepRecord",
    "canonical_state",
    "canonicalize",
    "message_shape",
]

REGISTRY = "<registry>"
#: The canonical key of the distribution-source label.
DISTRIBUTION_SOURCE = DISTRIBUTION_SOURCE_PREFIX + REGISTRY
_EXTRACT = re.compile(r"extract-\d+-[A-Za-z0-9_-]{4} ")
_RANDOM_ID = re.compile(r"\d+-[A-Za-z0-9_-]{4}")


@dataclass(frozen=True)
class Outcome:
    """The outcome of one operation: ok, or the errdefs class name and the message.

    ``error_class`` is an :mod:`unpacksim.model.errdefs` class name, ``other`` for an error
    of no errdefs class (a registry status, an unexpected EOF).
    """

    ok: bool
    error_class: str = "ok"
    message: str = ""

    @property
    def word(self) -> str:
        """``ok`` or the class name: what a scenario's ``expect`` lists."""
        return "ok" if self.ok else self.error_class


@dataclass(frozen=True)
class StepRecord:
    """What one step did: its kind, one outcome per operation, and what was expected."""

    index: int
    kind: str
    outcomes: tuple[Outcome, ...]
    expected: tuple[str, ...]
    faults: tuple[FaultRule, ...] = ()

    @property
    def as_expected(self) -> bool:
        return tuple(o.word for o in self.outcomes) == self.expected


@dataclass(frozen=True)
class ScenarioRun:
    """One side's run of a scenario.

    Attributes:
        scenario: the scenario's name.
        side: which implementation ran it (``containerd 1.6.20~ds1`` or a reference name).
        registry_host: the host part of the image references on this side.
        steps: the step records, in order.
        state: the final state.
        details: side-specific evidence as JSON data (the registry's request log, daemon
            versions); never compared.
    """

    scenario: str
    side: str
    registry_host: str
    steps: tuple[StepRecord, ...]
    state: DB
    details: Mapping[str, Any] = field(default_factory=dict)

    def unexpected(self) -> list[str]:
        """One line per step whose outcomes differ from the scenario's expectation."""
        return [
            f"step {s.index} ({s.kind}): expected {list(s.expected)}, got "
            f"{[o.word + (': ' + o.message if o.message else '') for o in s.outcomes]}"
            for s in self.steps
            if not s.as_expected
        ]

    def canonical(
        self, *, keep_leases: tuple[str, ...] = (), racy_labels: tuple[str, ...] = ()
    ) -> dict[str, Any]:
        """:func:`canonical_state` of the final state."""
        return canonical_state(
            self.state, registry_host=self.registry_host, keep=keep_leases, racy=racy_labels
        )

    def shapes(self) -> list[list[tuple[str, str]]]:
        """Per step, per operation: (outcome word, :func:`message_shape` of the message)."""
        return [
            [
                (o.word, message_shape(o.message, registry_host=self.registry_host))
                for o in s.outcomes
            ]
            for s in self.steps
        ]


def message_shape(message: str, *, registry_host: str) -> str:
    """``message`` with the registry host and random extraction keys replaced."""
    out = message.replace(registry_host, REGISTRY) if registry_host else message
    return _EXTRACT.sub("extract-<unique> ", out)


def canonicalize(name: str, *, registry_host: str) -> str:
    """A snapshot name, lease resource id or image name in canonical form."""
    return message_shape(name, registry_host=registry_host)


def _labels(labels: Mapping[str, str], host: str, racy: tuple[str, ...]) -> dict[str, str]:
    out: dict[str, str] = {}
    for key, value in sorted(labels.items()):
        if key.startswith(DISTRIBUTION_SOURCE_PREFIX):
            key = DISTRIBUTION_SOURCE
        if key == GC_EXPIRE:
            value = "<time>"
        out[key] = "<racy>" if key in racy else canonicalize(value, registry_host=host)
    return out


def _lease_id(lease: str, keep: tuple[str, ...]) -> str:
    return "<random>" if lease not in keep and _RANDOM_ID.fullmatch(lease) else lease


def _sorted(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return sorted(items, key=repr)


def canonical_state(
    db: DB, *, registry_host: str, keep: tuple[str, ...] = (), racy: tuple[str, ...] = ()
) -> dict[str, Any]:
    """The state of ``db`` as plain, sorted data with random names replaced.

    ``keep`` lists lease IDs that are not random (a scenario's own leases); ``racy`` lists
    canonical label keys whose values are masked.
    """
    out: dict[str, Any] = {}
    for ns_name in sorted(db.namespaces):
        ns = db.namespaces[ns_name]
        host = registry_host
        out[ns_name] = {
            "content": {
                d: {"size": b.size, "labels": _labels(b.labels, host, racy)}
                for d, b in sorted(ns.content.items())
            },
            "ingests": {r: {"expected": i.expected} for r, i in sorted(ns.ingests.items())},
            "snapshots": {
                sn: _sorted([
                    {
                        "name": canonicalize(r.name, registry_host=host),
                        "parent": r.parent,
                        "kind": r.kind.value,
                        "labels": _labels(r.labels, host, racy),
                    }
                    for r in records.values()
                ])
                for sn, records in sorted(ns.snapshots.items())
            },
            "leases": _sorted([
                {
                    "id": _lease_id(lease.id, keep),
                    "labels": _labels(lease.labels, host, racy),
                    "resources": sorted(
                        [t, canonicalize(i, registry_host=host)] for t, i in lease.resources
                    ),
                }
                for lease in ns.leases.values()
            ]),
            "images": {
                canonicalize(name, registry_host=host): {
                    "target": img.target.digest,
                    "media_type": img.target.media_type,
                    "labels": _labels(img.labels, host, racy),
                }
                for name, img in sorted(ns.images.items())
            },
        }  # fmt: skip
    return out
