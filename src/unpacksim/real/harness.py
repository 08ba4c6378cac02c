"""The Go pull harness: built from Debian's Go and containerd sources, cached, and run.

``harness/main.go`` (package data) is compiled with ``GO111MODULE=off``, ``GOPATH`` at Debian's
Go source tree (``/usr/share/gocode``) and ``CGO_ENABLED=0``; nothing is downloaded.  The binary
is cached under ``$UNPACKSIM_CACHE`` (default ``$XDG_CACHE_HOME/unpacksim``, else
``~/.cache/unpacksim``) keyed by the sha256 of the Go source and of ``go version``, so only a
change to either rebuilds it; a file lock keeps concurrent builders from racing.

:class:`Harness` runs one operation per process: the request is JSON on stdin, the response
JSON on stdout (see ``main.go``).  A pull that containerd failed is a normal response
(:class:`PullReport` with ``ok`` False); a harness that could not run raises
:class:`HarnessError`.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import subprocess
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from unpacksim.real.prereqs import GOPATH, go_binary

__all__ = [
    "Harness",
    "HarnessError",
    "OpReport",
    "PullReport",
    "PullRequest",
    "build_harness",
    "cache_dir",
    "harness_source",
]


class HarnessError(RuntimeError):
    """The harness could not be built or could not run an operation."""


def harness_source() -> bytes:
    """The Go source of the harness, as shipped in the package."""
    return resources.files("unpacksim.real").joinpath("harness/main.go").read_bytes()


def cache_dir() -> Path:
    """Where built harness binaries live."""
    explicit = os.environ.get("UNPACKSIM_CACHE")
    if explicit:
        return Path(explicit)
    xdg = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(xdg) / "unpacksim"


def _go_env(go_cache: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GO")}
    env.update(
        GO111MODULE="off",
        GOPATH=str(GOPATH),
        GOCACHE=str(go_cache),
        GOFLAGS="",
        GOPROXY="off",
        CGO_ENABLED="0",
    )
    return env


def _go_version(go: str) -> str:
    out = subprocess.run([go, "version"], capture_output=True, text=True, timeout=60, check=False)
    if out.returncode != 0:
        raise HarnessError(f"`{go} version` failed: {out.stderr.strip()}")
    return out.stdout.strip()


def build_harness(*, rebuild: bool = False, timeout: float = 600.0) -> Path:
    """The path of the built harness, building it first if the cache lacks it.

    Raises:
        HarnessError: no Go toolchain, or the build failed (the message has go's output).
    """
    go = go_binary()
    if go is None:
        raise HarnessError("no go toolchain: apt-get install golang-go")
    source = harness_source()
    key = hashlib.sha256(source + b"\0" + _go_version(go).encode()).hexdigest()[:20]
    root = cache_dir()
    root.mkdir(parents=True, exist_ok=True)
    binary = root / f"harness-{key}"
    with open(root / "build.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if binary.exists() and not rebuild:
            return binary
        _compile(go, source, binary, root / "gocache", timeout)
    return binary


def _compile(go: str, source: bytes, binary: Path, go_cache: Path, timeout: float) -> None:
    with tempfile.TemporaryDirectory(prefix="unpacksim-harness-") as work:
        main = Path(work) / "main.go"
        main.write_bytes(source)
        out = Path(work) / "harness"
        try:
            done = subprocess.run(
                [go, "build", "-o", str(out), str(main)],
                cwd=work,
                env=_go_env(go_cache),
                capture_output=True,
                text=True,
                timeout=timeout,
                check=False,
            )
        except subprocess.TimeoutExpired as exc:
            raise HarnessError(f"building the harness took longer than {timeout}s") from exc
        if done.returncode != 0:
            raise HarnessError(
                "building the harness failed (GO111MODULE=off, GOPATH="
                f"{GOPATH}); is golang-github-containerd-containerd-dev installed?\n"
                f"{done.stderr.strip()}"
            )
        os.replace(out, binary)  # atomic: a reader never sees half a binary


@dataclass(frozen=True)
class PullRequest:
    """One ``client.Pull`` (the harness's ``pullSpec``).

    Attributes:
        ref: the reference to pull (``127.0.0.1:<port>/<repo>:<tag>``).
        snapshotter: ``WithPullSnapshotter``.
        unpack: ``WithPullUnpack``.
        max_concurrent_downloads: ``WithMaxConcurrentDownloads`` (0: not set).
        discard: ``WithChildLabelMap(images.ChildGCLabelsFilterLayers)``.
        platform: ``WithPlatform`` ("" for the client's default).
        labels: ``WithPullLabels``.
        lease: pull under this existing lease (``leases.WithLease``) instead of a new one.
    """

    ref: str
    snapshotter: str = "native"
    unpack: bool = True
    max_concurrent_downloads: int = 0
    discard: bool = False
    platform: str = ""
    labels: Mapping[str, str] = field(default_factory=dict)
    lease: str = ""

    def to_json(self) -> dict[str, Any]:
        return {
            "ref": self.ref,
            "snapshotter": self.snapshotter,
            "unpack": self.unpack,
            "max_concurrent_downloads": self.max_concurrent_downloads,
            "discard": self.discard,
            "platform": self.platform,
            "labels": dict(self.labels),
            "lease": self.lease,
        }


@dataclass(frozen=True)
class OpReport:
    """The outcome of one operation: ok, or the errdefs class name and containerd's message.

    ``error_class`` spells the class as :mod:`unpacksim.model.errdefs` does (``NotFound``),
    ``other`` for an error that is no errdefs class (a registry's status error, an EOF).
    """

    ok: bool
    error_class: str = "ok"
    message: str = ""

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> OpReport:
        ok = bool(data.get("ok"))
        return cls(ok, "ok" if ok else str(data.get("class", "other")), str(data.get("error", "")))


@dataclass(frozen=True)
class PullReport:
    """What one pull did: its outcome and, on success, the image record it returned."""

    ref: str
    outcome: OpReport
    image: Mapping[str, Any] | None = None


class Harness:
    """Runs harness operations against one daemon socket and namespace.

    Without ``binary`` the constructor calls :func:`build_harness`, which compiles the
    harness (tens of seconds) the first time the cache lacks it.
    """

    def __init__(
        self,
        address: str,
        *,
        namespace: str = "default",
        binary: Path | None = None,
        timeout: float = 120.0,
    ) -> None:
        self.address = address
        self.namespace = namespace
        self.binary = binary if binary is not None else build_harness()
        self.timeout = timeout

    def call(self, op: str, request: Mapping[str, Any] | None = None) -> Any:
        """Run ``op`` with ``request``; return the decoded response.

        Raises:
            HarnessError: the harness exited non-zero, timed out, or wrote no JSON.
        """
        args = [str(self.binary), "-address", self.address, "-namespace", self.namespace]
        args += ["-timeout", f"{self.timeout}s", op]
        try:
            done = subprocess.run(
                args,
                input=json.dumps(request or {}).encode(),
                capture_output=True,
                timeout=self.timeout + 15.0,
                check=False,
            )
        except subprocess.TimeoutExpired as exc:
            raise HarnessError(f"harness {op} did not finish within {self.timeout}s") from exc
        if done.returncode != 0:
            raise HarnessError(
                f"harness {op} failed (exit {done.returncode}): "
                f"{done.stderr.decode(errors='replace').strip()[-2000:]}"
            )
        try:
            return json.loads(done.stdout)
        except json.JSONDecodeError as exc:
            raise HarnessError(f"harness {op} wrote no JSON: {done.stdout[:200]!r}") from exc

    def version(self) -> dict[str, Any]:
        """The daemon's version and whether it serves (``client.Version``, ``IsServing``)."""
        out: dict[str, Any] = self.call("version")
        return out

    def pull(self, pulls: Sequence[PullRequest]) -> list[PullReport]:
        """Run ``pulls`` at once (each starts when all are ready); one report each, in order."""
        if not pulls:
            raise ValueError("pull needs at least one PullRequest")
        out = self.call("pull", {"pulls": [p.to_json() for p in pulls]})
        return [PullReport(r["ref"], OpReport.from_json(r), r.get("image")) for r in out["pulls"]]

    def dump(self, snapshotters: Sequence[str] = ("native",)) -> dict[str, Any]:
        """The namespace's content, ingests, snapshots, leases and images as JSON data."""
        out: dict[str, Any] = self.call("dump", {"snapshotters": list(snapshotters)})
        return out

    def gc(self) -> None:
        """One synchronous garbage collection (a lease deleted with ``SynchronousDelete``)."""
        self.call("gc")

    def delete_image(self, name: str, *, sync: bool = False) -> OpReport:
        """``ImageService().Delete`` (with ``images.SynchronousDelete()`` if ``sync``)."""
        return OpReport.from_json(self.call("delete-image", {"name": name, "sync": sync}))

    def create_lease(
        self, lease_id: str, *, labels: Mapping[str, str] | None = None, expire: str = ""
    ) -> OpReport:
        """``LeasesService().Create(WithID, WithLabels, WithExpiration(expire))``."""
        request = {"name": lease_id, "labels": dict(labels or {}), "expire": expire}
        return OpReport.from_json(self.call("create-lease", request))

    def delete_lease(self, lease_id: str, *, sync: bool = False) -> OpReport:
        """``LeasesService().Delete`` (with ``leases.SynchronousDelete`` if ``sync``)."""
        return OpReport.from_json(self.call("delete-lease", {"name": lease_id, "sync": sync}))
