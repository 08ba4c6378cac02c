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
from typing import Any, NoReturn

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
    "add_catalogue_command",
    "add_explore_command",
    "add_faults_command",
    "add_presets_command",
    "add_replay_command",
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
        shown = row["flags"]
        assert isinstance(shown, dict)
        text = ", ".join(f"{k}={_flag_text(v)}" for k, v in shown.items())
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


# --- searching: unpacksim explore, unpacksim catalogue [run] ----------------------------------

#: Exit code of a search interrupted (Ctrl-C) before it found anything (128 + SIGINT).
INTERRUPTED = 130


def _search_errors() -> tuple[type[Exception], ...]:
    """The errors a search or replay turns into one line and exit 2 (imported lazily)."""
    from unpacksim.properties.catalogue import CatalogueError
    from unpacksim.properties.explore import ImplementationFailure
    from unpacksim.properties.findings import FindingsError
    from unpacksim.properties.replay import ReplayError
    from unpacksim.properties.scenario import ProgramError
    from unpacksim.unpack.interface import ImplementationError

    errors = (CatalogueError, ImplementationFailure, FindingsError, ReplayError, ProgramError)
    return (*errors, ImplementationError)


def _expected(handler: Handler) -> Handler:
    """``handler`` with the search layer's expected errors turned into :class:`UsageError`."""

    def run(args: argparse.Namespace) -> int:
        try:
            return handler(args)
        except _search_errors() as err:
            raise UsageError(str(err)) from None

    return run


class _Progress:
    """A one-line progress bar on stderr: runs against the example budget, findings so far."""

    def __init__(self, examples: int, enabled: bool) -> None:
        self.examples = examples
        self.enabled = enabled
        self.shown = False

    def update(self, runs: int, findings: int) -> None:
        if not self.enabled:
            return
        done = min(runs / self.examples, 1.0)
        bar = "#" * int(done * 30)
        plural = "" if findings == 1 else "s"
        sys.stderr.write(
            f"\r[{bar:<30}] {runs} runs ({self.examples} examples), {findings} finding{plural}"
        )
        sys.stderr.flush()
        self.shown = True

    def close(self) -> None:
        if self.shown:
            sys.stderr.write("\n")
            sys.stderr.flush()
            self.shown = False


#: The options ``explore`` and ``catalogue run`` share (``--examples`` is added per command).
_SEARCH_OPTIONS: tuple[tuple[tuple[str, ...], dict[str, Any]], ...] = (
    (("-o", "--out"), {"metavar": "DIR", "help": "write findings here (default: findings)"}),
    (("--seconds",), {"type": float, "metavar": "S", "help": "budget: stop starting new "
                      "examples after S seconds of wall time"}),
    (("--seed",), {"type": int, "default": 0, "help": "the search's seed (default: 0)"}),
    (("--max-findings",), {"type": int, "default": 1, "metavar": "N", "help": "stop after N "
                           "distinct findings; 0 searches the whole budget (default: 1)"}),
    (("--no-html",), {"action": "store_true", "help": "do not write HTML reports"}),
    (("--run-timeout",), {"type": float, "default": 60.0, "metavar": "S", "help": "wall "
                          "seconds one run may take before the implementation counts as hung"}),
    (("--json",), {"action": "store_true", "help": "print a JSON summary for machines"}),
)  # fmt: skip


def _add_search_options(parser: CommandParser, *, examples: int | None) -> None:
    default = f"default: {examples}" if examples else "default: the entry's budget"
    parser.add_argument(
        "--examples", type=int, default=examples, metavar="N",
        help=f"budget: Hypothesis examples ({default})",
    )  # fmt: skip
    for flags, options in _SEARCH_OPTIONS:
        parser.add_argument(*flags, **options)
    bar = parser.add_mutually_exclusive_group()
    bar.add_argument("--progress", action="store_true", default=None, help="show a progress bar")
    bar.add_argument("--no-progress", dest="progress", action="store_false", help="hide it")


def _budget(args: argparse.Namespace, default: int) -> Any:
    from unpacksim.properties.explore import Budget

    examples = default if args.examples is None else args.examples
    if examples < 1:
        raise UsageError(f"--examples must be at least 1, got {examples}")
    if args.seconds is not None and not args.seconds > 0:
        raise UsageError(f"--seconds must be above 0, got {args.seconds}")
    if args.max_findings < 0:
        raise UsageError(f"--max-findings must be 0 or more, got {args.max_findings}")
    return Budget(examples=examples, seconds=args.seconds)


