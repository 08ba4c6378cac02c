from __future__ import annotations

from typing import Any

import pytest

from unpacksim.model.digest import chain_id, chain_ids, digest_of, validate_digest
from unpacksim.model.errdefs import InvalidArgument


def test_chain_ids_equal_real_containerd(chainid_vectors: dict[str, Any]) -> None:
    assert chain_ids(chainid_vectors["diff_ids"]) == chainid_vectors["chain_ids"]


def test_snapshot_parents_match_previous_chain_id(chainid_vectors: dict[str, Any]) -> None:
    ids = chain_ids(chainid_vectors["diff_ids"])
    for i, snap in enumerate(chainid_vectors["snapshots"]):
        assert snap["name"] == ids[i]
        assert snap["parent"] == (ids[i - 1] if i else "")


def test_chain_id_of_empty_stack_is_empty() -> None:
    assert chain_id([]) == ""


def test_chain_id_of_one_layer_is_its_diff_id() -> None:
    d = digest_of(b"layer")
    assert chain_id([d]) == d


@pytest.mark.parametrize(
    "bad",
    ["", "sha256:", "sha256:XYZ", "md5:" + "a" * 64, "sha256:" + "A" * 64, "sha256:" + "a" * 63],
)
def test_malformed_digest_is_invalid_argument_naming_it(bad: str) -> None:
    with pytest.raises(InvalidArgument) as info:
        validate_digest(bad)
    assert repr(bad) in str(info.value)
    assert str(info.value).endswith("invalid argument")


def test_chain_ids_reject_malformed_diff_id() -> None:
    with pytest.raises(InvalidArgument, match="not-a-digest"):
        chain_ids([digest_of(b"a"), "not-a-digest"])
