"""Fault sites and fault plans.

A **fault site** is a named point where containerd can see a failure or a concurrent action:
a fetch that fails, a Prepare that finds its target, a GC that starts.  Code at the site asks
the run's plan::

    env.faults.check("fetch.error", key=desc.digest, detail=desc.media_type)

``check`` raises the injected errdefs error at an *error site* (the error is marked
``injected``), returns True when an *effect site* fires (the caller then does the effect:
truncates the stream, starts a GC, ...), and returns False otherwise.

A **fault plan** decides which hits fire:

- :meth:`FaultPlan.none` (the default): nothing fires; hits are still counted;
- :meth:`FaultPlan.exploring`: the first time a listed site is reached the chooser decides
  whether the site is active in this run (``kind="fault.activate:<site>"``), and at each hit
  of an active site whether it fires (``"fault.fire:<site>"``) and with which error
  (``"fault.error:<site>"``).  Answer 0 is always "no fault", so Hypothesis shrinks a failing
  run toward fewer faults;
- :meth:`FaultPlan.scripted` with :class:`Rule` s: "the second fetch of blob X fails with
  Unavailable" is ``Rule("fetch.error", key=X, hit=2, error=Unavailable)``.

:meth:`FaultPlan.report` says which sites fired and which were reached but never fired.  The
standard sites are listed in :data:`STANDARD_SITES`; other layers add theirs with
:func:`register_site`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from unpacksim.model.errdefs import (
    AlreadyExists,
    ContainerdError,
    NotFound,
    Unavailable,
    Unknown,
)
from unpacksim.model.filters import go_quote
from unpacksim.sim.errors import SimUsageError

if TYPE_CHECKING:
    from unpacksim.sim.env import Environment

__all__ = [
    "STANDARD_SITES",
    "FaultPlan",
    "FaultReport",
    "FaultSite",
    "Rule",
    "SiteReport",
    "get_site",
    "register_site",
    "sites",
]

ErrorClass = type[ContainerdError]


@dataclass(frozen=True)
class FaultSite:
    """A named fault site.

    ``errors`` lists the errdefs classes the site injects, each with containerd's message
    template (fields ``{key}``, ``{key_q}`` = Go's ``%q`` of the key, ``{detail}``); an
    explored site picks among them through the chooser, the first being the shrunk answer.
    A site with no errors is an *effect site*: ``effect`` says what firing does.
    """

    name: str
    description: str
    errors: tuple[tuple[ErrorClass, str], ...] = ()
    effect: str = ""
    mirrors: str = ""

    @property
    def is_error_site(self) -> bool:
        return bool(self.errors)

    def make_error(self, cls: ErrorClass, key: str, detail: str) -> ContainerdError:
        """The injected error of class ``cls`` with this site's message for it."""
        template = next((t for c, t in self.errors if c is cls), "{key}")
        message = template.format(key=key, key_q=go_quote(key), detail=detail or key)
        return cls(message, injected=True)


_SITES: dict[str, FaultSite] = {}


def register_site(site: FaultSite) -> FaultSite:
    """Add ``site`` to the registry (idempotent for an identical definition).

    Raises:
        SimUsageError: another site with the same name is registered.
    """
    known = _SITES.get(site.name)
    if known is not None and known != site:
        raise SimUsageError(
            f"fault site {site.name!r} is already registered with another definition; "
            "choose another dotted name"
        )
    _SITES[site.name] = site
    return site


def get_site(name: str) -> FaultSite:
    """The registered site called ``name``.

    Raises:
        SimUsageError: no such site (the message lists the registered names).
    """
    site = _SITES.get(name)
    if site is None:
        raise SimUsageError(
            f"unknown fault site {name!r}; registered sites: {', '.join(_SITES)} "
            "(add one with unpacksim.sim.faults.register_site)"
        )
    return site


def sites() -> list[FaultSite]:
    """Every registered site, in registration order."""
    return list(_SITES.values())


STANDARD_SITES: tuple[FaultSite, ...] = tuple(
    register_site(s)
    for s in (
        FaultSite(
            "fetch.error",
            "Opening a blob at the registry fails (a 503, or the blob is missing).",
            errors=(
                (Unknown, "unexpected status code {key}: 503 Service Unavailable"),
                (NotFound, "could not fetch content descriptor {key} ({detail}) from remote"),
            ),
            mirrors="remotes/docker/fetcher.go (Fetch, open)",
        ),
        FaultSite(
            "fetch.truncate",
            "The registry's stream ends before the descriptor's size.",
            effect="the fetched bytes are cut short; the content writer's commit then fails "
            "its size check",
            mirrors="remotes/docker/fetcher.go, content/local/writer.go (Commit)",
        ),
        FaultSite(
            "fetch.corrupt",
            "The registry serves bytes that do not match the digest.",
            effect="some fetched bytes are flipped; the content writer's commit then fails its "
            "digest check",
            mirrors="remotes/docker/fetcher.go, content/local/writer.go (Commit)",
        ),
        FaultSite(
            "content.ref_locked",
            "Opening a content writer finds the ingest ref locked by another writer.",
            errors=((Unavailable, "ref {key} locked"),),
            mirrors="content/local/locks.go (tryLock)",
        ),
        FaultSite(
            "snapshots.prepare.exists",
            "Prepare finds its target snapshot (the chain ID) already committed.",
            errors=((AlreadyExists, "target snapshot {key_q}"),),
            mirrors="metadata/snapshot.go (createSnapshot)",
        ),
        FaultSite(
            "diff.apply.error",
            "Applying a layer fails (e.g. the decompressed stream ends early).",
            errors=((Unknown, "unexpected EOF"),),
            mirrors="diff/apply/apply.go, archive/tar.go (Apply)",
        ),
        FaultSite(
            "diff.apply.wrong_diff_id",
            "Applying a layer computes a diff ID other than the config's.",
            effect="the applier returns a different diff digest; the unpacker then fails with "
            "'wrong diff id calculated on extraction'",
            mirrors="diff/apply/apply.go; unpacker.go (diff ID check)",
        ),
        FaultSite(
            "snapshots.commit.exists",
            "Commit finds a snapshot of that name already committed (another unpack won).",
            errors=((AlreadyExists, "snapshot {key_q}"),),
            mirrors="metadata/snapshot.go (Commit)",
        ),
        FaultSite(
            "ctx.cancel",
            "The caller gives up: its context is cancelled at this point.",
            effect="the outermost cancellable context of the call is cancelled; the call and "
            "everything waiting on the context see Canceled",
            mirrors="context (WithCancel)",
        ),
        FaultSite(
            "gc.run",
            "A garbage collection starts at this point.",
            effect="the GC process's hook starts a collection (mark, metadata sweep, backend "
            "sweep) that interleaves with the call",
            mirrors="metadata/db.go (GarbageCollect), gc/scheduler",
        ),
        FaultSite(
            "labels.remove",
            "Someone removes a GC reference label at this point.",
            effect="a hook removes a containerd.io/gc.ref.* label (e.g. from a manifest or "
            "config), making its target collectable",
            mirrors="metadata/content.go (Update with a label field path)",
        ),
    )
)


@dataclass(frozen=True)
class Rule:
    """A scripted fault: fire ``site`` on hits ``hit .. hit + times - 1`` matching ``key``.

    ``key=None`` counts every hit of the site; ``times=None`` fires on every hit from ``hit``
    on; ``error`` is the errdefs class to raise (default: the site's first).
    """

    site: str
    key: str | None = None
    hit: int = 1
    times: int | None = 1
    error: ErrorClass | None = None


@dataclass(frozen=True)
class SiteReport:
    """One site in a run: hits, fires, and whether the plan armed it."""

    site: str
    hits: int
    fires: int
    armed: bool


@dataclass(frozen=True)
class FaultReport:
    """Which sites a run reached and which fired (``sites`` in first-reached order)."""

    sites: tuple[SiteReport, ...]
    fired: tuple[tuple[str, str, int], ...] = field(default=())  # (site, key, hit)
    unreached: tuple[str, ...] = ()  # sites the plan names that no code reached

    @property
    def fired_sites(self) -> list[str]:
        return [s.site for s in self.sites if s.fires]

    @property
    def reached_never_fired(self) -> list[str]:
        return [s.site for s in self.sites if s.hits and not s.fires]

    def describe(self) -> str:
        lines = [f"{s.site}: {s.fires} of {s.hits} hits fired" for s in self.sites]
        lines += [f"{name}: never reached" for name in self.unreached]
        return "\n".join(lines) if lines else "no fault site was reached"


class FaultPlan:
    """Decides, through the environment's chooser, which hits of which sites fire.

    Build one with :meth:`none`, :meth:`exploring` or :meth:`scripted` (or all three
    arguments at once) and assign it to ``env.faults``; binding restarts its counters, so a
    plan object describes a plan and each environment runs it afresh.
    """

    def __init__(
        self,
        *,
        rules: Sequence[Rule] = (),
        explore: Sequence[str] = (),
        fire_one_in: int = 2,
        max_fires: int | None = None,
    ) -> None:
        for rule in rules:
            site = get_site(rule.site)
            if rule.hit < 1 or (rule.times is not None and rule.times < 1):
                raise SimUsageError(f"{rule}: hit and times count from 1")
            if rule.error is not None and not site.is_error_site:
                raise SimUsageError(f"{rule}: {rule.site} is an effect site; give no error")
        for name in explore:
            get_site(name)
        if fire_one_in < 2:
            raise SimUsageError(f"fire_one_in={fire_one_in}: must be at least 2")
        self.rules = tuple(rules)
        self.explore = tuple(explore)
        self.fire_one_in = fire_one_in
        self.max_fires = max_fires
        self._env: Environment | None = None
        self._reset()

    @classmethod
    def none(cls) -> FaultPlan:
        """No site fires (the default plan)."""
        return cls()

    @classmethod
    def scripted(cls, *rules: Rule) -> FaultPlan:
        """Exactly the hits the rules name fire."""
        return cls(rules=rules)

    @classmethod
    def exploring(
        cls,
        sites: Sequence[str] | None = None,
        *,
        fire_one_in: int = 2,
        max_fires: int | None = None,
    ) -> FaultPlan:
        """The chooser activates some of ``sites`` (default: every registered site) per run
        and fires each active one on one in ``fire_one_in`` hits (at most ``max_fires``)."""
        names = [s.name for s in _SITES.values()] if sites is None else list(sites)
        return cls(explore=names, fire_one_in=fire_one_in, max_fires=max_fires)

    def _reset(self) -> None:
        self._hits: dict[str, int] = {}
        self._fires: dict[str, int] = {}
        self._active: dict[str, bool] = {}
        self._rule_hits = [0] * len(self.rules)
        self._fired: list[tuple[str, str, int]] = []

    def bind(self, env: Environment) -> None:
        """Attach to ``env`` (done by ``env.faults = plan``); restarts the counters."""
        self._env = env
        self._reset()

    def check(self, site: str, *, key: str = "", detail: str = "") -> bool:
        """A hit of ``site`` for ``key``: raise its injected error, or say whether it fired.

        Raises:
            ContainerdError: the site is an error site and this hit fires (``injected``).
            SimUsageError: unknown site, or the plan is not bound to an environment.
        """
        spec = get_site(site)
        hit = self._hits.get(site, 0) + 1
        self._hits[site] = hit
        error = self._decide(spec, key)
        if error is False:
            return False
        self._fires[site] = self._fires.get(site, 0) + 1
        self._fired.append((site, key, hit))
        env = self._bound()
        if error is True:
            env.trace.fault(site, key, "effect")
            return True
        exc = spec.make_error(error, key, detail)
        env.trace.fault(site, key, type(exc).__name__, error=str(exc))
        raise exc

    def _decide(self, spec: FaultSite, key: str) -> ErrorClass | bool:
        """False: no fault; True: the effect fires; a class: raise that error."""
        for i, rule in enumerate(self.rules):
            if rule.site != spec.name or (rule.key is not None and rule.key != key):
                continue
            self._rule_hits[i] += 1
            n = self._rule_hits[i]
            if n >= rule.hit and (rule.times is None or n < rule.hit + rule.times):
                if not spec.is_error_site:
                    return True
                return rule.error or spec.errors[0][0]
        if spec.name in self.explore:
            return self._explore(spec)
        return False

    def _explore(self, spec: FaultSite) -> ErrorClass | bool:
        chooser = self._bound().chooser
        name = spec.name
        if name not in self._active:
            self._active[name] = chooser.choose(2, f"fault.activate:{name}") == 1
        if not self._active[name]:
            return False
        if self.max_fires is not None and self._fires.get(name, 0) >= self.max_fires:
            return False
        last = self.fire_one_in - 1
        if chooser.choose(self.fire_one_in, f"fault.fire:{name}") != last:
            return False
        if not spec.is_error_site:
            return True
        errors = spec.errors
        return errors[chooser.choose(len(errors), f"fault.error:{name}")][0]

    def _bound(self) -> Environment:
        if self._env is None:
            raise SimUsageError(
                "this FaultPlan is not bound to an environment; assign it: env.faults = plan"
            )
        return self._env

    def armed(self, site: str) -> bool:
        """Whether a rule names ``site`` or exploring activated it in this run."""
        return any(r.site == site for r in self.rules) or self._active.get(site, False)

    def report(self) -> FaultReport:
        """The sites reached in this run, with their hits and fires."""
        reports = tuple(
            SiteReport(name, hits, self._fires.get(name, 0), self.armed(name))
            for name, hits in self._hits.items()
        )
        named = [r.site for r in self.rules] + list(self.explore)
        unreached = tuple(dict.fromkeys(n for n in named if n not in self._hits))
        return FaultReport(reports, tuple(self._fired), unreached)
