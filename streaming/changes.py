"""Pure changelog post-processing: carry-over removal and update pairing (no I/O, no JVM).

The engine reads, per snapshot (or per partition of a snapshot, see `changelog.py`), the rows that
left the table (DELETE candidates) and the rows that entered it (INSERT candidates). Two steps turn
them into the events of that snapshot:

1. **Carry-over removal.** Copy-on-write rewrites a whole file to change one row; the unchanged
   rows come out as a DELETE and an identical INSERT in the same snapshot. Identical pairs cancel,
   as a multiset (two identical rows rewritten → two pairs cancel; a real duplicate insert stays).
2. **Update pairing.** With key fields, a DELETE and an INSERT of the same key in one snapshot are
   one update (`u`, before → after). Pairs are matched first-come first-served per key, like
   Iceberg's `compute_updates`, except that extra rows of one key stay plain DELETE / INSERT
   instead of failing.

Output order within a snapshot: unpaired deletes, then updates, then unpaired inserts. Applying
them in that order by key (or as a multiset without keys) turns the table before the snapshot into
the table after it: a key is never inserted and then deleted by the same snapshot's events.
Rows here are already JSON-ready images (`icetide.events.encode_row`); the change record, the
key and the net effect of a range are the kernel's (`icetide.events`).
"""

from __future__ import annotations

from collections import Counter, defaultdict, deque
from collections.abc import Sequence

from icetide.events import Change, Row, RowKey, identity, key_of


def remove_carry_overs(deletes: Sequence[Row], inserts: Sequence[Row]) -> tuple[list[Row], list[Row]]:
    """Cancel identical DELETE/INSERT pairs (multiset); keeps the order of what remains."""
    if not deletes or not inserts:  # nothing can cancel (an append): skip hashing every row
        return list(deletes), list(inserts)
    insert_counts = Counter(identity(row) for row in inserts)
    delete_counts = Counter(identity(row) for row in deletes)
    cancel = {ident: min(n, insert_counts[ident]) for ident, n in delete_counts.items() if ident in insert_counts}
    if not cancel:
        return list(deletes), list(inserts)
    return _drop(deletes, dict(cancel)), _drop(inserts, dict(cancel))


def _drop(rows: Sequence[Row], budget: dict[str, int]) -> list[Row]:
    kept: list[Row] = []
    for row in rows:
        ident = identity(row)
        if budget.get(ident, 0) > 0:
            budget[ident] -= 1
        else:
            kept.append(row)
    return kept


def pair_updates(deletes: Sequence[Row], inserts: Sequence[Row], key_fields: Sequence[str]) -> list[Change]:
    """DELETE + INSERT of one key → `u`; order: deletes, updates, inserts (see module docstring)."""
    if not key_fields or not deletes or not inserts:  # nothing to pair
        return [Change("d", row, None) for row in deletes] + [Change("c", None, row) for row in inserts]
    pending: dict[RowKey, deque[int]] = defaultdict(deque)
    for index, row in enumerate(inserts):
        pending[key_of(row, key_fields)].append(index)
    paired: set[int] = set()
    plain_deletes: list[Change] = []
    updates: list[Change] = []
    for row in deletes:
        queue = pending.get(key_of(row, key_fields))
        if queue:
            index = queue.popleft()
            paired.add(index)
            updates.append(Change("u", row, inserts[index]))
        else:
            plain_deletes.append(Change("d", row, None))
    plain_inserts = [Change("c", None, row) for i, row in enumerate(inserts) if i not in paired]
    return plain_deletes + updates + plain_inserts


def snapshot_changes(deletes: Sequence[Row], inserts: Sequence[Row], key_fields: Sequence[str]) -> list[Change]:
    """Both steps for one snapshot (or one independent group of it)."""
    kept_deletes, kept_inserts = remove_carry_overs(deletes, inserts)
    return pair_updates(kept_deletes, kept_inserts, key_fields)
