"""Row images of typed tables: names translated to the downstream columns, values to typed parameters.

An image of an older schema names a renamed column by its old name; the Iceberg field ids of the
image's own schema (`Change.schema`) and of the downstream columns (`_icetide_columns`) map it to
the column it lives in now. Each value is then converted by its column's Iceberg type (see
`connectors.types`): once, before the batch is folded per key, so two spellings of one key value
(`2024-01-01 01:00:00` and `2024-01-01T01:00:00`) are one key.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from icetide.errors import EventError
from icetide.rowschema import RowSchema

from connectors.types import Convert

if TYPE_CHECKING:
    from connectors.base import Change

Meta = Mapping[str, tuple[int | None, str]]


def renames(schema: RowSchema | None, meta: Meta) -> dict[str, str]:
    """Image column name → downstream column name, where they differ (same field id)."""
    if schema is None:
        return {}
    by_id = {fid: name for name, (fid, _) in meta.items() if fid is not None}
    return {c.name: by_id[c.field_id] for c in schema.columns
            if c.field_id is not None and c.field_id in by_id and by_id[c.field_id] != c.name}


def typed_image(image: Mapping[str, Any], names: Mapping[str, str], convert: Mapping[str, Convert]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, value in image.items():
        name = names.get(name, name)
        fn = convert.get(name)
        if value is None or fn is None:
            out[name] = value
            continue
        try:
            out[name] = fn(value)
        except EventError as exc:
            raise EventError(f"column {name}: {exc}") from None
    return out


def typed_changes(items: Sequence[Change], meta: Meta, convert: Mapping[str, Convert]) -> list[Change]:
    """`items` with images and key fields named and typed as the downstream table is."""
    cache: dict[RowSchema | None, dict[str, str]] = {}
    out = []
    for change in items:
        names = cache.get(change.schema)
        if names is None:
            names = cache[change.schema] = renames(change.schema, meta)
        event = change.event
        before = None if event.before is None else typed_image(event.before, names, convert)
        after = None if event.after is None else typed_image(event.after, names, convert)
        keys = tuple(names.get(k, k) for k in change.key_fields)
        out.append(replace(change, event=replace(event, before=before, after=after), key_fields=keys))
    return out
