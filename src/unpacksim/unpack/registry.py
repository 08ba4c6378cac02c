"""A remote registry model: built images served with latency, bandwidth and per-fetch faults.

Mirrors ``remotes/docker/resolver.go`` (``Resolve``), ``remotes/docker/fetcher.go`` (``Fetch``,
``open``) and ``reference/reference.go`` (``Parse``) at the seed, only as far as the unpacker
can observe them: resolving a reference gives ``(name, descriptor)``; fetching a descriptor
gives a reader whose bytes arrive in chunks over simulated time.

Every open is a simulated call (``registry.resolve``, ``registry.fetch``: trace, latency from
the latency model, cancellation) and a hit of the fetch fault sites, keyed by the blob digest:

- ``fetch.error`` raises at open (``Unknown`` "unexpected status code ...: 503 Service
  Unavailable" or ``NotFound``), as a failing registry does;
- ``fetch.truncate`` makes the stream end early, after half of the remaining bytes;
- ``fetch.corrupt`` flips the byte in the middle of the remaining bytes.

A truncated or corrupted stream is not an error here: the content writer's commit finds the
size or digest mismatch (``FailedPrecondition``), which is what containerd reports.  A seek
(resuming an ingest) is a new ranged request, so it is a new fetch with new fault decisions.

Reading takes ``len(chunk) / bandwidth`` simulated seconds per chunk and honours the
context: a read on a done context raises its error, as reading an HTTP body of a cancelled
request does.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from unpacksim.model.errdefs import NotFound
from unpacksim.model.oci import Descriptor, is_index_type, is_manifest_type
from unpacksim.sim.go import Gen, sleep
from unpacksim.unpack.goerrors import GoError

if TYPE_CHECKING:
    from unpacksim.model.builders import BuiltImage
    from unpacksim.sim.context import Context
    from unpacksim.sim.services import Services

__all__ = [
    "BlobReader",
    "FetchRecord",
    "Network",
    "RefSpec",
    "Registry",
    "parse_reference",
]

_SCHEMA1 = "application/vnd.docker.distribution.manifest.v1+prettyjws"


@dataclass(frozen=True)
class Network:
    """The link to the registry: bytes per simulated second and the chunk size of reads.

    The time to open a request comes from the latency model (ops ``registry.resolve`` and
    ``registry.fetch``).
    """

    bandwidth: float = 64 * 1024 * 1024
    chunk_size: int = 32 * 1024

    def __post_init__(self) -> None:
        if self.bandwidth <= 0 or self.chunk_size <= 0:
            raise ValueError(
                f"Network needs a positive bandwidth and chunk size, got {self.bandwidth!r} "
                f"bytes/s and {self.chunk_size!r} bytes"
            )


@dataclass(frozen=True)
class RefSpec:
    """``reference.Spec``: the locator (``host/path``) and the object (tag and/or digest)."""

    locator: str
    object: str

    @property
    def hostname(self) -> str:
        """``Spec.Hostname``: the locator up to the first slash (port included)."""
        return self.locator.split("/", 1)[0]

    @property
    def repository(self) -> str:
        """The path after the hostname (``library/busybox``)."""
        parts = self.locator.split("/", 1)
        return parts[1] if len(parts) > 1 else ""

    @property
    def digest(self) -> str:
        """``Spec.Digest``: the part after ``@``, or ""."""
        _, at, dgst = self.object.partition("@")
        return dgst if at else ""

    def __str__(self) -> str:
        if not self.object:
            return self.locator
        sep = "" if self.object.startswith("@") else ":"
        return f"{self.locator}{sep}{self.object}"


def parse_reference(ref: str) -> RefSpec:
    """``reference.Parse``: split ``host/path[:tag][@digest]``.

    Raises:
        GoError: "invalid reference" (not parseable) or "hostname required".
    """
    if any(c in ref for c in " \t\n#?") or ref.startswith("/"):
        raise GoError("invalid reference")
    host, slash, path = ref.partition("/")
    if not host:
        raise GoError("hostname required")
    path = slash + path
    cut = min((i for i in (path.find(":"), path.find("@")) if i >= 0), default=-1)
    obj = ""
    if cut >= 0:
        obj = path[cut:]
        obj = obj[1:] if obj.startswith(":") else obj
        path = path[:cut]
    locator = host + ("/" + path.strip("/") if path.strip("/") else "")
    return RefSpec(locator, obj)


@dataclass(frozen=True)
class FetchRecord:
    """One open of a blob at the registry: when, from which offset, and what happened.

    ``outcome`` is ``ok``, ``truncated``, ``corrupt``, or the errdefs class name of the
    error the open raised.
    """

    digest: str
    media_type: str
    offset: int
    time: float
    outcome: str


class Registry:
    """The remote registry of one run (see the module docstring).

    Load images with :meth:`push` (a :class:`~unpacksim.model.builders.BuiltImage`) or
    :meth:`put`; every open is recorded in :attr:`fetches`.
    """

    def __init__(self, services: Services, *, network: Network | None = None) -> None:
        self.services = services
        self.network = network if network is not None else Network()
        self.images: dict[str, Descriptor] = {}
        self.blobs: dict[str, bytes] = {}
        self.descriptors: dict[str, Descriptor] = {}
        self.fetches: list[FetchRecord] = []

    # --- loading -------------------------------------------------------------------------

    def push(self, image: BuiltImage, *, name: str | None = None) -> str:
        """Serve ``image`` under ``name`` (default ``image.name``); returns the name.

        Raises:
            ValueError: the name does not parse as a reference with a tag or digest.
        """
        manifests = [p.manifest for p in image.platforms.values()]
        return self.put(name or image.name, image.target, image.blobs, manifests=manifests)

    def put(
        self,
        name: str,
        target: Descriptor,
        blobs: Mapping[str, bytes],
        *,
        manifests: Iterable[Descriptor] = (),
    ) -> str:
        """Serve ``blobs`` and resolve ``name`` to ``target``; returns the name.

        ``manifests`` are further descriptors a ``name@digest`` reference may resolve to.

        Raises:
            ValueError: ``name`` is not a reference with a tag or digest, or ``target``'s
                blob is not among ``blobs``.
        """
        try:
            spec = parse_reference(name)
        except GoError as exc:
            raise ValueError(f"cannot serve image {name!r}: {exc}") from None
        if not spec.object:
            raise ValueError(f"cannot serve image {name!r}: give a tag (name:tag) or a digest")
        if target.digest not in blobs and target.digest not in self.blobs:
            raise ValueError(f"cannot serve image {name!r}: the blobs lack its target")
        self.blobs.update(blobs)
        self.images[name] = target
        for desc in (target, *manifests):
            self.descriptors.setdefault(desc.digest, desc)
        return name

    def fetch_count(self, digest: str) -> int:
        """How many times ``digest`` was opened (failed opens included)."""
        return sum(1 for record in self.fetches if record.digest == digest)

    # --- resolve and fetch ---------------------------------------------------------------

    def resolve(self, ctx: Context, ref: str) -> Gen[tuple[str, Descriptor]]:
        """``Resolver.Resolve``: the name (``ref`` itself) and the target descriptor.

        Raises:
            GoError: ``ref`` does not parse ("invalid reference", "hostname required") or
                has no tag or digest ("object required").
            NotFound: the registry has no such image ("<ref>: not found").
            Canceled, DeadlineExceeded: ``ctx`` was done.
        """
        return self.services.call(
            ctx, "registry.resolve", lambda: (ref, self._lookup(ref)), args={"ref": ref}
        )

    def _lookup(self, ref: str) -> Descriptor:
        spec = parse_reference(ref)
        if not spec.object:
            raise GoError("object required")
        found = self.images.get(ref)
        if found is None and spec.digest:
            found = self.descriptors.get(spec.digest)
        if found is None:
            raise NotFound(ref)
        return found

    def fetch(self, ctx: Context, desc: Descriptor, *, ref: str = "") -> Gen[BlobReader]:
        """``Fetcher.Fetch``: open ``desc`` and return a reader of its bytes.

        ``ref`` (the resolved name) only shapes the not-found message of manifests, as the
        manifests endpoint does.

        Raises:
            NotFound: the registry has no such blob ("could not fetch content descriptor
                <digest> (<media type>) from remote"), also when injected.
            Unknown: injected at ``fetch.error`` (a 503).
            GoError: a schema 1 manifest is not served by this model.
            Canceled, DeadlineExceeded: ``ctx`` was done.
        """
        reader = BlobReader(self, desc, ref)
        yield from reader.seek(ctx, 0)
        return reader

    def _open(self, ctx: Context, desc: Descriptor, ref: str, offset: int) -> Gen[bytes]:
        """One request for ``desc`` from ``offset``: the bytes it will deliver."""

        def open_request() -> bytes:
            data = self.blobs.get(desc.digest)
            if data is None:
                raise NotFound(self._not_found(desc, ref))
            return self._with_faults(desc, data[offset:], offset)

        args = {"digest": desc.digest, "media_type": desc.media_type, "offset": offset}
        try:
            served = yield from self.services.call(
                ctx,
                "registry.fetch",
                open_request,
                args=args,
                site="fetch.error",
                key=desc.digest,
                detail=desc.media_type,
            )
        except Exception as exc:
            self._record(desc, offset, type(exc).__name__)
            raise
        return served

    def _with_faults(self, desc: Descriptor, rest: bytes, offset: int) -> bytes:
        if desc.media_type == _SCHEMA1:
            raise GoError(f"{desc.media_type} not supported")
        faults = self.services.env.faults
        outcome = "ok"
        if rest and faults.check("fetch.truncate", key=desc.digest, detail=desc.media_type):
            rest, outcome = rest[: len(rest) // 2], "truncated"
        if rest and faults.check("fetch.corrupt", key=desc.digest, detail=desc.media_type):
            middle = len(rest) // 2
            rest = rest[:middle] + bytes([rest[middle] ^ 0xFF]) + rest[middle + 1 :]
            outcome = "corrupt" if outcome == "ok" else f"{outcome}+corrupt"
        self._record(desc, offset, outcome)
        return rest

    def _record(self, desc: Descriptor, offset: int, outcome: str) -> None:
        now = float(self.services.env.now)
        self.fetches.append(FetchRecord(desc.digest, desc.media_type, offset, now, outcome))

    def _not_found(self, desc: Descriptor, ref: str) -> str:
        if ref and (is_manifest_type(desc.media_type) or is_index_type(desc.media_type)):
            spec = parse_reference(ref)
            url = f"https://{spec.hostname}/v2/{spec.repository}/manifests/{desc.digest}"
            return f"content at {url} not found"
        return f"could not fetch content descriptor {desc.digest} ({desc.media_type}) from remote"


class BlobReader:
    """The body of a fetch: ``yield from read(ctx)`` gives the next chunk, b"" at the end.

    ``seek(ctx, offset)`` reopens the blob with a ranged request (a new fetch).
    """

    def __init__(self, registry: Registry, desc: Descriptor, ref: str) -> None:
        self.registry = registry
        self.desc = desc
        self.ref = ref
        self.offset = 0
        self.closed = False
        self._data = b""
        self._pos = 0

    def seek(self, ctx: Context, offset: int) -> Gen[int]:
        """Reopen at ``offset`` (``httpReadSeeker.Seek`` then a ranged GET); returns it.

        Raises:
            ValueError: a negative offset or a closed reader.
            NotFound, Unknown, Canceled, DeadlineExceeded: as :meth:`Registry.fetch`.
        """
        self._check_open()
        if offset < 0:
            raise ValueError(f"cannot seek to a negative offset ({offset})")
        self._data = yield from self.registry._open(ctx, self.desc, self.ref, offset)
        self.offset, self._pos = offset, 0
        return offset

    def read(self, ctx: Context, size: int | None = None) -> Gen[bytes]:
        """The next chunk (at most ``size`` bytes, at most the network's chunk size).

        Raises:
            Canceled, DeadlineExceeded: ``ctx`` is done, or becomes done while reading.
            ValueError: the reader is closed, or ``size`` is not positive.
        """
        self._check_open()
        if size is not None and size <= 0:
            raise ValueError(f"read size must be positive, got {size}")
        if ctx.err is not None:
            raise ctx.error()
        network = self.registry.network
        limit = network.chunk_size if size is None else min(size, network.chunk_size)
        chunk = self._data[self._pos : self._pos + limit]
        if not chunk:
            return b""
        if not (yield from sleep(ctx, len(chunk) / network.bandwidth)):
            raise ctx.error()
        self._pos += len(chunk)
        return chunk

    def read_all(self, ctx: Context) -> Gen[bytes]:
        """Every remaining byte (chunk by chunk)."""
        parts: list[bytes] = []
        while True:
            chunk = yield from self.read(ctx)
            if not chunk:
                return b"".join(parts)
            parts.append(chunk)

    def close(self) -> None:
        """Close the body; further reads are misuse."""
        self.closed = True

    def _check_open(self) -> None:
        if self.closed:
            raise ValueError(f"the reader of {self.desc.digest} is closed; fetch it again")
