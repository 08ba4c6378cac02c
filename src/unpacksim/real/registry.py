"""A loopback OCI registry with per-request fault injection.

:class:`Registry` serves the read side of the distribution API on ``127.0.0.1`` and an
ephemeral port: ``GET /v2/``, ``HEAD``/``GET /v2/<name>/manifests/<tag or digest>`` and
``HEAD``/``GET /v2/<name>/blobs/<digest>`` (with ``Range: bytes=<n>-``, which containerd's
fetcher sends when it resumes an ingest, ``remotes/docker/fetcher.go``).  It holds the images
a scenario builds (:meth:`Registry.add_image`) and stops when its context manager exits or
after ``max_lifetime`` seconds.

Faults are :class:`RegistryFault` rules, in the vocabulary of the simulator's fault plans
(``reports.records.FaultRule``): a *site* (``fetch`` for a GET, ``resolve`` for a HEAD), an
*effect* (:class:`Effect`: ``delay``, ``error``, ``truncate``, ``corrupt``, ``drop``) and the
*hits* of the site the rule fires on (1-based, counted per rule over the requests it matches).
What each effect looks like to containerd's client:

- ``error``: the status (default 500) and a plain body: ``unexpected status code <url>: 500
  Internal Server Error``; 404 becomes ``content at <url> not found: not found``.
- ``truncate``: a shorter ``Content-Length`` and body; the copy ends early with
  ``failed to read expected number of bytes: unexpected EOF`` and the ingest keeps what came.
- ``drop``: the full ``Content-Length``, part of the body, then the connection is shut; the
  fetcher sees ``io.ErrUnexpectedEOF`` and reconnects with a Range request
  (``remotes/docker/httpreadseeker.go``).
- ``corrupt``: the right length with one byte flipped; the commit fails with ``unexpected
  commit digest ...: failed precondition``.
- ``delay``: the response is held for ``seconds`` first.
"""

from __future__ import annotations

import contextlib
import enum
import json
import re
import socket
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Protocol

from unpacksim.model.digest import digest_of, is_digest
from unpacksim.model.oci import Descriptor, is_index_type, is_layer_type, is_manifest_type
from unpacksim.reports.records import FaultRule

__all__ = [
    "Effect",
    "ImageLike",
    "ImageParts",
    "Registry",
    "RegistryError",
    "RegistryFault",
    "RequestRecord",
    "image_parts",
]

_PATH = re.compile(r"^/v2/(?P<name>.+)/(?P<endpoint>manifests|blobs)/(?P<ref>[^/]+)$")
_RANGE = re.compile(r"^bytes=(?P<start>\d+)-$")


class RegistryError(ValueError):
    """Misuse of the registry: unknown images, bad fault rules, using it before start."""


class Effect(enum.Enum):
    """What a fired fault does to the response (see the module docstring)."""

    DELAY = "delay"
    ERROR = "error"
    TRUNCATE = "truncate"
    CORRUPT = "corrupt"
    DROP = "drop"


