"""`batch bench` and `batch analyze` on a small table: reports written, one month reads 1/12 of the files."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from click.testing import CliRunner

from batch.cli import batch
from batch.common import table_ref
from batch.generate import generate
from icetide.cli import App
from tests.fixtures.spark import fresh_table_name

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

    from icetide.settings import Settings

pytestmark = pytest.mark.integration


def test_bench_writes_reports_and_prunes_partitions(spark: SparkSession, base_settings: Settings,
                                                    tmp_path: Path) -> None:
    name = fresh_table_name("bench", namespace="benchns")
    generate(spark, table_ref(base_settings, name), rows=600)
    app = App(config_path=None, _settings=base_settings)
    args = ["bench", "--table", name, "--runs", "1", "--queries", "one_month,product_join",
            "--out", str(tmp_path), "--json"]
    result = CliRunner().invoke(batch, args, obj=app)
    assert result.exit_code == 0, (result.output, result.exception)
    payload = json.loads(result.stdout)
    queries = {q["name"]: q for q in payload["results"][0]["queries"]}
    assert set(queries) == {"one_month", "product_join"}
    month = queries["one_month"]
    assert month["files_total"] == 12 and month["files_scanned"] <= month["files_total"] / 12
    assert queries["product_join"]["rows"] == 5  # five product categories
    for kind in ("json", "markdown", "chart"):
        assert Path(payload["files"][kind]).is_file()
    assert "one_month" in Path(payload["files"]["markdown"]).read_text()

    slow = CliRunner().invoke(batch, ["analyze", f"SELECT count(DISTINCT region) FROM {name}",
                                      "--slow-ms", "0", "--json"], obj=app)
    assert slow.exit_code == 0, slow.output
    report = json.loads(slow.stdout)
    assert report["slow"] and report["rows"] == 1 and report["files_total"] == 12
    log = base_settings.state_dir / "batch" / "slow-queries.jsonl"
    assert name in log.read_text().splitlines()[-1]
