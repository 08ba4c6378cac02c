"""The trace: a history of invoke and complete events, with a canonical JSON Lines form.

Every simulated service call (:meth:`unpacksim.sim.services.Services.call`) appends an
``invoke`` event when it starts and a ``complete`` event when it ends; every fault a plan fires
appends a ``fault`` event.  Each event carries the process, the simulated time, the operation,
its arguments and, for ``complete``, the outcome:

- ``"ok"``;
- the errdefs class name (``"NotFound"``, ``"AlreadyExists"``, ...; ``"other"`` for an
  exception that is not an errdefs error), with the message in ``error``;
- ``"indeterminate"``: the call never completed (the run ended while it was in flight).

``injected`` is true when a fault site produced the error.  The canonical form is one JSON
object per line, keys sorted, no insignificant whitespace; :meth:`Trace.sha256` hashes it.  The
same program, chooser and seed give the same bytes (``tests/sim/test_determinism.py``).
"""

from __future__ import annotations

import dataclasses
import enum
import hashlib
import json
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from unpacksim.model.errdefs import error_class
from unpacksim.sim.errors import SimUsageError

__all__ = [
    "INDETERMINATE",
    "Divergence",
    "Trace",
    "TraceEvent",
    "canonical",
    "first_divergence",
]

INDETERMINATE = "indeterminate"
_EVENT_TYPES = ("invoke", "complete", "fault")

JSON = Any  # str, int, float, bool, None, list of JSON, dict of str to JSON


