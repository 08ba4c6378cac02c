"""Finding files: atomic writes, and loads that check the schema and say clearly what is wrong.

A finding is written the moment it is found, so a crash or a Ctrl-C later cannot leave half a
file: the text goes to a temporary file in the same directory, is flushed to disk, and is then
renamed over the target (``os.replace`` is atomic within one file system).  A reader sees the
old file or the new one, never a mix.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from pathlib import Path

from unpacksim.reports.jsonform import RecordError
from unpacksim.reports.records import Finding, dumps

__all__ = [
    "ReportFileError",
    "finding_file_name",
    "load_finding",
    "write_finding",
    "write_text_atomic",
]


class ReportFileError(Exception):
    """A finding or report file cannot be read or written.

    The message is one line naming the file and the problem (no such file, not JSON, a bad
    field, another schema version); the CLI prints it and exits 2.
    """

    def __init__(self, path: str | os.PathLike[str], problem: str) -> None:
        self.path = str(path)
        self.problem = problem
        super().__init__(f"{self.path}: {problem}")


def finding_file_name(finding: Finding) -> str:
    """The file name a finding is written under by default: ``<id>.json``."""
    return f"{finding.id}.json"


def write_text_atomic(path: str | os.PathLike[str], text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically; return the path.

    Raises:
        ReportFileError: the directory does not exist or cannot be written.
    """
    target = Path(path)
    data = text.encode("utf-8")
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    except OSError as err:
        raise ReportFileError(target, f"cannot write: {_reason(err)}") from None
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        os.chmod(tmp, 0o644)  # mkstemp makes 0600; a report is an ordinary file
        os.replace(tmp, target)
    except BaseException as err:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        if isinstance(err, OSError):
            raise ReportFileError(target, f"cannot write: {_reason(err)}") from None
        raise
    _sync_directory(target.parent)
    return target


def write_finding(finding: Finding, path: str | os.PathLike[str]) -> Path:
    """Write ``finding`` atomically; a directory ``path`` gets ``<id>.json`` inside it.

    Returns the path written.

    Raises:
        ReportFileError: the file cannot be written.
    """
    target = Path(path)
    if target.is_dir():
        target = target / finding_file_name(finding)
    text = dumps(finding)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        # A lone surrogate (from a JSON "\ud800" escape) has no UTF-8 form; escape everything.
        text = json.dumps(finding.to_json(), indent=2, ensure_ascii=True) + "\n"
    return write_text_atomic(target, text)


def load_finding(path: str | os.PathLike[str]) -> Finding:
    """Read and check a finding file.

    Raises:
        ReportFileError: the file is missing or unreadable, is not UTF-8 JSON, is a finding of
            another schema version, or has an unknown, missing or mistyped field (named).
    """
    source = Path(path)
    try:
        raw = source.read_bytes()
    except OSError as err:
        raise ReportFileError(source, f"cannot read: {_reason(err)}") from None
    if not raw.strip():
        raise ReportFileError(source, "the file is empty: not a finding")
    try:
        data = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError as err:
        raise ReportFileError(source, f"not UTF-8 text (byte {err.start})") from None
    except json.JSONDecodeError as err:
        where = f"line {err.lineno} column {err.colno}"
        raise ReportFileError(source, f"not valid JSON: {err.msg} at {where}") from None
    except RecursionError:
        raise ReportFileError(source, "not a finding: JSON nested too deeply") from None
    try:
        return Finding.from_json(data)
    except RecordError as err:
        raise ReportFileError(source, f"not a valid finding: {err}") from None


def _reason(err: OSError) -> str:
    if isinstance(err, FileNotFoundError):
        return "no such file or directory"
    if isinstance(err, IsADirectoryError):
        return "it is a directory"
    if isinstance(err, PermissionError):
        return "permission denied"
    return (err.strerror or type(err).__name__).lower()


def _sync_directory(directory: Path) -> None:
    """Flush the rename to disk too (best effort: not every platform can open a directory)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
