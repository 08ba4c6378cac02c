"""The ``unpacksim`` command line.

Exit codes, the same for every subcommand (:class:`ExitCode`):

- 0: ok; nothing found (or a replay that no longer reproduces);
- 1: a finding was found or reproduced;
- 2: bad usage or bad input (an unknown option, a missing or corrupt finding file).

Expected errors (bad usage, bad input) become one line on stderr, ``unpacksim <command>:
error: <what is wrong>``, in one place, :func:`main`; anything else is a bug and keeps its
traceback.  A subcommand is a function that adds its parser to the subparsers and sets
``handler``; add it to :data:`COMMANDS`, raise :class:`UsageError` (or add your error class to
:data:`EXPECTED_ERRORS`) for bad input, and return an :class:`ExitCode`.
"""

from __future__ import annotations

import argparse
import enum
import os
import sys
from collections.abc import Callable, Sequence
from typing import NoReturn

from unpacksim import __version__
from unpacksim.reports.formats import FORMATS, GRAPH_FORMATS, render
from unpacksim.reports.io import ReportFileError, load_finding, write_text_atomic
from unpacksim.reports.records import dumps

__all__ = [
    "COMMANDS",
    "EXPECTED_ERRORS",
    "CommandParser",
    "ExitCode",
    "UsageError",
    "add_report_command",
    "build_parser",
    "main",
]

PROG = "unpacksim"


class ExitCode(enum.IntEnum):
    """The exit codes of every ``unpacksim`` command."""

    OK = 0
    FOUND = 1
    USAGE = 2


class UsageError(Exception):
    """Bad usage or bad input: :func:`main` prints the message on one line and exits 2.

    ``prog`` names the command the message is about (``unpacksim report``); None lets
    :func:`main` name the command being run.
    """

    def __init__(self, message: str, *, prog: str | None = None) -> None:
        self.prog = prog
        super().__init__(message)


class CommandParser(argparse.ArgumentParser):
    """argparse, except that an error is a :class:`UsageError` (one line, exit 2, one place)."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{message} (see '{self.prog} --help')", prog=self.prog)


Handler = Callable[[argparse.Namespace], int]


def _write_output(text: str, output: str | None) -> None:
    """``text`` to ``output`` (written atomically) or to stdout as UTF-8."""
    if output is not None:
        write_text_atomic(output, text)
        return
    stream = getattr(sys.stdout, "buffer", None)
    if stream is None:
        sys.stdout.write(text)
        return
    # Reports are UTF-8 whatever the locale says (the HTML declares it).
    sys.stdout.flush()
    stream.write(text.encode("utf-8"))
    stream.flush()


# --- unpacksim report ------------------------------------------------------------------------


def _report(args: argparse.Namespace) -> int:
    if args.graph is not None and (args.json or args.format not in GRAPH_FORMATS):
        raise UsageError(f"--graph applies to --format {' or '.join(GRAPH_FORMATS)} only")
    finding = load_finding(args.finding)
    text = dumps(finding) if args.json else render(finding, args.format, graph=args.graph or "both")
    _write_output(text, args.output)
    return ExitCode.OK


def add_report_command(subparsers: argparse._SubParsersAction[CommandParser]) -> None:
    """``unpacksim report FINDING [--format F | --json] [--graph G] [-o FILE]``."""
    parser = subparsers.add_parser(
        "report",
        help="render a finding file (HTML, Markdown, text, DOT, GraphML)",
        description="Render a finding file. Exit 0 when rendered, 2 when the file is missing, "
        "not JSON, of another schema version, or has a bad field.",
    )
    parser.add_argument("finding", metavar="FINDING", help="a finding JSON file")
    form = parser.add_mutually_exclusive_group()
    form.add_argument(
        "-f", "--format", choices=FORMATS, default="text", help="output format (default: text)"
    )
    form.add_argument(
        "--json", action="store_true", help="print the checked finding as canonical JSON"
    )
    parser.add_argument(
        "--graph",
        choices=("both", "before", "after"),
        help="for dot and graphml: which graph to draw (default: both)",
    )
    parser.add_argument(
        "-o", "--output", metavar="FILE", help="write to FILE (atomically) instead of stdout"
    )
    parser.set_defaults(handler=_report)


# --- the command line ------------------------------------------------------------------------

#: The functions that add each subcommand, in ``--help`` order.
COMMANDS: list[Callable[[argparse._SubParsersAction[CommandParser]], None]] = [add_report_command]

#: The errors :func:`main` turns into one line on stderr and exit code 2.
EXPECTED_ERRORS: tuple[type[Exception], ...] = (UsageError, ReportFileError)


def build_parser() -> argparse.ArgumentParser:
    """The ``unpacksim`` parser with every subcommand of :data:`COMMANDS`."""
    parser = CommandParser(
        prog=PROG,
        description="Simulation and property testing of containerd's image-unpack semantics.",
        epilog="Exit codes: 0 ok or nothing found, 1 found or reproduced, 2 bad usage or input.",
    )
    parser.add_argument("--version", action="version", version=f"{PROG} {__version__}")
    subparsers = parser.add_subparsers(
        dest="command", metavar="COMMAND", parser_class=CommandParser
    )
    for add in COMMANDS:
        add(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; return its exit code (see :class:`ExitCode`)."""
    parser = build_parser()
    prog = PROG
    try:
        args = parser.parse_args(argv)
        if args.command is None:
            raise UsageError(f"a command is required (see '{PROG} --help')")
        prog = f"{PROG} {args.command}"
        handler: Handler = args.handler
        return int(handler(args))
    except EXPECTED_ERRORS as err:
        print(f"{getattr(err, 'prog', None) or prog}: error: {err}", file=sys.stderr)
        return ExitCode.USAGE
    except BrokenPipeError:
        # The reader went away (``| head``): stop quietly; point stdout at nothing so the
        # interpreter's final flush does not fail again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return ExitCode.OK


if __name__ == "__main__":
    raise SystemExit(main())