def canonical(value: object, *, where: str = "argument") -> JSON:
    """``value`` as plain JSON data, deterministically.

    Dataclasses become dicts of their fields, enums their value, tuples and lists lists,
    sets and frozensets sorted lists, bytes a ``"<n bytes>"`` summary.

    Raises:
        SimUsageError: ``value`` (or something inside it) has no deterministic JSON form.
    """
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        if value != value or value in (float("inf"), float("-inf")):
            raise SimUsageError(f"trace {where} {value!r} is not a finite number")
        return value
    if isinstance(value, enum.Enum):
        return canonical(value.value, where=where)
    if isinstance(value, Mapping):
        return {str(k): canonical(v, where=where) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [canonical(v, where=where) for v in value]
    if isinstance(value, set | frozenset):
        return sorted((canonical(v, where=where) for v in value), key=_sort_key)
    if isinstance(value, bytes | bytearray):
        return f"<{len(value)} bytes>"
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {
            f.name: canonical(getattr(value, f.name), where=where)
            for f in dataclasses.fields(value)
        }
    raise SimUsageError(
        f"trace {where} {value!r} of type {type(value).__name__} has no deterministic JSON "
        "form; pass strings, numbers, booleans, None, lists, dicts or dataclasses of those"
    )


def _sort_key(value: JSON) -> str:
    return json.dumps(value, sort_keys=True)


@dataclass(frozen=True)
class TraceEvent:
    """One event of the trace.

    ``seq`` numbers events from 0; ``call`` pairs an invoke with its complete (a fault carries
    the call it fired in, 0 if none); ``type`` is ``invoke``, ``complete`` or ``fault``.
    """

    seq: int
    type: str
    call: int
    process: str
    time: float
    op: str
    args: dict[str, JSON]
    outcome: str | None = None
    injected: bool = False
    error: str | None = None

    def to_json(self) -> dict[str, JSON]:
        return dataclasses.asdict(self)

    def line(self) -> str:
        """The canonical JSON line (no newline)."""
        return json.dumps(self.to_json(), sort_keys=True, separators=(",", ":"), ensure_ascii=False)

    @classmethod
    def from_json(cls, data: Mapping[str, JSON]) -> TraceEvent:
        names = [f.name for f in dataclasses.fields(cls)]
        missing = [n for n in names if n not in data]
        extra = sorted(set(data) - set(names))
        if missing or extra:
            raise SimUsageError(
                f"not a trace event: missing fields {missing}, unknown fields {extra}"
            )
        return cls(**{n: data[n] for n in names})


class Trace:
    """The run's history.  ``now`` and ``process`` tell the time and the acting process."""

    def __init__(
        self,
        now: Callable[[], float] = lambda: 0.0,
        process: Callable[[], str] = lambda: "main",
    ) -> None:
        self.events: list[TraceEvent] = []
        self._now = now
        self._process = process
        self._open: dict[int, TraceEvent] = {}
        self._calls = 0
        self._current: dict[str, int] = {}  # process -> its innermost open call

    def __len__(self) -> int:
        return len(self.events)

    def _add(self, **fields: Any) -> TraceEvent:
        event = TraceEvent(seq=len(self.events), **fields)
        self.events.append(event)
        return event

    def invoke(self, op: str, args: Mapping[str, object] | None = None) -> int:
        """Record the start of ``op``; returns the call id to complete it with."""
        data = canonical(dict(args or {}), where=f"argument of {op}")
        self._calls += 1
        call = self._calls
        process = self._process()
        event = self._add(
            type="invoke", call=call, process=process, time=self._now(), op=op, args=data
        )
        self._open[call] = event
        self._current[process] = call
        return call

    def complete(
        self, call: int, outcome: str = "ok", *, injected: bool = False, error: str | None = None
    ) -> None:
        """Record the end of call ``call`` with ``outcome``."""
        invoke = self._open.pop(call, None)
        if invoke is None:
            raise SimUsageError(f"trace call {call} is not open (completed twice, or unknown)")
        if self._current.get(invoke.process) == call:
            del self._current[invoke.process]
        self._add(
            type="complete",
            call=call,
            process=self._process(),
            time=self._now(),
            op=invoke.op,
            args=invoke.args,
            outcome=outcome,
            injected=injected,
            error=error,
        )

    def complete_error(self, call: int, exc: BaseException) -> None:
        """Record that call ``call`` ended with ``exc`` (class, message, injected mark)."""
        injected = bool(getattr(exc, "injected", False))
        self.complete(call, error_class(exc), injected=injected, error=str(exc))

    def fault(self, site: str, key: str, outcome: str, *, error: str | None = None) -> None:
        """Record that fault site ``site`` fired for ``key`` (outcome: class or ``effect``)."""
        process = self._process()
        self._add(
            type="fault",
            call=self._current.get(process, 0),
            process=process,
            time=self._now(),
            op=site,
            args={"key": key},
            outcome=outcome,
            injected=True,
            error=error,
        )

    def is_open(self, call: int) -> bool:
        """Whether call ``call`` was invoked and has not completed."""
        return call in self._open

    def open_calls(self) -> list[TraceEvent]:
        """The invoke events of calls that have not completed, oldest first."""
        return list(self._open.values())

    def close_open(self) -> int:
        """Complete every open call as ``indeterminate`` (the run ended); returns how many."""
        calls = list(self._open)
        for call in calls:
            self.complete(call, INDETERMINATE)
        return len(calls)

    def lines(self) -> list[str]:
        return [event.line() for event in self.events]

    def jsonl(self) -> str:
        """The canonical JSON Lines form: one event per line, each line ending in newline."""
        return "".join(line + "\n" for line in self.lines())

    def sha256(self) -> str:
        """The SHA-256 (hex) of :meth:`jsonl`'s UTF-8 bytes."""
        return hashlib.sha256(self.jsonl().encode()).hexdigest()

    @classmethod
    def from_jsonl(cls, text: str) -> Trace:
        """Read a trace back from its JSON Lines form.

        Raises:
            SimUsageError: a line is not a trace event.
        """
        trace = cls()
        for number, line in enumerate(text.splitlines(), start=1):
            if line.strip():
                try:
                    data = json.loads(line)
                except json.JSONDecodeError as exc:
                    raise SimUsageError(f"trace line {number} is not JSON: {exc}") from None
                trace.events.append(TraceEvent.from_json(data))
        return trace


@dataclass(frozen=True)
class Divergence:
    """Where two traces first differ: the event index and each side's line (None: ended)."""

    index: int
    left: str | None
    right: str | None

    def describe(self) -> str:
        return (
            f"traces diverge at event {self.index}:\n"
            f"  left:  {self.left if self.left is not None else '<trace ended>'}\n"
            f"  right: {self.right if self.right is not None else '<trace ended>'}"
        )


def _as_lines(trace: Trace | str | Iterable[str]) -> list[str]:
    if isinstance(trace, Trace):
        return trace.lines()
    if isinstance(trace, str):
        return trace.splitlines()
    return list(trace)


def first_divergence(
    left: Trace | str | Iterable[str], right: Trace | str | Iterable[str]
) -> Divergence | None:
    """The first event at which two traces (or their JSON Lines) differ; None if identical."""
    a, b = _as_lines(left), _as_lines(right)
    for index in range(max(len(a), len(b))):
        x = a[index] if index < len(a) else None
        y = b[index] if index < len(b) else None
        if x != y:
            return Divergence(index, x, y)
    return None
