"""The metadata catalog: descriptions and classification written as Iceberg table comments and column docs.

A real PyIceberg SQL catalog (SQLite) in a temp dir; Trino shows the same docs in
tests/integration/test_trino_bi.py.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from icetide.cli import main
from icetide.errors import PolicyError
from policies.descriptions import annotate, comments, describe, load_descriptions, parse_descriptions
from policies.loader import load_policy
from tests.unit.policy_engine.support import EXAMPLE

pytestmark = pytest.mark.unit

DESCRIPTIONS = EXAMPLE.with_name("vendas.descriptions.yaml")


@pytest.fixture
def catalog(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> object:
    from pyiceberg.schema import Schema
    from pyiceberg.types import DecimalType, IntegerType, LongType, NestedField, StringType, TimestampType

    from icetide.catalog import pyiceberg_catalog
    from icetide.settings import load_settings

    monkeypatch.setenv("ICETIDE__STACK__STATE_DIR", str(tmp_path / "state"))
    settings = load_settings(None)
    (tmp_path / "state").mkdir()
    cat = pyiceberg_catalog(settings, "writer")
    cat.create_namespace("sales")
    types = {"sale_id": LongType(), "sale_ts": TimestampType(), "year": IntegerType(), "month": IntegerType(),
             "region": StringType(), "product": StringType(), "customer_email": StringType(),
             "price": DecimalType(10, 2), "quantity": IntegerType()}
    cat.create_table("sales.vendas", Schema(*[NestedField(i, n, t) for i, (n, t) in enumerate(types.items(), 1)]))
    return cat


def test_comments_join_descriptions_and_the_policys_classification() -> None:
    wanted = comments(load_descriptions(DESCRIPTIONS), load_policy(EXAMPLE))["sales.vendas"]
    assert wanted["comment"] == "One row per sale of the shop, from the order system."
    assert wanted["columns"]["customer_email"] == "The buyer's e-mail address. [pii: personal data]"
    assert wanted["columns"]["price"] == "Unit price in euros. [financial: amounts]"
    assert wanted["columns"]["sale_id"] == "Sale identifier, unique per sale. [public: safe for every reader]"


def test_annotate_writes_only_what_differs_and_describe_reads_it_back(catalog: object) -> None:
    wanted = comments(load_descriptions(DESCRIPTIONS), load_policy(EXAMPLE))
    first = annotate(catalog, wanted)
    assert first["sales.vendas"]["comment"] and len(first["sales.vendas"]["columns"]) == 9
    assert annotate(catalog, wanted) == {}  # nothing changed: nothing committed
    got = describe(catalog, "sales.vendas")
    assert got["comment"] == wanted["sales.vendas"]["comment"]
    assert {c["name"]: c["doc"] for c in got["columns"]} == wanted["sales.vendas"]["columns"]


def test_a_column_the_table_lacks_is_an_error_at_its_line(catalog: object) -> None:
    text = "tables:\n  sales.vendas:\n    columns:\n      sale_id: ok\n      no_such: gone\n"
    docs = parse_descriptions(text, "d.yaml")
    with pytest.raises(PolicyError, match="no column 'no_such'") as err:
        annotate(catalog, comments(docs), docs)
    assert "d.yaml:5:7" in str(err.value)
    with pytest.raises(PolicyError, match=r"d\.yaml:3:5"):
        parse_descriptions("tables:\n  sales.vendas:\n    colums: {}\n", "d.yaml")


def test_the_catalog_commands(catalog: object, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["catalog", "annotate", str(DESCRIPTIONS), "--policy", str(EXAMPLE), "--json"]) == 0
    assert len(json.loads(capsys.readouterr().out)["changed"]["sales.vendas"]["columns"]) == 9
    assert main(["catalog", "describe", "sales.vendas"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("sales.vendas: One row per sale") and "[pii: personal data]" in out
