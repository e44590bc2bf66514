"""Per-table maintenance policy (YAML) and `maint run`, which applies it to every table.

```yaml
defaults:                       # for every table of the catalog
  compact: {min_small_file_ratio: 0.3, min_files: 20, strategy: binpack, target_file_mb: 128}
  expire: {older_than_days: 7, retain_last: 5}
  orphans: {older_than_days: 3, remove: false}
  manifests: {min_manifests: 50}
tables:
  sales.vendas:                 # overrides, merged over the defaults key by key
    compact: {strategy: sort, columns: [region]}
```
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import yaml
from icetide.errors import ConfigError
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from batch import maint
from batch.common import short_name
from batch.stats import SMALL_FILE_BYTES, table_stats

if TYPE_CHECKING:
    from pyspark.sql import SparkSession
    from sqlglot import exp


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class CompactPolicy(_Strict):
    enabled: bool = True
    min_small_file_ratio: float = Field(default=0.3, ge=0, le=1)
    min_files: int = Field(default=20, ge=2)
    small_file_mb: float = SMALL_FILE_BYTES / 2**20
    strategy: Literal["binpack", "sort", "zorder"] = "binpack"
    columns: list[str] = Field(default_factory=list)
    target_file_mb: int = Field(default=128, ge=1)


class ExpirePolicy(_Strict):
    enabled: bool = True
    older_than_days: float = Field(default=7, ge=0)
    retain_last: int = Field(default=5, ge=1)


class OrphansPolicy(_Strict):
    enabled: bool = True
    older_than_days: float = Field(default=3, ge=1 / 24)
    remove: bool = False  # false → report only (dry run)


class ManifestsPolicy(_Strict):
    enabled: bool = True
    min_manifests: int = Field(default=50, ge=2)


class TablePolicy(_Strict):
    compact: CompactPolicy = Field(default_factory=CompactPolicy)
    expire: ExpirePolicy = Field(default_factory=ExpirePolicy)
    orphans: OrphansPolicy = Field(default_factory=OrphansPolicy)
    manifests: ManifestsPolicy = Field(default_factory=ManifestsPolicy)


class PolicyFile(_Strict):
    defaults: dict[str, Any] = Field(default_factory=dict)
    tables: dict[str, dict[str, Any]] = Field(default_factory=dict)

    def for_table(self, name: str) -> TablePolicy:
        """The defaults with the table's overrides merged in, section by section."""
        merged = {k: dict(v or {}) for k, v in self.defaults.items()}
        for section, values in (self.tables.get(name) or {}).items():
            merged.setdefault(section, {}).update(values or {})
        return TablePolicy.model_validate(merged)


def load_policy(path: Path) -> PolicyFile:
    """Read and validate a policy file; every table section is validated now, not mid-run."""
    try:
        data = yaml.safe_load(path.read_text()) or {}
        policy = PolicyFile.model_validate(data)
        policy.for_table("")
        for name in policy.tables:
            policy.for_table(name)
    except OSError as exc:
        raise ConfigError(f"cannot read maintenance policy {path}: {exc.strerror}") from None
    except yaml.YAMLError:
        raise ConfigError(f"{path}: invalid YAML") from None
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise ConfigError(f"{path}: {where}: {first['msg']}") from None
    return policy


def run_policy(spark: SparkSession, tables: list[exp.Table], policy: PolicyFile, log_path: Path,
               dry_run: bool = False) -> list[dict[str, Any]]:
    """Apply the policy to each table: compact if fragmented, expire, orphans, manifests if many."""
    report = []
    for table in tables:
        rules = policy.for_table(short_name(table))
        small = int(rules.compact.small_file_mb * 2**20)
        stats = table_stats(spark, table, small)
        done: dict[str, Any] = {"table": short_name(table), "files": stats.data_files,
                                "small_file_ratio": stats.small_file_ratio, "actions": {}}
        compact_due = (rules.compact.enabled and stats.data_files >= rules.compact.min_files
                       and stats.small_file_ratio >= rules.compact.min_small_file_ratio)
        if compact_due:
            done["actions"]["compact"] = "due (dry run)" if dry_run else maint.compact(
                spark, table, rules.compact.strategy, rules.compact.columns or None,
                rules.compact.target_file_mb * 2**20, small_file_bytes=small)
        if rules.expire.enabled:
            done["actions"]["expire"] = "due (dry run)" if dry_run else maint.expire(
                spark, table, rules.expire.older_than_days, rules.expire.retain_last, log_path)
        if rules.orphans.enabled:
            if rules.orphans.remove and not dry_run:
                done["actions"]["orphans"] = maint.remove_orphans(
                    spark, table, rules.orphans.older_than_days, log_path)
            else:
                done["actions"]["orphans"] = maint.orphans(spark, table, rules.orphans.older_than_days)
        if rules.manifests.enabled and stats.manifests >= rules.manifests.min_manifests:
            done["actions"]["manifests"] = "due (dry run)" if dry_run else maint.rewrite_manifests(
                spark, table)
        report.append(done)
    return report
