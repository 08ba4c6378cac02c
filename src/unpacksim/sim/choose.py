"""Choosers: who decides what happens next when more than one thing could.

The environment asks its chooser whenever more than one event is ready at the same instant
(``kind="event"``); :func:`~unpacksim.sim.go.select` asks it when more than one case is ready
(``kind="select"``); latency models and fault plans ask it for their values
(``kind="latency:<op>"``, ``kind="fault.fire:<site>"``, ...).  Every answer is an index in
``range(n)`` and **index 0 is always the first-in-first-out, or "nothing special", answer**,
so a Hypothesis-driven chooser that shrinks its draws toward 0 shrinks a schedule toward FIFO
and a fault plan toward no faults.

Schedule strings
----------------
Every chooser here records its non-zero answers as a compact schedule string that
:class:`ReplayChooser` replays exactly.  Grammar::

    schedule := ""                          (every decision was 0: plain FIFO)
              | entry ("," entry)*
    entry    := decision ":" choice
    decision := digits                      (0-based index of the decision)
    choice   := digits, not 0               (the index picked at that decision)

Decisions are numbered from 0 in the order the chooser is asked, counting only questions with
more than one option (``choose(1, ...)`` is answered 0 without counting).  Decision numbers
must increase strictly.  ``"3:1,7:2"`` means: at decision 3 pick 1, at decision 7 pick 2,
everywhere else pick 0.  No whitespace inside.
"""

from __future__ import annotations

import random
from abc import ABC, abstractmethod
from array import array
from collections.abc import Sequence
from typing import Protocol, TypeVar, runtime_checkable

from unpacksim.sim.errors import ScheduleError, SimUsageError

__all__ = [
    "BaseChooser",
    "Chooser",
    "FifoChooser",
    "PCTChooser",
    "RandomChooser",
    "ReplayChooser",
    "choose_int",
    "choose_value",
    "format_schedule",
    "parse_schedule",
]

T = TypeVar("T")


@runtime_checkable
class Chooser(Protocol):
    """Picks one of ``n`` options; 0 is FIFO.  Records its non-zero picks as a schedule."""

    def choose(self, n: int, kind: str) -> int:
        """An index in ``range(n)``; ``kind`` says what is being decided (for logs and PCT)."""
        ...

    @property
    def schedule(self) -> str:
        """The non-FIFO decisions made so far, in the grammar of this module."""
        ...

    @property
    def decisions(self) -> int:
        """How many questions with more than one option were answered so far."""
        ...


def choose_value(chooser: Chooser, values: Sequence[T], kind: str) -> T:
    """One of ``values`` through ``chooser``; the first value is the FIFO (shrunk) answer."""
    if not values:
        raise SimUsageError(f"choose_value({kind!r}) needs at least one value, got none")
    if len(values) == 1:
        return values[0]
    return values[chooser.choose(len(values), kind)]


def choose_int(chooser: Chooser, low: int, high: int, kind: str) -> int:
    """An integer in ``[low, high]`` through ``chooser``; ``low`` is the shrunk answer."""
    if high < low:
        raise SimUsageError(f"choose_int({kind!r}): empty range [{low}, {high}]")
    if high == low:
        return low
    return low + chooser.choose(high - low + 1, kind)


def format_schedule(picks: Sequence[tuple[int, int]]) -> str:
    """The schedule string of ``(decision, choice)`` pairs (choices of 0 are left out)."""
    return ",".join(f"{d}:{c}" for d, c in picks if c)