def _out_dir(args: argparse.Namespace) -> str:
    """The findings directory: ``DIR`` (explore's positional), ``-o DIR``, or ``findings``."""
    given = getattr(args, "directory", None)
    if given and args.out and given != args.out:
        raise UsageError(f"two output directories given ({given!r} and -o {args.out!r})")
    out: str = given or args.out or "findings"
    return out


def _run_search(args: argparse.Namespace, search: Any, budget: Any, command: str) -> int:
    """Run ``search``, report findings as they come, print a summary; return the exit code."""
    args.out = _out_dir(args)
    from unpacksim.properties.explore import Discovery, explore
    from unpacksim.reports.summary import FindingRef, Summary

    progress = _Progress(
        budget.examples, sys.stderr.isatty() if args.progress is None else args.progress
    )

    def found(d: Discovery) -> None:
        progress.close()
        if args.json:
            return
        f = d.finding
        lines = [f"found {f.id}: {f.property.name} ({f.implementation})"]
        if d.path is not None:
            lines.append(f"  finding: {d.path}")
            lines.append(f"  replay:  unpacksim replay {d.path}")
        if d.report is not None:
            lines.append(f"  report:  {d.report}")
        _write_output("\n".join(lines) + "\n", None)

    try:
        result = explore(
            search,
            seed=args.seed,
            budget=budget,
            out=args.out,
            max_findings=args.max_findings,
            html=not args.no_html,
            run_timeout=args.run_timeout,
            on_progress=progress.update,
            on_finding=found,
        )
    finally:
        progress.close()
    refs = tuple(
        FindingRef(d.finding.id, d.finding.property.name, str(d.path or ""))
        for d in result.findings
    )
    summary = Summary(
        command=command, status="found" if refs else "clean", runs=result.runs, findings=refs
    )
    if args.json:
        _write_output(dumps(summary), None)
    else:
        n = len(refs)
        _write_output(
            f"explored {result.runs} runs of {search.implementation} in {result.seconds:.1f} s "
            f"(seed {args.seed}, stopped: {result.stopped}): "
            f"{n} finding{'' if n == 1 else 's'}\n",
            None,
        )
    if result.stopped == "interrupted":
        where = f" kept in {args.out}" if refs else ""
        print(
            f"unpacksim {command}: interrupted after {result.runs} runs; "
            f"{len(refs)} finding(s){where}",
            file=sys.stderr,
        )
        return ExitCode.FOUND if refs else INTERRUPTED
    return summary.exit_code


def _explore(args: argparse.Namespace) -> int:
    from unpacksim.properties.catalogue import entry
    from unpacksim.properties.checks import property_names
    from unpacksim.properties.explore import GENERAL_SPACE, Search

    properties = tuple(property_names(args.property)) if args.property else None
    space = GENERAL_SPACE if args.space == "general" else entry(args.space).space
    search = Search(implementation=args.implementation, space=space, properties=properties)
    return _run_search(args, search, _budget(args, 200), "explore")


def add_explore_command(subparsers: argparse._SubParsersAction[CommandParser]) -> None:
    """``unpacksim explore [-o DIR] [--impl NAME] [--property P]... [budget options]``."""
    parser = subparsers.add_parser(
        "explore",
        help="search for races; write each finding (JSON and HTML) as it is found",
        description="Search for races with an implementation (a preset or module:attribute), "
        "a property set and a budget. Findings are written to DIR as they are found. Exit 1 "
        "if something was found, 0 if not, 2 on bad usage; 130 if interrupted before any "
        "finding.",
    )
    parser.add_argument(
        "directory",
        nargs="?",
        metavar="DIR",
        help="write findings here as they are found (the same as -o DIR; default: findings)",
    )
    parser.add_argument(
        "--impl",
        "--preset",
        dest="implementation",
        default="seed",
        metavar="NAME",
        help="a preset (seed, v1.4, v1.6, v1.7, v2.0), a registered name, or "
        "package.module:attribute (default: seed)",
    )
    parser.add_argument(
        "--property",
        action="append",
        metavar="NAME",
        help="check this property (repeatable; default: every property)",
    )
    parser.add_argument(
        "--space",
        default="general",
        metavar="NAME",
        help="the workloads to search: 'general' or a catalogue entry's name (default: general)",
    )
    _add_search_options(parser, examples=200)
    parser.set_defaults(handler=_expected(_explore))