@dataclass(frozen=True)
class RegistryFault:
    """One fault rule.

    Attributes:
        effect: what firing does.
        digest: the blob or manifest it applies to; None matches any.
        endpoint: ``blobs``, ``manifests`` or ``any``.
        method: ``GET`` (site ``fetch``), ``HEAD`` (site ``resolve``) or ``any``.
        hits: which matching requests fire (1-based); ``()`` fires on every one.
        status: the status of ``error``.
        seconds: the hold of ``delay``.
        keep: bytes sent before ``truncate`` or ``drop`` cut the body; None: half.
        at: offset of the byte ``corrupt`` flips; None: the middle.
    """

    effect: Effect
    digest: str | None = None
    endpoint: str = "blobs"
    method: str = "GET"
    hits: tuple[int, ...] = (1,)
    status: int = 500
    seconds: float = 0.0
    keep: int | None = None
    at: int | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.effect, Effect):
            raise RegistryError(f"effect must be an Effect, got {self.effect!r}")
        if self.digest is not None and not is_digest(self.digest):
            raise RegistryError(f"digest must be 'sha256:<64 hex>', got {self.digest!r}")
        if self.endpoint not in ("blobs", "manifests", "any"):
            raise RegistryError(f"endpoint must be blobs, manifests or any: {self.endpoint!r}")
        if self.method not in ("GET", "HEAD", "any"):
            raise RegistryError(f"method must be GET, HEAD or any: {self.method!r}")
        if any(h < 1 for h in self.hits):
            raise RegistryError(f"hits count from 1, got {self.hits}")
        if not 100 <= self.status <= 599 or (self.effect is Effect.ERROR and self.status < 400):
            raise RegistryError(f"an error fault needs a 4xx or 5xx status, got {self.status}")
        if not 0 <= self.seconds <= 60:
            raise RegistryError(f"delay seconds must be within 0..60, got {self.seconds}")

    @property
    def site(self) -> str:
        return "resolve" if self.method == "HEAD" else "fetch"

    def params(self) -> dict[str, object]:
        """The rule's parameters as JSON data (for ``FaultRule.params``)."""
        out: dict[str, object] = {"endpoint": self.endpoint, "method": self.method}
        if self.digest is not None:
            out["digest"] = self.digest
        extra = {
            Effect.ERROR: ("status", self.status),
            Effect.DELAY: ("seconds", self.seconds),
            Effect.TRUNCATE: ("keep", self.keep),
            Effect.DROP: ("keep", self.keep),
            Effect.CORRUPT: ("at", self.at),
        }[self.effect]
        if extra[1] is not None:
            out[extra[0]] = extra[1]
        return out

    def matches(self, method: str, endpoint: str, digest: str) -> bool:
        return (
            (self.method == "any" or self.method == method)
            and (self.endpoint == "any" or self.endpoint == endpoint)
            and (self.digest is None or self.digest == digest)
        )


@dataclass(frozen=True)
class RequestRecord:
    """One request the registry answered."""

    method: str
    path: str
    status: int
    digest: str = ""
    offset: int = 0
    sent: int = 0
    fault: str = ""


class ImageLike(Protocol):
    """What :meth:`Registry.add_image` reads (``unpacksim.model.builders.BuiltImage``)."""

    @property
    def blobs(self) -> Mapping[str, bytes]: ...

    @property
    def target(self) -> Descriptor: ...


@dataclass(frozen=True)
class ImageParts:
    """The descriptors reachable from an image's target, by role, in document order."""

    indexes: tuple[Descriptor, ...]
    manifests: tuple[Descriptor, ...]
    configs: tuple[Descriptor, ...]
    layers: tuple[Descriptor, ...]

    def all(self) -> tuple[Descriptor, ...]:
        return self.indexes + self.manifests + self.configs + self.layers


def _descriptor(data: Mapping[str, object]) -> Descriptor:
    return Descriptor(str(data["mediaType"]), str(data["digest"]), int(str(data["size"])))


def image_parts(image: ImageLike) -> ImageParts:
    """Walk ``image`` from its target; every blob it names must be in ``image.blobs``.

    Raises:
        RegistryError: a descriptor whose blob is missing or whose bytes do not match.
    """
    parts: dict[str, list[Descriptor]] = {"i": [], "m": [], "c": [], "l": []}
    pending = [image.target]
    while pending:
        desc = pending.pop(0)
        data = image.blobs.get(desc.digest)
        if data is None or digest_of(data) != desc.digest or len(data) != desc.size:
            raise RegistryError(f"image blob {desc.digest} is missing or does not match")
        if is_index_type(desc.media_type):
            parts["i"].append(desc)
            pending += [_descriptor(m) for m in json.loads(data)["manifests"]]
        elif is_manifest_type(desc.media_type):
            parts["m"].append(desc)
            doc = json.loads(data)
            pending += [_descriptor(doc["config"])] + [_descriptor(x) for x in doc["layers"]]
        elif is_layer_type(desc.media_type):
            parts["l"].append(desc)
        else:
            parts["c"].append(desc)
    return ImageParts(*(tuple(parts[k]) for k in "imcl"))