def parse_schedule(schedule: str) -> dict[int, int]:
    """Parse a schedule string into ``{decision: choice}``.

    Raises:
        ScheduleError: the string does not follow the grammar (the message says where).
    """
    text = schedule.strip()
    picks: dict[int, int] = {}
    if not text:
        return picks
    last = -1
    for position, entry in enumerate(text.split(",")):
        decision_text, sep, choice_text = entry.partition(":")
        if not (sep and decision_text.isdigit() and choice_text.isdigit()):
            raise ScheduleError(
                f"malformed schedule {schedule!r}: entry {position} is {entry!r}; "
                "expected '<decision>:<choice>' with decimal numbers, e.g. '3:1,7:2'"
            )
        decision, choice = int(decision_text), int(choice_text)
        if choice == 0:
            raise ScheduleError(
                f"malformed schedule {schedule!r}: entry {entry!r} picks 0; FIFO picks are "
                "never written, leave the entry out"
            )
        if decision <= last:
            raise ScheduleError(
                f"malformed schedule {schedule!r}: decision {decision} does not come after "
                f"decision {last}; decisions must increase strictly"
            )
        picks[decision] = choice
        last = decision
    return picks


class BaseChooser(ABC):
    """Counting, validation and schedule recording shared by the choosers.

    Subclasses implement :meth:`_pick`.  ``decisions`` counts the questions with more than one
    option asked so far.
    """

    def __init__(self) -> None:
        # One entry per decision: the index picked (compact, and cheap on the hot path).
        self._choices = array("I")
        self._log = self._choices.append

    @property
    def decisions(self) -> int:
        """How many questions with more than one option were answered so far."""
        return len(self._choices)

    def choose(self, n: int, kind: str = "") -> int:
        """An index in ``range(n)`` (0 = FIFO); ``n == 1`` is answered 0 and not counted."""
        if n <= 1:
            if n == 1:
                return 0
            raise SimUsageError(f"choose({n}, {kind!r}): there must be at least one option")
        i = self._pick(n, kind)
        self._record(n, i, kind)
        return i

    def choose_owner(self, owners: Sequence[str], kind: str = "event") -> int:
        """Like :meth:`choose` over ``len(owners)`` options, each run by the named process.

        The environment calls this for same-instant events so that :class:`PCTChooser` can
        prioritise processes; other choosers ignore the names.
        """
        n = len(owners)
        if n <= 1:
            return self.choose(n, kind)
        i = self._pick_owner(owners, kind)
        self._record(n, i, kind)
        return i

    def _record(self, n: int, i: int, kind: str) -> None:
        if not 0 <= i < n:
            raise SimUsageError(
                f"{type(self).__name__} answered {i} to a question with {n} options ({kind})"
            )
        self._log(i)

    @abstractmethod
    def _pick(self, n: int, kind: str) -> int:
        """The index (in ``range(n)``) this chooser picks for a question of ``kind``."""

    def _pick_owner(self, owners: Sequence[str], kind: str) -> int:
        return self._pick(len(owners), kind)

    @property
    def schedule(self) -> str:
        """The non-FIFO decisions so far (see the module's grammar)."""
        return format_schedule([(d, c) for d, c in enumerate(self._choices) if c])

    @property
    def non_fifo(self) -> int:
        """How many decisions so far picked something other than 0."""
        return sum(1 for c in self._choices if c)


class FifoChooser(BaseChooser):
    """Always 0: SimPy's own first-in-first-out order.  Its schedule is always ``""``."""

    def choose(self, n: int, kind: str = "") -> int:
        if n <= 1:
            return super().choose(n, kind)
        self._log(0)
        return 0

    def _pick(self, n: int, kind: str) -> int:
        return 0


class RandomChooser(BaseChooser):
    """Uniform choices from ``random.Random(seed)``: the same seed, the same run."""

    def __init__(self, seed: int) -> None:
        super().__init__()
        self.seed = seed
        self._random = random.Random(seed).random

    def choose(self, n: int, kind: str = "") -> int:
        # BaseChooser.choose inlined: this runs at almost every step of a busy simulation.
        if n <= 1:
            return super().choose(n, kind)
        i = int(self._random() * n)
        self._log(i)
        return i

    def _pick(self, n: int, kind: str) -> int:
        return int(self._random() * n)


