"""What one command run did, as data: :class:`Summary` (``explore --json``, ``replay --json``).

Standard library only.  A summary's ``exit_code`` is the CLI convention: 0 nothing found (or a
replay that no longer reproduces), 1 found or reproduced.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Self, TypeAlias

from unpacksim.reports.jsonform import (
    Fields,
    JSONObject,
    check_schema,
    field_names,
    require,
    to_json_data,
)

__all__ = ["SUMMARY_SCHEMA", "FindingRef", "Summary"]

SUMMARY_SCHEMA = "unpacksim.summary/1"

Status: TypeAlias = Literal["clean", "found", "reproduced", "not-reproduced"]
_STATUSES: tuple[str, ...] = ("clean", "found", "reproduced", "not-reproduced")


@dataclass(frozen=True)
class FindingRef:
    """A finding a command wrote: its id, the property it breaks, and the file holding it."""

    id: str
    property: str
    file: str

    @classmethod
    def from_json(cls, data: object, path: str) -> Self:
        f = Fields(data, path, field_names(cls))
        return f.build(cls, id=f.text("id"), property=f.text("property"), file=f.text("file"))


@dataclass(frozen=True, kw_only=True)
class Summary:
    """What one command run did, for machines (``--json``) and for its exit code.

    Attributes:
        schema: :data:`SUMMARY_SCHEMA`.
        command: the subcommand (``explore``, ``replay``).
        status: ``clean`` (nothing found), ``found``, ``reproduced`` or ``not-reproduced``.
        runs: how many simulated runs the command made.
        findings: the findings it wrote, in the order found.
    """

    schema: str = SUMMARY_SCHEMA
    command: str
    status: Status
    runs: int = 0
    findings: tuple[FindingRef, ...] = ()

    def __post_init__(self) -> None:
        rec = "Summary"
        require(self.schema == SUMMARY_SCHEMA, rec, "schema", f"must be {SUMMARY_SCHEMA!r}")
        require(self.status in _STATUSES, rec, "status", f"must be one of {_STATUSES}")
        require(self.runs >= 0, rec, "runs", "must not be negative")
        object.__setattr__(self, "findings", tuple(self.findings))

    @property
    def exit_code(self) -> int:
        """The CLI convention: 1 when something was found or reproduced, else 0."""
        return 1 if self.status in ("found", "reproduced") else 0

    def to_json(self) -> JSONObject:
        """This summary as JSON data."""
        data = to_json_data(self)
        assert isinstance(data, dict)
        return data

    @classmethod
    def from_json(cls, data: object) -> Self:
        """Read a summary.

        Raises:
            RecordError: not a summary, another schema version, or a bad field.
        """
        check_schema(data, SUMMARY_SCHEMA, "summary")
        f = Fields(data, "", field_names(cls))
        return f.build(
            cls,
            schema=f.text("schema"),
            command=f.text("command"),
            status=f.text("status"),
            runs=f.integer("runs"),
            findings=f.records("findings", FindingRef.from_json),
        )
