"""Conformance suites as public functions (containerd's ``SnapshotterSuite`` and ``ContentSuite``).

A suite is a mapping from check name to a function that takes a fresh implementation (made by
the caller's factory) and raises :class:`ConformanceFailure` when the implementation breaks the
contract.  :func:`run_suite` runs every check against a fresh implementation and returns one
:class:`CheckResult` per check, so anyone with another implementation can run the same checks,
in pytest or anywhere else.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TypeVar

__all__ = ["CheckResult", "ConformanceFailure", "require", "run_suite"]

T = TypeVar("T")


class ConformanceFailure(AssertionError):
    """An implementation broke a contract; the message says which and how."""


@dataclass(frozen=True)
class CheckResult:
    """The outcome of one check: ``error`` is "" when it passed."""

    name: str
    passed: bool
    error: str = ""


def require(condition: bool, message: str) -> None:
    """Raise :class:`ConformanceFailure` with ``message`` unless ``condition`` holds."""
    if not condition:
        raise ConformanceFailure(message)


def run_suite(
    checks: Mapping[str, Callable[[T], None]],
    factory: Callable[[], T],
    *,
    only: Callable[[str], bool] | None = None,
) -> list[CheckResult]:
    """Run each check (optionally only those ``only`` accepts) on a fresh ``factory()``.

    Any exception other than :class:`ConformanceFailure` also fails the check: an
    implementation that raises the wrong error class breaks the contract too.
    """
    results: list[CheckResult] = []
    for name, check in checks.items():
        if only is not None and not only(name):
            continue
        try:
            check(factory())
        except ConformanceFailure as exc:
            results.append(CheckResult(name, False, str(exc)))
        except Exception as exc:  # the implementation under test raised something unexpected
            results.append(CheckResult(name, False, f"{type(exc).__name__}: {exc}"))
        else:
            results.append(CheckResult(name, True))
    return results
