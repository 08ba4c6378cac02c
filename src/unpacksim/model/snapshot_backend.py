"""An in-memory snapshotter backend: what the metadata layer sits on.

Mirrors containerd's native snapshotter over ``snapshots/storage`` (``snapshots/native/native.go``,
``snapshots/storage/bolt.go``) at the seed: the same error classes and messages, the same ID
rules (an ID per create, unchanged by Commit), the same bind mounts (``<root>/snapshots/<id>``,
``rw``/``ro`` plus ``rbind``).  It keeps no file contents.  A backend has no namespaces: keys are
whatever the caller (usually the metadata layer, ``<ns>/<seq>/<key>``) gives it.

Remote mode mirrors the fake ``tmpSnapshotter`` of ``metadata/snapshot_test.go`` and
stargz-like remote snapshotters: a Prepare whose labels carry
``containerd.io/snapshot.ref=<target>`` returns AlreadyExists when a committed snapshot with
that ref label and the same parent exists.  A remote backend can also be told to serve targets
itself (:meth:`MemorySnapshotter.serve_remote`): a Prepare for a served target materialises the
committed snapshot ``<target>`` (parent and labels of the Prepare; unless a snapshot of that
name exists) and returns AlreadyExists "target snapshot %q", as stargz-snapshotter does when it
mounts a layer remotely.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from unpacksim.model.clock import Clock, ManualClock
from unpacksim.model.context import Ctx, ModelContext
from unpacksim.model.db import Kind
from unpacksim.model.errdefs import AlreadyExists, FailedPrecondition, InvalidArgument, NotFound
from unpacksim.model.filters import parse_filters
from unpacksim.model.labels import SNAPSHOT_REF
from unpacksim.model.snapshot_api import (
    Info,
    Mount,
    Usage,
    WalkFunc,
    adapt_snapshot,
    go_quote,
    update_labels,
    write_labels,
)

__all__ = ["MemorySnapshotter"]

# The GC sweep calls the backend without a caller's context.
_NO_CTX = Ctx(namespace="")


@dataclass
class _Snapshot:
    """One backend snapshot (a ``snapshots/storage`` bucket)."""

    id: int
    kind: Kind
    parent: str
    labels: dict[str, str]
    created: float
    updated: float
    usage: Usage = field(default_factory=Usage)
    children: dict[str, None] = field(default_factory=dict)


class MemorySnapshotter:
    """The native snapshotter's contract, in memory (see the module docstring).

    ``clock`` gives the timestamps (share the DB's clock under a metadata layer); ``remote``
    turns on the target-ref behaviour; ``root`` only shapes mount sources.  Snapshots are kept
    in creation order (a commit re-inserts the snapshot under its name), so a parent always
    comes before its children.
    """

    def __init__(
        self, *, clock: Clock | None = None, remote: bool = False, root: str = "/memory"
    ) -> None:
        self.clock: Clock = clock if clock is not None else ManualClock()
        self.remote = remote
        self.root = root
        self.snapshots: dict[str, _Snapshot] = {}
        self.remote_refs: dict[str, None] = {}
        self.closed = 0
        self._seq = 0
        # snapshots/storage creates its bolt buckets in the first create that commits; until
        # then every lookup fails with NotFound "bucket does not exist" (withBucket).
        self._buckets = False

    # -- remote mode -----------------------------------------------------------------------

    def serve_remote(self, *targets: str) -> None:
        """Let Prepare materialise these targets itself (a remote snapshotter serving layers)."""
        if not self.remote:
            raise ValueError(
                "serve_remote() needs a remote backend: build it with "
                "MemorySnapshotter(remote=True)"
            )
        for target in targets:
            if not isinstance(target, str) or not target:
                raise ValueError(f"serve_remote() takes non-empty target strings, got {target!r}")
            self.remote_refs[target] = None

    def _find_target(self, target: str, parent: str) -> str:
        """The committed snapshot with ref ``target`` and parent ``parent``, or ""."""
        for name, snap in self.snapshots.items():
            if (
                snap.kind is Kind.COMMITTED
                and snap.labels.get(SNAPSHOT_REF) == target
                and snap.parent == parent
            ):
                return name
        return ""

    # -- Snapshotter -----------------------------------------------------------------------

    def stat(self, ctx: ModelContext, key: str) -> Info:
        """``storage.GetInfo``.

        Raises:
            NotFound: "snapshot does not exist" ("bucket does not exist" before the first
                create).
        """
        self._require_buckets()
        return self._info(key, self._get(key, "snapshot does not exist"))

    def update(self, ctx: ModelContext, info: Info, *fieldpaths: str) -> Info:
        """``storage.UpdateInfo``: label rules of :func:`update_labels`; Updated moves.

        Raises:
            NotFound: "snapshot does not exist" ("bucket does not exist" before the first
                create).
            InvalidArgument: an immutable field path.
        """
        self._require_buckets()
        snap = self._get(info.name, "snapshot does not exist")
        labels = update_labels(snap.labels, info, fieldpaths, info.name)
        snap.labels = write_labels(labels)
        snap.updated = self.clock.now()
        return self._info(info.name, snap)

    def usage(self, ctx: ModelContext, key: str) -> Usage:
        """The recorded usage (this backend keeps no files, so zero unless set).

        Raises:
            NotFound: "snapshot does not exist" ("bucket does not exist" before the first
                create).
        """
        self._require_buckets()
        return self._get(key, "snapshot does not exist").usage

    def mounts(self, ctx: ModelContext, key: str) -> list[Mount]:
        """``native.Mounts`` via ``storage.GetSnapshot``.

        Raises:
            NotFound: the snapshot does not exist.
            FailedPrecondition: the snapshot is committed.
        """
        self._require_buckets("failed to get snapshot mount: ")
        snap = self._get(key, "failed to get snapshot mount: snapshot does not exist")
        if snap.kind is Kind.COMMITTED:
            raise FailedPrecondition(
                f"failed to get snapshot mount: requested snapshot {key} not active or view"
            )
        return self._mounts(snap)

    def prepare(
        self,
        ctx: ModelContext,
        key: str,
        parent: str = "",
        *,
        labels: Mapping[str, str] | None = None,
    ) -> list[Mount]:
        """``native.Prepare``; in remote mode, the target-ref rules of the module docstring.

        Raises:
            AlreadyExists: ``key`` exists, or (remote) the target exists or was materialised.
            NotFound: ``parent`` is missing ("missing parent %q bucket").
            InvalidArgument: ``parent`` is not committed.
        """
        return self._create(Kind.ACTIVE, key, parent, labels)

    def view(
        self,
        ctx: ModelContext,
        key: str,
        parent: str = "",
        *,
        labels: Mapping[str, str] | None = None,
    ) -> list[Mount]:
        """``native.View``; same rules as :meth:`prepare`.

        Raises:
            AlreadyExists: ``key`` exists, or (remote) the target exists or was materialised.
            NotFound: ``parent`` is missing.
            InvalidArgument: ``parent`` is not committed.
        """
        return self._create(Kind.VIEW, key, parent, labels)

    def commit(
        self,
        ctx: ModelContext,
        name: str,
        key: str,
        *,
        labels: Mapping[str, str] | None = None,
    ) -> None:
        """``native.Commit`` / ``storage.CommitActive``: same ID, labels replaced.

        Raises:
            NotFound: ``key`` does not exist ("snapshot does not exist").
            AlreadyExists: ``name`` exists ("committed snapshot %v").
            FailedPrecondition: ``key`` is not active ("snapshot %q is not active").
        """
        self._require_buckets()
        snap = self._get(key, "snapshot does not exist")
        if name in self.snapshots:
            raise AlreadyExists(f"failed to commit snapshot: committed snapshot {name}")
        if snap.kind is not Kind.ACTIVE:
            raise FailedPrecondition(
                f"failed to commit snapshot: snapshot {go_quote(key)} is not active"
            )
        now = self.clock.now()
        committed = _Snapshot(
            snap.id, Kind.COMMITTED, snap.parent, write_labels(labels), now, now, snap.usage
        )
        del self.snapshots[key]
        self.snapshots[name] = committed
        if snap.parent:
            children = self.snapshots[snap.parent].children
            children.pop(key, None)
            children[name] = None

    def remove(self, ctx: ModelContext, key: str) -> None:
        """``native.Remove`` / ``storage.Remove``.

        Raises:
            NotFound: the snapshot does not exist.
            FailedPrecondition: it has children ("cannot remove snapshot with child").
        """
        self._require_buckets("failed to remove: ")
        snap = self._get(key, f"failed to remove: snapshot {key}")
        if snap.children:
            raise FailedPrecondition("failed to remove: cannot remove snapshot with child")
        if snap.parent:
            self.snapshots[snap.parent].children.pop(key, None)
        del self.snapshots[key]

    def walk(self, ctx: ModelContext, fn: WalkFunc, *filters: str) -> None:
        """``storage.WalkInfo``: key order (bolt's), over the state when the walk began.

        ``fn`` may call back into the snapshotter (as in a bolt read transaction, it does not
        see its own changes in this walk).

        Raises:
            InvalidArgument: a filter does not parse.
            NotFound: nothing was ever created ("bucket does not exist").
        """
        matcher = parse_filters(*filters)
        self._require_buckets()
        infos = [self._info(key, self.snapshots[key]) for key in sorted(self.snapshots)]
        for info in infos:
            if matcher.match(adapt_snapshot(info)):
                fn(ctx, info)

    def close(self) -> None:
        """Count the close; closing twice is fine.  The backend stays usable (for the GC)."""
        self.closed += 1

    # -- SnapshotBackend (the GC's backend sweep) ------------------------------------------

    def backend_tree(self) -> list[tuple[str, str]]:
        """Every snapshot as (key, parent key or ""), in Walk order: by key, as bolt iterates.

        ``metadata/snapshot.go`` ``walkTree`` builds the sweep's tree from the backend's Walk,
        so the roots and each node's children, and hence the removal order, follow it.
        """
        return [(key, self.snapshots[key].parent) for key in sorted(self.snapshots)]

    def backend_remove(self, backend_key: str) -> None:
        """Remove one snapshot for the GC sweep (``pruneBranch`` calls ``Remove``).

        Raises:
            NotFound: the snapshot does not exist.
            FailedPrecondition: it has children.
        """
        self.remove(_NO_CTX, backend_key)

    # -- internals -------------------------------------------------------------------------

    def _require_buckets(self, prefix: str = "") -> None:
        """``snapshots/storage`` ``withBucket``: NotFound while the "v1" bucket is missing."""
        if not self._buckets:
            raise NotFound(f"{prefix}bucket does not exist")

    def _get(self, key: str, message: str) -> _Snapshot:
        snap = self.snapshots.get(key)
        if snap is None:
            raise NotFound(message)
        return snap

    def _info(self, key: str, snap: _Snapshot) -> Info:
        return Info(key, snap.parent, snap.kind, dict(snap.labels), snap.created, snap.updated)

    def _create(
        self, kind: Kind, key: str, parent: str, labels: Mapping[str, str] | None
    ) -> list[Mount]:
        if not isinstance(key, str) or not isinstance(parent, str):
            raise TypeError(f"snapshot keys are strings, got key={key!r} parent={parent!r}")
        stored = write_labels(labels)
        target = stored.get(SNAPSHOT_REF, "") if self.remote else ""
        # tmpSnapshotter.create: the target check comes before anything else.
        if target and self._find_target(target, parent):
            raise AlreadyExists("found target")
        self._check_parent(parent)
        if key in self.snapshots:
            raise AlreadyExists(f"failed to create snapshot: snapshot {key}")
        if target in self.remote_refs and target not in self.snapshots:
            self._add(target, Kind.COMMITTED, parent, stored)
            raise AlreadyExists(f"target snapshot {go_quote(target)}")
        return self._mounts(self._add(key, kind, parent, stored))

    def _check_parent(self, parent: str) -> None:
        """``storage.CreateSnapshot``'s parent rules."""
        if not parent:
            return
        snap = self.snapshots.get(parent)
        if snap is None:
            raise NotFound(f"failed to create snapshot: missing parent {go_quote(parent)} bucket")
        if snap.kind is not Kind.COMMITTED:
            raise InvalidArgument(
                f"failed to create snapshot: parent {go_quote(parent)} is not committed snapshot"
            )

    def _add(self, key: str, kind: Kind, parent: str, labels: dict[str, str]) -> _Snapshot:
        self._seq += 1
        now = self.clock.now()
        snap = _Snapshot(self._seq, kind, parent, labels, now, now)
        self._buckets = True
        self.snapshots[key] = snap
        if parent:
            self.snapshots[parent].children[key] = None
        return snap

    def _mounts(self, snap: _Snapshot) -> list[Mount]:
        """``native.mounts``: a bind mount of the snapshot's (or a view's parent's) directory."""
        mode = "ro" if snap.kind is Kind.VIEW else "rw"
        source_id = snap.id
        if snap.parent and snap.kind is not Kind.ACTIVE:
            source_id = self.snapshots[snap.parent].id
        return [Mount("bind", f"{self.root}/snapshots/{source_id}", (mode, "rbind"))]
