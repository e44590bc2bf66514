"""Read a policy file into the model, rejecting anything malformed with file:line:col.

Structure is checked here (known keys, types, names); meaning — tables, columns, filter
expressions, mask types — is checked by `policies.validate` against the table schemas.
"""

from __future__ import annotations

import hashlib
import json
import re
from decimal import Decimal
from pathlib import Path

from icetide.errors import PolicyError

from policies.model import (
    ATTRIBUTE_TYPES,
    AttrValue,
    Classification,
    FilterText,
    KeySource,
    MaskRule,
    MaskSpec,
    Named,
    Policy,
    RowRule,
    Selector,
    TablePolicy,
    Tag,
    User,
)
from policies.yamlpos import Pos, YNode, load_positioned

NAME = re.compile(r"[a-z][a-z0-9_]{0,62}")
TAG = re.compile(r"[a-z][a-z0-9_-]{0,62}")
RULE_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}")
KEY_ID = re.compile(r"[a-z0-9][a-z0-9_-]{0,62}")
ENV_NAME = re.compile(r"[A-Z_][A-Z0-9_]{0,127}")
TABLE = re.compile(r"[a-z_][a-z0-9_]{0,127}\.[a-z_][a-z0-9_]{0,127}")
COLUMN = re.compile(r"[a-z_][a-z0-9_]{0,127}")
BAD_VALUE_CHARS = re.compile(r"[\x00-\x1f\x7f\\]")
MAX_FILTER = 4000
# The keys each part of a policy may have (the JSON Schema in policies/schema must agree; a test checks it).
KEYS: dict[str, set[str]] = {
    "policy": {"policy", "version", "description", "principals", "keys", "tags", "tables"},
    "principals": {"attributes", "groups", "users"},
    "user": {"groups", "attributes"},
    "key": {"env", "file"},
    "tag": {"default_mask", "description"},
    "table": {"columns", "row_filters", "masks", "description"},
    "row_filter": {"id", "effect", "to", "filter", "lookup_tables", "description"},
    "mask_rule": {"id", "to", "columns", "tags", "mask", "description"},
    "mask": {"show_first", "show_last", "hash", "bucket"},
    "to": {"users", "groups"},
}


def _map(node: YNode, what: str, allowed: set[str], required: frozenset[str] | set[str] = frozenset()
         ) -> dict[str, YNode]:
    if node.kind != "map":
        raise node.pos.error(f"{what} must be a mapping, got {node.describe()}")
    out: dict[str, YNode] = {}
    for key, value in node.pairs:
        name = str(key.value)
        if allowed and name not in allowed:
            raise key.pos.error(f"unknown key {name!r} in {what} (expected one of: {', '.join(sorted(allowed))})")
        out[name] = value
    for name in sorted(required):
        if name not in out:
            raise node.pos.error(f"{what} is missing required key {name!r}")
    return out


def _str(node: YNode, what: str, pattern: re.Pattern[str] | None = None) -> str:
    if node.kind != "scalar" or not isinstance(node.value, str):
        raise node.pos.error(f"{what} must be a string, got {node.describe()}")
    if pattern is not None and not pattern.fullmatch(node.value):
        raise node.pos.error(f"{what} {node.value!r} is not a valid name (must match {pattern.pattern})")
    return node.value


def _names(node: YNode, what: str, pattern: re.Pattern[str]) -> tuple[Named, ...]:
    items = [node] if node.kind == "scalar" else node.items if node.kind == "seq" else None
    if items is None:
        raise node.pos.error(f"{what} must be a name or a list of names, got {node.describe()}")
    out: list[Named] = []
    for item in items:
        name = _str(item, what, pattern)
        if any(n.name == name for n in out):
            raise item.pos.error(f"{what} {name!r} is listed twice")
        out.append(Named(name, item.pos))
    return tuple(out)


def _int(node: YNode, what: str, low: int, high: int) -> int:
    if node.kind != "scalar" or isinstance(node.value, bool) or not isinstance(node.value, int):
        raise node.pos.error(f"{what} must be an integer, got {node.describe()}")
    if not low <= node.value <= high:
        raise node.pos.error(f"{what} must be between {low} and {high}, got {node.value}")
    return node.value


