"""YAML read into a tree that remembers where every node came from.

`yaml.compose` keeps the start mark of each node; we turn the composed graph into plain
`YNode`s (mapping / sequence / scalar) so that every later error can say `file:line:col`.
A malformed file is reported where its problem starts (`policies.yamlopen`: a list, mapping or
quoted string left open), else where the parser gave up. Only the YAML core schema is accepted:
explicit tags (`!!python/...`, custom `!tags`) and duplicate keys are errors, because a policy file
must mean exactly what it looks like.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import yaml
from icetide.errors import PolicyError

from policies.yamlopen import describe, left_open

Scalar = str | int | float | bool | None

_CORE_TAGS = {
    "tag:yaml.org,2002:str": "str",
    "tag:yaml.org,2002:int": "int",
    "tag:yaml.org,2002:float": "float",
    "tag:yaml.org,2002:bool": "bool",
    "tag:yaml.org,2002:null": "null",
}


@dataclass(frozen=True)
class Pos:
    """A place in a policy file (1-based line and column)."""

    file: str
    line: int
    col: int

    def error(self, message: str) -> PolicyError:
        return PolicyError(message, file=self.file, line=self.line, col=self.col)

    def shifted(self, text: str, offset: int, style: str | None) -> Pos:
        """The position of character `offset` inside a scalar whose value is `text`."""
        before = text[:offset]
        extra_lines = before.count("\n")
        if style in ("|", ">"):
            # block scalars start on the line after the indicator; columns are approximate
            return Pos(self.file, self.line + 1 + extra_lines, self.col + len(before.split("\n")[-1]))
        quote = 1 if style in ("'", '"') else 0
        if extra_lines == 0:
            return Pos(self.file, self.line, self.col + quote + offset)
        return Pos(self.file, self.line + extra_lines, len(before.split("\n")[-1]) + 1)


@dataclass
class YNode:
    """One node of the positioned tree."""

    kind: str  # "map" | "seq" | "scalar"
    pos: Pos
    value: Scalar = None
    style: str | None = None
    items: list[YNode] = field(default_factory=list)  # seq
    pairs: list[tuple[YNode, YNode]] = field(default_factory=list)  # map

    def describe(self) -> str:
        if self.kind == "scalar":
            return "null" if self.value is None else type(self.value).__name__
        return {"map": "mapping", "seq": "list"}[self.kind]

    def to_python(self) -> object:
        if self.kind == "scalar":
            return self.value
        if self.kind == "seq":
            return [i.to_python() for i in self.items]
        return {str(k.value): v.to_python() for k, v in self.pairs}


_CONSTRUCTOR = yaml.constructor.SafeConstructor()
# libyaml's parser when present (same marks, ~10x faster on large policies)
_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def _pos(file: str, node: yaml.Node) -> Pos:
    return Pos(file, node.start_mark.line + 1, node.start_mark.column + 1)


def _scalar(file: str, node: yaml.ScalarNode) -> YNode:
    kind = _CORE_TAGS.get(node.tag)
    pos = _pos(file, node)
    if kind is None:
        raise pos.error(f"tag {node.tag!r} is not allowed in a policy file")
    value: Scalar
    value = node.value if kind == "str" else _CONSTRUCTOR.construct_object(node)
    return YNode("scalar", pos, value=value, style=node.style)


def _convert(file: str, node: yaml.Node, seen_nodes: set[int], depth: int = 0) -> YNode:
    if depth > 50:
        raise _pos(file, node).error("nesting is too deep")
    if id(node) in seen_nodes:
        raise _pos(file, node).error("YAML aliases are not allowed in a policy file")
    seen_nodes.add(id(node))
    if isinstance(node, yaml.ScalarNode):
        return _scalar(file, node)
    if isinstance(node, yaml.SequenceNode):
        if node.tag != "tag:yaml.org,2002:seq":
            raise _pos(file, node).error(f"tag {node.tag!r} is not allowed in a policy file")
        return YNode("seq", _pos(file, node), items=[_convert(file, n, seen_nodes, depth + 1) for n in node.value])
    if isinstance(node, yaml.MappingNode):
        if node.tag != "tag:yaml.org,2002:map":
            raise _pos(file, node).error(f"tag {node.tag!r} is not allowed in a policy file")
        out = YNode("map", _pos(file, node))
        seen: set[object] = set()
        for key_node, value_node in node.value:
            key = _convert(file, key_node, seen_nodes, depth + 1)
            if key.kind != "scalar" or not isinstance(key.value, str):
                raise key.pos.error(f"keys must be strings, got {key.describe()}")
            if key.value in seen:
                raise key.pos.error(f"duplicate key {key.value!r}")
            seen.add(key.value)
            out.pairs.append((key, _convert(file, value_node, seen_nodes, depth + 1)))
        return out
    raise _pos(file, node).error("unsupported YAML node")


def load_positioned(text: str, file: str) -> YNode:
    """Compose `text` and return its positioned tree; malformed YAML raises PolicyError."""
    text = text.removeprefix("\ufeff")  # libyaml's marks skip a byte-order mark, PyYAML's count it
    try:
        nodes = list(yaml.compose_all(text, Loader=_LOADER))
    except yaml.MarkedYAMLError as exc:
        failed = exc.problem_mark or exc.context_mark
        opening = left_open(text, failed.index, _LOADER) if failed is not None else None
        if opening is not None:  # point where the problem starts, not where the parser gave up
            raise PolicyError(f"malformed YAML: {describe(opening)}", file=file, line=opening.line,
                              col=opening.col) from None
        mark = exc.problem_mark or exc.context_mark
        line, col = (mark.line + 1, mark.column + 1) if mark else (1, 1)
        raise PolicyError(f"malformed YAML: {exc.problem or exc.context}", file=file, line=line, col=col) from None
    except yaml.YAMLError as exc:
        raise PolicyError(f"malformed YAML: {exc}", file=file, line=1, col=1) from None
    if len(nodes) != 1 or nodes[0] is None:
        raise PolicyError("expected exactly one YAML document", file=file, line=1, col=1)
    return _convert(file, nodes[0], set())
