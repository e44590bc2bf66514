"""The metadata catalog: table and column descriptions, with each column's classification, in Iceberg itself.

Descriptions live in a YAML file beside the policy (`vendas.descriptions.yaml` beside `vendas.yaml`):

    tables:
      sales.vendas:
        description: One row per sale.
        columns:
          price: Unit price in euros.

`icetide catalog annotate FILE --policy POLICY` writes them into the catalog — the table's `comment` property
and each column's doc — with the column's tags from the policy appended (`Unit price in euros. [financial:
amounts]`), so Trino (`SHOW COLUMNS`, `information_schema.columns.comment`, JDBC `REMARKS`), Spark
(`DESCRIBE`) and PyIceberg show the same words; a table description in the policy is used when the file has
none. The writes are metadata-only commits through PyIceberg (no data file is read or written) and only what
changed is committed. `icetide catalog describe TABLE` reads them back.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from policies.model import Policy
from policies.yamlpos import Pos, YNode, load_positioned

MAX_TEXT = 1000  # Iceberg's JDBC catalog keeps property values in VARCHAR(1000)


@dataclass(frozen=True)
class TableDocs:
    name: str
    pos: Pos
    description: str = ""
    columns: dict[str, str] = field(default_factory=dict)
    column_pos: dict[str, Pos] = field(default_factory=dict)


def _text(node: YNode, what: str) -> str:
    if node.kind != "scalar" or not isinstance(node.value, str) or not node.value.strip():
        raise node.pos.error(f"{what} must be a non-empty string, got {node.describe()}")
    if len(node.value) > MAX_TEXT:
        raise node.pos.error(f"{what} is longer than {MAX_TEXT} characters")
    return " ".join(node.value.split())


def _mapping(node: YNode, what: str) -> list[tuple[YNode, YNode]]:
    if node.kind != "map":
        raise node.pos.error(f"{what} must be a mapping, got {node.describe()}")
    return node.pairs


def parse_descriptions(text: str, file: str) -> dict[str, TableDocs]:
    """The tables of a descriptions file; a mistake raises PolicyError with file:line:col."""
    tree = load_positioned(text, file)
    top = dict((str(k.value), (k, v)) for k, v in _mapping(tree, "the descriptions file"))
    unknown = set(top) - {"tables"}
    if unknown or "tables" not in top:
        raise tree.pos.error("a descriptions file has one key, 'tables'")
    found: dict[str, TableDocs] = {}
    for key, value in _mapping(top["tables"][1], "tables"):
        name = str(key.value).lower()
        parts = dict((str(k.value), (k, v)) for k, v in _mapping(value, f"table {name!r}"))
        if set(parts) - {"description", "columns"}:
            raise value.pos.error(f"table {name!r} takes 'description' and 'columns'")
        description = _text(parts["description"][1], f"{name}: description") if "description" in parts else ""
        columns: dict[str, str] = {}
        where: dict[str, Pos] = {}
        for ckey, cvalue in _mapping(parts["columns"][1], f"{name}: columns") if "columns" in parts else []:
            column = str(ckey.value).lower()
            columns[column], where[column] = _text(cvalue, f"{name}.{column}"), ckey.pos
        found[name] = TableDocs(name, key.pos, description, columns, where)
    return found


def load_descriptions(path: str | Path) -> dict[str, TableDocs]:
    return parse_descriptions(Path(path).read_text(encoding="utf-8"), str(path))


def comments(docs: dict[str, TableDocs], policy: Policy | None = None) -> dict[str, dict[str, Any]]:
    """Per table, the comment and the column docs to write: each column's description, then its tags from
    the policy with their meaning (`[pii: personal data]`); a classified column without a description gets
    its tags alone."""
    governed = policy.tables if policy else {}
    meaning = {name: tag.description for name, tag in policy.tags.items()} if policy else {}
    out: dict[str, dict[str, Any]] = {}
    for name in sorted({*docs, *governed}):
        table, rules = docs.get(name), governed.get(name)
        description = (table.description if table else "") or (rules.description if rules else "")
        columns = dict(table.columns) if table else {}
        for c in rules.columns if rules else ():
            tags = "; ".join(f"{t.name}: {meaning[t.name]}" if meaning.get(t.name) else t.name for t in c.tags)
            if tags:
                columns[c.column] = f"{columns[c.column]} [{tags}]" if c.column in columns else f"[{tags}]"
        out[name] = {"comment": description, "columns": columns}
    return out


def annotate(catalog: Any, wanted: dict[str, dict[str, Any]], docs: dict[str, TableDocs] | None = None
             ) -> dict[str, dict[str, Any]]:
    """Write the comments into the catalog's tables (what differs only); what changed, per table. A column the
    table does not have is a PolicyError at its line in the descriptions file (nothing is written for it)."""
    changed: dict[str, dict[str, Any]] = {}
    for name, want in wanted.items():
        table = catalog.load_table(name)
        fields = {f.name.lower(): f for f in table.schema().fields}
        missing = sorted(set(want["columns"]) - set(fields))
        if missing:
            pos = (docs or {}).get(name)
            where = pos.column_pos.get(missing[0], pos.pos) if pos else Pos(name, 1, 1)
            raise where.error(f"table {name} has no column {missing[0]!r}")
        docs_changed = {c: text for c, text in want["columns"].items() if fields[c].doc != text}
        comment_changed = bool(want["comment"]) and table.properties.get("comment") != want["comment"]
        if docs_changed:
            with table.update_schema() as update:
                for column, text in docs_changed.items():
                    update.update_column(fields[column].name, doc=text)
        if comment_changed:
            with table.transaction() as tx:
                tx.set_properties(comment=want["comment"])
        if docs_changed or comment_changed:
            changed[name] = {"comment": want["comment"] if comment_changed else None, "columns": docs_changed}
    return changed


def describe(catalog: Any, name: str) -> dict[str, Any]:
    """A table's comment and its columns (name, type, doc) as the catalog holds them."""
    table = catalog.load_table(name)
    return {"table": name, "comment": table.properties.get("comment"),
            "columns": [{"name": f.name, "type": str(f.field_type), "doc": f.doc} for f in table.schema().fields]}
