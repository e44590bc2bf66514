"""`policy diff OLD NEW`: who gains or loses which rows and columns.

Compares the effective access of every (user, table) either policy covers. Rows: a table
becoming visible or invisible is a gain or loss of every row; a changed filter is reported
with both predicates. Columns: a mask becoming less restrictive is a gain, more a loss.
"""

from __future__ import annotations

from dataclasses import dataclass

from policies.combine import Access, resolve
from policies.masks import RANK
from policies.validate import CheckedPolicy


@dataclass(frozen=True)
class Change:
    user: str
    table: str
    what: str  # "table" | "rows" | "column:<name>"
    direction: str  # "gains" | "loses" | "changes"
    old: str
    new: str

    def as_dict(self) -> dict[str, str]:
        return {"user": self.user, "table": self.table, "what": self.what, "direction": self.direction,
                "old": self.old, "new": self.new}

    def text(self) -> str:
        return f"{self.user} {self.direction} {self.what} of {self.table}: {self.old} → {self.new}"


def _column_changes(old: Access, new: Access) -> list[Change]:
    out = []
    before = {c.name: c for c in old.columns}
    for col in new.columns:
        prev = before.get(col.name)
        old_label = prev.mask.label() if prev else "absent"
        if prev is not None and prev.mask.label() == col.mask.label():
            continue
        old_rank = RANK[prev.mask.kind] if prev else RANK["null"]
        new_rank = RANK[col.mask.kind]
        direction = "gains" if new_rank < old_rank else "loses" if new_rank > old_rank else "changes"
        out.append(Change(new.user, new.table, f"column:{col.name}", direction, old_label, col.mask.label()))
    return out


def diff(old: CheckedPolicy, new: CheckedPolicy) -> list[Change]:
    """Every change in effective access from `old` to `new`."""
    users = sorted(set(old.policy.users) | set(new.policy.users))
    tables = sorted(set(old.policy.tables) | set(new.policy.tables))
    changes: list[Change] = []
    for table in tables:
        for user in users:
            a, b = resolve(old, user, table), resolve(new, user, table)
            if a.visible != b.visible:
                changes.append(Change(user, table, "table", "gains" if b.visible else "loses",
                                      "visible" if a.visible else "hidden", "visible" if b.visible else "hidden"))
            if not (a.visible or b.visible):
                continue
            fa, fb = a.filter.sql(dialect="spark"), b.filter.sql(dialect="spark")
            if a.visible and b.visible and fa != fb:
                changes.append(Change(user, table, "rows", "changes", fa, fb))
            if b.visible:
                changes += _column_changes(a if a.visible else _hidden(a, b), b)
    return changes


def _hidden(old: Access, new: Access) -> Access:
    """An access with every column absent (for a table that just became visible)."""
    return Access(old.user, old.table, False, old.filter, (), ())
