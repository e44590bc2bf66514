"""A list, mapping or quoted string left open is reported where it was opened, saying what was left open.

YAML's own error comes where the parser gives up — the next line, a later quote, or the end of the file —
so each case here checks the position of the opening mark itself: the example policy with each closing
mark removed in turn, hand-written nested and mismatched cases, and generated documents.
"""

from __future__ import annotations

from dataclasses import dataclass

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from icetide.errors import PolicyError
from policies import yamlpos
from policies.loader import parse_policy
from policies.yamlpos import load_positioned
from tests.unit.policy_engine.support import EXAMPLE

pytestmark = pytest.mark.unit

HEAD = "policy: p\nversion: 1\n"
TAIL = "principals: {users: {ana: {groups: [g]}}}\ntables: {}\n"


def error_of(text: str) -> PolicyError:
    with pytest.raises(PolicyError) as info:
        parse_policy(text, "p.yaml")
    return info.value


@pytest.mark.parametrize("text, line, col, says", [
    (HEAD + "tags: [a, b\n" + TAIL, 3, 7, "list '[' opened here is never closed"),
    (HEAD + "tags: {a: b\n" + TAIL, 3, 7, "mapping '{' opened here is never closed"),
    (HEAD + 'description: "abc\n' + TAIL, 3, 14, "double-quoted string opened here is never closed"),
    (HEAD + "description: 'abc\n" + TAIL, 3, 14, "single-quoted string opened here is never closed"),
    # the innermost opening is the one whose closing mark is missing first; the message names the outer ones
    (HEAD + "tags: {a: [b, c\n" + TAIL, 3, 11, "list '[' opened here is never closed (nor is the mapping '{' at 3:7"),
    (HEAD + "tags: {a: [b, c], d: e\n" + TAIL, 3, 7, "mapping '{' opened here is never closed"),
    (HEAD + 'tags: [a, "b, c]\n' + TAIL, 3, 11, "double-quoted string opened here is never closed"),
    # closed by the wrong mark
    (HEAD + "tags: {a: [b, c}\n" + TAIL, 3, 11, "list '[' opened here is closed by '}' at 3:16"),
    (HEAD + "tags: [{a: b]\n" + TAIL, 3, 8, "mapping '{' opened here is closed by ']' at 3:13"),
    # a string left open runs on to the next quote, and the text after that quote is where YAML gives up
    (HEAD + 'description: "abc\ntags: {a: "b"}\n' + TAIL, 3, 14, "runs on to line 4"),
    (HEAD + "description: 'abc\ntags: ['b']\n" + TAIL, 3, 14, "runs on to line 4"),
])
def test_left_open_is_reported_at_the_opening(text: str, line: int, col: int, says: str) -> None:
    error = error_of(text)
    assert (error.file, error.line, error.col) == ("p.yaml", line, col), str(error)
    assert says in str(error)


def test_a_byte_order_mark_does_not_shift_the_opening() -> None:
    error = error_of("\ufeff" + HEAD + "tags: [a, b\n" + TAIL)
    assert (error.line, error.col) == (3, 7) and "list '['" in str(error)
    error = error_of('\ufeffdescription: ["x", "y"]\ntags: [c\n' + TAIL)
    assert (error.line, error.col) == (2, 7) and "list '['" in str(error)


def test_other_yaml_errors_keep_the_parsers_position() -> None:
    error = error_of(HEAD + "tags: [a, b: c: d]\n" + TAIL)  # closed, but malformed inside
    assert (error.line, error.col) != (3, 7) and "never closed" not in str(error)
    error = error_of("policy: x\n  version: 1\n bad: indent")
    assert "malformed YAML" in str(error) and "opened here" not in str(error)


@dataclass(frozen=True)
class Opening:
    """A flow collection or quoted scalar of a valid document: where it opens and where its closing mark is."""

    line: int  # 1-based
    col: int
    close: int  # index of the closing mark in the text
    kind: str  # "[", "{", '"' or "'"
    around: tuple[tuple[int, int], ...]  # (line, col) of the flow collections it lies in


def openings(text: str) -> list[Opening]:
    out: list[Opening] = []
    stack: list[tuple[yaml.Token, tuple[tuple[int, int], ...]]] = []
    for token in yaml.scan(text, Loader=yaml.SafeLoader):
        start = token.start_mark
        around = tuple((t.start_mark.line + 1, t.start_mark.column + 1) for t, _ in stack)
        if isinstance(token, yaml.FlowSequenceStartToken | yaml.FlowMappingStartToken):
            stack.append((token, around))
        elif isinstance(token, yaml.FlowSequenceEndToken | yaml.FlowMappingEndToken):
            opener, outer = stack.pop()
            mark = opener.start_mark
            out.append(Opening(mark.line + 1, mark.column + 1, start.index, text[mark.index], outer))
        elif isinstance(token, yaml.ScalarToken) and token.style in ("'", '"'):
            out.append(Opening(start.line + 1, start.column + 1, token.end_mark.index - 1, token.style, around))
    return out


