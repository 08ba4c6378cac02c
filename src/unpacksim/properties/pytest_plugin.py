"""unpacksim's pytest plugin: Hypothesis profiles, an implementation to test, findings as files.

Registered through the ``pytest11`` entry point, so any pytest run in an environment with
unpacksim installed gets it:

- the Hypothesis profiles (``ci`` when ``$CI`` is set, else ``dev``; ``$HYPOTHESIS_PROFILE``
  picks one; see :mod:`unpacksim.properties.profiles`);
- ``--unpacksim-impl NAME|module:attribute``: the implementation under test.  Given, the run
  also collects unpacksim's own suite (:mod:`unpacksim.properties.pytest_suite`): every
  property searched over the general workloads, and every catalogue race searched in the
  configuration where containerd has it fixed (or turned off);
- ``--unpacksim-examples N``: the example budget of each of the suite's searches;
- ``--unpacksim-findings DIR`` (default ``unpacksim-findings``): where findings are written,
  one ``<id>.json`` and ``<id>.html`` each, the moment they are found;
- fixtures ``unpacksim_impl`` (the implementation spec, ``seed`` by default) and
  ``unpacksim_findings`` (a :class:`FindingRecorder`: ``record(finding) -> Path``), for your
  own tests too;
- a terminal summary section listing every finding written.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pytest

from unpacksim.properties.profiles import load_default_profile
from unpacksim.reports.records import Finding

__all__ = ["FindingRecorder"]

DEFAULT_IMPLEMENTATION = "seed"
DEFAULT_DIRECTORY = "unpacksim-findings"


@dataclass
class FindingRecorder:
    """Writes findings (JSON, and an HTML report) into ``directory`` and remembers them.

    ``implementation`` is the implementation spec the run tests; ``examples`` the budget the
    suite's searches get (None: the Hypothesis profile's ``max_examples``).
    """

    directory: Path
    implementation: str
    written: list[tuple[Finding, Path]] = field(default_factory=list)
    html: bool = True
    examples: int | None = None

    def record(self, finding: Finding) -> Path:
        """Write ``finding`` atomically (once per id); return the JSON file's path.

        Raises:
            ReportFileError: the directory cannot be written.
        """
        from unpacksim.reports.formats import render
        from unpacksim.reports.io import write_finding, write_text_atomic

        for known, path in self.written:
            if known.id == finding.id:
                return path
        self.directory.mkdir(parents=True, exist_ok=True)
        path = write_finding(finding, self.directory)
        if self.html:
            write_text_atomic(path.with_suffix(".html"), render(finding, "html"))
        self.written.append((finding, path))
        return path


_RECORDER = pytest.StashKey[FindingRecorder]()


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("unpacksim", "unpacksim: races in containerd's unpack semantics")
    group.addoption(
        "--unpacksim-impl",
        metavar="NAME|module:attribute",
        default=None,
        help="the unpack implementation to test (a preset such as seed or v2.0, a registered "
        "name, or package.module:attribute); also runs unpacksim's property and catalogue "
        "suite against it",
    )
    group.addoption(
        "--unpacksim-examples",
        metavar="N",
        type=int,
        default=None,
        help="examples each search of the suite may take (default: the Hypothesis profile's "
        "max_examples)",
    )
    group.addoption(
        "--unpacksim-findings",
        metavar="DIR",
        default=None,
        help=f"write findings into DIR (default: ./{DEFAULT_DIRECTORY})",
    )


def _check_implementation(spec: str) -> None:
    from unpacksim.properties import catalogue  # registers the catalogue's implementations
    from unpacksim.unpack.interface import ImplementationError, resolve

    assert catalogue.CATALOGUE
    try:
        resolve(spec)
    except ImplementationError as err:
        raise pytest.UsageError(f"--unpacksim-impl {spec}: {err}") from None


def pytest_configure(config: pytest.Config) -> None:
    load_default_profile()
    spec = config.getoption("unpacksim_impl", default=None)
    where = config.getoption("unpacksim_findings", default=None)
    base = config.invocation_params.dir
    directory = Path(where) if where else base / DEFAULT_DIRECTORY
    if not directory.is_absolute():
        directory = base / directory
    examples = config.getoption("unpacksim_examples", default=None)
    if examples is not None and examples < 1:
        raise pytest.UsageError(f"--unpacksim-examples must be at least 1, got {examples}")
    config.stash[_RECORDER] = FindingRecorder(
        directory, spec or DEFAULT_IMPLEMENTATION, examples=examples
    )
    if spec:
        _check_implementation(spec)
        from unpacksim.properties import pytest_suite

        suite = str(Path(pytest_suite.__file__))
        if suite not in config.args:
            config.args.append(suite)


@pytest.fixture
def unpacksim_impl(request: pytest.FixtureRequest) -> str:
    """The implementation spec under test (``--unpacksim-impl``; ``seed`` by default)."""
    return request.config.stash[_RECORDER].implementation


@pytest.fixture
def unpacksim_findings(request: pytest.FixtureRequest) -> FindingRecorder:
    """Records findings as files and lists them in the terminal summary."""
    return request.config.stash[_RECORDER]


def pytest_terminal_summary(
    terminalreporter: pytest.TerminalReporter, exitstatus: int, config: pytest.Config
) -> None:
    recorder = config.stash.get(_RECORDER, None)
    if recorder is None or not recorder.written:
        return
    n = len(recorder.written)
    terminalreporter.section(f"unpacksim: {n} finding{'' if n == 1 else 's'}")
    for finding, path in recorder.written:
        terminalreporter.write_line(
            f"{finding.id}  {finding.property.name}  ({finding.implementation})  {path}"
        )
    terminalreporter.write_line(f"replay one with: unpacksim replay {recorder.written[0][1]}")
