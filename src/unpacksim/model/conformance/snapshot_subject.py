"""What the snapshotter checks run against, the factories for this package's snapshotters, and
the small helpers the checks share (``snapshots/testsuite/helpers.go`` in spirit)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from unpacksim.model.clock import ManualClock, format_rfc3339
from unpacksim.model.conformance import ConformanceFailure, require
from unpacksim.model.context import Ctx, ModelContext
from unpacksim.model.db import DB, Kind
from unpacksim.model.errdefs import ContainerdError
from unpacksim.model.labels import GC_ROOT, SNAPSHOT_REF
from unpacksim.model.snapshots import Info, MemorySnapshotter, MetadataSnapshotter, Snapshotter

__all__ = [
    "SUITE_NAMESPACE",
    "Check",
    "SnapshotterSubject",
    "backend_factory",
    "expect_error",
    "expect_info",
    "make_committed",
    "metadata_factory",
    "opt_labels",
    "ref_labels",
    "walk_infos",
    "work_key",
]

#: The namespace containerd's suite runs in.
SUITE_NAMESPACE = "testsuite"
# The suite's keys are paths under its work directory; keep that shape (keys with slashes).
_WORK = "/tmp/snapshot-suite/work"


@dataclass
class SnapshotterSubject:
    """What one check runs against.

    ``clock`` must be the clock the snapshotter takes its timestamps from: checks move it to
    see Created and Updated move.  ``ctx(namespace)`` makes a context (a backend ignores it).
    """

    snapshotter: Snapshotter
    clock: ManualClock

    def ctx(self, namespace: str = SUITE_NAMESPACE) -> ModelContext:
        return Ctx(namespace)


#: One check: raises ConformanceFailure (or any error) when the subject breaks the contract.
Check = Callable[[SnapshotterSubject], None]


def backend_factory(
    *, remote: bool = False, backend: type[MemorySnapshotter] = MemorySnapshotter
) -> Callable[[], SnapshotterSubject]:
    """Subjects that are a bare backend (``backend`` may be a subclass under test)."""

    def make() -> SnapshotterSubject:
        clock = ManualClock()
        return SnapshotterSubject(backend(clock=clock, remote=remote), clock)

    return make


def metadata_factory(
    *,
    remote: bool = False,
    lease_on_exists: bool = False,
    backend: type[MemorySnapshotter] = MemorySnapshotter,
    layer: type[MetadataSnapshotter] = MetadataSnapshotter,
    name: str = "native",
) -> Callable[[], SnapshotterSubject]:
    """Subjects that are a metadata layer over a fresh backend in a fresh DB."""

    def make() -> SnapshotterSubject:
        clock = ManualClock()
        db = DB(clock)
        sn = layer(db, name, backend(clock=clock, remote=remote), lease_on_exists=lease_on_exists)
        return SnapshotterSubject(sn, clock)

    return make


def opt_labels(s: SnapshotterSubject) -> dict[str, str]:
    """The suite's ``opt``: a gc.root label so the checks also hold under GC."""
    return {GC_ROOT: format_rfc3339(s.clock.now())}


def ref_labels(target: str) -> dict[str, str]:
    """``containerd.io/snapshot.ref=<target>``."""
    return {SNAPSHOT_REF: target}


def work_key(name: str) -> str:
    """A key shaped like the suite's (a path in its work directory)."""
    return f"{_WORK}/{name}"


def expect_error(
    cls: type[ContainerdError], what: str, fn: Callable[..., object], *args: Any, **kwargs: Any
) -> ContainerdError:
    """Call ``fn(*args, **kwargs)``; require it to raise ``cls``; return the error."""
    try:
        fn(*args, **kwargs)
    except ContainerdError as exc:
        require(
            isinstance(exc, cls),
            f"{what}: expected {cls.__name__}, got {type(exc).__name__}: {exc}",
        )
        return exc
    raise ConformanceFailure(f"{what}: expected {cls.__name__}, but it succeeded")


def walk_infos(s: SnapshotterSubject, *filters: str) -> list[Info]:
    """Everything Walk reports in the suite's namespace."""
    seen: list[Info] = []
    s.snapshotter.walk(s.ctx(), lambda _ctx, info: seen.append(info), *filters)
    return seen


def expect_info(info: Info, kind: Kind, parent: str, what: str) -> None:
    """Require ``info`` to have ``kind`` and ``parent``."""
    require(info.kind is kind, f"{what}: kind {info.kind.value}, expected {kind.value}")
    require(info.parent == parent, f"{what}: parent {info.parent!r}, expected {parent!r}")


def make_committed(s: SnapshotterSubject, name: str, parent: str = "", **labels: str) -> None:
    """Prepare ``<name>-a`` on ``parent`` and commit it as ``name`` (``labels`` added)."""
    ctx, opt = s.ctx(), opt_labels(s)
    s.snapshotter.prepare(ctx, f"{name}-a", parent, labels=opt)
    s.snapshotter.commit(ctx, name, f"{name}-a", labels={**opt, **labels})