def check_reported_at_opening(text: str, opening: Opening) -> None:
    broken = text[:opening.close] + text[opening.close + 1:]
    with pytest.raises(PolicyError) as info:
        load_positioned(broken, "p.yaml")
    error = info.value
    where = (error.line, error.col)
    if opening.kind in "'\"":
        assert where == (opening.line, opening.col), (str(error), opening)
        assert "string opened here" in str(error)
    else:  # the collection itself, or one it lies in (its closing mark now closes the inner one)
        assert where in {(opening.line, opening.col), *opening.around}, (str(error), opening)
        assert "opened here" in str(error)


EXAMPLE_OPENINGS = openings(EXAMPLE.read_text())


def test_the_example_has_openings_of_every_kind() -> None:
    assert {o.kind for o in EXAMPLE_OPENINGS} == {"[", "{", '"'} and len(EXAMPLE_OPENINGS) > 30


@pytest.mark.parametrize("opening", EXAMPLE_OPENINGS, ids=[f"{o.line}:{o.col}{o.kind}" for o in EXAMPLE_OPENINGS])
def test_example_with_one_closing_mark_removed(opening: Opening) -> None:
    check_reported_at_opening(EXAMPLE.read_text(), opening)


def test_the_pure_python_parser_points_at_the_same_openings(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without libyaml (PyYAML's own scanner, whose marks count a byte-order mark) the answers are the same."""
    monkeypatch.setattr(yamlpos, "_LOADER", yaml.SafeLoader)
    for opening in EXAMPLE_OPENINGS:
        check_reported_at_opening("\ufeff" + EXAMPLE.read_text(), shifted(opening))


def shifted(opening: Opening) -> Opening:
    return Opening(opening.line, opening.col, opening.close + 1, opening.kind, opening.around)


EDITS = st.lists(st.tuples(st.integers(0, 10**6), st.sampled_from(["", "[", "]", "{", "}", "'", '"', "\n", ": ",
                                                                    ", ", "#", "- ", "\\", "\t"])),
                 min_size=1, max_size=4)


@settings(max_examples=300, deadline=None)
@given(EDITS)
def test_any_edit_of_the_example_is_read_or_rejected_with_a_position(edits: list[tuple[int, str]]) -> None:
    """Each edit replaces one character (or deletes it): the loader never fails any other way."""
    text = EXAMPLE.read_text()
    for at, new in edits:
        at %= len(text)
        text = text[:at] + new + text[at + 1:]
    try:
        parse_policy(text, "p.yaml")
    except PolicyError as error:
        assert error.line >= 1 and error.col >= 1 and str(error).startswith(f"p.yaml:{error.line}:{error.col}: ")


WORD = st.text("abcdefghij", min_size=1, max_size=6)
QUOTED = st.tuples(st.sampled_from("'\""), st.text("abc xyz_.", max_size=8).filter(lambda s: not s.startswith(" ")))
SCALAR = st.one_of(WORD, QUOTED.map(lambda q: f"{q[0]}{q[1]}{q[0]}").filter(lambda s: s != "''"))
SEP = st.sampled_from([", ", ",", ",\n    ", " ,\n  "])  # flow collections may run over several lines
FLOW = st.recursive(SCALAR, lambda inner: st.one_of(
    st.tuples(st.lists(inner, max_size=3), SEP).map(lambda x: "[" + x[1].join(x[0]) + "]"),
    st.tuples(st.lists(st.tuples(WORD, inner), max_size=3, unique_by=lambda kv: kv[0]), SEP).map(
        lambda x: "{" + x[1].join(f"{k}: {v}" for k, v in x[0]) + "}"),
), max_leaves=8)
ENTRY = st.tuples(st.sampled_from(["k{i}: {v}\n", "k{i}:\n  - {v}\n  - x\n", "# it's [{i}\nk{i}: {v}\n"]), FLOW)


@settings(max_examples=200, deadline=None)
@given(st.lists(ENTRY, min_size=1, max_size=6), st.data())
def test_generated_documents_with_one_closing_mark_removed(entries: list[tuple[str, str]], data: st.DataObject
                                                           ) -> None:
    text = "".join(form.format(i=i, v=v) for i, (form, v) in enumerate(entries))
    load_positioned(text, "p.yaml")  # valid before the mark is removed
    found = openings(text)
    if found:
        check_reported_at_opening(text, data.draw(st.sampled_from(found)))
