"""containerd's filter syntax (``filters/parser.go``, ``scanner.go``, ``quote.go``, ``filter.go``).

A filter string is a comma-separated list of selectors, all of which must match (AND); several
filter strings passed to :func:`parse_filters` are OR'ed (``filters.ParseAll``).  A selector is
``<fieldpath>[<op><value>]``: a dotted field path whose components are bare words or
double-quoted Go strings (``labels."containerd.io/gc.root"``), an operator ``==``, ``!=`` or
``~=`` (regular expression, unanchored), and a bare or quoted value; ``~=`` values may also be
quoted with ``/.../`` or ``|...|``.  A bare field path tests that the field is present.  No
filters, or an empty string, match everything.

A syntax error is ``InvalidArgument`` with containerd's message, for example
``filters: parse error: [labels. >|?|< x]: expected field or quoted: invalid argument``.

Where this differs from Go: positions are counted in code points, not UTF-8 bytes (identical
for ASCII input), and ``~=`` uses Python's ``re`` instead of RE2 (same for the common subset;
a pattern that does not compile matches nothing, as containerd logs and returns false).
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import cached_property

from unpacksim.model.errdefs import InvalidArgument

__all__ = ["Adaptor", "Filter", "Selector", "check_map", "go_quote", "parse_filters"]

#: Maps a field path to ``(value, present)`` (``filters.Adaptor``).
Adaptor = Callable[[tuple[str, ...]], tuple[str, bool]]

_EOF = "EOF"
_ILLEGAL = "ILLEGAL"
_QUOTED = "quoted"
_VALUE = "value"
_FIELD = "field"
_SEPARATOR = "separator"
_OPERATOR = "operator"
_OTHER = "other"

_PRESENT = "?"
_OPERATORS = ("==", "!=", "~=")


@dataclass(frozen=True)
class Selector:
    """One ``<fieldpath>[<op><value>]`` term; ``operator`` is ``?`` for "present"."""

    fieldpath: tuple[str, ...]
    operator: str = _PRESENT
    value: str = ""

    def match(self, adaptor: Adaptor) -> bool:
        """``selector.Match`` (``filters/filter.go``)."""
        value, present = adaptor(self.fieldpath)
        if self.operator == _PRESENT:
            return present
        if self.operator == "==":
            return present and value == self.value
        if self.operator == "!=":
            # containerd compares even when the field is absent: an absent field is "".
            return value != self.value
        pattern = self._pattern
        return pattern is not None and pattern.search(value) is not None

    @cached_property
    def _pattern(self) -> re.Pattern[str] | None:
        # Compiled on first use, like containerd; a bad pattern never matches.
        try:
            return re.compile(self.value)
        except re.error:
            return None


@dataclass(frozen=True)
class Filter:
    """Alternatives (OR) of selector conjunctions (AND); an empty conjunction matches all."""

    alternatives: tuple[tuple[Selector, ...], ...] = ((),)

    def match(self, adaptor: Adaptor) -> bool:
        """True if any alternative has every selector matching ``adaptor``."""
        return any(all(s.match(adaptor) for s in conj) for conj in self.alternatives)


def parse_filters(*filters: str) -> Filter:
    """``filters.ParseAll``: parse each string; the result matches if any of them matches.

    Raises:
        InvalidArgument: a string does not parse; the message names it and the position.
    """
    if not filters:
        return Filter()
    alternatives: list[tuple[Selector, ...]] = []
    for text in filters:
        if not isinstance(text, str):
            raise TypeError(f"parse_filters takes filter strings, got {text!r}")
        alternatives.append(_Parser(text).parse() if text else ())
    return Filter(tuple(alternatives))


def check_map(fieldpath: tuple[str, ...], mapping: Mapping[str, str]) -> tuple[str, bool]:
    """``checkMap`` of ``metadata/adaptors.go``: the rest of the path, joined by ``.``, as a key.

    An empty mapping has no keys at all (containerd checks ``len(m) == 0`` first).
    """
    if not mapping:
        return "", False
    key = ".".join(fieldpath)
    if key in mapping:
        return mapping[key], True
    return "", False


class _ParseError(Exception):
    pass


def _is_space(ch: str) -> bool:
    # Go's unicode.IsSpace: ASCII whitespace, NEL, NBSP, and the Unicode White_Space set.
    return ch in "\t\n\v\f\r \x85\xa0" or (ord(ch) > 0xFF and ch.isspace())


def _is_field_rune(ch: str) -> bool:
    return ch == "_" or ("a" <= ch <= "z") or ("A" <= ch <= "Z") or ("0" <= ch <= "9")


def _is_value_rune(ch: str) -> bool:
    # Letters, marks, numbers, punctuation, symbols and spaces are Go's "graphic" runes.
    return ch != "," and not _is_space(ch) and unicodedata.category(ch)[0] in "LMNPSZ"


class _Scanner:
    """``filters/scanner.go``: a rune scanner with one rune of lookahead."""

    def __init__(self, text: str) -> None:
        self.input = text
        self.pos = 0  # start of the current rune
        self.ppos = 0  # just past the current rune
        self.value = False  # the next bare word is a value, not a field
        self.err = ""

    def next(self) -> str:
        if self.ppos >= len(self.input):
            self.pos = len(self.input)
            return _EOF
        self.pos = self.ppos
        ch = self.input[self.ppos]
        self.ppos += 1
        if ch == "\x00":
            self.error("unexpected null")
            return _ILLEGAL
        return ch

    def peek(self) -> str:
        pos, ppos = self.pos, self.ppos
        ch = self.next()
        self.pos, self.ppos = pos, ppos
        return ch

    def error(self, msg: str) -> None:
        if not self.err:
            self.err = msg

    def scan(self) -> tuple[int, str, str]:
        """The next token as (position, kind, text)."""
        ch = self.next()
        while len(ch) == 1 and _is_space(ch):
            ch = self.next()
        pos = self.pos
        if len(ch) != 1:  # EOF or ILLEGAL
            return self.pos, ch, ""
        if ch in '/|"':
            kind = _QUOTED if self._scan_quoted(ch) else _ILLEGAL
            return pos, kind, self.input[pos : self.ppos]
        if ch in ",.":
            self.value = False
            return pos, _SEPARATOR, ch
        if ch in "=!~":
            self._scan_while(lambda c: c in "=!~")
            self.value = True
            return pos, _OPERATOR, self.input[pos : self.ppos]
        if self.value:
            self._scan_while(_is_value_rune)
            self.value = False
            return pos, _VALUE, self.input[pos : self.ppos]
        if _is_field_rune(ch):
            self._scan_while(_is_field_rune)
            return pos, _FIELD, self.input[pos : self.ppos]
        return self.pos, _OTHER, ch

    def _scan_while(self, accept: Callable[[str], bool]) -> None:
        while True:
            ch = self.peek()
            if len(ch) != 1 or not accept(ch):
                return
            self.next()

    def _scan_quoted(self, quote: str) -> bool:
        legal = True
        ch = self.next()
        while ch != quote:
            if ch == "\n" or len(ch) != 1:
                self.error("quoted literal not terminated")
                return False
            if ch == "\\":
                ch, ok = self._scan_escape(quote)
                legal = legal and ok
            else:
                ch = self.next()
        return legal

    def _scan_escape(self, quote: str) -> tuple[str, bool]:
        ch = self.next()
        if ch in ("a", "b", "f", "n", "r", "t", "v", "\\", quote):
            return self.next(), True
        digits = {"x": (16, 2), "u": (16, 4), "U": (16, 8)}
        if len(ch) == 1 and "0" <= ch <= "7":
            return self._scan_digits(ch, 8, 3)
        if ch in digits:
            base, count = digits[ch]
            return self._scan_digits(self.next(), base, count)
        self.error("illegal escape sequence")
        return ch, False

    def _scan_digits(self, ch: str, base: int, count: int) -> tuple[str, bool]:
        while count > 0 and _digit_value(ch) < base:
            ch = self.next()
            count -= 1
        if count > 0:
            self.error("illegal numeric escape sequence")
            return ch, False
        return ch, True


def _digit_value(ch: str) -> int:
    if len(ch) == 1 and ch in "0123456789abcdefABCDEF":
        return int(ch, 16)
    return 16


class _Parser:
    """``filters/parser.go``: selectors := selector ("," selector)*."""

    def __init__(self, text: str) -> None:
        self.input = text
        self.scanner = _Scanner(text)

    def parse(self) -> tuple[Selector, ...]:
        try:
            return self._selectors()
        except _ParseError as exc:
            raise InvalidArgument(f"filters: {exc}") from None

    def mkerr(self, pos: int, msg: str) -> _ParseError:
        text = self.input
        if pos < len(text):
            where = f"[{text[:pos]} >|{text[pos]}|< {text[pos + 1 :]}]"
        else:
            where = f"[{text}]"
        return _ParseError(f"parse error: {where}: {msg}")

    def _selectors(self) -> tuple[Selector, ...]:
        out = [self._selector()]
        while True:
            ch = self.scanner.peek()
            if ch == _EOF:
                return tuple(out)
            if ch != ",":
                shown = "\ufffd" if ch == _ILLEGAL else ch
                raise self.mkerr(self.scanner.ppos, f"unexpected input: {shown}")
            self.scanner.scan()
            out.append(self._selector())

    def _selector(self) -> Selector:
        fieldpath = self._fieldpath()
        if self.scanner.peek() in (",", _EOF):
            return Selector(fieldpath)
        op = self._operator()
        value = self._value(allow_alt_quotes=op == "~=")
        return Selector(fieldpath, op, value)

    def _fieldpath(self) -> tuple[str, ...]:
        fields = [self._field()]
        while self.scanner.peek() == ".":
            self.scanner.scan()
            fields.append(self._field())
        return tuple(fields)

    def _field(self) -> str:
        pos, kind, text = self.scanner.scan()
        if kind == _FIELD:
            return text
        if kind == _QUOTED:
            return self._unquote(pos, text, allow_alts=False)
        if kind == _ILLEGAL:
            raise self.mkerr(pos, self.scanner.err)
        raise self.mkerr(pos, "expected field or quoted")

    def _operator(self) -> str:
        pos, kind, text = self.scanner.scan()
        if kind == _OPERATOR:
            if text in _OPERATORS:
                return text
            raise self.mkerr(pos, f"unsupported operator {go_quote(text)}")
        if kind == _ILLEGAL:
            raise self.mkerr(pos, self.scanner.err)
        raise self.mkerr(pos, 'expected an operator ("=="|"!="|"~=")')

    def _value(self, *, allow_alt_quotes: bool) -> str:
        pos, kind, text = self.scanner.scan()
        if kind in (_VALUE, _FIELD):
            return text
        if kind == _QUOTED:
            return self._unquote(pos, text, allow_alts=allow_alt_quotes)
        if kind == _ILLEGAL:
            raise self.mkerr(pos, self.scanner.err)
        raise self.mkerr(pos, "expected value or quoted")

    def _unquote(self, pos: int, text: str, *, allow_alts: bool) -> str:
        if not allow_alts and text[0] not in "'\"":
            raise self.mkerr(pos, "invalid quote encountered")
        try:
            return _unquote(text)
        except ValueError:
            raise self.mkerr(pos, "unquoting failed: quote syntax error") from None


_GO_ESCAPES = {
    "\a": "\\a",
    "\b": "\\b",
    "\f": "\\f",
    "\n": "\\n",
    "\r": "\\r",
    "\t": "\\t",
    "\v": "\\v",
}


def go_quote(text: str) -> str:
    """Go's ``%q`` of a string: double-quoted, with ``"``, ``\\`` and control characters escaped."""
    out = ['"']
    for ch in text:
        if ch in ('"', "\\"):
            out.append("\\" + ch)
        elif ch in _GO_ESCAPES:
            out.append(_GO_ESCAPES[ch])
        elif ch.isprintable() or ch == " ":
            out.append(ch)
        elif ord(ch) < 0x80:
            out.append(f"\\x{ord(ch):02x}")
        elif ord(ch) < 0x10000:
            out.append(f"\\u{ord(ch):04x}")
        else:
            out.append(f"\\U{ord(ch):08x}")
    out.append('"')
    return "".join(out)


