"""OCI digests and chain IDs.

Digests are ``sha256:<64 lower-case hex>`` strings (``opencontainers/go-digest``).  Chain IDs
follow the OCI image-spec identity: ``ChainID(L0) = DiffID(L0)`` and
``ChainID(L0..Ln) = sha256(ChainID(L0..Ln-1) + " " + DiffID(Ln))`` over the digest strings
(``image-spec/identity/chainid.go``).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Sequence

from unpacksim.model.errdefs import InvalidArgument

__all__ = [
    "chain_id",
    "chain_ids",
    "digest_of",
    "go_digest_error",
    "is_digest",
    "validate_digest",
]

_DIGEST = re.compile(r"sha256:[a-f0-9]{64}")
_GO_DIGEST_SHAPE = re.compile(r"[a-z0-9]+(?:[.+_-][a-z0-9]+)*:[a-zA-Z0-9=_-]+")
_GO_HEX_LENGTHS = {"sha256": 64, "sha384": 96, "sha512": 128}


def is_digest(value: object) -> bool:
    """True if ``value`` is a well-formed sha256 digest string."""
    return isinstance(value, str) and _DIGEST.fullmatch(value) is not None


def validate_digest(value: object) -> str:
    """Return ``value`` if it is a sha256 digest, else raise ``InvalidArgument`` naming it."""
    if not is_digest(value):
        raise InvalidArgument(
            f"invalid digest {value!r}: expected 'sha256:' followed by 64 lower-case hex digits"
        )
    assert isinstance(value, str)
    return value


def go_digest_error(value: str) -> str | None:
    """go-digest's ``Digest.Validate`` error text for ``value``, or None if Go accepts it.

    The texts are go-digest's sentinels: "invalid checksum digest format", "invalid checksum
    digest length", "unsupported digest algorithm".  Go also accepts sha384 and sha512, which
    the model itself does not use.
    """
    i = value.find(":")
    if i <= 0 or i + 1 == len(value):
        return "invalid checksum digest format"
    algorithm, encoded = value[:i], value[i + 1 :]
    if algorithm not in _GO_HEX_LENGTHS:
        if _GO_DIGEST_SHAPE.fullmatch(value) is None:
            return "invalid checksum digest format"
        return "unsupported digest algorithm"
    if len(encoded) != _GO_HEX_LENGTHS[algorithm]:
        return "invalid checksum digest length"
    if re.fullmatch(r"[a-f0-9]+", encoded) is None:
        return "invalid checksum digest format"
    return None


def digest_of(data: bytes) -> str:
    """The sha256 digest of ``data``."""
    return "sha256:" + hashlib.sha256(data).hexdigest()


def chain_id(diff_ids: Sequence[str]) -> str:
    """ChainID of the layer stack ``diff_ids`` (bottom first); ``""`` for an empty stack."""
    ids = chain_ids(diff_ids)
    return ids[-1] if ids else ""


def chain_ids(diff_ids: Iterable[str]) -> list[str]:
    """The chain ID of every prefix of ``diff_ids`` (``identity.ChainIDs``)."""
    out: list[str] = []
    for diff_id in diff_ids:
        validate_digest(diff_id)
        if not out:
            out.append(diff_id)
        else:
            out.append(digest_of(f"{out[-1]} {diff_id}".encode()))
    return out
