"""The policy model: what a policy file says, with the position of every part.

A policy names principals (users with groups and typed attributes), tags that classify
columns (each with a default mask), and per-table rules: row filters (allow / deny) and
column masks. Everything not allowed is denied: a user no allow rule matches sees no rows,
a column no rule classifies is masked with null.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from functools import cached_property

from policies.yamlpos import Pos

MASK_KINDS = ("none", "null", "redact", "show_first", "show_last", "hash", "year_only", "bucket")
ATTRIBUTE_TYPES = ("string", "long", "double", "boolean")
AttrValue = str | int | float | bool


@dataclass(frozen=True)
class MaskSpec:
    """One mask: its kind and parameter (n for show_*, width for bucket, key id for hash)."""

    kind: str
    pos: Pos
    n: int | None = None
    width: Decimal | None = None
    key: str | None = None

    def label(self) -> str:
        if self.kind in ("show_first", "show_last"):
            return f"{self.kind}({self.n})"
        if self.kind == "bucket":
            return f"bucket({self.width})"
        if self.kind == "hash":
            return f"hash({self.key})"
        return self.kind

    def same_as(self, other: MaskSpec) -> bool:
        return (self.kind, self.n, self.width, self.key) == (other.kind, other.n, other.width, other.key)


@dataclass(frozen=True)
class Selector:
    """Whom a rule applies to: listed users, members of listed groups, or everyone."""

    pos: Pos
    users: tuple[str, ...] = ()
    groups: tuple[str, ...] = ()
    everyone: bool = False

    @cached_property
    def _groups(self) -> frozenset[str]:
        return frozenset(self.groups)

    def matches(self, user: User) -> bool:
        return self.everyone or user.name in self.users or not self._groups.isdisjoint(user.groups)


@dataclass(frozen=True)
class User:
    name: str
    pos: Pos
    groups: tuple[str, ...] = ()
    attributes: dict[str, AttrValue] = field(default_factory=dict)


@dataclass(frozen=True)
class Tag:
    name: str
    pos: Pos
    default_mask: MaskSpec
    description: str = ""  # what the tag means: part of each tagged column's comment in the catalog


@dataclass(frozen=True)
class FilterText:
    """A SQL expression from the file, and how to map offsets inside it to file positions."""

    text: str
    pos: Pos
    style: str | None

    def at(self, offset: int) -> Pos:
        return self.pos.shifted(self.text, max(0, min(offset, len(self.text))), self.style)


@dataclass(frozen=True)
class RowRule:
    id: str
    pos: Pos
    effect: str  # "allow" | "deny"
    to: Selector
    filter: FilterText | None = None
    lookup_tables: tuple[str, ...] = ()


@dataclass(frozen=True)
class Named:
    """A name written in the file (column or tag) with its position."""

    name: str
    pos: Pos


@dataclass(frozen=True)
class MaskRule:
    id: str
    pos: Pos
    to: Selector
    mask: MaskSpec
    columns: tuple[Named, ...] = ()
    tags: tuple[Named, ...] = ()


@dataclass(frozen=True)
class Classification:
    column: str
    pos: Pos
    tags: tuple[Named, ...]


@dataclass(frozen=True)
class TablePolicy:
    name: str
    pos: Pos
    columns: tuple[Classification, ...] = ()
    row_rules: tuple[RowRule, ...] = ()
    mask_rules: tuple[MaskRule, ...] = ()
    description: str = ""

    @property
    def short_name(self) -> str:
        return self.name.split(".")[-1]

    def tags_of(self, column: str) -> tuple[str, ...] | None:
        """The column's tags, or None when no classification names the column."""
        for c in self.columns:
            if c.column == column:
                return tuple(t.name for t in c.tags)
        return None


@dataclass(frozen=True)
class KeySource:
    """Where a hash key comes from: an environment variable or a secret file."""

    id: str
    pos: Pos
    env: str | None = None
    file: str | None = None


@dataclass(frozen=True)
class Policy:
    id: str
    version: int
    file: str
    content_hash: str
    pos: Pos
    attributes: dict[str, str] = field(default_factory=dict)  # attribute name → type
    groups: tuple[str, ...] = ()
    users: dict[str, User] = field(default_factory=dict)
    tags: dict[str, Tag] = field(default_factory=dict)
    keys: dict[str, KeySource] = field(default_factory=dict)
    tables: dict[str, TablePolicy] = field(default_factory=dict)
    description: str = ""
