"""The results report's charts (bench/charts.py): drawn from the committed JSON as real PNGs with something on
them, and the report links only charts that exist."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest
from PIL import Image

pytestmark = pytest.mark.unit
ROOT = Path(__file__).resolve().parents[2]
RESULTS = ROOT / "docs" / "results"
sys.path.insert(0, str(ROOT / "bench"))

from charts import draw_all  # noqa: E402  (bench/ is scripts, not a package)

CHARTS = {"cdc-latency.png", "cdc-throughput.png", "batch-scaling.png", "batch-compaction.png", "batch-bench.png"}


def test_every_chart_is_drawn_from_the_committed_json_as_committed(tmp_path: Path) -> None:
    written = draw_all(RESULTS, tmp_path)
    assert {p.name for p in written} == CHARTS
    for path in written:
        with Image.open(path) as image:
            image.verify()  # a whole, valid PNG
        with Image.open(path) as image:
            assert image.format == "PNG"
            assert image.width >= 600 and image.height >= 400, path.name
            colours = image.convert("RGB").getcolors(maxcolors=1 << 20) or []
            assert len(colours) > 50, f"{path.name} is nearly blank"
        # matplotlib is pinned and brings its own fonts and FreeType: the same JSON draws the same bytes
        assert path.read_bytes() == (RESULTS / path.name).read_bytes(), \
            f"docs/results/{path.name} is stale: run .venv/bin/python bench/charts.py"


def test_a_missing_json_skips_its_chart(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "cdc-latency.json").write_text((RESULTS / "cdc-latency.json").read_text())
    assert [p.name for p in draw_all(tmp_path, tmp_path / "out")] == ["cdc-latency.png"]
    assert "skipped cdc-throughput.png: no cdc-throughput.json" in capsys.readouterr().err


def test_the_report_links_the_committed_charts() -> None:
    linked = set()
    for doc in (ROOT / "docs" / "results.md", RESULTS / "batch.md", RESULTS / "batch-bench.md"):
        linked |= {Path(m).name for m in re.findall(r"\]\(((?:results/)?[\w.-]+\.(?:png|svg))\)", doc.read_text())}
    assert linked >= CHARTS  # every chart is shown (other pictures, e.g. the Prometheus screenshot, may be too)
    assert not {name for name in linked if name.endswith(".svg")}
    assert all((RESULTS / name).is_file() for name in linked)
    assert not list(RESULTS.glob("*.svg"))
