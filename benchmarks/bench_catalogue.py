"""Time to first finding for each race of the catalogue, over several seeds.

For every catalogue entry the explorer searches the entry's workloads with the configuration
that has the race, seeds 0..n-1, each within the entry's example budget, and stops at the
first finding.  Reported per entry: how many seeds found it, the median and the worst wall
time to the first finding (search and shrinking; the finding kept in memory, not written)
and the median number of runs; then the same search (seed 0, the whole budget) with the
configuration without the race, which must find nothing.  One core: the searches run one
after another.
"""

from __future__ import annotations

import statistics
import time

from unpacksim.properties.catalogue import CATALOGUE, CatalogueEntry
from unpacksim.properties.explore import Budget, explore, search_for

SEEDS = 10
QUICK_SEEDS = 2
TARGET_SECONDS = 10.0


def _first_finding(entry: CatalogueEntry, seed: int) -> tuple[float | None, int]:
    result = explore(search_for(entry), seed=seed, budget=Budget(examples=entry.budget))
    if not result.findings:
        return None, result.runs
    first = result.findings[0]
    return first.seconds, first.runs


def _without(entry: CatalogueEntry) -> str:
    start = time.perf_counter()
    result = explore(search_for(entry, fixed=True), budget=Budget(examples=entry.budget))
    seconds = time.perf_counter() - start
    verdict = "FOUND" if result.found else "nothing"
    return f"{entry.without_race.describe()}: {verdict} in {result.runs} runs, {seconds:.1f} s"


def run(quick: bool) -> str:
    """The Markdown table of the catalogue benchmark (``quick``: two seeds only)."""
    seeds = QUICK_SEEDS if quick else SEEDS
    lines = [
        f"| entry | budget | found (of {seeds} seeds) | median time to first finding | worst "
        "| median runs | within 10 s | without the race (seed 0, whole budget) |",
        "| --- | ---: | ---: | ---: | ---: | ---: | --- | --- |",
    ]
    for entry in CATALOGUE:
        samples = [_first_finding(entry, seed) for seed in range(seeds)]
        times = [t for t, _ in samples if t is not None]
        runs = [r for t, r in samples if t is not None]
        head = f"| {entry.name} | {entry.budget} | {len(times)} |"
        if times:
            median = statistics.median(times)
            ok = "yes" if median <= TARGET_SECONDS and len(times) == seeds else "no"
            head += f" {median:.2f} s | {max(times):.2f} s | {statistics.median(runs):.0f} | {ok} |"
        else:
            head += " - | - | - | no |"
        lines.append(f"{head} {_without(entry)} |")
    return "\n".join(lines)


if __name__ == "__main__":
    print(run(quick=False))
