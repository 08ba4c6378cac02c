"""Run every benchmark module in this package and print its report.

Each benchmark module exposes ``run(quick: bool) -> str``; ``--quick`` runs small sizes only
(used by the test that keeps the benchmarks runnable).  ``--only NAME`` runs one module.
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import platform
import sys
from collections.abc import Sequence

import benchmarks


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks")
    parser.add_argument("--quick", action="store_true", help="small sizes only")
    parser.add_argument("--only", help="run only the benchmark module of this name")
    args = parser.parse_args(argv)
    names = sorted(
        info.name
        for info in pkgutil.iter_modules(benchmarks.__path__)
        if info.name.startswith("bench_")
    )
    if args.only:
        if args.only not in names:
            parser.error(f"no benchmark {args.only!r}; choose from {', '.join(names)}")
        names = [args.only]
    print(f"# machine: {platform.machine()}, Python {platform.python_version()}")
    for name in names:
        module = importlib.import_module(f"benchmarks.{name}")
        print(f"## {name}")
        print(module.run(args.quick))
        sys.stdout.flush()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
