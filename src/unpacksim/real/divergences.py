"""The known divergences between containerd 1.6.20 and the reference, documented and explained.

The differential runner (:mod:`unpacksim.real.differential`) runs every catalogue scenario on
a real daemon and on the reference (preset ``v1.6``) and compares them
(:func:`~unpacksim.real.compare.compare_runs`).  Each scenario must either agree or diverge
exactly as documented here: an undocumented divergence fails the tier, and so does a
documented one that no longer occurs, so this table stays true.

Two tables:

- :data:`CAUSES`: why the sides differ (:class:`Cause`): what containerd does, with the Go
  file, what the reference does, which side is right, and what a fix would take;
- :data:`KNOWN`: every expected :class:`~unpacksim.real.compare.Divergence`
  (:class:`KnownDivergence`): the scenario, where (``step 0 pull 0``), both sides' values as
  text, and its cause.

Values are written as text (:func:`render`: ``<class>: <message shape>`` for an outcome, JSON
otherwise) with tokens for the scenario's digests and sizes, so an entry pins exactly which
blob a message names: ``<app:v1 layer 1>`` (a digest: parts ``layer <i>``, ``config``,
``manifest``, ``index``) and ``<app:v1 layer 1 size>`` / ``<app:v1 layer 1 half>`` (its size,
half of it rounded down).  ``<registry>`` is the canonical registry host.

What is *not* a divergence: names that differ by design are canonicalised before comparing
(:data:`CANONICALISED`, see :mod:`unpacksim.real.outcome`).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from unpacksim.model.builders import BuiltImage
from unpacksim.real.compare import Divergence
from unpacksim.real.registry import Effect
from unpacksim.real.scenarios import Fault, Scenario, build_images, resolve_fault

__all__ = [
    "CANONICALISED",
    "CAUSES",
    "KNOWN",
    "Cause",
    "Classification",
    "KnownDivergence",
    "classify",
    "documented",
    "expand",
    "render",
]


@dataclass(frozen=True)
class Cause:
    """Why containerd and the reference differ.

    Attributes:
        id: a short name the table entries use.
        summary: one line.
        containerd: what containerd 1.6.20 does, citing the Go file.
        reference: what the reference does, citing the module.
        verdict: which side is right, and what fixing the wrong side would take.
    """

    id: str
    summary: str
    containerd: str
    reference: str
    verdict: str


@dataclass(frozen=True)
class KnownDivergence:
    """One expected divergence of one scenario.

    ``real`` and ``reference`` are the two sides' values as :func:`render` writes them, with
    the tokens of the module docstring.
    """

    scenario: str
    where: str
    real: str
    reference: str
    cause: str

    def matches(self, divergence: Divergence, images: Mapping[str, BuiltImage]) -> bool:
        """Whether ``divergence`` is this one, with the tokens expanded against ``images``."""
        return (
            divergence.where == self.where
            and render(divergence.left) == expand(self.real, images)
            and render(divergence.right) == expand(self.reference, images)
        )


#: What the canonical form hides before comparing, and why none of it is a divergence.
CANONICALISED: Mapping[str, str] = {
    "extraction keys": "extract-<nanos>-<4 random chars> <chainID> (unpacker.go uniquePart): "
    "random by design on the daemon, drawn from a seeded source in the reference",
    "random lease IDs": "leases.WithRandomID (the pull's lease, the harness's GC lease): "
    "random by design",
    "containerd.io/gc.expire": "a wall-clock time on the daemon, simulated time in the reference",
    "registry host": "127.0.0.1:<ephemeral port> on the daemon, 127.0.0.1:5000 in the "
    "reference; containerd drops the port from the distribution-source label key "
    "(remotes/docker/handler.go uses url.Hostname()), the reference too",
    "racy labels": "Scenario.racy_labels: the distribution-source value on a blob two "
    "repositories fetch at once depends on thread timing (Info then Update), on both sides",
}

_EAGER_OPEN = Cause(
    id="eager-fetch-open",
    summary="a failing blob request is wrapped 'failed to copy: httpReadSeeker: failed open' "
    "by containerd, not by the reference",
    containerd="Fetcher.Fetch returns an httpReadSeeker that sends the request on its first "
    "Read, inside content.Copy (remotes/docker/fetcher.go Fetch, httpreadseeker.go reader, "
    "content/helpers.go Copy), so a request that fails surfaces as 'failed to copy: "
    "httpReadSeeker: failed open: <error>' (the seed spells it 'httpReaderSeeker'; b086062cf "
    "fixed the typo for v1.5.0).  A resumed ingest makes one ranged request.",
    reference="Registry.fetch opens the request at once (unpack/registry.py fetch calls "
    "BlobReader.seek(ctx, 0)), before content.Copy, so the error leaves remotes.fetch "
    "unwrapped; a resumed ingest makes two requests (at 0, then ranged).",
    verdict="The reference is wrong, in the message only: the class and the final state "
    "agree.  A fix makes BlobReader open lazily on the first read (a seek only moves the "
    "offset), wraps read errors in copy_into for Go errors too, and spells the prefix per era; "
    "it changes when fetch.error is hit on a resumed ingest, so it is left to unpack/ owners.",
)

_SHORT_READ = Cause(
    id="short-read-check",
    summary="a truncated body fails content.Copy's byte count in 1.6, the commit's size "
    "check in the reference",
    containerd="Since v1.6.0 (2458afeb1, 'Fix content copy to not ignore unexpected EOF') "
    "content.Copy counts the bytes it copied and, when the body ends before the descriptor's "
    "size, returns 'failed to read expected number of bytes: unexpected EOF' "
    "(io.ErrUnexpectedEOF, no errdefs class) without committing (content/helpers.go Copy).",
    reference="copy_into ports the seed's content.Copy in every era (unpack/fetch.py): it "
    "commits what came, and the commit fails the size validation: FailedPrecondition 'failed "
    'commit on ref "<ref>": commit failed: "<ref>" failed size validation: <got> != <size>\'.',
    verdict="The reference is wrong for v1.6 and later (right for the seed and v1.4): it needs "
    "an era flag (set from v1.6) that makes copy_into count the bytes and fail before the "
    "commit.  The final state agrees: both keep the partial ingest, which the retry resumes.",
)

#: Why the sides differ, by :attr:`Cause.id`.
CAUSES: Mapping[str, Cause] = {c.id: c for c in (_EAGER_OPEN, _SHORT_READ)}

_FAILED_OPEN = "failed to copy: httpReadSeeker: failed open: "
_LAYER_TYPE = "application/vnd.oci.image.layer.v1.tar+gzip"


def _eager_open(scenario: str, where: str, word: str, message: str) -> KnownDivergence:
    return KnownDivergence(
        scenario, where, f"{word}: {_FAILED_OPEN}{message}", f"{word}: {message}", _EAGER_OPEN.id
    )


def _status_500(repo: str, endpoint: str, token: str) -> str:
    url = f"http://<registry>/v2/{repo}/{endpoint}/{token}"
    return f"unexpected status code {url}: 500 Internal Server Error"


def _short_read(scenario: str, kind: str, token: str) -> KnownDivergence:
    ref = f'"{kind}-<{token}>"'
    return KnownDivergence(
        scenario,
        "step 0 pull 0",
        "other: failed to read expected number of bytes: unexpected EOF",
        f"FailedPrecondition: failed commit on ref {ref}: commit failed: {ref} failed size "
        f"validation: <{token} half> != <{token} size>: failed precondition",
        _SHORT_READ.id,
    )


#: Every expected divergence of the catalogue (scenario, where, both values, cause).
KNOWN: tuple[KnownDivergence, ...] = (
    _eager_open(
        "layer-error-500", "step 0 pull 0", "other", _status_500("app", "blobs", "<app:v1 layer 1>")
    ),
    _eager_open(
        "layer-error-404",
        "step 0 pull 0",
        "NotFound",
        f"could not fetch content descriptor <app:v1 layer 2> ({_LAYER_TYPE}) from remote: "
        "not found",
    ),
    _eager_open(
        "concurrent-one-faulted",
        "step 0 pull 1",
        "other",
        _status_500("other", "blobs", "<other:v1 layer 2>"),
    ),
    _eager_open(
        "manifest-error",
        "step 0 pull 0",
        "other",
        _status_500("app", "manifests", "<app:v1 manifest>"),
    ),
    _eager_open(
        "manifest-404",
        "step 0 pull 0",
        "NotFound",
        "content at http://<registry>/v2/app/manifests/<app:v1 manifest> not found: not found",
    ),
    _eager_open(
        "fail-then-repull",
        "step 0 pull 0",
        "other",
        _status_500("app", "blobs", "<app:v1 layer 1>"),
    ),
    _short_read("layer-truncate-then-retry", "layer", "big:v1 layer 1"),
    _short_read("config-truncate", "config", "app:v1 config"),
)


def documented(scenario: str) -> tuple[KnownDivergence, ...]:
    """The known divergences of the scenario called ``scenario``."""
    return tuple(k for k in KNOWN if k.scenario == scenario)


# --- rendering and tokens --------------------------------------------------------------------


def render(value: Any) -> str:
    """A divergence side as text: ``<word>: <shape>`` for an outcome, JSON for anything else."""
    if isinstance(value, tuple) and len(value) == 2 and all(isinstance(v, str) for v in value):
        word, shape = value
        return f"{word}: {shape}" if shape else word
    return json.dumps(value, sort_keys=True, default=str)


_TOKEN = re.compile(
    r"<(?P<image>[a-z0-9._-]+:[A-Za-z0-9._-]+) (?P<part>layer|config|manifest|index)"
    r"(?: (?P<index>\d+))?(?: (?P<measure>size|half))?>"
)


def expand(text: str, images: Mapping[str, BuiltImage]) -> str:
    """``text`` with its digest and size tokens replaced (see the module docstring).

    Raises:
        KeyError: a token names an image that is not among ``images``.
        ScenarioError: a token names a part its image lacks.
    """

    def value(match: re.Match[str]) -> str:
        index = int(match["index"]) if match["index"] else 0
        fault = Fault(Effect.ERROR, match["image"], match["part"], index)
        digest = resolve_fault(fault, images).digest or ""
        size = len(images[match["image"]].blobs[digest])
        return {"size": str(size), "half": str(size // 2)}.get(match["measure"] or "", digest)

    return _TOKEN.sub(value, text)


# --- classification --------------------------------------------------------------------------


@dataclass(frozen=True)
class Classification:
    """A comparison's divergences against the table.

    Attributes:
        documented: each divergence that matches a known one, with it.
        undocumented: the divergences no entry explains.
        stale: the entries of the scenario that matched no divergence.
    """

    documented: tuple[tuple[Divergence, KnownDivergence], ...]
    undocumented: tuple[Divergence, ...]
    stale: tuple[KnownDivergence, ...]

    @property
    def explained(self) -> bool:
        """Every divergence documented and every entry still true."""
        return not self.undocumented and not self.stale


def classify(
    scenario: Scenario,
    divergences: Sequence[Divergence],
    known: Sequence[KnownDivergence] | None = None,
) -> Classification:
    """Hold ``divergences`` against the scenario's known ones (``known``, default :data:`KNOWN`)."""
    table = [k for k in (KNOWN if known is None else known) if k.scenario == scenario.name]
    images = build_images(scenario) if table else {}
    pairs: list[tuple[Divergence, KnownDivergence]] = []
    undocumented: list[Divergence] = []
    unused = list(table)
    for divergence in divergences:
        entry = next((k for k in unused if k.matches(divergence, images)), None)
        if entry is None:
            undocumented.append(divergence)
        else:
            unused.remove(entry)
            pairs.append((divergence, entry))
    return Classification(tuple(pairs), tuple(undocumented), tuple(unused))
