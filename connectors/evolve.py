"""From what a downstream table is to what the events' Iceberg schema says it should be: a plan.

The sink remembers, per downstream column, the Iceberg field id and type it was made for (table
`_icetide_columns`, written in the same transaction as the rows). Against the schema of the newest
event of a batch that gives, per column:

- **rename** — the field id is known under another name → `RENAME COLUMN` (a downstream column
  already holding the new name is moved aside first, see drop);
- **widen / upgrade** — the declared type differs from the type of the Iceberg column → change the
  column's type, converting its values (PostgreSQL `ALTER COLUMN … TYPE … USING`, SQLite a rebuild of
  the table). Iceberg's promotions (int→long, float→double, decimal precision) always succeed; a
  column made by an older icetide (text where the schema says decimal, date, …) is converted in
  place when every value it holds converts, otherwise the sink stops with a message that says how to
  rebuild the copy. A schema narrower than the column (an older schema made current again) keeps it;
- **add** — an unknown column → `ADD COLUMN` (rows written before read NULL);
- **drop** — a column the schema no longer has is kept, nullable, with the values it had; events in
  the new schema no longer write it, so rows inserted or updated afterwards hold NULL there. If a
  later column reuses its name (drop, then add again: a new field id), the kept one is renamed
  `<name>__dropped_<field id>` first, so old values never show up as the new column's.

Columns without field ids (a schema from an encoding that does not carry them) are matched by name.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from icetide.rowschema import Column, RowSchema

from connectors.types import covers

Meta = dict[str, tuple[int | None, str]]  # downstream column → (Iceberg field id, Iceberg type)


@dataclass(frozen=True)
class Retype:
    name: str
    old_decl: str
    new_decl: str
    iceberg: str  # the column's Iceberg type afterwards
    old_iceberg: str | None  # what the column was made for, None if made by an older icetide


@dataclass
class Plan:
    create: list[tuple[str, str]] | None = None  # (name, declared type) when the table is absent
    renames: list[tuple[str, str]] = field(default_factory=list)  # (old, new) in order
    retypes: list[Retype] = field(default_factory=list)
    adds: list[tuple[str, str]] = field(default_factory=list)
    meta: Meta = field(default_factory=dict)  # what `_icetide_columns` holds afterwards

    @property
    def ddl(self) -> bool:
        return bool(self.create is not None or self.renames or self.retypes or self.adds)


def plan(target: RowSchema, declared: Mapping[str, str] | None, meta: Mapping[str, tuple[int | None, str]],
         decl: Callable[[str], str]) -> Plan:
    """The steps that bring a table (`declared`: column → declared type, None if absent) to `target`."""
    if declared is None:
        return Plan(create=[(c.name, decl(c.type)) for c in target.columns],
                    meta={c.name: (c.field_id, c.type) for c in target.columns})
    out = Plan(meta=dict(meta))
    columns = dict(declared)  # the table as it will be, step by step

    def move(old: str, new: str) -> None:
        out.renames.append((old, new))
        columns[new] = columns.pop(old)
        if old in out.meta:
            out.meta[new] = out.meta.pop(old)

    def aside(name: str) -> None:
        fid = out.meta.get(name, (None, ""))[0]
        stem = f"{name}__dropped_{fid if fid is not None else 'x'}"
        spare, n = stem, 1
        while spare in columns:
            n += 1
            spare = f"{stem}_{n}"
        move(name, spare)

    for column in target.columns:
        _place(column, columns, out, move, aside)
        if column.name not in columns:
            out.adds.append((column.name, decl(column.type)))
            columns[column.name] = decl(column.type)
            out.meta[column.name] = (column.field_id, column.type)
            continue
        known = out.meta.get(column.name)
        kept = known[1] if known is not None and covers(known[1], column.type) else column.type
        if columns[column.name] != decl(kept):
            out.retypes.append(Retype(column.name, columns[column.name], decl(kept), kept,
                                      known[1] if known is not None else None))
            columns[column.name] = decl(kept)
        out.meta[column.name] = (column.field_id, kept)
    return out


def _place(column: Column, columns: dict[str, str], out: Plan,
           move: Callable[[str, str], None], aside: Callable[[str], None]) -> None:
    """Rename the column's field id to its new name; clear the name of a dropped column holding it."""
    if column.field_id is None:
        return
    current = next((n for n, (fid, _) in out.meta.items() if fid == column.field_id and n in columns), None)
    if current == column.name:
        return
    occupant = out.meta.get(column.name)
    if column.name in columns and (current is not None or (occupant is not None and occupant[0] is not None
                                                            and occupant[0] != column.field_id)):
        aside(column.name)  # a dropped column (or one renamed away further on) holds the name
    if current is not None:
        move(current, column.name)


def cannot_convert(where: str, retype: Retype, problem: str, drop: str, topic: str) -> str:
    """The message of a column that cannot be converted in place, and how to rebuild the copy."""
    made = (f"made for {retype.old_iceberg}" if retype.old_iceberg is not None
            else "made by an older icetide or by hand")
    return (f"{where}: cannot convert column {retype.name} ({made}) from {retype.old_decl} to {retype.new_decl} "
            f"for Iceberg type {retype.iceberg} in place: {problem}. Rebuild the downstream copy of this table: "
            f"{drop}; DELETE FROM _icetide_positions WHERE topic = '{topic}'; then run `icetide cdc apply` "
            "again (it re-reads the topic from its first retained offset, so this needs the topic's whole history)")
