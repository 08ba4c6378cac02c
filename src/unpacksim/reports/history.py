"""The history of a run as report data: trace events, and the calls they pair into.

Standard library only (a part of :mod:`unpacksim.reports.records`, which re-exports it).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Literal, Self, TypeAlias

from unpacksim.reports.jsonform import Fields, JSONObject, field_names, json_object, require

__all__ = ["Call", "TraceEvent", "TraceKind", "pair_calls"]


TraceKind: TypeAlias = Literal["invoke", "complete", "fault"]
_KINDS: tuple[str, ...] = ("invoke", "complete", "fault")


@dataclass(frozen=True)
class TraceEvent:
    """One event of the history: a call starts or ends, or a fault site fires.

    This is the simulator's trace event (``unpacksim.sim.trace.TraceEvent``) as report data:
    its ``type`` is ``kind`` here and its ``error`` is ``message`` ("" for None).

    Attributes:
        seq: the event's position in the history (strictly increasing).
        time: simulated time in seconds (never decreasing).
        process: the process (actor or goroutine) the event happened in (``pull-1/fetch``).
        kind: ``invoke`` (a call starts), ``complete`` (it ends) or ``fault`` (a fault site
            fired; ``op`` is the site, ``outcome`` the errdefs class or effect it produced).
        call: the call id pairing an invoke with its complete (1, 2, ... unique per invoke);
            a fault carries the call it fired in, 0 when it fired outside any call.
        op: the operation (``snapshots.prepare``, ``content.writer.commit``, ``gc.mark``) or,
            for a fault, the fault site.
        args: the operation's arguments as JSON data.
        outcome: None on an invoke; on a complete ``ok``, an errdefs class name
            (``NotFound``), ``other`` for a non-errdefs error, or ``indeterminate`` when the
            call never finished (the run ended while it was in flight); on a fault, what the
            site produced.
        injected: the outcome came from a fault site, not from the implementation.
        message: the error's text (containerd's message, e.g. ``snapshot "x": already
            exists``); empty when there is none.
    """

    seq: int
    time: float
    process: str
    kind: TraceKind
    call: int
    op: str
    args: JSONObject = field(default_factory=dict)
    outcome: str | None = None
    injected: bool = False
    message: str = ""

    def __post_init__(self) -> None:
        rec = "TraceEvent"
        require(self.seq >= 0, rec, "seq", f"must not be negative, got {self.seq}")
        require(math.isfinite(self.time) and self.time >= 0, rec, "time", "must be >= 0")
        require(bool(self.process), rec, "process", "must not be empty")
        require(bool(self.op), rec, "op", "must not be empty")
        kinds = "'invoke', 'complete' or 'fault'"
        require(self.kind in _KINDS, rec, "kind", f"must be {kinds}, got {self.kind!r}")
        if self.kind == "invoke":
            require(self.outcome is None, rec, "outcome", "an invoke has no outcome: use None")
            require(not self.injected, rec, "injected", "an invoke cannot be injected")
        else:
            require(bool(self.outcome), rec, "outcome", f"a {self.kind} needs an outcome")
        least = 0 if self.kind == "fault" else 1
        require(self.call >= least, rec, "call", f"must be >= {least} for a {self.kind}")
        object.__setattr__(self, "args", json_object(self.args, "args"))

    @classmethod
    def from_json(cls, data: object, path: str) -> Self:
        f = Fields(data, path, field_names(cls))
        return f.build(
            cls,
            seq=f.integer("seq"),
            time=f.number("time"),
            process=f.text("process"),
            kind=f.text("kind"),
            call=f.integer("call"),
            op=f.text("op"),
            args=f.obj("args"),
            outcome=f.opt_text("outcome"),
            injected=f.flag("injected"),
            message=f.text("message"),
        )


@dataclass(frozen=True)
class Call:
    """An invoke paired with its complete (derived from a trace by :func:`pair_calls`).

    ``process`` is the invoking process.  ``end``, ``outcome`` and ``complete_seq`` are None
    when the history ends with the call still open; renderers show it as indeterminate.
    """

    call: int
    process: str
    op: str
    args: JSONObject
    start: float
    invoke_seq: int
    end: float | None = None
    outcome: str | None = None
    injected: bool = False
    message: str = ""
    complete_seq: int | None = None


def pair_calls(trace: tuple[TraceEvent, ...]) -> tuple[Call, ...]:
    """Pair each invoke with its complete by call id, in invoke order.

    Raises:
        RecordError: the history is malformed: seq or time out of order, a call id invoked
            twice, a complete of a call that is not open or of another op, a fault naming a
            call never invoked (the field is named relative to the trace: ``[3].call``).
    """
    index: dict[int, int] = {}  # call id -> position in calls
    calls: list[Call] = []
    for i, event in enumerate(trace):
        where = f"[{i}]"
        if i:
            before = trace[i - 1]
            require(event.seq > before.seq, "", f"{where}.seq", "seq must increase")
            require(event.time >= before.time, "", f"{where}.time", "time went backwards")
        if event.kind == "invoke":
            require(event.call not in index, "", f"{where}.call", f"call {event.call} reused")
            index[event.call] = len(calls)
            calls.append(
                Call(event.call, event.process, event.op, event.args, event.time, event.seq)
            )
        elif event.kind == "fault":
            known = event.call == 0 or event.call in index
            require(known, "", f"{where}.call", f"call {event.call} was never invoked")
        else:
            position = _open_call(calls, index, event, where)
            calls[position] = dataclasses.replace(
                calls[position],
                end=event.time,
                outcome=event.outcome,
                injected=event.injected,
                message=event.message,
                complete_seq=event.seq,
            )
    return tuple(calls)


def _open_call(calls: list[Call], index: dict[int, int], event: TraceEvent, where: str) -> int:
    """The position of the open call ``event`` completes."""
    position = index.get(event.call)
    opened = position is not None and calls[position].complete_seq is None
    require(opened, "", f"{where}.call", f"complete of call {event.call}, which is not open")
    assert position is not None
    op = calls[position].op
    require(
        op == event.op, "", f"{where}.op", f"call {event.call} invoked {op!r}, not {event.op!r}"
    )
    return position
