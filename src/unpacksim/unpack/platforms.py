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

_ARCH_ALIASES = {"x86_64": "amd64", "x86-64": "amd64", "aarch64": "arm64", "armhf": "arm"}


def normalize(p: Platform) -> Platform:
    """``platforms.Normalize``: canonical architecture and variant names."""
    os_name = p.os.lower()
    arch = _ARCH_ALIASES.get(p.architecture.lower(), p.architecture.lower())
    variant = p.variant
    if arch == "arm64" and variant in ("8", "v8"):
        variant = ""
    elif arch == "arm":
        if p.architecture.lower() == "armhf" or variant in ("", "7"):
            variant = "v7"
        elif variant in ("5", "6", "8"):
            variant = "v" + variant
    return Platform(os_name, arch, variant)


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
