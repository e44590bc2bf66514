"""Shared helpers for the policy tests: the example policy, its schema, sample rows."""

from __future__ import annotations

import datetime as dt
import random
from decimal import Decimal
from pathlib import Path
from typing import Any

from policies.compiler import CompiledPolicy, compile_policy
from policies.loader import parse_policy
from policies.schemas import DictSchemaProvider
from policies.validate import check_policy

ROOT = Path(__file__).resolve().parents[3]
EXAMPLE = ROOT / "policies" / "examples" / "vendas.yaml"
SCHEMA_FILE = ROOT / "policies" / "examples" / "vendas.schema.yaml"
KEY_ENV = {"ICETIDE_POLICY_KEY_K1": "unit-test-key-0123456789"}
VENDAS = "sales.vendas"


def provider() -> DictSchemaProvider:
    return DictSchemaProvider.from_file(SCHEMA_FILE)


def compile_text(text: str, file: str = "test.yaml", schema: DictSchemaProvider | None = None) -> CompiledPolicy:
    return compile_policy(check_policy(parse_policy(text, file), schema or provider()), KEY_ENV)


def example() -> CompiledPolicy:
    return compile_text(EXAMPLE.read_text(), str(EXAMPLE))


def rows(n: int = 12) -> list[dict[str, Any]]:
    """Rows over both regions with distinctive prices and e-mails (easy to spot if leaked)."""
    regions = ["North", "South", "East"]
    return [
        {"sale_id": i, "sale_ts": dt.datetime(2023 + i % 3, 1 + i % 12, 1 + i % 28, 10, 30),
         "year": 2023 + i % 3, "month": 1 + i % 12, "region": regions[i % 3], "product": f"P{i % 4}",
         "customer_email": f"secret{i}@mail.example", "price": Decimal(f"{1000 + 37 * i}.{i % 97 + 1:02d}"),
         "quantity": 1 + i % 5}
        for i in range(n)
    ]


def trino_example_text() -> str:
    """The example policy as the Trino target takes it: the auditors' `hash` e-mail mask becomes `redact`
    (Trino refuses keyed hashes: its masks are SQL a user sees in EXPLAIN)."""
    text = EXAMPLE.read_text()
    assert "mask: {hash: k1}" in text
    return text.replace("mask: {hash: k1}", "mask: redact")


FILTERS = ["region = 'South'", "year >= 2024", "quantity > 2", "month BETWEEN 3 AND 9", "product IN ('P1', 'P2')",
           "region = user_attr('region') AND quantity <= 3"]
PRICE_MASKS = ["{bucket: 10}", "{bucket: 100}", "{bucket: 1000}", '"null"']
EMAIL_MASKS = ["redact", '"null"']


def generated_policies(count: int, seed: int = 12) -> list[str]:
    """The example policy with the analysts' row filter, price mask and e-mail mask drawn at random (seeded)."""
    pick = random.Random(seed)
    base = trino_example_text()
    assert "filter: \"region = user_attr('region')\"" in base and "mask: {bucket: 100}" in base
    out = []
    for _ in range(count):
        text = base.replace("filter: \"region = user_attr('region')\"", f'filter: "{pick.choice(FILTERS)}"')
        text = text.replace("mask: {bucket: 100}", f"mask: {pick.choice(PRICE_MASKS)}")
        email = pick.choice(EMAIL_MASKS)
        out.append(text.replace("pii:       {default_mask: redact,", f"pii:       {{default_mask: {email},"))
    return out
