"""`policy apply --target trino`: put a compiled policy in force in the embedded Trino.

The rules are compiled (a policy Trino cannot enforce as written — a `hash` mask — fails here, before anything
is written), serialised and checked to parse back, then written to the server's `rules.json` atomically (a
temp file beside it, then rename; mode 0600). Trino's file-based access control rereads the file every few
seconds (`security.refresh-period`), so a failed write or a broken policy leaves the last good rules in force,
and Trino never sees a half-written file. The written rules keep the monitoring principal's entries
(`with_monitor`: system information for Prometheus' scrape, no data), whatever the policy says. Beside the
rules, `identity_file` names the policy they come from (id, version, content hash): the audit receiver stamps
it on each Trino query's record.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from icetide.services.trino import with_monitor, write_private

from policies.compiler import CompiledPolicy, trino_rules


def apply_trino(compiled: CompiledPolicy, rules_file: Path, catalog: str = "lake",
                bi_account: str | None = None, identity_file: Path | None = None) -> dict[str, Any]:
    """Write the policy's Trino rules to `rules_file`; raises before writing when the policy does not fit."""
    rules = with_monitor(trino_rules(compiled, catalog, bi_account))
    text = json.dumps(rules, indent=2, sort_keys=True)
    if json.loads(text) != rules:  # what Trino will parse is exactly what was compiled
        raise ValueError("rules.json does not round-trip")
    write_private(Path(rules_file), text + "\n")
    if identity_file is not None:
        write_private(Path(identity_file), json.dumps({"policy_id": compiled.policy_id, "version": compiled.version,
                                                       "content_hash": compiled.content_hash}) + "\n")
    users = sorted({u for (u, _), a in compiled.access.items() if a.visible})
    return {"policy": compiled.policy_id, "version": compiled.version, "content_hash": compiled.content_hash,
            "target": "trino", "rules_file": str(rules_file), "users": users, "views": [],
            "dropped": [], "entries": len(rules["tables"])}
