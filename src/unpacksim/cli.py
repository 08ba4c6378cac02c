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
import json
import os
import sys
import textwrap
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
    "add_faults_command",
    "add_presets_command",
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


# --- unpacksim presets, unpacksim faults -----------------------------------------------------


def _print_json(data: object) -> None:
    _write_output(json.dumps(data, indent=2, ensure_ascii=False) + "\n", None)


def _presets(args: argparse.Namespace) -> int:
    from unpacksim.unpack.eras import DEFAULT_PRESET, PRESETS
    from unpacksim.unpack.interface import resolve

    rows = []
    for name, era in PRESETS.items():
        impl = resolve(name)
        flags = {k: v for k, v in era.flags().items() if k != "name"}
        rows.append(
            {
                "name": name,
                "default": name == DEFAULT_PRESET,
                "description": impl.description,
                "flags": flags,
            }
        )
    if args.json:
        _print_json(rows)
        return ExitCode.OK
    lines = []
    for row in rows:
        mark = " (default)" if row["default"] else ""
        lines.append(f"{row['name']}{mark}: {row['description']}")
        flags = row["flags"]
        assert isinstance(flags, dict)
        text = ", ".join(f"{k}={_flag_text(v)}" for k, v in flags.items())
        lines += textwrap.wrap(text, 96, initial_indent="    ", subsequent_indent="    ")
    _write_output("\n".join(lines) + "\n", None)
    return ExitCode.OK


def _flag_text(value: object) -> str:
    return str(value).lower() if isinstance(value, bool) else str(value)


def add_presets_command(subparsers: argparse._SubParsersAction[CommandParser]) -> None:
    """``unpacksim presets [--json]``: the era presets and the flags each sets."""
    parser = subparsers.add_parser(
        "presets",
        help="list the era presets (registered implementations) and their flags",
        description="List the containerd era presets with the era flags each sets.",
    )
    parser.add_argument("--json", action="store_true", help="print JSON for machines")
    parser.set_defaults(handler=_presets)


def _faults(args: argparse.Namespace) -> int:
    from unpacksim.sim.faults import sites

    rows = []
    for site in sites():
        rows.append(
            {
                "name": site.name,
                "kind": "error" if site.is_error_site else "effect",
                "description": site.description,
                "errors": [{"class": c.__name__, "message": t} for c, t in site.errors],
                "effect": site.effect,
                "mirrors": site.mirrors,
            }
        )
    if args.json:
        _print_json(rows)
        return ExitCode.OK
    lines = []
    for row in rows:
        lines.append(f"{row['name']} ({row['kind']}): {row['description']}")
        for err in row["errors"]:
            assert isinstance(err, dict)
            lines.append(f"    raises {err['class']}: {err['message']}")
        if row["effect"]:
            lines.append(f"    effect: {row['effect']}")
        if row["mirrors"]:
            lines.append(f"    mirrors: {row['mirrors']}")
    _write_output("\n".join(lines) + "\n", None)
    return ExitCode.OK


def add_faults_command(subparsers: argparse._SubParsersAction[CommandParser]) -> None:
    """``unpacksim faults [--json]``: the registered fault sites."""
    parser = subparsers.add_parser(
        "faults",
        help="list the fault sites a search can activate",
        description="List the registered fault sites: what each injects and what it mirrors.",
    )
    parser.add_argument("--json", action="store_true", help="print JSON for machines")
    parser.set_defaults(handler=_faults)


# --- the command line ------------------------------------------------------------------------

#: The functions that add each subcommand, in ``--help`` order.
COMMANDS: list[Callable[[argparse._SubParsersAction[CommandParser]], None]] = [
    add_report_command,
    add_presets_command,
    add_faults_command,
]

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
