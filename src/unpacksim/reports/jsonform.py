"""The JSON form shared by the report records: JSON values, strict readers, schema checks.

Standard library only, like :mod:`unpacksim.reports.records` which builds on it.  Readers
refuse unknown, missing and mistyped fields with a :class:`RecordError` naming the field by its
path in the document (``trace[3].kind``).
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Callable, Mapping
from typing import Any, Protocol, TypeAlias, TypeVar

__all__ = [
    "Fields",
    "HasJSON",
    "JSONObject",
    "JSONValue",
    "RecordError",
    "check_schema",
    "dumps",
    "field_names",
    "json_object",
    "json_value",
    "require",
    "to_json_data",
]

JSONValue: TypeAlias = "str | int | float | bool | list[JSONValue] | dict[str, JSONValue] | None"
JSONObject: TypeAlias = "dict[str, JSONValue]"

_R = TypeVar("_R")


class HasJSON(Protocol):
    """A record with a JSON form."""

    def to_json(self) -> JSONObject: ...


class RecordError(ValueError):
    """A record field holds a value the schema does not allow.

    ``field`` names the field (``kind`` when a record is built in Python, the full path such as
    ``trace[3].kind`` when a JSON document is read); ``problem`` says what is wrong.
    """

    def __init__(self, field: str, problem: str, *, record: str = "") -> None:
        self.field = field
        self.problem = problem
        self.record = record
        where = f"{record} field {field!r}" if record else f"field {field!r}"
        super().__init__(f"{where}: {problem}")


# --- JSON values -------------------------------------------------------------------------


def json_value(value: object, where: str) -> JSONValue:
    """A copy of ``value`` as JSON data (tuples become lists); RecordError if it is not JSON."""
    if value is None or isinstance(value, str | bool | int):
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise RecordError(where, f"{value!r} has no JSON form: use a finite number")
        return value
    if isinstance(value, list | tuple):
        return [json_value(v, f"{where}[{i}]") for i, v in enumerate(value)]
    if isinstance(value, dict):
        out: JSONObject = {}
        for key, item in value.items():
            if not isinstance(key, str):
                raise RecordError(where, f"object keys must be strings, got {key!r}")
            out[key] = json_value(item, f"{where}.{key}")
        return out
    raise RecordError(
        where, f"{type(value).__name__} is not JSON data: convert it to str, number, list or dict"
    )


def json_object(value: Mapping[str, object], where: str) -> JSONObject:
    data = json_value(dict(value), where)
    assert isinstance(data, dict)
    return data


def to_json_data(value: object) -> JSONValue:
    """Records to JSON data, field by field in declaration order."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: to_json_data(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, tuple | list):
        return [to_json_data(v) for v in value]
    if isinstance(value, dict):
        return {k: to_json_data(v) for k, v in value.items()}
    assert value is None or isinstance(value, str | int | float | bool)
    return value


def dumps(record: HasJSON) -> str:
    """The canonical JSON text of ``record``: two-space indent, field order, trailing newline."""
    return json.dumps(record.to_json(), indent=2, ensure_ascii=False, allow_nan=False) + "\n"


def describe(value: object) -> str:
    """How an error message names the JSON type of ``value`` ("an object", "a number")."""
    names = {dict: "an object", list: "a list", str: "a string", bool: "a boolean"}
    if value is None:
        return "null"
    if isinstance(value, int | float) and not isinstance(value, bool):
        return "a number"
    return names.get(type(value), type(value).__name__)