def parse_mask(node: YNode, what: str = "mask") -> MaskSpec:
    """`none` | `null` | `redact` | `year_only` | {show_first: n} | {show_last: n} | {hash: key} | {bucket: w}."""
    if node.kind == "scalar" and node.value is None:
        return MaskSpec("null", node.pos)
    if node.kind == "scalar":
        name = _str(node, what)
        if name in ("none", "null", "redact", "year_only"):
            return MaskSpec(name, node.pos)
        if name == "hash":
            return MaskSpec("hash", node.pos, key=None)
        raise node.pos.error(f"unknown {what} {name!r} (none, null, redact, year_only, hash, "
                             "show_first, show_last, bucket)")
    fields = _map(node, what, KEYS["mask"])
    if len(fields) != 1:
        raise node.pos.error(f"{what} must have exactly one kind")
    (kind, arg), = fields.items()
    if kind in ("show_first", "show_last"):
        return MaskSpec(kind, node.pos, n=_int(arg, f"{kind} length", 1, 64))
    if kind == "hash":
        key = None if arg.kind == "scalar" and arg.value is None else _str(arg, "hash key id", KEY_ID)
        return MaskSpec("hash", node.pos, key=key)
    if arg.kind != "scalar" or isinstance(arg.value, bool) or not isinstance(arg.value, int):
        raise arg.pos.error(f"bucket width must be a positive integer, got {arg.describe()}")
    if not 1 <= arg.value <= 10**15:
        raise arg.pos.error(f"bucket width must be between 1 and 1e15, got {arg.value}")
    width = Decimal(arg.value)
    return MaskSpec("bucket", node.pos, width=width)


def _selector(node: YNode) -> Selector:
    if node.kind == "scalar" and node.value == "everyone":
        return Selector(node.pos, everyone=True)
    fields = _map(node, "'to'", KEYS["to"])
    if not fields:
        raise node.pos.error("'to' must name users or groups (or be 'everyone')")
    users = tuple(n.name for n in _names(fields["users"], "user", NAME)) if "users" in fields else ()
    groups = tuple(n.name for n in _names(fields["groups"], "group", NAME)) if "groups" in fields else ()
    return Selector(node.pos, users=users, groups=groups)


def _attr_value(node: YNode, name: str, kind: str) -> AttrValue:
    value = node.value if node.kind == "scalar" else None
    ok = {
        "string": isinstance(value, str),
        "long": isinstance(value, int) and not isinstance(value, bool),
        "double": isinstance(value, int | float) and not isinstance(value, bool),
        "boolean": isinstance(value, bool),
    }[kind]
    if not ok or value is None:
        raise node.pos.error(f"attribute {name!r} must be a {kind}, got {node.describe()}")
    if isinstance(value, str) and (BAD_VALUE_CHARS.search(value) or len(value) > 256):
        raise node.pos.error(f"attribute {name!r}: value has control characters or backslashes, or is too long")
    if (isinstance(value, float) and value != value) or value in (float("inf"), float("-inf")):
        raise node.pos.error(f"attribute {name!r} must be a finite number")
    return value


def _principals(node: YNode) -> tuple[dict[str, str], tuple[str, ...], dict[str, User]]:
    fields = _map(node, "principals", KEYS["principals"], {"users"})
    attributes: dict[str, str] = {}
    if "attributes" in fields:
        for key, value in _pairs(fields["attributes"], "principals.attributes"):
            _str(key, "attribute name", NAME)
            kind = _str(value, f"type of attribute {key.value!r}")
            if kind not in ATTRIBUTE_TYPES:
                raise value.pos.error(f"attribute type must be one of {', '.join(ATTRIBUTE_TYPES)}, got {kind!r}")
            attributes[str(key.value)] = kind
    groups = tuple(n.name for n in _names(fields["groups"], "group", NAME)) if "groups" in fields else ()
    users: dict[str, User] = {}
    user_nodes = fields["users"]
    if user_nodes.kind != "map":
        raise user_nodes.pos.error("principals.users must be a mapping of user names")
    for key, value in user_nodes.pairs:
        name = _str(key, "user name", NAME)
        spec = {} if value.kind == "scalar" and value.value is None else _map(
            value, f"user {name!r}", KEYS["user"])
        member = _names(spec["groups"], "group", NAME) if "groups" in spec else ()
        for g in member:
            if g.name not in groups:
                raise g.pos.error(f"unknown group {g.name!r} (declare it in principals.groups)")
        attrs: dict[str, AttrValue] = {}
        if "attributes" in spec:
            for key_node, avalue in _pairs(spec["attributes"], f"attributes of {name!r}"):
                akey = _str(key_node, "attribute name", NAME)
                if akey not in attributes:
                    raise key_node.pos.error(f"unknown attribute {akey!r} (declare it in principals.attributes)")
                attrs[akey] = _attr_value(avalue, akey, attributes[akey])
        users[name] = User(name, key.pos, tuple(g.name for g in member), attrs)
    return attributes, groups, users


def _row_rule(node: YNode) -> RowRule:
    f = _map(node, "row filter", KEYS["row_filter"], {"id", "to"})
    effect = _str(f["effect"], "effect") if "effect" in f else "allow"
    if effect not in ("allow", "deny"):
        raise f["effect"].pos.error(f"effect must be 'allow' or 'deny', got {effect!r}")
    text = None
    if "filter" in f:
        raw = _str(f["filter"], "filter")
        if not raw.strip():
            raise f["filter"].pos.error("filter is empty (omit it to select every row)")
        if len(raw) > MAX_FILTER:
            raise f["filter"].pos.error(f"filter is longer than {MAX_FILTER} characters")
        text = FilterText(raw, f["filter"].pos, f["filter"].style)
    lookups = tuple(n.name for n in _names(f["lookup_tables"], "lookup table", TABLE)) if "lookup_tables" in f else ()
    return RowRule(_str(f["id"], "rule id", RULE_ID), node.pos, effect, _selector(f["to"]), text, lookups)


