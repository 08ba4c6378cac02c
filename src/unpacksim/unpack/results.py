"""What a pull is asked to do (:class:`PullOptions`) and what it did (:class:`PullResult`).

``PullOptions`` is the part of containerd's ``RemoteContext`` (``client.go``) the model uses.
``PullResult`` is the record the properties layer reads: success or the error, the image, and
per unpack which chain IDs were prepared, applied, committed or skipped and which extraction
keys were aborted.  While a pull runs it writes into a mutable :class:`PullLog`; the result is
frozen from it when the pull returns, whichever way it returns.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from unpacksim.model.errdefs import ContainerdError, error_class
from unpacksim.model.oci import Descriptor, Platform

if TYPE_CHECKING:
    from unpacksim.unpack.handlers import Handler

__all__ = [
    "AbortRecord",
    "PullLog",
    "PullOptions",
    "PullResult",
    "SkipReason",
    "UnpackLog",
    "UnpackRecord",
]


class PullOptionsError(ValueError):
    """Misuse: a :class:`PullOptions` field has a value the pipeline cannot use."""


@dataclass(frozen=True)
class PullOptions:
    """The pull's options (``RemoteContext`` fields, Go ``RemoteOpt`` s).

    Attributes:
        snapshotter: the snapshotter to unpack into (``WithPullSnapshotter``).
        unpack: unpack while pulling (``WithPullUnpack``).
        platform: the platform to pull (``WithPlatform``); None means the client default,
            ``linux/amd64`` in the model.
        max_concurrent_downloads: ``WithMaxConcurrentDownloads``; 0 means no limit.  At the
            seed it bounds only Dispatch (manifests and configs); with the era flag
            ``limiter_effective`` it bounds the unpacker's layer fetches too.
        discard_content: let GC take layer blobs once unpacked, by the era's mechanism
            (seed ``WithDiscardContent``; later ``WithChildLabelMap(ChildGCLabelsFilterLayers)``).
        labels: labels of the image record (``WithPullLabels``).
        handler_wrapper: a user ``HandlerWrapper``; the unpack wrapper wraps it.
    """

    snapshotter: str = "native"
    unpack: bool = True
    platform: Platform | None = None
    max_concurrent_downloads: int = 0
    discard_content: bool = False
    labels: Mapping[str, str] = field(default_factory=dict)
    handler_wrapper: Callable[[Handler], Handler] | None = None

    def __post_init__(self) -> None:
        if not self.snapshotter:
            raise PullOptionsError("PullOptions.snapshotter must name a snapshotter, got ''")
        if self.max_concurrent_downloads < 0:
            raise PullOptionsError(
                "PullOptions.max_concurrent_downloads must be 0 (no limit) or positive, "
                f"got {self.max_concurrent_downloads}"
            )
        object.__setattr__(self, "labels", MappingProxyType(dict(self.labels)))


class SkipReason:
    """Why a layer was not extracted (the branch of the Go code that skipped it)."""

    #: ``sn.Stat(chainID)`` succeeded before Prepare (the Stat skip, removed in #10723).
    STAT = "stat"
    #: Prepare returned AlreadyExists and a Stat then found the chain ID.
    PREPARE_EXISTS = "prepare_exists"
    #: Commit returned AlreadyExists: another unpacker won the race.
    COMMIT_EXISTS = "commit_exists"


@dataclass(frozen=True)
class AbortRecord:
    """One call of ``abort()``: the key removed and the outcome of the Remove."""

    key: str
    chain_id: str
    outcome: str  # "ok" or the errdefs class name of the Remove error


@dataclass
class UnpackLog:
    """What one ``unpacker.unpack`` (one config) did, written while it runs."""

    config: str
    chain_ids: list[str] = field(default_factory=list)
    prepared: list[tuple[str, str]] = field(default_factory=list)  # (chain ID, key)
    applied: list[str] = field(default_factory=list)
    committed: list[str] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (chain ID, SkipReason)
    aborted: list[AbortRecord] = field(default_factory=list)
    prepare_attempts: list[tuple[str, str, str]] = field(default_factory=list)
    fetch_offset: int | None = None
    fetched: list[str] = field(default_factory=list)  # layer digests whose done closed
    error: BaseException | None = None

    def freeze(self) -> UnpackRecord:
        return UnpackRecord(
            config=self.config,
            chain_ids=tuple(self.chain_ids),
            prepared=tuple(self.prepared),
            applied=tuple(self.applied),
            committed=tuple(self.committed),
            skipped=tuple(self.skipped),
            aborted=tuple(self.aborted),
            prepare_attempts=tuple(self.prepare_attempts),
            fetch_offset=self.fetch_offset,
            fetched=tuple(self.fetched),
            error=_describe(self.error),
        )


@dataclass(frozen=True)
class UnpackRecord:
    """The frozen form of :class:`UnpackLog`.

    ``prepare_attempts`` holds ``(chain ID, key, outcome)`` for every Prepare call, outcome
    ``ok`` or an errdefs class name.  ``error`` is ``""`` on success, else ``Class: message``.
    """

    config: str
    chain_ids: tuple[str, ...]
    prepared: tuple[tuple[str, str], ...]
    applied: tuple[str, ...]
    committed: tuple[str, ...]
    skipped: tuple[tuple[str, str], ...]
    aborted: tuple[AbortRecord, ...]
    prepare_attempts: tuple[tuple[str, str, str], ...]
    fetch_offset: int | None
    fetched: tuple[str, ...]
    error: str

    def to_json(self) -> dict[str, Any]:
        return {
            "config": self.config,
            "chain_ids": list(self.chain_ids),
            "prepared": [list(p) for p in self.prepared],
            "applied": list(self.applied),
            "committed": list(self.committed),
            "skipped": [list(s) for s in self.skipped],
            "aborted": [[a.key, a.chain_id, a.outcome] for a in self.aborted],
            "prepare_attempts": [list(p) for p in self.prepare_attempts],
            "fetch_offset": self.fetch_offset,
            "fetched": list(self.fetched),
            "error": self.error,
        }


@dataclass
class PullLog:
    """What one pull did, written while it runs (read by :meth:`freeze`)."""

    ref: str
    implementation: str
    started: float
    lease: str | None = None
    lease_created: bool = False
    lease_deleted: bool = False
    image_name: str | None = None
    target: Descriptor | None = None
    unpacks: list[UnpackLog] = field(default_factory=list)
    fallback_unpack: bool = False
    fetched: list[str] = field(default_factory=list)  # digests the fetch handler completed

    def freeze(self, error: BaseException | None, ended: float) -> PullResult:
        return PullResult(
            ref=self.ref,
            implementation=self.implementation,
            error=error,
            image_name=self.image_name if error is None else None,
            target=self.target,
            lease=self.lease,
            lease_created=self.lease_created,
            lease_deleted=self.lease_deleted,
            unpacks=tuple(u.freeze() for u in self.unpacks),
            fallback_unpack=self.fallback_unpack,
            fetched=tuple(self.fetched),
            started=self.started,
            ended=ended,
        )


@dataclass(frozen=True)
class PullResult:
    """The record of one pull.

    ``error`` is None on success, else the error Pull returned (an errdefs error keeps its
    class through the wrapping, as Go's ``%w`` does).  ``image_name`` is the image record the
    pull created or updated (None on failure).  The tuple properties aggregate every unpack.
    """

    ref: str
    implementation: str
    error: BaseException | None
    image_name: str | None
    target: Descriptor | None
    lease: str | None
    lease_created: bool
    lease_deleted: bool
    unpacks: tuple[UnpackRecord, ...]
    fallback_unpack: bool
    fetched: tuple[str, ...]
    started: float
    ended: float

    @property
    def ok(self) -> bool:
        return self.error is None

    @property
    def error_class(self) -> str:
        """``ok``, the errdefs class name, or ``other``."""
        return error_class(self.error)

    @property
    def message(self) -> str:
        return "" if self.error is None else str(self.error)

    @property
    def prepared(self) -> tuple[str, ...]:
        return tuple(c for u in self.unpacks for c, _ in u.prepared)

    @property
    def applied(self) -> tuple[str, ...]:
        return tuple(c for u in self.unpacks for c in u.applied)

    @property
    def committed(self) -> tuple[str, ...]:
        return tuple(c for u in self.unpacks for c in u.committed)

    @property
    def skipped(self) -> tuple[tuple[str, str], ...]:
        return tuple(s for u in self.unpacks for s in u.skipped)

    @property
    def aborted(self) -> tuple[str, ...]:
        return tuple(a.key for u in self.unpacks for a in u.aborted)

    @property
    def extraction_keys(self) -> tuple[str, ...]:
        """Every key a Prepare of this pull created (committed, aborted or leaked)."""
        return tuple(k for u in self.unpacks for _, k in u.prepared)

    def to_json(self) -> dict[str, Any]:
        return {
            "ref": self.ref,
            "implementation": self.implementation,
            "ok": self.ok,
            "error_class": self.error_class,
            "message": self.message,
            "injected": isinstance(self.error, ContainerdError) and self.error.injected,
            "image_name": self.image_name,
            "target": None if self.target is None else self.target.to_json(),
            "lease": self.lease,
            "lease_created": self.lease_created,
            "lease_deleted": self.lease_deleted,
            "unpacks": [u.to_json() for u in self.unpacks],
            "fallback_unpack": self.fallback_unpack,
            "fetched": list(self.fetched),
            "started": self.started,
            "ended": self.ended,
        }


def _describe(exc: BaseException | None) -> str:
    if exc is None:
        return ""
    return f"{error_class(exc) if isinstance(exc, ContainerdError) else type(exc).__name__}: {exc}"
