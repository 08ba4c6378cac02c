"""The race catalogue: containerd's known unpack races, each with where it lives and its fix.

Every :class:`CatalogueEntry` names one race and says:

- the containerd issues it corresponds to, what users saw, the mechanism and the fix;
- the properties (:mod:`unpacksim.properties.checks`) it breaks;
- the :class:`Configuration` that has it (a preset, or a preset with one change undone) and
  the one that does not (the preset with containerd's fix, or, where containerd never fixed
  it, the same preset with the feature turned off);
- the :class:`SearchSpace` the explorer (:mod:`unpacksim.properties.explore`) searches: the
  kind of workload the race lives in (images, which actions in which order, which fault sites
  may fire).  The interleaving, the timing, the faults and the concrete program are found by
  the search; nothing is scripted.

``unpacksim catalogue`` lists the entries; ``unpacksim catalogue run NAME`` searches for one.
The catalogue-only implementations (the seed with one change undone or one feature off) live
in :mod:`unpacksim.properties.variants`; importing this module registers them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from unpacksim.properties.scenario import ImageSpec
from unpacksim.properties.spaces import SearchSpace
from unpacksim.properties.variants import FETCH_ONLY, NO_TRAILING_READ, NO_UNIQUE_KEYS
from unpacksim.unpack.interface import resolve

__all__ = [
    "CATALOGUE",
    "NO_TRAILING_READ",
    "NO_UNIQUE_KEYS",
    "CatalogueEntry",
    "CatalogueError",
    "Configuration",
    "entry",
    "names",
]


class CatalogueError(ValueError):
    """Misuse of the catalogue: an unknown entry name, or an entry that is not well formed."""


#: The pull options a :class:`Configuration` may set on every pull of a program.
PULL_OPTIONS = ("discard", "max_concurrent_downloads", "snapshotter")


@dataclass(frozen=True)
class Configuration:
    """An implementation and the options every pull of a search runs with.

    Attributes:
        implementation: a registered implementation name or ``module:attribute``.
        pull_options: fields set on every ``Pull`` of a drawn program (``discard``,
            ``max_concurrent_downloads``, ``snapshotter``).
        note: why this configuration has (or lacks) the race, in one sentence.
    """

    implementation: str
    pull_options: Mapping[str, Any] = field(default_factory=dict)
    note: str = ""

    def __post_init__(self) -> None:
        unknown = sorted(k for k in self.pull_options if k not in PULL_OPTIONS)
        if unknown:
            raise CatalogueError(
                f"Configuration.pull_options {unknown} are not pull options; use {PULL_OPTIONS}"
            )
        object.__setattr__(self, "pull_options", MappingProxyType(dict(self.pull_options)))

    def describe(self) -> str:
        """``seed`` or ``v1.6 with discard=True``."""
        if not self.pull_options:
            return self.implementation
        opts = ", ".join(f"{k}={v}" for k, v in self.pull_options.items())
        return f"{self.implementation} with {opts}"

    def to_json(self) -> dict[str, Any]:
        return {
            "implementation": self.implementation,
            "pull_options": dict(self.pull_options),
            "note": self.note,
        }


@dataclass(frozen=True)
class CatalogueEntry:
    """One known race.

    Attributes:
        name: the catalogue name (``stat-skip-gc-parent``).
        title: one line.
        issues: the containerd (or moby) issues and PRs it corresponds to, first the main one.
        properties: the properties the search checks; the race breaks the first one.
        with_race: the configuration that has it.
        without_race: the configuration that does not (containerd's fix, or the feature off).
        symptom: what users saw (containerd's message).
        mechanism: how it happens, in containerd's terms.
        fix: the containerd change that fixed it (or why none did).
        space: where the explorer searches.
        budget: the examples the search may take in CI (the bound the tests hold it to).
    """

    name: str
    title: str
    issues: tuple[str, ...]
    properties: tuple[str, ...]
    with_race: Configuration
    without_race: Configuration
    symptom: str
    mechanism: str
    fix: str
    space: SearchSpace
    budget: int = 300

    @property
    def issue(self) -> str:
        """The main issue (``containerd#3787``)."""
        return self.issues[0]

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "title": self.title,
            "issues": list(self.issues),
            "properties": list(self.properties),
            "with_race": self.with_race.to_json(),
            "without_race": self.without_race.to_json(),
            "symptom": self.symptom,
            "mechanism": self.mechanism,
            "fix": self.fix,
            "budget": self.budget,
            "space": self.space.to_json(),
        }


# --- the entries -----------------------------------------------------------------------------

_BASE = ImageSpec("registry.test/base:1", ("base",))
_APP = ImageSpec("registry.test/app:1", ("base", "app"))
_OTHER = ImageSpec("registry.test/other:1", ("base", "other"))
_THREE = ImageSpec("registry.test/three:1", ("base", "lib", "top"))
_BIG = ImageSpec("registry.test/big:1", ("big-a", "big-b", "big-c"), layer_bytes=64 * 1024)
_BIG_TWO = ImageSpec("registry.test/big-two:1", ("big-a", "big-d"), layer_bytes=64 * 1024)

_SEQUENTIAL_OR_NOT = (1.0, 0.0, 0.001, 0.005, 0.02)
_INSIDE_A_PULL = (1.0, 0.0, 0.01, 0.02, 0.03, 0.04, 0.05)

CATALOGUE: tuple[CatalogueEntry, ...] = (
    CatalogueEntry(
        name="prepare-collision",
        title="Concurrent pulls collide on Prepare without unique extraction keys",
        issues=("containerd#1041", "containerd#1240", "containerd#1480"),
        properties=("pulls-succeed-without-faults",),
        with_race=Configuration(
            NO_UNIQUE_KEYS, note="extraction keys are derived from the chain ID only"
        ),
        without_race=Configuration("seed", note="unique extract-<unique> <chainID> keys"),
        symptom='failed to prepare extraction layer: snapshot "extract sha256:..." already exists',
        mechanism="Both pulls Prepare the same key 'extract <chainID>'; the second gets "
        "AlreadyExists on every try while the first has not committed the chain ID yet, "
        "and gives up after three tries.",
        fix="597d0d76a (PR #1480, 2017-09): unique 'extract-<unique> <chainID>' keys, and a "
        "Stat of the chain ID on AlreadyExists.",
        space=SearchSpace(
            images=(_APP, _THREE),
            slots=(("pull",), ("pull",), ("skip", "pull")),
            gaps=_SEQUENTIAL_OR_NOT,
        ),
        budget=150,
    ),
    CatalogueEntry(
        name="stat-skip-gc-parent",
        title="The Stat skip leaves a parent unprotected from GC in the middle of a pull",
        issues=("containerd#3787", "containerd#2382", "containerd#10835"),
        properties=("parent-protected-at-prepare",),
        with_race=Configuration("seed", note="Stat skip; nothing leases the skipped snapshot"),
        without_race=Configuration(
            "v2.0", note="no Stat skip (#10723) and leases on AlreadyExists (#10187)"
        ),
        symptom='failed to prepare extraction snapshot "extract-... sha256:X": parent '
        "snapshot sha256:Y does not exist: not found",
        mechanism="Stat(chainID) of a lower layer finds a snapshot kept only by a deleted "
        "image or a finished pull's lease; the unpacker skips it without leasing it, so "
        "between that Stat and the Prepare of the layer above it nothing protects the parent "
        "and a GC removes it.",
        fix="c7fb8a925 (#10187, lease on AlreadyExists) and d7f83034c (#10723, no Stat skip): "
        "v2.0.0, v1.7.23, v1.6.37.",
        space=SearchSpace(
            images=(_APP, _OTHER),
            slots=(("pull",), ("skip", "delete_image"), ("pull",), ("skip", "gc")),
            gaps=_SEQUENTIAL_OR_NOT,
            sites=("gc.run",),
            gc_scheduler=False,
        ),
        budget=200,
    ),
    CatalogueEntry(
        name="extract-leak-on-cancel",
        title="Extraction snapshots leak when a pull is cancelled or its fetch fails",
        issues=("containerd#6294", "moby#48909", "containerd#6749"),
        properties=("failed-pull-no-extraction-left",),
        with_race=Configuration("seed", note="the wait for a layer returns without abort()"),
        without_race=Configuration(
            "v1.7", note="abort() on cancel and fetch error (#6749) with a cleanup context"
        ),
        symptom="active extract-* snapshots linger after a cancelled pull (until the 24 h "
        "pull lease expires)",
        mechanism="The unpacker waits for the layer's download in a select; on ctx.Done (or "
        "a fetch error) it returns without removing the extraction snapshot.  A cancelled "
        "Pull cannot delete its lease either (the context is done), so the snapshot stays "
        "leased and GC keeps it.",
        fix="8017daa12 (#6749, v1.7.0): abort on those paths; 0bc9f7b54/b550526cc (#7859): "
        "abort under a cleanup context so Remove does not fail with 'context canceled'.",
        space=SearchSpace(
            images=(_BIG, _BIG_TWO),
            slots=(("pull",), ("skip", "cancel")),
            gaps=_INSIDE_A_PULL,
            sites=("fetch.error",),
            bandwidth=2_000_000.0,
        ),
        budget=200,
    ),
    CatalogueEntry(
        name="layers-not-fetched",
        title="A pull does not fetch layers whose snapshots already exist",
        issues=("containerd#8973", "moby#49784", "moby#49473"),
        properties=("referenced-blobs-present",),
        with_race=Configuration(
            "seed", note="layers are fetched lazily, from the first layer whose snapshot is missing"
        ),
        without_race=Configuration(
            FETCH_ONLY,
            note="never fixed in a release (fetch-all is a later opt-in, #14126): the same "
            "pulls without unpack fetch every layer",
        ),
        symptom="content digest sha256:...: not found (ctr images check / export / push of "
        "an image that pulled fine)",
        mechanism="The lazy fetch starts at the first layer needing extraction; when every "
        "snapshot exists (kept by a container after the image and its blobs were removed) "
        "no layer blob is fetched, yet the image's manifest references them.",
        fix="None in these releases; PR #14126 adds an opt-in WithUnpackFetchAllContent "
        "(moby enables it, moby#53615).",
        space=SearchSpace(
            images=(_APP, _THREE),
            slots=(
                ("pull",),
                ("skip", "hold_snapshot"),
                ("skip", "delete_image"),
                ("skip", "gc"),
                ("pull",),
            ),
            gaps=(1.0, 0.0, 0.01),
        ),
        budget=200,
    ),
    CatalogueEntry(
        name="discard-second-snapshotter",
        title="Discarded layer content is missing for a second snapshotter",
        issues=("containerd#8674", "containerd#11390", "containerd#9225", "containerd#10843"),
        properties=("image-usable-after-pull",),
        with_race=Configuration(
            "v1.6", {"discard": True}, note="discard_unpacked_layers (ChildLabelMap filter)"
        ),
        without_race=Configuration(
            "v1.6",
            {"discard": False},
            note="partly open upstream (#8878, #10703 proposals): without discard the blobs stay",
        ),
        symptom="failed to extract layer ...: failed to get reader from content store: "
        "content digest sha256:...: not found",
        mechanism="The layers' GC labels are never written (or stripped), so once the pull's "
        "lease is gone GC removes the layer blobs; unpacking the image into another "
        "snapshotter (a runtime handler on devmapper) then needs blobs that are gone.",
        fix="Open: refetch on missing content was proposed (#8878, #10703); #13658 reports "
        "the image as absent instead.",
        space=SearchSpace(
            images=(_APP, _THREE),
            slots=(("pull",), ("skip", "gc", "delete_lease"), ("hold_snapshot", "unpack")),
            gaps=_SEQUENTIAL_OR_NOT,
            snapshotters=("native", "devmapper"),
        ),
        budget=150,
    ),
    CatalogueEntry(
        name="limiter-ineffective",
        title="MaxConcurrentDownloads has no effect on layer downloads when unpacking",
        issues=("containerd#6054", "containerd#6109"),
        properties=("downloads-within-limit",),
        with_race=Configuration(
            "seed", {"max_concurrent_downloads": 1}, note="u.limiter is never set"
        ),
        without_race=Configuration(
            "v1.6", {"max_concurrent_downloads": 1}, note="the unpacker's limiter (#6109)"
        ),
        symptom="all layers download at once",
        mechanism="At the seed the Dispatch limiter covers manifests and configs only; the "
        "unpacker's own layer fetches check u.limiter, which is always nil, so every layer "
        "from the fetch offset on downloads concurrently.",
        fix="535191abf (#6109, v1.6.0).",
        space=SearchSpace(
            images=(_BIG, _THREE),
            slots=(("pull",), ("skip", "pull")),
            gaps=_SEQUENTIAL_OR_NOT,
            bandwidth=2_000_000.0,
        ),
        budget=100,
    ),
    CatalogueEntry(
        name="duplicate-unpack",
        title="Concurrent pulls of one image each unpack every layer",
        issues=("containerd#4937", "containerd#4985", "containerd#6318", "containerd#5675"),
        properties=("chain-applied-once",),
        with_race=Configuration("seed", note="no duplication suppressor"),
        without_race=Configuration(
            "v1.7-cri",
            note="v1.7 as CRI pulls: the keyed duplication suppressor (#6702); Client.Pull "
            "alone never installs one",
        ),
        symptom="N concurrent pulls of one image take minutes; CPU pegged",
        mechanism="Every puller Prepares and Applies the same chain ID; the losers get "
        "Commit AlreadyExists, abort and continue: the work was wasted.",
        fix="811375856 (#6702, v1.7.0; 1.6.3 backport for CRI): kmutex on "
        "sn://<snapshotter>/<chainID> around a layer's Stat..Commit.",
        space=SearchSpace(
            images=(_APP, _THREE),
            slots=(("pull",), ("pull",), ("skip", "pull")),
            gaps=_SEQUENTIAL_OR_NOT,
        ),
        budget=150,
    ),
    CatalogueEntry(
        name="diff-id-trailing-data",
        title="Good layers fail the diff ID check when the applier skips trailing tar data",
        issues=("containerd#3569", "containerd#3682", "containerd#3570"),
        properties=("pulls-succeed-without-faults", "corrupt-layer-never-committed"),
        with_race=Configuration(
            NO_TRAILING_READ,
            note="v1.3.0-beta.2's direct-unpack applier hashes only what the tar reader read",
        ),
        without_race=Configuration("seed", note="the applier reads trailing data (#3570)"),
        symptom="failed to unpack image on snapshotter overlayfs: wrong diff id calculated "
        'on extraction "sha256:..."',
        mechanism="The direct-unpack refactoring (81386df91) dropped 'read any trailing data' "
        "from diff/apply Apply, so the diff ID was hashed only up to the tar's end-of-archive "
        "marker; layers whose tar is padded to the record size (bazel, Python-built images) "
        "got a diff ID other than the config's.  The unpacker's check refuses to commit it, "
        "so the wrong diff ID is never committed, but good images cannot be pulled.",
        fix="550518ab8 (PR #3570, 2019-08-21, v1.3.0-rc.0): read the trailing data again.",
        space=SearchSpace(
            images=(_APP, _BASE),
            slots=(("pull",), ("skip", "pull")),
            gaps=_SEQUENTIAL_OR_NOT,
            sites=("diff.apply.wrong_diff_id",),
            fire_one_in=3,
        ),
        budget=100,
    ),
)


def names() -> list[str]:
    """The entry names, in catalogue order."""
    return [e.name for e in CATALOGUE]


def entry(name: str) -> CatalogueEntry:
    """The entry called ``name``.

    Raises:
        CatalogueError: no such entry (the message lists the names).
    """
    for item in CATALOGUE:
        if item.name == name:
            return item
    raise CatalogueError(f"no catalogue entry {name!r}; entries are {', '.join(names())}")


def check_configurations() -> None:
    """Resolve every entry's implementations (a quick self-check for tests and the CLI).

    Raises:
        ImplementationError: an entry names an implementation that does not resolve.
    """
    for item in CATALOGUE:
        resolve(item.with_race.implementation)
        resolve(item.without_race.implementation)