_SIMPLE_ESCAPES = {
    "a": "\a",
    "b": "\b",
    "f": "\f",
    "n": "\n",
    "r": "\r",
    "t": "\t",
    "v": "\v",
    "\\": "\\",
}


def _unquote(text: str) -> str:
    """``filters/quote.go`` ``unquote`` for ``"``, ``/`` and ``|`` quotes (Go string rules)."""
    if len(text) < 2 or text[-1] != text[0] or "\n" in text:
        raise ValueError("quote syntax error")
    quote, body = text[0], text[1:-1]
    out: list[str] = []
    i = 0
    while i < len(body):
        ch = body[i]
        if ch == quote:
            raise ValueError("quote syntax error")
        if ch != "\\":
            out.append(ch)
            i += 1
            continue
        decoded, i = _unquote_escape(body, i + 1, quote)
        out.append(decoded)
    return "".join(out)


def _unquote_escape(body: str, i: int, quote: str) -> tuple[str, int]:
    """Decode the escape whose letter is at ``body[i]``; return it and the next index."""
    if i >= len(body):
        raise ValueError("quote syntax error")
    c = body[i]
    if c in _SIMPLE_ESCAPES:
        return _SIMPLE_ESCAPES[c], i + 1
    if c in "'\"|/":
        if c != quote:
            raise ValueError("quote syntax error")
        return c, i + 1
    widths = {"x": 2, "u": 4, "U": 8}
    if c in widths:
        digits = body[i + 1 : i + 1 + widths[c]]
        if len(digits) < widths[c] or any(d not in "0123456789abcdefABCDEF" for d in digits):
            raise ValueError("quote syntax error")
        value = int(digits, 16)
        if value > 0x10FFFF:
            raise ValueError("quote syntax error")
        return chr(value), i + 1 + widths[c]
    if "0" <= c <= "7":
        digits = body[i : i + 3]
        if len(digits) < 3 or any(not "0" <= d <= "7" for d in digits) or int(digits, 8) > 255:
            raise ValueError("quote syntax error")
        return chr(int(digits, 8)), i + 3
    raise ValueError("quote syntax error")
