"""containerd's filter syntax: the cases of ``filters/filter_test.go`` at the seed, and more."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest
from hypothesis import given
from hypothesis import strategies as st

from unpacksim.model.errdefs import InvalidArgument
from unpacksim.model.filters import Adaptor, Filter, check_map, parse_filters


@dataclass
class Entry:
    name: str
    other: str = ""
    labels: dict[str, str] = field(default_factory=dict)


CORPUS = [
    Entry("foo", labels={"foo": "true"}),
    Entry("bar"),
    Entry("foo", labels={"foo": "present", "more complex label": "present"}),
    Entry("bar", labels={"bar": "true"}),
    Entry("fooer", labels={'more complex label with \\ and "': "present"}),
    Entry("fooer", labels={'more complex label with \\ and ".post': "present"}),
    Entry("baz", other="too complex, yo"),
    Entry("bazo", other="abc"),
    Entry("compound", labels={"foo": "omg_asdf.asdf-qwer"}),
]


def adapt(entry: Entry) -> Adaptor:
    def field_of(path: tuple[str, ...]) -> tuple[str, bool]:
        if path[0] == "name":
            return entry.name, bool(entry.name)
        if path[0] == "other":
            return entry.other, bool(entry.other)
        if path[0] == "labels":
            return check_map(path[1:], entry.labels)
        return "", False

    return field_of


def matching(flt: Filter) -> list[int]:
    return [i for i, entry in enumerate(CORPUS) if flt.match(adapt(entry))]


ALL = list(range(len(CORPUS)))

# (input, indexes of CORPUS that match): filters/filter_test.go TestFilters.
MATCH_CASES = [
    ("", ALL),
    ("name", ALL),
    ("labels.foo", [0, 2, 8]),
    ("labels.foo,name", [0, 2, 8]),
    ("labels.foo==true", [0]),
    ("labels.foo==omg_asdf.asdf-qwer", [8]),
    ("name==bar", [1, 3]),
    ("name!=bar", [0, 2, 4, 5, 6, 7, 8]),
    ("name==bar,labels.bar", [3]),
    ('other=="too complex, yo"', [6]),
    ("other~=[abc]+,name!=foo", [6, 7]),
    ("other~=/[abc]+/,name!=foo", [6, 7]),
    ("other~=/[abc]{1,2}/,name!=foo", [6, 7]),
    ('other~=/[abc]{0,1}"\\//,name!=foo', []),
    ("name==bar,labels.bar==true", [3]),
    ("name==bar,labels.bar==wrong", []),
    ('name==foo,labels."more complex label"', [2]),
    ('labels."more complex label with \\\\ and \\""==present', [4]),
    ('labels."more complex label with \\\\ and \\"".post==present', [5]),
    # Beyond the upstream table.
    ("name == bar", [1, 3]),
    ("name==bar, labels.bar", [3]),
    ("other~=|^ab|", [7]),
    ("other~=[", []),  # a pattern that does not compile matches nothing
    ("labels.nope!=x", ALL),  # != compares the absent value "" too
]


@pytest.mark.parametrize(("text", "expected"), MATCH_CASES)
def test_matches_like_containerd(text: str, expected: list[int]) -> None:
    assert matching(parse_filters(text)) == expected


# (input, containerd's parse error text): filters/filter_test.go TestFilters.
ERROR_CASES = [
    (
        "labels.|foo|==omg_asdf.asdf-qwer",
        "filters: parse error: [labels. >|||< foo|==omg_asdf.asdf-qwer]: invalid quote encountered",
    ),
    (
        'labels.?"more complex label with \\\\ and \\"".post==present',
        'filters: parse error: [labels. >|?|< "more complex label with \\\\ and \\"".post==present]:'
        " expected field or quoted",
    ),
    ("name==foo,", "filters: parse error: [name==foo,]: expected field or quoted"),
    ("labels.", "filters: parse error: [labels.]: expected field or quoted"),
    (
        "image~=,id?=?fbaq",
        "filters: parse error: [image~= >|,|< id?=?fbaq]: expected value or quoted",
    ),
    (
        "labels.ns/key==value",
        "filters: parse error: [labels.ns >|/|< key==value]: quoted literal not terminated",
    ),
    (
        "labels.key==/value",
        "filters: parse error: [labels.key== >|/|< value]: quoted literal not terminated",
    ),
    # Beyond the upstream table.
    ("name=!=x", 'filters: parse error: [name >|=|< !=x]: unsupported operator "=!="'),
    ("name==x y", "filters: parse error: [name==x >| |< y]: unexpected input:  "),
    ("name?", 'filters: parse error: [name >|?|< ]: expected an operator ("=="|"!="|"~=")'),
    ("name==", "filters: parse error: [name==]: expected value or quoted"),
    ('name=="a\\q"', 'filters: parse error: [name== >|"|< a\\q"]: illegal escape sequence'),
]


@pytest.mark.parametrize(("text", "message"), ERROR_CASES)
def test_syntax_errors_are_invalid_argument_naming_the_input(text: str, message: str) -> None:
    with pytest.raises(InvalidArgument) as info:
        parse_filters(text)
    assert info.value.message == message
    assert str(info.value) == message + ": invalid argument"


def test_several_filters_are_ored() -> None:
    assert matching(parse_filters("name==bar", "labels.foo==true")) == [0, 1, 3]


def test_no_filters_match_everything() -> None:
    assert matching(parse_filters()) == ALL


def test_one_bad_filter_among_several_fails_the_whole_parse() -> None:
    with pytest.raises(InvalidArgument, match=r"labels\.ns >"):
        parse_filters("name==bar", "labels.ns/key")


def test_quoted_field_with_slashes_and_escapes() -> None:
    labels = {"containerd.io/gc.root": "x", "tab\tkey": "y"}
    root = parse_filters('labels."containerd.io/gc.root"')
    assert root.match(lambda path: check_map(path[1:], labels))
    escaped = parse_filters('labels."tab\\tkey"==y,labels."tab\\x09key"')
    assert escaped.match(lambda path: check_map(path[1:], labels))


def test_check_map_joins_the_rest_of_the_path() -> None:
    assert check_map(("a", "b"), {"a.b": "1"}) == ("1", True)
    assert check_map(("a",), {}) == ("", False)
    assert check_map(("missing",), {"a": "1"}) == ("", False)


def test_filter_strings_must_be_strings() -> None:
    with pytest.raises(TypeError, match="filter strings"):
        parse_filters(["name==x"])  # type: ignore[arg-type]


@given(st.text(alphabet=st.sampled_from(list("ab.,=!~\"/|\\ 'x0_-?\n\t\x00é")), max_size=30))
def test_any_input_parses_or_is_invalid_argument(text: str) -> None:
    try:
        flt = parse_filters(text)
    except InvalidArgument as exc:
        assert exc.message.startswith("filters: parse error: [")
    else:
        flt.match(adapt(CORPUS[0]))
