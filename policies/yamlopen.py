"""Where a malformed policy file's problem starts: a list, mapping or quoted string left open.

YAML reports where its parser gives up, which for an opening without its closing mark is somewhere later:
the next line for `[a, b`, the next quote for a string left open (whose text after it then fails), the
end of the file. `left_open` scans the text again, token by token, and finds the opening whose closing mark
is missing, so that the error points at the opening mark and says what was left open.

When openings are nested, the innermost one is reported (with the outer ones it lies in named in the
message): its closing mark is the first one missing — the outer ones cannot close before it does — and it
is the one the admin has to fix first; an outer one whose closing mark was only taken by the inner one is
then closed again. A string left open is reported before the list or mapping it lies in, for the same
reason: the list's `]` is usually inside the runaway string.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import yaml

NAMES = {"[": ("list", "]"), "{": ("mapping", "}"), '"': ("double-quoted string", '"'),
         "'": ("single-quoted string", "'")}
# what may follow a quoted scalar's closing quote on its line (after spaces) in valid YAML
_AFTER_QUOTE = {"", "\n", "\r", "\x85", "\u2028", "\u2029", ",", "]", "}", ":", "#"}
_NEVER = 1 << 62  # end index of an opening that is never closed


@dataclass(frozen=True)
class Opening:
    """An opening mark that goes wrong: never closed, closed by the wrong mark, or a runaway string."""

    kind: str  # one of NAMES
    index: int  # of the opening mark in the text
    line: int  # 1-based
    col: int
    end: int  # index of the mark that ends it (_NEVER when nothing does)
    problem: str  # what went wrong, after "the <kind> opened here "


def _where(mark: Any) -> str:
    return f"{mark.line + 1}:{mark.column + 1}"


def _opening(kind: str, mark: Any, end: int, problem: str) -> Opening:
    return Opening(kind, mark.index, mark.line + 1, mark.column + 1, end, problem)


def _kind(token: Any) -> str:
    return "[" if isinstance(token, yaml.FlowSequenceStartToken | yaml.FlowSequenceEndToken) else "{"


def _runaway(text: str, token: Any) -> Opening | None:
    """A quoted scalar followed by more text on its closing line: its own closing quote is likely missing."""
    end = token.end_mark.index
    rest = end
    while rest < len(text) and text[rest] in " \t":
        rest += 1
    if text[rest:rest + 1] in _AFTER_QUOTE:
        return None
    close = f"{token.end_mark.line + 1}:{token.end_mark.column}"
    if token.end_mark.line > token.start_mark.line:
        problem = (f"runs on to line {token.end_mark.line + 1}, where text follows the quote at {close} that ends it: "
                   "is its closing quote missing?")
    else:
        problem = (f"ends at {close} and text follows that quote: is a closing quote missing, or a quote inside "
                   "it not escaped?")
    return _opening(token.style, token.start_mark, end, problem)


def _tokens(text: str, loader: type) -> Iterator[Any]:
    """The tokens of `text`, then the scanner's error if it gives up (its last tokens included)."""
    last = -1
    try:
        for token in yaml.scan(text, Loader=loader):
            last = token.start_mark.index
            yield token
    except yaml.MarkedYAMLError as exc:
        # the scanner holds back a token that could still be a mapping key (a quoted scalar in a flow
        # collection, say) until it has read the next one: read the text up to the error for those
        stop = exc.context_mark.index if exc.context_mark is not None else exc.problem_mark.index
        with contextlib.suppress(yaml.MarkedYAMLError):
            yield from (t for t in yaml.scan(text[:stop], Loader=loader) if t.start_mark.index > last
                        and isinstance(t, yaml.ScalarToken | yaml.FlowSequenceEndToken | yaml.FlowMappingEndToken
                                       | yaml.FlowSequenceStartToken | yaml.FlowMappingStartToken))
        yield exc


def _scan(text: str, loader: type) -> list[Opening]:
    """Every opening of `text` that goes wrong, in text order of their opening marks."""
    found: list[Opening] = []
    stack: list[Any] = []  # opening tokens of the flow collections open at this point
    for token in _tokens(text, loader):
        if isinstance(token, yaml.MarkedYAMLError):  # the scanner gives up: what is open here stays open
            quote = text[token.context_mark.index:token.context_mark.index + 1] if token.context_mark else ""
            if quote in ("'", '"') and "end of stream" in str(token.problem):
                found.append(_opening(quote, token.context_mark, _NEVER, "is never closed (the file ends inside it)"))
        elif isinstance(token, yaml.FlowSequenceStartToken | yaml.FlowMappingStartToken):
            stack.append(token)
        elif isinstance(token, yaml.FlowSequenceEndToken | yaml.FlowMappingEndToken) and stack:
            opener = stack.pop()
            kind, closer = _kind(opener), NAMES[_kind(token)][1]
            if NAMES[kind][1] != closer:
                found.append(_opening(kind, opener.start_mark, token.start_mark.index,
                                      f"is closed by '{closer}' at {_where(token.start_mark)}: "
                                      f"a '{NAMES[kind][1]}' is missing before it"))
                return sorted(found, key=lambda o: o.index)  # what follows is read out of step
        elif isinstance(token, yaml.ScalarToken) and token.style in ("'", '"'):
            runaway = _runaway(text, token)
            if runaway is not None:
                found.append(runaway)
    for depth, opener in enumerate(stack):
        around = [f"the {NAMES[_kind(o)][0]} '{_kind(o)}' at {_where(o.start_mark)}" for o in stack[:depth]]
        kind = _kind(opener)
        nor = f" (nor is {', '.join(around)} around it)" if around else ""
        found.append(_opening(kind, opener.start_mark, _NEVER,
                              f"is never closed{nor}: no '{NAMES[kind][1]}' matches it"))
    return sorted(found, key=lambda o: o.index)


def left_open(text: str, failed_at: int, loader: type) -> Opening | None:
    """The opening whose missing closing mark made YAML fail at index `failed_at`; None if it is not that."""
    found = [o for o in _scan(text, loader) if o.index <= failed_at]
    if not found:
        return None
    pick = found[0]
    while pick.kind in "[{":  # innermost first: anything going wrong inside a collection comes before it
        inner = next((o for o in found if pick.index < o.index < pick.end), None)
        if inner is None:
            break
        pick = inner
    return pick


def describe(opening: Opening) -> str:
    mark = f" '{opening.kind}'" if opening.kind in "[{" else ""
    return f"the {NAMES[opening.kind][0]}{mark} opened here {opening.problem}"
