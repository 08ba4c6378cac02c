"""A chooser that takes every decision from Hypothesis, so a schedule shrinks with the test.

Kept apart from the rest of ``unpacksim.sim`` so that ``import unpacksim.sim`` does not need
Hypothesis.  Use it inside a ``@given(st.data())`` test::

    @given(st.data())
    def test_no_lost_update(data):
        env = Environment(HypothesisChooser(data))
        ...

Every decision is ``data.draw(st.integers(0, n - 1))``; Hypothesis shrinks integers toward 0,
and 0 is FIFO (and "no fault"), so a failing schedule shrinks toward the fewest non-FIFO
choices.  ``chooser.schedule`` is the schedule string that
:class:`~unpacksim.sim.choose.ReplayChooser` replays without Hypothesis.
"""

from __future__ import annotations

from hypothesis import strategies as st
from hypothesis.strategies import DataObject, SearchStrategy

from unpacksim.sim.choose import BaseChooser
from unpacksim.sim.errors import SimUsageError

__all__ = ["HypothesisChooser"]


class HypothesisChooser(BaseChooser):
    """Draws each decision from a Hypothesis ``data`` object (``st.data()``).

    After ``max_decisions`` decisions it answers 0 (FIFO) without drawing, which keeps test
    cases small for long runs; None means no limit.  ``label`` names the draws in Hypothesis's
    falsifying-example output (``kind`` is appended).
    """

    def __init__(
        self, data: DataObject, *, max_decisions: int | None = None, label: str = "choice"
    ) -> None:
        super().__init__()
        if not hasattr(data, "draw"):
            raise SimUsageError(
                f"HypothesisChooser needs the object that st.data() gives a test, got {data!r}"
            )
        self.data = data
        self.max_decisions = max_decisions
        self.label = label
        self._strategies: dict[int, SearchStrategy[int]] = {}

    def _pick(self, n: int, kind: str) -> int:
        if self.max_decisions is not None and self.decisions >= self.max_decisions:
            return 0
        strategy = self._strategies.get(n)
        if strategy is None:
            strategy = self._strategies[n] = st.integers(0, n - 1)
        value: int = self.data.draw(strategy, label=f"{self.label} {self.decisions} ({kind})")
        return value
