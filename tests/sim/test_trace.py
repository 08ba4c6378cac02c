"""The trace and its canonical JSON Lines form (unpacksim.sim.trace)."""

from __future__ import annotations

import enum
import hashlib
import json
from dataclasses import dataclass

import pytest

from unpacksim.model.errdefs import NotFound
from unpacksim.sim.errors import SimUsageError
from unpacksim.sim.trace import INDETERMINATE, Trace, canonical, first_divergence


class Kind(enum.Enum):
    ACTIVE = "active"


@dataclass(frozen=True)
class Desc:
    digest: str
    size: int


def make_trace(outcome_of_second: str = "ok") -> Trace:
    clock = {"t": 0.0}
    trace = Trace(now=lambda: clock["t"], process=lambda: "pull")
    a = trace.invoke("content.info", {"digest": "sha256:x", "labels": {"b": "2", "a": "1"}})
    clock["t"] = 0.25
    trace.complete(a)
    b = trace.invoke("snapshots.prepare", {"kind": Kind.ACTIVE, "desc": Desc("sha256:y", 3)})
    trace.fault("snapshots.prepare.exists", "sha256:y", "AlreadyExists", error="e")
    trace.complete(b, outcome_of_second)
    return trace


def test_canonical_lines_have_sorted_keys_and_no_spaces() -> None:
    trace = make_trace()
    lines = trace.jsonl().splitlines()
    assert len(lines) == 5 and trace.jsonl().endswith("\n")
    for line in lines:
        data = json.loads(line)
        assert line == json.dumps(data, sort_keys=True, separators=(",", ":"))
    first = json.loads(lines[0])
    assert first == {
        "args": {"digest": "sha256:x", "labels": {"a": "1", "b": "2"}},
        "call": 1,
        "error": None,
        "injected": False,
        "op": "content.info",
        "outcome": None,
        "process": "pull",
        "seq": 0,
        "time": 0.0,
        "type": "invoke",
    }
    assert json.loads(lines[2])["args"] == {
        "desc": {"digest": "sha256:y", "size": 3},
        "kind": "active",
    }
    fault = json.loads(lines[3])
    assert (fault["type"], fault["call"], fault["injected"]) == ("fault", 2, True)


def test_hash_is_sha256_of_the_bytes_and_round_trips() -> None:
    trace = make_trace()
    assert trace.sha256() == hashlib.sha256(trace.jsonl().encode()).hexdigest()
    again = Trace.from_jsonl(trace.jsonl())
    assert again.jsonl() == trace.jsonl()
    assert make_trace().sha256() == trace.sha256()
    assert make_trace("NotFound").sha256() != trace.sha256()


def test_first_divergence_names_the_event() -> None:
    left, right = make_trace(), make_trace("NotFound")
    divergence = first_divergence(left, right)
    assert divergence is not None and divergence.index == 4
    assert '"outcome":"ok"' in (divergence.left or "")
    assert '"outcome":"NotFound"' in (divergence.right or "")
    assert "diverge at event 4" in divergence.describe()
    assert first_divergence(left, make_trace()) is None
    shorter = first_divergence(left.lines()[:3], left)
    assert shorter is not None and (shorter.index, shorter.left) == (3, None)


def test_complete_error_and_indeterminate() -> None:
    trace = Trace()
    call = trace.invoke("content.info")
    trace.complete_error(call, NotFound("content digest sha256:x", injected=True))
    open_call = trace.invoke("content.writer.commit")
    assert [e.call for e in trace.open_calls()] == [open_call]
    assert trace.close_open() == 1
    ends = [(e.outcome, e.injected, e.error) for e in trace.events if e.type == "complete"]
    assert ends == [
        ("NotFound", True, "content digest sha256:x: not found"),
        (INDETERMINATE, False, None),
    ]
    with pytest.raises(SimUsageError, match="not open"):
        trace.complete(call)


def test_arguments_without_a_deterministic_form_are_refused() -> None:
    assert canonical({"s": frozenset({"b", "a"}), "b": b"xyz"}) == {
        "s": ["a", "b"],
        "b": "<3 bytes>",
    }
    with pytest.raises(SimUsageError, match="no deterministic JSON form"):
        Trace().invoke("op", {"x": object()})
    with pytest.raises(SimUsageError, match="finite"):
        canonical(float("nan"))
    with pytest.raises(SimUsageError, match="unknown fields"):
        Trace.from_jsonl('{"seq": 0, "bogus": 1}')
