"""Platform matching for the pull path (``platforms/`` at the seed, as far as Pull uses it).

``Pull`` without ``WithPlatform`` uses the client's default matcher; with one platform it uses
``platforms.Only(p)``.  Both are an ordered list of matchers: ``Match`` is true if any matches,
``Less(a, b)`` prefers the platform matched by the earlier matcher (``platforms/compare.go``).
For ARM, ``Only`` also accepts the older variants (v8 accepts v7, v6, v5 on 32-bit ``arm``).
"""

from __future__ import annotations

from dataclasses import dataclass

from unpacksim.model.oci import Platform

__all__ = ["DEFAULT_PLATFORM", "MatchComparer", "normalize", "only"]

#: The client default platform in the model (containerd uses the host's).
DEFAULT_PLATFORM = Platform("linux", "amd64")


def normalize(p: Platform) -> Platform:
    """``platforms.Normalize`` (``platforms/platforms.go``, ``database.go`` normalizeOS and
    normalizeArch at the seed): lower-case names, canonical architecture and variant.

    An empty OS is the host's (``runtime.GOOS``): ``linux`` in the model.
    """
    os_name = p.os.lower() if p.os else DEFAULT_PLATFORM.os
    if os_name == "macos":
        os_name = "darwin"
    arch, variant = _normalize_arch(p.architecture.lower(), p.variant.lower())
    return Platform(os_name, arch, variant)


def _normalize_arch(arch: str, variant: str) -> tuple[str, str]:
    # database.go normalizeArch, case by case.
    if arch == "i386":
        return "386", ""
    if arch in ("x86_64", "x86-64"):
        return "amd64", ""
    if arch in ("aarch64", "arm64"):
        return "arm64", "" if variant in ("8", "v8") else variant
    if arch == "armhf":
        return "arm", "v7"
    if arch == "armel":
        return "arm", "v6"
    if arch == "arm":
        if variant in ("", "7"):
            return "arm", "v7"
        if variant in ("5", "6", "8"):
            return "arm", "v" + variant
    return arch, variant


@dataclass(frozen=True)
class MatchComparer:
    """An ordered list of platforms: ``match`` any of them, ``less`` prefers earlier ones."""

    platforms: tuple[Platform, ...]

    def rank(self, p: Platform) -> int:
        """The index of the first platform matching ``p`` (``len`` if none)."""
        norm = normalize(p)
        for i, candidate in enumerate(self.platforms):
            if candidate == norm:
                return i
        return len(self.platforms)

    def match(self, p: Platform) -> bool:
        return self.rank(p) < len(self.platforms)

    def less(self, a: Platform, b: Platform) -> bool:
        return self.rank(a) < self.rank(b)


def only(p: Platform) -> MatchComparer:
    """``platforms.Only``: ``p``, and for ARM the variants it can run."""
    norm = normalize(p)
    fallbacks = {"v8": ("v7", "v6", "v5"), "v7": ("v6", "v5"), "v6": ("v5",)}
    found = [norm]
    if norm.architecture == "arm":
        found += [Platform(norm.os, "arm", v) for v in fallbacks.get(norm.variant, ())]
    return MatchComparer(tuple(found))
