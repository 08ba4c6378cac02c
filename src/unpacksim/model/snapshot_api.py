"""The snapshotter interface and the helpers its implementations share.

Mirrors containerd's ``snapshots/snapshotter.go`` (``Info``, ``Usage``, ``Kind``, the
``Snapshotter`` interface), the snapshot filter adaptor of ``metadata/adaptors.go`` and
``snapshots/storage/bolt.go`` (``adaptSnapshot``), the label-update rules both
``storage.UpdateInfo`` and the metadata ``Update`` apply, ``boltutil.WriteLabels`` (empty values
are dropped) and ``labels.Validate``.

Go options become keyword-only arguments (``snapshots.WithLabels`` is ``labels=``); ``ctx`` is the
explicit first argument of every operation.  A backend ignores the namespace; the metadata layer
requires one.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from unpacksim.model.context import ModelContext
from unpacksim.model.db import Kind
from unpacksim.model.errdefs import InvalidArgument
from unpacksim.model.filters import Adaptor, check_map

__all__ = [
    "MAX_LABEL_SIZE",
    "Info",
    "Kind",
    "Mount",
    "Snapshotter",
    "Usage",
    "WalkFunc",
    "adapt_snapshot",
    "go_quote",
    "update_labels",
    "validate_labels",
    "write_labels",
]

#: ``labels.Validate``: a key and value together may not exceed this many bytes.
MAX_LABEL_SIZE = 4096


@dataclass(frozen=True)
class Info:
    """``snapshots.Info``: what Stat, Walk and Update report about one snapshot.

    ``name`` is the key of an active or view snapshot and the name of a committed one;
    ``parent`` is "" for none.  ``created`` and ``updated`` are simulated seconds
    (``unpacksim.model.clock``).  Update reads only ``name`` and ``labels``.
    """

    name: str
    parent: str = ""
    kind: Kind = Kind.ACTIVE
    labels: dict[str, str] = field(default_factory=dict)
    created: float = 0.0
    updated: float = 0.0


@dataclass(frozen=True)
class Usage:
    """``snapshots.Usage``: inodes and bytes a snapshot uses."""

    inodes: int = 0
    size: int = 0


@dataclass(frozen=True)
class Mount:
    """``mount.Mount``: what the caller would mount to use a snapshot."""

    type: str
    source: str
    options: tuple[str, ...] = ()


#: ``snapshots.WalkFunc``: called once per matching snapshot; raising stops the walk.
WalkFunc = Callable[[ModelContext, Info], None]


class Snapshotter(Protocol):
    """``snapshots.Snapshotter``, one method per Go method, in containerd's words.

    ``key`` names an active or view snapshot, ``name`` a committed one.  Errors are errdefs
    classes (``unpacksim.model.errdefs``).
    """

    def stat(self, ctx: ModelContext, key: str) -> Info:
        """The info of an active, view or committed snapshot.

        Raises:
            NotFound: no snapshot has that key or name.
        """
        ...

    def update(self, ctx: ModelContext, info: Info, *fieldpaths: str) -> Info:
        """Update the labels of ``info.name``; return the new info.

        No field paths replace the whole label map; ``labels.<k>`` sets or (when absent from
        ``info.labels``) deletes one label; ``labels`` replaces the map.

        Raises:
            NotFound: the snapshot does not exist.
            InvalidArgument: a field path other than ``labels``/``labels.<k>`` (immutable).
        """
        ...

    def usage(self, ctx: ModelContext, key: str) -> Usage:
        """The resources the snapshot uses.

        Raises:
            NotFound: the snapshot does not exist.
        """
        ...

    def mounts(self, ctx: ModelContext, key: str) -> list[Mount]:
        """The mounts of an active or view snapshot.

        Raises:
            NotFound: the snapshot does not exist.
            FailedPrecondition: the snapshot is committed.
        """
        ...

    def prepare(
        self,
        ctx: ModelContext,
        key: str,
        parent: str = "",
        *,
        labels: Mapping[str, str] | None = None,
    ) -> list[Mount]:
        """Create an active snapshot ``key`` on top of committed ``parent``.

        Raises:
            AlreadyExists: ``key`` exists (or, with ``containerd.io/snapshot.ref``, the target
                does).
            NotFound: ``parent`` does not exist.
            InvalidArgument: ``parent`` is not committed.
        """
        ...

    def view(
        self,
        ctx: ModelContext,
        key: str,
        parent: str = "",
        *,
        labels: Mapping[str, str] | None = None,
    ) -> list[Mount]:
        """Create a read-only view ``key`` of committed ``parent``.

        Raises:
            AlreadyExists: ``key`` exists.
            NotFound: ``parent`` does not exist.
            InvalidArgument: ``parent`` is not committed.
        """
        ...

    def commit(
        self,
        ctx: ModelContext,
        name: str,
        key: str,
        *,
        labels: Mapping[str, str] | None = None,
    ) -> None:
        """Commit active snapshot ``key`` as ``name``; ``key`` is gone afterwards.

        The committed snapshot's labels are ``labels`` (the active's are not inherited).

        Raises:
            AlreadyExists: ``name`` exists.
            NotFound: ``key`` does not exist.
            FailedPrecondition: ``key`` is not active (committed, or a view).
        """
        ...

    def remove(self, ctx: ModelContext, key: str) -> None:
        """Remove a snapshot that has no children.

        Raises:
            NotFound: the snapshot does not exist.
            FailedPrecondition: it has children ("cannot remove snapshot with child").
        """
        ...

    def walk(self, ctx: ModelContext, fn: WalkFunc, *filters: str) -> None:
        """Call ``fn`` for every snapshot matching any of ``filters`` (all if none).

        Filter fields: ``kind`` (active|view|committed), ``name``, ``parent``, ``labels.<k>``.

        Raises:
            InvalidArgument: a filter does not parse.
        """
        ...

    def close(self) -> None:
        """Release the snapshotter; calling it twice is not an error."""
        ...


def adapt_snapshot(info: Info) -> Adaptor:
    """``adaptSnapshot`` (``metadata/adaptors.go``): the filter fields of one snapshot."""

    def adaptor(fieldpath: tuple[str, ...]) -> tuple[str, bool]:
        if not fieldpath:
            return "", False
        head = fieldpath[0]
        if head == "kind":
            return info.kind.value, True
        if head == "name":
            return info.name, True
        if head == "parent":
            return info.parent, True
        if head == "labels":
            return check_map(fieldpath[1:], info.labels)
        return "", False

    return adaptor


def update_labels(
    current: Mapping[str, str], info: Info, fieldpaths: Sequence[str], name: str
) -> dict[str, str]:
    """The label map after an Update (``storage.UpdateInfo`` and metadata ``Update``).

    Raises:
        InvalidArgument: a field path names an immutable field.
    """
    if not fieldpaths:
        return dict(info.labels)
    labels = dict(current)
    for path in fieldpaths:
        if path.startswith("labels."):
            key = path[len("labels.") :]
            # A key absent from info.labels is written as "" and so deleted (WriteLabels).
            labels[key] = info.labels.get(key, "")
        elif path == "labels":
            labels = dict(info.labels)
        else:
            raise InvalidArgument(
                f"cannot update {go_quote(path)} field on snapshot {go_quote(name)}"
            )
    return labels


def write_labels(labels: Mapping[str, str] | None) -> dict[str, str]:
    """``boltutil.WriteLabels``: drop empty values; stored in key order, as bolt keeps them."""
    if not labels:
        return {}
    return {k: labels[k] for k in sorted(labels) if labels[k] != ""}


def validate_labels(labels: Mapping[str, str] | None) -> None:
    """``validateSnapshot`` / ``labels.Validate``: each key plus value at most 4096 bytes.

    Raises:
        InvalidArgument: a label is too large (the message shows the key's first 10 bytes).
    """
    for key in sorted(labels or {}):
        value = (labels or {})[key]
        if len(key.encode()) + len(value.encode()) > MAX_LABEL_SIZE:
            shown = key.encode()[:10].decode(errors="replace")
            raise InvalidArgument(
                "info.Labels: label key and value greater than maximum size "
                f"({MAX_LABEL_SIZE} bytes), key: {shown}"
            )


_GO_ESCAPES = {
    "\a": "\\a",
    "\b": "\\b",
    "\f": "\\f",
    "\n": "\\n",
    "\r": "\\r",
    "\t": "\\t",
    "\v": "\\v",
    "\\": "\\\\",
    '"': '\\"',
}


def go_quote(text: str) -> str:
    """Go's ``%q`` of a string (``strconv.Quote``), for messages and filter values."""
    out: list[str] = []
    for ch in text:
        if ch in _GO_ESCAPES:
            out.append(_GO_ESCAPES[ch])
        elif ch.isprintable() or ch == " ":
            out.append(ch)
        elif ord(ch) < 0x80:
            out.append(f"\\x{ord(ch):02x}")
        elif ord(ch) <= 0xFFFF:
            out.append(f"\\u{ord(ch):04x}")
        else:
            out.append(f"\\U{ord(ch):08x}")
    return '"' + "".join(out) + '"'