def _mask_rule(node: YNode) -> MaskRule:
    f = _map(node, "mask rule", KEYS["mask_rule"], {"id", "to", "mask"})
    columns = _names(f["columns"], "column", COLUMN) if "columns" in f else ()
    tags = _names(f["tags"], "tag", TAG) if "tags" in f else ()
    if not columns and not tags:
        raise node.pos.error("a mask rule must select columns or tags")
    return MaskRule(_str(f["id"], "rule id", RULE_ID), node.pos, _selector(f["to"]), parse_mask(f["mask"]),
                    columns, tags)


def _table(name: str, pos: Pos, node: YNode) -> TablePolicy:
    f = _map(node, f"table {name!r}", KEYS["table"])
    columns: list[Classification] = []
    if "columns" in f:
        for key, value in _pairs(f["columns"], "columns"):
            column = _str(key, "column", COLUMN)
            tags = () if value.kind == "scalar" and value.value is None else _names(value, "tag", TAG)
            columns.append(Classification(column, key.pos, tags))
    rows = tuple(_row_rule(n) for n in _items(f["row_filters"], "row_filters")) if "row_filters" in f else ()
    masks = tuple(_mask_rule(n) for n in _items(f["masks"], "masks")) if "masks" in f else ()
    description = _str(f["description"], "description") if "description" in f else ""
    return TablePolicy(name, pos, tuple(columns), rows, masks, description)


def _pairs(node: YNode, what: str) -> list[tuple[YNode, YNode]]:
    if node.kind != "map":
        raise node.pos.error(f"{what} must be a mapping, got {node.describe()}")
    return node.pairs


def _items(node: YNode, what: str) -> list[YNode]:
    if node.kind != "seq":
        raise node.pos.error(f"{what} must be a list, got {node.describe()}")
    return node.items


def content_hash(tree: YNode) -> str:
    """sha256 of the policy's meaning (canonical JSON), not of its formatting."""
    canonical = json.dumps(tree.to_python(), sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()


def parse_policy(text: str, file: str) -> Policy:
    """Parse policy text; structural mistakes raise PolicyError with file:line:col."""
    tree = load_positioned(text, file)
    top = _map(tree, "the policy", KEYS["policy"],
               {"policy", "version", "principals", "tables"})
    attributes, groups, users = _principals(top["principals"])
    keys: dict[str, KeySource] = {}
    for key, value in _pairs(top["keys"], "keys") if "keys" in top else []:
        kid = _str(key, "key id", KEY_ID)
        spec = _map(value, f"key {kid!r}", KEYS["key"])
        if len(spec) != 1:
            raise value.pos.error(f"key {kid!r} needs exactly one of 'env' or 'file'")
        env = _str(spec["env"], "env", ENV_NAME) if "env" in spec else None
        path = _str(spec["file"], "file") if "file" in spec else None
        keys[kid] = KeySource(kid, key.pos, env, path)
    tags: dict[str, Tag] = {}
    for key, value in _pairs(top["tags"], "tags") if "tags" in top else []:
        tname = _str(key, "tag", TAG)
        spec = _map(value, f"tag {tname!r}", KEYS["tag"], {"default_mask"})
        tags[tname] = Tag(tname, key.pos, parse_mask(spec["default_mask"], "default_mask"),
                          _str(spec["description"], "description") if "description" in spec else "")
    tables: dict[str, TablePolicy] = {}
    short: dict[str, str] = {}
    for key, value in _pairs(top["tables"], "tables"):
        tname = _str(key, "table", TABLE)
        if tname.startswith("sec_"):
            raise key.pos.error(f"table {tname!r}: namespaces starting with 'sec_' hold secure views")
        table = _table(tname, key.pos, value)
        if table.short_name in short:
            raise key.pos.error(f"table {tname!r} has the same view name as {short[table.short_name]!r}")
        short[table.short_name] = tname
        tables[tname] = table
    version = _int(top["version"], "version", 0, 2**31 - 1)
    description = _str(top["description"], "description") if "description" in top else ""
    return Policy(_str(top["policy"], "policy id", RULE_ID), version, file, content_hash(tree), tree.pos,
                  attributes, groups, users, tags, keys, tables, description)


def load_policy(path: str | Path) -> Policy:
    """Read and parse a policy file."""
    file = Path(path)
    try:
        text = file.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise PolicyError(f"cannot read policy: {exc.__class__.__name__}", file=str(file), line=1, col=1) from None
    return parse_policy(text, str(file))
