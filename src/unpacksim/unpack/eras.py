"""Era flags: the containerd changes to the unpacker and pull path, one flag each.

The reference pipeline (:mod:`unpacksim.unpack.pull`, :mod:`unpacksim.unpack.unpacker`) runs the
seed commit ``03ab1b2cac`` by default.  Every behaviour that changed later is one field of
:class:`Era`, named after the containerd change it models (containerd-semantics.md §4 and §7).
The named presets pin the flags of one containerd release:

========  ==========================================================================
preset    what it models
========  ==========================================================================
``seed``  ``03ab1b2cac`` (2020-06): Stat skip, index child labels, no limiter, no abort on
          cancel or fetch error, ``DiscardContent`` strips labels after the unpack.
``v1.4``  v1.4.0: ``c8b14ae4c`` typed child labels (``.config``, ``.l.<i>``, ``.m.<i>``);
          discarding is ``ChildGCLabelsFilterLayers`` (the labels are never written).
``v1.6``  v1.6.20 as Debian ships it (``/usr/share/gocode/.../containerd``): v1.4 plus the
          effective download limiter (``535191abf``, #6109; ``unpacker.go`` L71-L74, L288).
          Not in 1.6.20: #6749's abort on cancel/fetch error (L215-L223 return without it),
          #7859 (abort uses the pull's ctx, L192-L196), #10187 (1.6.32), #10723 (1.6.37).
``v1.7``  v1.7.0: v1.6 plus abort on cancellation and fetch errors (``8017daa12``, #6749)
          and the detached cleanup context (``0bc9f7b54``/``b550526cc``, #7859).
``v2.0``  v2.0.0: v1.7 plus lease on AlreadyExists (``c7fb8a925``, #10187) and without the
          Stat skip (``d7f83034c``, #10723).
========  ==========================================================================

Every preset models ``Client.Pull``, the code this package ports (and what the real tier
drives).  ``Client.Pull`` never passes a duplication suppressor of its own: the unpacker's
default is ``kmutex.NewNoop()`` (1.6.20 ``unpacker.go`` L63-L65; v1.7.0/v2.0.0
``pkg/unpack``/``core/unpack`` ``NewUnpacker``) and ``pull.go`` installs one only from
``UnpackConfig.DuplicationSuppressor``, which only CRI sets (``pkg/cri/server/image_pull.go``
in 1.6.20 since the 1.6.3 backport ``1764ea9a2``, and in v1.7.0).  So ``dedup_keyed_lock`` is
off in every preset; a pull as CRI makes it is ``preset("v1.7").but(dedup_keyed_lock=True)``,
registered as the implementation ``v1.7-cri`` (the same holds on ``v1.6``: 1.6.20's CRI has it
too).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, fields, replace
from typing import Any

__all__ = ["DEFAULT_PRESET", "PRESETS", "DiscardMode", "Era", "EraError", "preset"]


class EraError(ValueError):
    """Misuse of the era API: an unknown preset or an impossible flag combination."""


class DiscardMode(enum.Enum):
    """How a pull lets GC take the layer blobs once they are unpacked.

    ``NONE``: layer blobs stay referenced by the manifest (containerd's default).
    ``SEED_STRIP_LABELS``: the seed's ``WithDiscardContent``: after the unpack, blank every
    ``containerd.io/gc.ref.content.*`` label of the manifest whose value is a layer digest.
    ``CHILDLABELMAP_FILTER_LAYERS``: ``c8b14ae4c``'s ``WithChildLabelMap(
    images.ChildGCLabelsFilterLayers)``: layer labels are never written (CRI's
    ``discard_unpacked_layers``).
    """

    NONE = "none"
    SEED_STRIP_LABELS = "seed_strip_labels"
    CHILDLABELMAP_FILTER_LAYERS = "childlabelmap_filter_layers"


@dataclass(frozen=True)
class Era:
    """One containerd era: which later changes to the pull path are in effect.

    Attributes:
        name: a label for reports (a preset's name, or ``custom``).
        stat_skip: the unpacker Stats each chain ID and skips the layer without leasing it
            when the snapshot exists.  Removed by ``d7f83034c`` (#10723, fixes #3787).
        lease_on_exists: the metadata snapshotter adds the existing snapshot to the lease on
            every AlreadyExists from Prepare and Commit (``c7fb8a925``, #10187).  This is a
            daemon-side flag: the World's snapshotters must be built with it
            (:attr:`world_options`).
        abort_on_cancel_or_fetch_err: the wait for a layer's download calls abort (Remove of
            the ``extract-*`` key) on cancellation and on a fetch error (``8017daa12``, #6749).
        cleanup_ctx_detached: abort runs under a cleanup context that keeps the namespace and
            lease but drops cancellation (``0bc9f7b54`` then ``b550526cc``, #7859), so Remove
            no longer fails with "context canceled".
        limiter_effective: the unpacker's layer fetches honour ``MaxConcurrentDownloads``
            (``535191abf``, #6109, fixes #6054); at the seed ``u.limiter`` is always nil.
        dedup_keyed_lock: the duplication suppressor (``811375856``, #6702; 1.6 backport
            ``1764ea9a2``, v1.6.3): a keyed mutex on ``blob://<digest>`` around each handler
            call and on ``sn://<sn>/<chainID>`` for a layer's whole Stat..Commit.  Only CRI
            wires it; ``Client.Pull`` leaves it a no-op, so no preset sets it.
        discard_mode: what "discard unpacked layer content" does (:class:`DiscardMode`).
        typed_child_labels: child GC labels use ``ChildGCLabels`` keys (``.config``,
            ``.l.<i>``, ``.m.<i>``) instead of the seed's ``.<i>`` (``c8b14ae4c``).
        unique_keys: extraction keys are ``extract-<unique> <chainID>`` (``597d0d76a``,
            #1480).  False derives the key from the chain ID only (2017, #1041/#1240), so
            two pullers collide on Prepare.
    """

    name: str = "custom"
    stat_skip: bool = True
    lease_on_exists: bool = False
    abort_on_cancel_or_fetch_err: bool = False
    cleanup_ctx_detached: bool = False
    limiter_effective: bool = False
    dedup_keyed_lock: bool = False
    discard_mode: DiscardMode = DiscardMode.NONE
    typed_child_labels: bool = False
    unique_keys: bool = True

    def __post_init__(self) -> None:
        if not isinstance(self.discard_mode, DiscardMode):
            raise EraError(
                f"discard_mode must be a DiscardMode, got {self.discard_mode!r}; "
                f"use one of {[m.value for m in DiscardMode]} via DiscardMode(value)"
            )
        if (
            self.discard_mode is DiscardMode.CHILDLABELMAP_FILTER_LAYERS
            and not self.typed_child_labels
        ):
            raise EraError(
                "discard_mode CHILDLABELMAP_FILTER_LAYERS needs typed_child_labels=True: "
                "ChildGCLabelsFilterLayers and the typed keys both came with c8b14ae4c"
            )

    @property
    def discard_mechanism(self) -> DiscardMode:
        """The discard mechanism this era's containerd offers when a pull asks to discard.

        The seed has ``WithDiscardContent`` (label stripping); from ``c8b14ae4c`` on it is
        ``ChildGCLabelsFilterLayers``.  An explicit :attr:`discard_mode` wins.
        """
        if self.discard_mode is not DiscardMode.NONE:
            return self.discard_mode
        if self.typed_child_labels:
            return DiscardMode.CHILDLABELMAP_FILTER_LAYERS
        return DiscardMode.SEED_STRIP_LABELS

    @property
    def world_options(self) -> dict[str, Any]:
        """Keyword arguments for ``World.create`` that the daemon side of this era needs."""
        return {"lease_on_exists": self.lease_on_exists}

    def but(self, **changes: object) -> Era:
        """A copy with some flags changed (and ``name`` ``custom`` unless given)."""
        known = {f.name for f in fields(self)}
        unknown = sorted(k for k in changes if k not in known)
        if unknown:
            raise EraError(f"unknown era flag(s) {unknown}; known flags: {sorted(known)}")
        changes.setdefault("name", "custom")
        return replace(self, **changes)  # type: ignore[arg-type]

    def flags(self) -> dict[str, object]:
        """The flags as plain data (enum values as strings), for reports and JSON."""
        out: dict[str, object] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            out[f.name] = value.value if isinstance(value, DiscardMode) else value
        return out


_SEED = Era(name="seed")
_V14 = replace(_SEED, name="v1.4", typed_child_labels=True)
_V16 = replace(_V14, name="v1.6", limiter_effective=True)
_V17 = replace(_V16, name="v1.7", abort_on_cancel_or_fetch_err=True, cleanup_ctx_detached=True)
_V20 = replace(_V17, name="v2.0", lease_on_exists=True, stat_skip=False)

#: The named presets, oldest first.
PRESETS: dict[str, Era] = {e.name: e for e in (_SEED, _V14, _V16, _V17, _V20)}

DEFAULT_PRESET = "seed"


def preset(name: str) -> Era:
    """The preset called ``name`` (``seed``, ``v1.4``, ``v1.6``, ``v1.7``, ``v2.0``)."""
    try:
        return PRESETS[name]
    except KeyError:
        raise EraError(f"unknown era preset {name!r}; presets are {list(PRESETS)}") from None
