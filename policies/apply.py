"""`policy apply` and `policy watch`: put a compiled policy in force in Spark, or keep the last one.

Apply checks every view's SELECT with Spark's analyzer before touching anything, then
creates or replaces the views and drops views of users who lost access. If any statement
fails, the views already replaced are restored from the last applied state (a JSON file
in the state directory) and views created by this run are dropped, so a failure leaves
the previous views in force.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from icetide.errors import IcetideError, PolicyError
from sqlglot import exp

from policies.compiler import CompiledPolicy, spark_statements

if TYPE_CHECKING:
    from pyspark.sql import SparkSession


class ApplyError(IcetideError):
    """Views could not be applied; the previous ones were restored."""


def _view_name(stmt: exp.Expression) -> str | None:
    if isinstance(stmt, exp.Create) and str(stmt.args.get("kind")).upper() == "VIEW":
        return str(stmt.this.sql(dialect="spark"))
    return None


def _drop(name: str) -> str:
    return exp.Drop(this=exp.to_table(name, dialect="spark"), kind="VIEW", exists=True).sql(dialect="spark")


@dataclass
class AppliedState:
    """What the last successful apply put in force: view name → CREATE statement."""

    policy_hash: str = ""
    views: dict[str, str] = field(default_factory=dict)
    policy_file: str = ""
    schema_file: str = ""

    @classmethod
    def read(cls, path: Path) -> AppliedState:
        if not path.exists():
            return cls()
        data = json.loads(path.read_text())
        return cls(str(data.get("policy_hash", "")), dict(data.get("views", {})), str(data.get("policy_file", "")),
                   str(data.get("schema_file", "")))

    def write(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        body = {"policy_hash": self.policy_hash, "views": self.views, "policy_file": self.policy_file,
                "schema_file": self.schema_file}
        tmp.write_text(json.dumps(body, indent=2, sort_keys=True))
        tmp.replace(path)


def apply_policy(spark: SparkSession, compiled: CompiledPolicy, state_file: Path, catalog: str = "lake",
                 schema_file: str = "") -> dict[str, Any]:
    """Create/replace every view of `compiled`; on failure restore the previous views."""
    statements = spark_statements(compiled, catalog)
    for stmt in statements:  # analyse every SELECT first: nothing changes if one is wrong
        if _view_name(stmt) is not None:
            try:
                spark.sql(stmt.expression.sql(dialect="spark")).schema  # noqa: B018 (forces analysis)
            except Exception as exc:
                raise ApplyError(f"view {_view_name(stmt)} does not analyse: {type(exc).__name__}") from None
    previous = AppliedState.read(state_file)
    new_views = {name: stmt.sql(dialect="spark") for stmt in statements if (name := _view_name(stmt))}
    done: list[str] = []
    try:
        for stmt in statements:
            spark.sql(stmt.sql(dialect="spark"))
            if (name := _view_name(stmt)) is not None:
                done.append(name)
        for stale in sorted(set(previous.views) - set(new_views)):
            spark.sql(_drop(stale))
    except Exception as exc:
        _restore(spark, previous, done)
        raise ApplyError(f"apply failed ({type(exc).__name__}); previous views restored") from None
    policy_file = str(Path(compiled.checked.policy.file).resolve())
    AppliedState(compiled.content_hash, new_views, policy_file, schema_file).write(state_file)
    return {"policy": compiled.policy_id, "version": compiled.version, "content_hash": compiled.content_hash,
            "views": sorted(new_views), "dropped": sorted(set(previous.views) - set(new_views))}


def _restore(spark: SparkSession, previous: AppliedState, touched: list[str]) -> None:
    for name in touched:
        try:
            spark.sql(previous.views[name] if name in previous.views else _drop(name))
        except Exception:  # keep restoring the others; the state file still names the good views
            continue


@dataclass
class Watcher:
    """Re-applies a policy file when it changes; a broken file keeps the last good policy."""

    path: Path
    load: Callable[[Path], CompiledPolicy]
    apply: Callable[[CompiledPolicy], object]
    report: Callable[[str], None]
    current: CompiledPolicy | None = None
    _seen: tuple[float, int, str] | None = None

    def poll(self) -> bool:
        """Check the file once; returns True when a new policy was applied."""
        try:
            stat = self.path.stat()
            text = self.path.read_text(encoding="utf-8", errors="replace")
        except OSError as exc:
            self.report(f"cannot read {self.path}: {exc.__class__.__name__}; keeping the last good policy")
            return False
        marker = (stat.st_mtime, stat.st_size, text)
        if marker == self._seen:
            return False
        self._seen = marker
        try:
            compiled = self.load(self.path)
            if self.current is not None and compiled.content_hash == self.current.content_hash:
                return False
            self.apply(compiled)
        except (PolicyError, IcetideError) as exc:
            kept = f" (keeping {self.current.content_hash[:12]})" if self.current else " (nothing applied yet)"
            self.report(f"not applied: {exc}{kept}")
            return False
        self.current = compiled
        self.report(f"applied {compiled.policy_id} v{compiled.version} hash {compiled.content_hash[:12]}")
        return True

    def run(self, interval: float = 1.0, stop: Callable[[], bool] = lambda: False) -> None:
        while not stop():
            self.poll()
            time.sleep(interval)