class PCTChooser(BaseChooser):
    """Probabilistic concurrency testing (Burckhardt, Kothari, Musuvathi, Nagarakatte:
    "A Randomized Scheduler with Probabilistic Guarantees of Finding Bugs", ASPLOS 2010).

    Each process gets a random priority when it is first seen (inserted at a random place in
    the priority order, all above the change-point priorities); at every same-instant decision
    the ready event of the highest-priority process runs.  ``depth - 1`` change points are
    drawn uniformly from the decisions ``0 .. max_steps - 1``; at the ``j``-th change point the
    process that would run next drops to priority ``depth - j`` (below every initial priority)
    before the choice is made, which preempts it.

    The bound it states: for a program with at most ``n`` processes and at most ``k =
    max_steps`` scheduling decisions, a bug of depth ``d`` (one needing ``d`` ordering
    constraints between events) is found in one run with probability at least
    ``1 / (n * k**(d - 1))`` (:meth:`bound`).  A "step" here is a scheduling decision, that is
    a point where more than one process is ready at the same instant; instants with one ready
    process do not count towards ``k``.  Questions that are not about processes (``select``
    cases, latencies, faults) are answered uniformly from the same seeded generator.
    """

    wants_owners = True

    def __init__(self, seed: int, depth: int, max_steps: int) -> None:
        super().__init__()
        if depth < 1:
            raise SimUsageError(f"PCTChooser(depth={depth}): depth must be at least 1")
        if max_steps < 1:
            raise SimUsageError(f"PCTChooser(max_steps={max_steps}): must be at least 1")
        self.seed, self.depth, self.max_steps = seed, depth, max_steps
        self._rng = random.Random(seed)
        points = self._rng.sample(range(max_steps), min(depth - 1, max_steps))
        # Change point decision -> j (1-based), so the process drops to priority depth - j.
        self._change: dict[int, int] = {p: j for j, p in enumerate(sorted(points), start=1)}
        self._priority: dict[str, float] = {}
        self._order: list[str] = []  # highest priority first, for placing newcomers
        self._steps = 0

    def bound(self, processes: int) -> float:
        """The stated lower bound ``1/(n*k^(d-1))`` of finding a depth-``d`` bug in one run."""
        return 1.0 / (max(processes, 1) * float(self.max_steps) ** (self.depth - 1))

    def _pick(self, n: int, kind: str) -> int:
        return self._rng.randrange(n)

    def _pick_owner(self, owners: Sequence[str], kind: str) -> int:
        for owner in owners:
            if owner not in self._priority:
                self._admit(owner)
        best = self._best(owners)
        j = self._change.get(self._steps)
        self._steps += 1
        if j is not None:
            self._demote(owners[best], j)
            best = self._best(owners)
        return best

    def _admit(self, owner: str) -> None:
        # A random place among the undemoted processes; their priorities stay above depth.
        self._order.insert(self._rng.randrange(len(self._order) + 1), owner)
        top = self.depth + len(self._order)
        for rank, name in enumerate(self._order):
            self._priority[name] = float(top - rank)

    def _demote(self, owner: str, j: int) -> None:
        self._priority[owner] = float(self.depth - j)
        if owner in self._order:
            self._order.remove(owner)

    def _best(self, owners: Sequence[str]) -> int:
        best = 0
        for i in range(1, len(owners)):
            if self._priority[owners[i]] > self._priority[owners[best]]:
                best = i
        return best


class ReplayChooser(BaseChooser):
    """Replays a schedule string exactly: the recorded pick at its decision, 0 elsewhere.

    Raises:
        ScheduleError: at construction if the string is malformed; during the run if a
            recorded pick does not fit the options offered at its decision (the program is
            not the one that recorded the schedule).
    """

    def __init__(self, schedule: str) -> None:
        super().__init__()
        self.source = schedule
        self._todo = parse_schedule(schedule)

    def _pick(self, n: int, kind: str) -> int:
        choice = self._todo.pop(self.decisions, 0)
        if choice >= n:
            raise ScheduleError(
                f"schedule {self.source!r} picks {choice} at decision {self.decisions} "
                f"({kind}), but only {n} options are offered there: the schedule was recorded "
                "on a different program, seed or configuration"
            )
        return choice

    @property
    def unused(self) -> str:
        """The part of the schedule not reached (yet); ``""`` once it has all been replayed."""
        return format_schedule(sorted(self._todo.items()))
