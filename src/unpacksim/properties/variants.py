"""Implementations only the race catalogue needs: the reference with one containerd change
undone (or one feature turned off), registered under their own names.

- :data:`NO_UNIQUE_KEYS` (``seed-no-unique-keys``): the seed with the 2017 extraction keys
  ``extract <chainID>``, before 597d0d76a (#1480);
- :data:`NO_TRAILING_READ` (``seed-no-trailing-read``): the seed against a v1.3.0-beta.2 diff
  applier that hashes only what the tar reader consumed (81386df91; fixed by 550518ab8, #3570);
- :data:`FETCH_ONLY` (``seed-no-unpack``): the seed's ``Client.Pull`` without
  ``WithPullUnpack``, so every layer is fetched and nothing is unpacked.

Importing this module registers them (idempotently), so findings that name them replay.
"""

from __future__ import annotations

from collections.abc import Generator, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from unpacksim.model.digest import digest_of
from unpacksim.model.oci import Descriptor
from unpacksim.unpack.applier import decompress
from unpacksim.unpack.eras import preset
from unpacksim.unpack.interface import PullProcess, register, registered
from unpacksim.unpack.reference import ReferenceImplementation
from unpacksim.unpack.results import PullOptions

if TYPE_CHECKING:
    from unpacksim.model.snapshot_api import Mount
    from unpacksim.sim.context import Context
    from unpacksim.unpack.applier import DiffApplier
    from unpacksim.unpack.world import World

__all__ = [
    "FETCH_ONLY",
    "NO_TRAILING_READ",
    "NO_UNIQUE_KEYS",
    "TrailingDataSkipped",
    "tar_end",
]

NO_UNIQUE_KEYS = "seed-no-unique-keys"
NO_TRAILING_READ = "seed-no-trailing-read"
FETCH_ONLY = "seed-no-unpack"

_BLOCK = 512


def tar_end(stream: bytes) -> int:
    """Where Go's ``archive/tar`` reader stops reading ``stream``: just after the two zero
    blocks of the end-of-archive marker (the record padding after them is never read).

    Walks the 512-byte headers (each entry's data rounded up to a block); a stream without a
    marker is read to its end.
    """
    offset = 0
    zero = bytes(_BLOCK)
    while offset + _BLOCK <= len(stream):
        header = stream[offset : offset + _BLOCK]
        if header == zero:
            return min(offset + 2 * _BLOCK, len(stream))
        field = header[124:136].strip(b"\0 ") or b"0"
        try:
            size = int(field, 8)
        except ValueError:
            return len(stream)  # not a tar header the walk understands: read it all
        offset += _BLOCK + -(-size // _BLOCK) * _BLOCK
    return len(stream)


class TrailingDataSkipped:
    """A diff applier as the direct-unpack refactoring 81386df91 left it (v1.3.0-beta.2).

    ``diff/apply/apply.go`` hashes the decompressed stream through a ``TeeReader`` while
    ``archive.Apply`` reads the tar; 81386df91 dropped the "read any trailing data" copy that
    followed, so the diff ID covered only what the tar reader consumed (up to the end-of-
    archive marker) and a tar padded to its record size got a diff ID other than the config's.
    550518ab8 (#3570) restored the copy.  Everything else is the wrapped applier's.
    """

    def __init__(self, inner: DiffApplier) -> None:
        self.inner = inner

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def apply(
        self, ctx: Context, desc: Descriptor, mounts: Sequence[Mount]
    ) -> Generator[Any, Any, Descriptor]:
        """The wrapped apply, then the diff ID and size of the tar up to its end marker."""
        diff = yield from self.inner.apply(ctx, desc, mounts)
        reader = self.inner.content.reader_at(ctx, desc)
        try:
            stream = decompress(desc.media_type, reader.read_all())
        finally:
            reader.close()
        if digest_of(stream) != diff.digest:
            return diff  # an injected wrong diff ID: leave it as the applier made it
        end = tar_end(stream)
        return Descriptor(diff.media_type, digest_of(stream[:end]), end)


class _NoTrailingRead(ReferenceImplementation):
    """The reference pull against a daemon whose applier skips trailing tar data."""

    def pull(self, world: World, ctx: Context, ref: str, opts: PullOptions) -> PullProcess:
        if not isinstance(world.applier, TrailingDataSkipped):
            world.applier = TrailingDataSkipped(world.applier)  # type: ignore[assignment]
        return super().pull(world, ctx, ref, opts)


class _FetchOnly(ReferenceImplementation):
    """The reference ``Client.Pull`` without ``WithPullUnpack``."""

    def pull(self, world: World, ctx: Context, ref: str, opts: PullOptions) -> PullProcess:
        return super().pull(world, ctx, ref, replace(opts, unpack=False))


def _register() -> None:
    seed = preset("seed")
    variants = (
        ReferenceImplementation(
            seed.but(unique_keys=False),
            name=NO_UNIQUE_KEYS,
            description="the seed with 2017 extraction keys 'extract <chainID>' "
            "(before 597d0d76a, #1480)",
        ),
        _NoTrailingRead(
            seed,
            name=NO_TRAILING_READ,
            description="the seed against a v1.3.0-beta.2 diff applier that does not read the "
            "tar's trailing data (81386df91; fixed by 550518ab8, #3570)",
        ),
        _FetchOnly(
            seed,
            name=FETCH_ONLY,
            description="the seed's Client.Pull without WithPullUnpack: every layer is "
            "fetched, nothing is unpacked",
        ),
    )
    for impl in variants:
        if impl.name not in registered():
            register(impl)


_register()