class Fields:
    """One JSON object being read as a record: every problem names its path."""

    def __init__(self, data: object, path: str, names: tuple[str, ...]) -> None:
        if not isinstance(data, dict):
            raise RecordError(path, f"expected an object, got {describe(data)}")
        for key in data:
            if key not in names:
                known = ", ".join(names)
                raise RecordError(join_path(path, key), f"unknown field (known fields: {known})")
        for name in names:
            if name not in data:
                raise RecordError(join_path(path, name), "missing")
        self.data: dict[str, object] = data
        self.path = path

    def at(self, name: str) -> str:
        """The path of field ``name``."""
        return join_path(self.path, name)

    def typed(self, name: str, kind: type[_R], what: str) -> _R:
        """Field ``name``, which must be an instance of ``kind`` (a bool is not an int)."""
        value = self.data[name]
        if not isinstance(value, kind) or (isinstance(value, bool) and kind is not bool):
            raise RecordError(self.at(name), f"expected {what}, got {describe(value)}")
        return value

    def text(self, name: str) -> str:
        return self.typed(name, str, "a string")

    def opt_text(self, name: str) -> str | None:
        return None if self.data[name] is None else self.text(name)

    def integer(self, name: str) -> int:
        return self.typed(name, int, "an integer")

    def opt_integer(self, name: str) -> int | None:
        return None if self.data[name] is None else self.integer(name)

    def number(self, name: str) -> float:
        if isinstance(self.data[name], int) and not isinstance(self.data[name], bool):
            return float(self.integer(name))
        return self.typed(name, float, "a number")

    def flag(self, name: str) -> bool:
        return self.typed(name, bool, "true or false")

    def obj(self, name: str) -> JSONObject:
        return self.typed(name, dict, "an object")

    def integers(self, name: str) -> tuple[int, ...]:
        items = self.typed(name, list, "a list")
        for i, item in enumerate(items):
            if not isinstance(item, int) or isinstance(item, bool):
                raise RecordError(f"{self.at(name)}[{i}]", f"expected an integer, got {item!r}")
        return tuple(items)

    def texts(self, name: str) -> tuple[str, ...]:
        items = self.typed(name, list, "a list")
        for i, item in enumerate(items):
            if not isinstance(item, str):
                raise RecordError(f"{self.at(name)}[{i}]", f"expected a string, got {item!r}")
        return tuple(items)

    def records(self, name: str, read: Callable[[object, str], _R]) -> tuple[_R, ...]:
        items = self.typed(name, list, "a list")
        return tuple(read(item, f"{self.at(name)}[{i}]") for i, item in enumerate(items))

    def build(self, cls: Callable[..., _R], **values: object) -> _R:
        """``cls(**values)``, with a construction error re-raised under this object's path."""
        try:
            return cls(**values)
        except RecordError as err:
            raise RecordError(self.at(err.field), err.problem) from None


def join_path(path: str, name: str) -> str:
    """``path.name``, or ``name`` at the top of a document."""
    return f"{path}.{name}" if path else name


def field_names(cls: type[Any]) -> tuple[str, ...]:
    """The field names of dataclass ``cls``: the keys its JSON object must have."""
    return tuple(f.name for f in dataclasses.fields(cls))


def require(ok: bool, record: str, name: str, problem: str) -> None:
    """Raise ``RecordError(name, problem, record=record)`` unless ``ok``."""
    if not ok:
        raise RecordError(name, problem, record=record)


def check_schema(data: object, expected: str, what: str) -> None:
    """Check a document's ``schema`` before anything else, so a newer file says so.

    Raises:
        RecordError: not an object, no ``schema``, another version of the same family
            (``unpacksim.finding/2``), or another kind of document.
    """
    if not isinstance(data, dict):
        raise RecordError("(document)", f"expected a JSON object, got {describe(data)}")
    if "schema" not in data:
        raise RecordError("schema", f"missing: this is not an unpacksim {what}")
    schema = data["schema"]
    family = expected.rsplit("/", 1)[0] + "/"
    if isinstance(schema, str) and schema.startswith(family) and schema != expected:
        problem = f"version {schema!r} is not supported: this unpacksim reads {expected!r}"
        raise RecordError("schema", problem)
    if schema != expected:
        raise RecordError("schema", f"{schema!r} is not an unpacksim {what} ({expected!r})")
