"""SimPy runtime: controlled scheduling, contexts, Go-like primitives, timed services, faults, traces.

Modules (``import unpacksim.sim`` needs SimPy but not Hypothesis):

- :mod:`~unpacksim.sim.env`: :class:`Environment`, whose same-instant events are ordered by a
  chooser;
- :mod:`~unpacksim.sim.choose`: the choosers (FIFO, random, PCT, replay) and schedule strings;
  :mod:`~unpacksim.sim.hypothesis_chooser` holds the Hypothesis-driven one;
- :mod:`~unpacksim.sim.context`: Go's context (namespace, lease, cancellation, deadline);
- :mod:`~unpacksim.sim.go` and :mod:`~unpacksim.sim.chan`: goroutines, errgroup, semaphore,
  mutexes, wait group, channels and select;
- :mod:`~unpacksim.sim.services`: a model operation as a timed, traced, fault-checked call;
- :mod:`~unpacksim.sim.faults`: fault sites and plans; :mod:`~unpacksim.sim.trace`: the
  trace; :mod:`~unpacksim.sim.run`: running to a named outcome, determinism checks.
"""

from unpacksim.sim.choose import (
    Chooser,
    FifoChooser,
    PCTChooser,
    RandomChooser,
    ReplayChooser,
)
from unpacksim.sim.context import Context, background
from unpacksim.sim.env import Environment
from unpacksim.sim.faults import FaultPlan, Rule
from unpacksim.sim.run import RunOutcome, run
from unpacksim.sim.services import LatencyModel, Services
from unpacksim.sim.trace import Trace

__all__ = [
    "Chooser",
    "Context",
    "Environment",
    "FaultPlan",
    "FifoChooser",
    "LatencyModel",
    "PCTChooser",
    "RandomChooser",
    "ReplayChooser",
    "Rule",
    "RunOutcome",
    "Services",
    "Trace",
    "background",
    "run",
]