def _catalogue(args: argparse.Namespace) -> int:
    from unpacksim.properties.catalogue import CATALOGUE

    if args.json:
        _print_json([e.to_json() for e in CATALOGUE])
        return ExitCode.OK
    lines = []
    for e in CATALOGUE:
        lines.append(f"{e.name}  ({', '.join(e.issues)})")
        lines.append(f"    {e.title}")
        lines.append(f"    breaks:  {', '.join(e.properties)}")
        lines.append(f"    has it:  {e.with_race.describe()}")
        lines.append(f"    without: {e.without_race.describe()}")
    _write_output("\n".join(lines) + "\n", None)
    return ExitCode.OK


def _catalogue_run(args: argparse.Namespace) -> int:
    from unpacksim.properties.catalogue import entry
    from unpacksim.properties.explore import search_for

    item = entry(args.name)
    search = search_for(item, fixed=args.fixed, implementation=args.implementation)
    return _run_search(args, search, _budget(args, item.budget), "catalogue run")


def add_catalogue_command(subparsers: argparse._SubParsersAction[CommandParser]) -> None:
    """``unpacksim catalogue [--json]`` and ``unpacksim catalogue run NAME [...]``."""
    parser = subparsers.add_parser(
        "catalogue",
        help="list the race catalogue; 'catalogue run NAME' searches for one race",
        description="List the known races with the configuration that has each one and the "
        "one that does not. 'catalogue run NAME' searches for one (exit 1 found, 0 not).",
    )
    parser.add_argument("--json", action="store_true", help="print JSON for machines")
    parser.set_defaults(handler=_expected(_catalogue))
    sub = parser.add_subparsers(dest="action", metavar="ACTION", parser_class=CommandParser)
    run = sub.add_parser(
        "run",
        help="search for one catalogue race",
        description="Search for catalogue race NAME with the configuration that has it (or "
        "--fixed: the one without; or --preset: another implementation with the same "
        "options). Exit 1 if found, 0 if not, 2 on bad usage.",
    )
    run.add_argument("name", metavar="NAME", help="the catalogue entry (see 'unpacksim catalogue')")
    run.add_argument(
        "--preset",
        "--impl",
        dest="implementation",
        metavar="NAME",
        help="search this implementation instead of the entry's",
    )
    run.add_argument(
        "--fixed",
        action="store_true",
        help="search the configuration without the race (containerd's fix)",
    )
    _add_search_options(run, examples=None)
    run.set_defaults(handler=_expected(_catalogue_run))


# --- unpacksim replay --------------------------------------------------------------------------


def _replay(args: argparse.Namespace) -> int:
    from unpacksim.properties.replay import replay
    from unpacksim.reports.summary import FindingRef, Status, Summary

    finding = load_finding(args.finding)
    outcome = replay(finding, implementation=args.implementation, run_timeout=args.run_timeout)
    status: Status = "reproduced" if outcome.reproduced else "not-reproduced"
    if args.json:
        ref = FindingRef(finding.id, finding.property.name, str(args.finding))
        _write_output(
            dumps(Summary(command="replay", status=status, runs=1, findings=(ref,))), None
        )
    else:
        word = "reproduced" if outcome.reproduced else "not reproduced"
        lines = [f"{word}: {finding.property.name} ({outcome.implementation}): {outcome.message}"]
        if outcome.reproduced:
            trace = "identical to the finding's" if outcome.trace_matches else outcome.divergence
            lines.append(f"  trace: {trace}")
        _write_output("\n".join(lines) + "\n", None)
    return ExitCode.FOUND if outcome.reproduced else ExitCode.OK


def add_replay_command(subparsers: argparse._SubParsersAction[CommandParser]) -> None:
    """``unpacksim replay FINDING [--impl NAME] [--json]``."""
    parser = subparsers.add_parser(
        "replay",
        help="re-run a finding exactly and say whether it reproduces",
        description="Re-run a finding's program with its schedule and fault plan. Exit 1 if "
        "it reproduces, 0 if not, 2 if the file is missing or bad or cannot run.",
    )
    parser.add_argument("finding", metavar="FINDING", help="a finding JSON file")
    parser.add_argument(
        "--impl",
        "--preset",
        dest="implementation",
        metavar="NAME",
        help="replay against this implementation instead of the finding's",
    )
    parser.add_argument(
        "--run-timeout",
        type=float,
        default=60.0,
        metavar="S",
        help="wall seconds the run may take before the implementation counts as hung",
    )
    parser.add_argument("--json", action="store_true", help="print a JSON summary for machines")
    parser.set_defaults(handler=_expected(_replay))


# --- the command line ------------------------------------------------------------------------

#: The functions that add each subcommand, in ``--help`` order.
COMMANDS: list[Callable[[argparse._SubParsersAction[CommandParser]], None]] = [
    add_explore_command,
    add_replay_command,
    add_report_command,
    add_catalogue_command,
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
