"""Row images of typed tables: names translated to the downstream columns, values to typed parameters.

An image of an older schema names a renamed column by its old name; the Iceberg field ids of the
image's own schema (`Consumed.schema`) and of the downstream columns (`_icetide_columns`) map it to
the column it lives in now. Each value is then converted by its column's Iceberg type (see
`connectors.types`): once, before the batch is folded per key, so two spellings of one key value
(`2024-01-01 01:00:00` and `2024-01-01T01:00:00`) are one key.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from icetide.errors import EventError
from icetide.rowschema import RowSchema

from connectors.types import Convert

if TYPE_CHECKING:
    from connectors.base import Consumed

Meta = Mapping[str, tuple[int | None, str]]


def renames(schema: RowSchema | None, meta: Meta) -> dict[str, str | None]:
    """Image column name → downstream column name where they differ (same field id), or None for a
    field the downstream table never had and the newest schema no longer has (dropped before the
    table learned of it: not written, as Iceberg no longer shows it)."""
    if schema is None:
        return {}
    by_id = {fid: name for name, (fid, _) in meta.items() if fid is not None}
    out: dict[str, str | None] = {}
    for c in schema.columns:
        if c.field_id is None:
            continue
        if c.field_id in by_id:
            if by_id[c.field_id] != c.name:
                out[c.name] = by_id[c.field_id]
        elif c.name not in meta or meta[c.name][0] is not None:  # (a column matched by name has no id)
            out[c.name] = None
    return out


Plan = list[tuple[str | None, Convert | None]]


def _plan(keys: Any, names: Mapping[str, str | None], convert: Mapping[str, Convert]) -> Plan:
    out: Plan = []
    for key in keys:
        name = names.get(key, key)
        out.append((name, None if name is None else convert.get(name)))
    return out


def typed_image(image: Mapping[str, Any], names: Mapping[str, str | None], convert: Mapping[str, Convert],
                plan: Plan | None = None) -> dict[str, Any]:
    """One image with downstream names and typed values (`plan`: `_plan` of its keys, if known)."""
    if plan is None:
        plan = _plan(image.keys(), names, convert)
    try:
        return {name: value if value is None or fn is None else fn(value)
                for (name, fn), value in zip(plan, image.values(), strict=True) if name is not None}
    except EventError:
        for (name, fn), value in zip(plan, image.values(), strict=True):
            if value is not None and fn is not None:
                try:
                    fn(value)
                except EventError as exc:
                    raise EventError(f"column {name}: {exc}") from None
        raise


def typed_changes(items: Sequence[Consumed], meta: Meta, convert: Mapping[str, Convert]) -> list[Consumed]:
    """`items` with images and key fields named and typed as the downstream table is."""
    from icetide.events import ChangeEvent

    from connectors.base import Consumed

    names_of: dict[int, dict[str, str | None]] = {}  # id(schema) → renames (the items hold the schemas alive)
    plans: dict[tuple[int, tuple[str, ...]], Plan] = {}
    out = []
    last: tuple[int, tuple[str, ...] | None] = (0, None)  # (id of the schema, image keys) the plan below is for
    last_plan: Plan = []
    for change in items:
        schema_id = id(change.schema)
        names = names_of.get(schema_id)
        if names is None:
            names = names_of[schema_id] = renames(change.schema, meta)
        images: list[dict[str, Any] | None] = []
        for image in (change.event.before, change.event.after):
            if image is None:
                images.append(None)
                continue
            keys = tuple(image)  # in order: the plan pairs with image.values()
            if schema_id != last[0] or keys != last[1]:  # consecutive images mostly share schema and keys
                plan = plans.get((schema_id, keys))
                if plan is None:
                    plan = plans[(schema_id, keys)] = _plan(keys, names, convert)
                last, last_plan = (schema_id, keys), plan
            images.append(typed_image(image, names, convert, last_plan))
        event = change.event
        out.append(Consumed(change.topic, change.partition, change.offset,
                          ChangeEvent(event.op, images[0], images[1], event.source, event.ts_ms),
                          tuple(names.get(k) or k for k in change.key_fields), change.schema))
    return out
