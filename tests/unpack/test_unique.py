"""Unique parts: containerd's ``<nanoseconds>-<base64url(3 bytes)>``, deterministic per run."""

from __future__ import annotations

import re
from dataclasses import dataclass

from unpacksim.unpack.unique import UniqueSource, format_unique


@dataclass
class _Env:
    now: float = 0.0


def test_format_matches_go() -> None:
    # t.Nanosecond() is the offset within the second; base64.URLEncoding pads 3 bytes to 4.
    assert format_unique(12.000000345, b"\xff\xfe\x00") == "345-__4A"
    assert format_unique(0.5, b"abc") == "500000000-YWJj"


def test_parts_do_not_repeat_at_one_instant_and_replay_identically() -> None:
    a, b = UniqueSource(_Env(3.25)), UniqueSource(_Env(3.25))
    first = [a.part() for _ in range(2000)]
    assert len(set(first)) == 2000
    assert first == [b.part() for _ in range(2000)]
    assert all(re.fullmatch(r"250000000-[A-Za-z0-9_-]{4}", p) for p in first)
