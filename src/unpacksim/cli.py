"""The ``unpacksim`` command line."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from unpacksim import __version__


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="unpacksim",
        description="Simulation and property testing of containerd's image-unpack semantics.",
    )
    parser.add_argument("--version", action="version", version=f"unpacksim {__version__}")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    parser.parse_args(argv)
    parser.print_help(sys.stdout)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