@dataclass
class _Rule:
    fault: RegistryFault
    reached: int = 0
    fired: list[int] = field(default_factory=list)


@dataclass(frozen=True)
class _Blob:
    data: bytes
    media_type: str


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    registry: Registry

    def handle_error(self, request: object, client_address: object) -> None:
        """Ignore: a client that hangs up (or a connection a fault dropped) is no error."""


class Registry:
    """A loopback registry (a context manager): ``with Registry() as r: r.add_image(...)``."""

    def __init__(self, *, max_lifetime: float = 900.0, idle_timeout: float = 30.0) -> None:
        self.max_lifetime = max_lifetime
        self.idle_timeout = idle_timeout
        self._repos: dict[str, dict[str, _Blob]] = {}
        self._tags: dict[str, dict[str, str]] = {}
        self._rules: list[_Rule] = []
        self._log: list[RequestRecord] = []
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._watchdog: threading.Timer | None = None

    # -- content -------------------------------------------------------------------------------

    def add_image(self, repo: str, tag: str, image: ImageLike) -> ImageParts:
        """Serve ``image`` as ``<repo>:<tag>``; return its parts (for fault targeting)."""
        parts = image_parts(image)
        blobs = self._repos.setdefault(repo, {})
        for desc in parts.all():
            blobs[desc.digest] = _Blob(image.blobs[desc.digest], desc.media_type)
        self._tags.setdefault(repo, {})[tag] = image.target.digest
        return parts

    def ref(self, repo: str, tag: str) -> str:
        """The reference containerd pulls: ``127.0.0.1:<port>/<repo>:<tag>``."""
        return f"{self.host}/{repo}:{tag}"

    @property
    def host(self) -> str:
        if self._server is None:
            raise RegistryError("the registry is not serving: use `with Registry() as r:`")
        return f"127.0.0.1:{self._server.server_address[1]}"

    # -- faults --------------------------------------------------------------------------------

    def arm(self, *faults: RegistryFault) -> None:
        """Replace the fault rules (hit counts start again from zero)."""
        with self._lock:
            self._rules = [_Rule(f) for f in faults]

    def fault_rules(self) -> tuple[FaultRule, ...]:
        """The armed rules as report records: how often each was reached and fired."""
        with self._lock:
            return tuple(
                FaultRule(
                    site=r.fault.site,
                    effect=r.fault.effect.value,
                    hits=r.fault.hits,
                    params=r.fault.params(),  # type: ignore[arg-type]
                    reached=r.reached,
                    fired=tuple(r.fired),
                )
                for r in self._rules
            )

    def requests(self) -> tuple[RequestRecord, ...]:
        """Every request answered so far, in arrival order."""
        with self._lock:
            return tuple(self._log)

    def _decide(self, method: str, endpoint: str, digest: str) -> RegistryFault | None:
        """Count the hit on every matching rule; the first rule that fires wins."""
        chosen: RegistryFault | None = None
        with self._lock:
            for rule in self._rules:
                if not rule.fault.matches(method, endpoint, digest):
                    continue
                rule.reached += 1
                if chosen is None and (not rule.fault.hits or rule.reached in rule.fault.hits):
                    rule.fired.append(rule.reached)
                    chosen = rule.fault
        return chosen

    def _record(self, record: RequestRecord) -> None:
        with self._lock:
            self._log.append(record)

    def _lookup(self, name: str, endpoint: str, ref: str) -> tuple[str, _Blob] | None:
        blobs = self._repos.get(name, {})
        digest = ref
        if endpoint == "manifests" and not ref.startswith("sha256:"):
            digest = self._tags.get(name, {}).get(ref, "")
        blob = blobs.get(digest)
        if blob is None or (endpoint == "manifests" and not _is_manifest(blob)):
            return None
        return digest, blob

    # -- lifecycle -----------------------------------------------------------------------------

    def start(self) -> Registry:
        if self._server is not None:
            raise RegistryError("this Registry was already started; create a new one")
        handler = type("Handler", (_Handler,), {"timeout": self.idle_timeout})
        self._server = _Server(("127.0.0.1", 0), handler)
        self._server.registry = self
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()
        self._watchdog = threading.Timer(self.max_lifetime, self.stop)
        self._watchdog.daemon = True
        self._watchdog.start()
        return self

    def stop(self) -> None:
        """Stop serving (idempotent); requests held by a delay are released."""
        self._stopping.set()
        if self._watchdog is not None:
            self._watchdog.cancel()
        server, self._server = self._server, None
        if server is not None:
            server.shutdown()
            server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5.0)

    def __enter__(self) -> Registry:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def _is_manifest(blob: _Blob) -> bool:
    return is_manifest_type(blob.media_type) or is_index_type(blob.media_type)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def log_message(self, format: str, *args: object) -> None:
        """Silent: the registry keeps its own request log (:meth:`Registry.requests`)."""

    def do_GET(self) -> None:
        self._serve("GET")

    def do_HEAD(self) -> None:
        self._serve("HEAD")

    def _serve(self, method: str) -> None:
        # Each request is logged before its response goes out, so a client that has read a
        # response always finds it in the log.
        registry = self.server.registry
        if self.path.rstrip("/") == "/v2":
            registry._record(RequestRecord(method, self.path, 200))
            self._send(200, b"{}", "application/json", method)
            return
        match = _PATH.match(self.path)
        found = match and registry._lookup(match["name"], match["endpoint"], match["ref"])
        if not match or not found:
            registry._record(RequestRecord(method, self.path, 404))
            body = b'{"errors":[{"code":"NOT_FOUND","message":"unknown"}]}'
            self._send(404, body, "application/json", method)
            return
        digest, blob = found
        fault = registry._decide(method, match["endpoint"], digest)
        if fault is not None and fault.effect is Effect.DELAY:
            registry._stopping.wait(fault.seconds)
        self._respond(method, digest, blob, fault)

    def _respond(self, method: str, digest: str, blob: _Blob, fault: RegistryFault | None) -> None:
        registry = self.server.registry
        effect = fault.effect if fault is not None else None
        name = effect.value if effect is not None else ""
        if fault is not None and effect is Effect.ERROR:
            registry._record(RequestRecord(method, self.path, fault.status, digest, fault=name))
            self._send(fault.status, f"injected {fault.status}\n".encode(), "text/plain", method)
            return
        start = self._range_start()
        data = blob.data[start:]
        status = 206 if start else 200
        extra = {"Docker-Content-Digest": digest}
        if start:
            extra["Content-Range"] = f"bytes {start}-{len(blob.data) - 1}/{len(blob.data)}"
        if fault is not None and effect is Effect.CORRUPT and data:
            at = min(fault.at if fault.at is not None else len(data) // 2, len(data) - 1)
            data = data[:at] + bytes([data[at] ^ 0xFF]) + data[at + 1 :]
        length = len(data)
        if fault is not None and effect in (Effect.TRUNCATE, Effect.DROP):
            keep = min(fault.keep if fault.keep is not None else len(data) // 2, len(data))
            data = data[:keep]
            length = keep if effect is Effect.TRUNCATE else length
        sent = len(data) if method != "HEAD" else 0
        registry._record(RequestRecord(method, self.path, status, digest, start, sent, name))
        self._send(status, data, blob.media_type, method, extra, length=length)
        if effect is Effect.DROP:
            self._drop()

    def _range_start(self) -> int:
        match = _RANGE.match(self.headers.get("Range", "") or "")
        return int(match["start"]) if match else 0

    def _send(
        self,
        status: int,
        body: bytes,
        content_type: str,
        method: str,
        headers: Mapping[str, str] | None = None,
        *,
        length: int | None = None,
    ) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body) if length is None else length))
        self.send_header("Docker-Distribution-API-Version", "registry/2.0")
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        if method != "HEAD":
            self.wfile.write(body)
        self.wfile.flush()

    def _drop(self) -> None:
        self.close_connection = True
        with contextlib.suppress(OSError):
            self.connection.shutdown(socket.SHUT_RDWR)
