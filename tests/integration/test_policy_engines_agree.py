"""Same answers in every engine (issue 12): for each user of a policy, Trino (over TLS, with the user's password),
the user's Spark secure view and the DuckDB stream filter return the same multiset of rows and values.

One table, written by Spark into the embedded default catalog (the session's SQLite JDBC catalog and local
warehouse) and read by one Trino for the module (tests/fixtures/trino.py) pointed at that same catalog. Its
rows exercise every mask: decimals and doubles around bucket boundaries (negative, zero, one below and at a
multiple, the type's extremes), NULL in every column, strings shorter than, as long as and longer than the
show_first/show_last width (empty, accented, CJK, emoji), dates and timestamps before 1970 and at year ends for
year_only, longs and ints for hash. The policies: the example (policies/examples/vendas.yaml, bound to this
module's table) and seeded policies of the generator test_trino_attacks.py uses, each extended with masks drawn
for the extra columns. Trino refuses keyed hashes, so policies with `hash` are compared in Spark and DuckDB only
(and the Trino target is shown to refuse them).

Normalisation: none of the values. A row is the tuple of `(type name, value)` of its columns, so an engine
returning a float where another returns a Decimal, or a string for a date, differs; Decimal's equality is
numeric (100.00 equals 100.0 of the same type, whatever the scale the driver reports).
"""

from __future__ import annotations

import datetime as dt
import os
import random
from collections import Counter
from collections.abc import Iterator
from decimal import Decimal
from typing import TYPE_CHECKING, Any

import pytest
import yaml
from sqlglot import exp

from icetide.services.trino import TrinoServer
from policies.apply import apply_policy
from policies.compiler import CompiledPolicy, TrinoTargetError, audience, compile_policy, trino_rules
from policies.loader import parse_policy
from policies.schemas import DictSchemaProvider
from policies.stream import apply_to_rows
from policies.validate import check_policy
from tests.fixtures.trino import USERS, apply, connect, prepare, trino_environment
from tests.unit.policy_engine.support import EXAMPLE, KEY_ENV, generated_policies, rows, trino_example_text

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

    from icetide.settings import Settings

pytestmark = pytest.mark.integration

NS = f"agree_{os.getpid()}"
TABLE = f"{NS}.vendas"
# the example's columns, then the ones that give every other mask a type to work on
SCHEMA = {"sale_id": "long", "sale_ts": "timestamp", "year": "int", "month": "int", "region": "string",
          "product": "string", "customer_email": "string", "price": "decimal(10,2)", "quantity": "int",
          "note": "string", "ship_date": "date", "score": "double", "customer_id": "long", "store": "int"}
COLUMNS = list(SCHEMA)
EXTRA_TAGS = "      note: [pii]\n      ship_date: [public]\n      score: [financial]\n      customer_id: [public]\n" \
             "      store: [public]\n"
PRICES = ["-99999999.99", "99999999.99", "-100.01", "-100.00", "-99.99", "-0.01", "0.00", "0.01", "9.99", "10.00",
          "99.99", "100.00", "999.99", "1000.00", "-1000.00", "1234.56"]
NOTES = ["", "a", "ab", "abc", "abcd", "abcde", "abcdefghij", "çãé", "çãéß", "中文字符串", "😀x😀y😀", " ' \" \\ "]
SCORES = [-1e9, -7.0, -6.999, -0.5, -0.0, 0.0, 0.5, 6.999, 7.0, 13.99, 70.0, 1e9 + 0.25]
DAYS = [dt.date(1969, 12, 31), dt.date(1970, 1, 1), dt.date(1900, 3, 1), dt.date(2000, 2, 29), dt.date(2024, 12, 31),
        dt.date(2025, 1, 1)]
STAMPS = [dt.datetime(1969, 12, 31, 23, 59, 59, 999999), dt.datetime(1970, 1, 1), dt.datetime(2024, 12, 31, 23, 59, 59),
          dt.datetime(2025, 1, 1, 0, 0, 0, 1)]
LONGS = [-(2**63), 2**63 - 1, -1, 0, 999, 1000, -1000, -1001, 123456789012]
INTS = [-(2**31), 2**31 - 1, -1, 0, 7, 1000]


def table_rows() -> list[dict[str, Any]]:
    """The example's 24 rows with the extra columns, then rows of boundary values and NULLs (spread over both
    regions and years, so every row filter keeps some and drops some)."""
    out = []
    for i, row in enumerate(rows(24)):
        out.append({**row, "note": NOTES[i % len(NOTES)], "ship_date": DAYS[i % len(DAYS)],
                    "score": SCORES[i % len(SCORES)], "customer_id": LONGS[i % len(LONGS)],
                    "store": INTS[i % len(INTS)]})
    for i, price in enumerate(PRICES):
        base = dict(out[i], sale_id=100 + i, price=Decimal(price))
        out.append(dict(base, sale_ts=STAMPS[i % len(STAMPS)]) if i % 2 else base)
    nulls = {c: None for c in COLUMNS if c not in ("sale_id", "region", "year", "month", "quantity", "product")}
    out += [dict(out[i], sale_id=200 + i, **nulls) for i in range(6)]
    out.append({c: None for c in COLUMNS} | {"sale_id": 300})  # NULL even in the filtered columns
    return out


def spark_schema() -> Any:
    from pyspark.sql import types as T

    types = {"long": T.LongType(), "timestamp": T.TimestampNTZType(), "int": T.IntegerType(),
             "string": T.StringType(), "decimal(10,2)": T.DecimalType(10, 2), "date": T.DateType(),
             "double": T.DoubleType()}
    return T.StructType([T.StructField(c, types[t]) for c, t in SCHEMA.items()])


EXTRA_MASKS = {  # column → masks the generator draws from (every mask the column's type takes, hash aside)
    "note": ["{show_first: 3}", "{show_last: 4}", "{show_first: 1}", "{show_last: 5}", "redact", '"null"', "none"],
    "ship_date": ["year_only", '"null"', "none"],
    "sale_ts": ["year_only", "none"],
    "score": ["{bucket: 7}", "{bucket: 10}", "{bucket: 1000}", '"null"'],
    "customer_id": ["{bucket: 1000}", "{bucket: 10}", "none"],
    "store": ["{bucket: 7}", '"null"', "none"],
}
HASHABLE = ("note", "customer_id", "store", "customer_email")


def bound(text: str) -> str:
    """A policy on the example's table bound to this module's table, with the extra columns classified."""
    assert "      price: [financial]\n" in text
    return text.replace("sales.vendas", TABLE).replace("      price: [financial]\n",
                                                       "      price: [financial]\n" + EXTRA_TAGS)


def with_extra_masks(text: str, pick: random.Random, hashes: bool = False) -> str:
    """`text` with one mask per extra column for the analysts and one for the auditors, drawn by `pick`
    (with `hashes`, a `hash` may be drawn for the columns it takes)."""
    rules = []
    for group in ("analysts", "auditors"):
        for column, masks in EXTRA_MASKS.items():
            choices = masks + (["{hash: k1}"] if hashes and column in HASHABLE else [])
            rules.append(f"      - id: m-{column.replace('_', '-')}-{group}\n        to: {{groups: [{group}]}}\n"
                         f"        columns: [{column}]\n        mask: {pick.choice(choices)}\n")
        if hashes:
            rules.append(f"      - id: m-hash-{group}\n        to: {{groups: [{group}]}}\n"
                         f"        columns: [{pick.choice(HASHABLE)}]\n        mask: {{hash: k1}}\n")
    return bound(text).rstrip("\n") + "\n" + "".join(rules)


def policies() -> dict[str, str]:
    """The policies compared: name → text. `hash-*` ones are for Spark and DuckDB only."""
    pick = random.Random(15)
    out = {"example": bound(trino_example_text()), "hash-example": bound(EXAMPLE.read_text())}
    for n, text in enumerate(generated_policies(4, seed=15)):
        out[f"generated-{n}"] = with_extra_masks(text, pick)
    for n, text in enumerate(generated_policies(2, seed=16)):
        out[f"hash-generated-{n}"] = with_extra_masks(text, pick, hashes=True)
    return out


POLICIES = policies()


@pytest.fixture(scope="module")
def engines(spark: SparkSession, base_settings: Settings,
            tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """The table written by Spark, one Trino reading the same catalog, and the rows as Spark stored them."""
    folder = tmp_path_factory.mktemp("engines-agree")
    schema_file = folder / "schema.yaml"
    schema_file.write_text(yaml.safe_dump({"tables": {TABLE: SCHEMA}}, sort_keys=False))
    spark.sql(exp.Create(this=exp.table_(NS, db="lake"), kind="SCHEMA", exists=True).sql(dialect="spark"))
    data = table_rows()
    frame = spark.createDataFrame([tuple(r[c] for c in COLUMNS) for r in data], spark_schema())
    frame.writeTo(f"lake.{TABLE}").using("iceberg").createOrReplace()
    stored = [r.asDict() for r in spark.table(f"lake.{TABLE}").collect()]
    assert len(stored) == len(data)
    catalog = {"ICETIDE__CATALOG__URI": base_settings.catalog_uri,
               "ICETIDE__CATALOG__WAREHOUSE": base_settings.warehouse}
    with trino_environment(folder / "trino-state", **catalog) as settings:
        server = TrinoServer(settings.state_dir)
        try:
            prepare(server)
            server.start(settings, settings.state_dir)
            yield {"spark": spark, "server": server, "rows": stored, "schema": schema_file, "folder": folder,
                   "views": folder / "applied.json"}
        finally:
            server.stop()


def compiled_for(env: dict[str, Any], name: str, targets: tuple[str, ...]) -> CompiledPolicy:
    text = POLICIES[name]
    path = env["folder"] / f"{name}.yaml"
    path.write_text(text)
    checked = check_policy(parse_policy(text, str(path)), DictSchemaProvider.from_file(env["schema"]), targets)
    return compile_policy(checked, KEY_ENV)


def as_row(values: list[Any]) -> tuple[tuple[str, Any], ...]:
    """A row as the comparison sees it: each value with its Python type's name (no value is normalised)."""
    return tuple((type(v).__name__, v) for v in values)


def select_sql(table: exp.Table, dialect: str) -> str:
    return exp.select(*(exp.column(c, quoted=True) for c in COLUMNS)).from_(table).sql(dialect=dialect)


def trino_rows(env: dict[str, Any], user: str) -> Counter[Any] | str:
    """The user's rows through Trino over TLS with the user's password, or the error's text."""
    cur = connect(env, user).cursor()
    try:
        cur.execute(select_sql(exp.table_("vendas", db=NS, catalog="lake", quoted=True), "trino"))
        return Counter(as_row(list(r)) for r in cur.fetchall())
    except Exception as exc:  # the refusal of a denied user
        return str(exc)


def spark_rows(env: dict[str, Any], user: str) -> Counter[Any] | None:
    """The rows of the user's secure view, or None when the user has no view (deny by default)."""
    from pyspark.errors import AnalysisException

    view = exp.table_("vendas", db=audience(user), catalog="lake", quoted=True)
    try:
        got = env["spark"].sql(select_sql(view, "spark")).collect()
    except AnalysisException as exc:
        if "TABLE_OR_VIEW_NOT_FOUND" not in str(exc):
            raise
        return None
    return Counter(as_row([r[c] for c in COLUMNS]) for r in got)


def duckdb_rows(env: dict[str, Any], compiled: CompiledPolicy, user: str) -> Counter[Any]:
    """The stream filter's rows for the user, over the rows Spark stored."""
    return Counter(as_row([r[c] for c in COLUMNS]) for r in apply_to_rows(compiled, user, TABLE, env["rows"]))


def put_in_force(env: dict[str, Any], name: str, compiled: CompiledPolicy, trino: bool) -> None:
    """The policy's secure views (the apply `policy apply` runs) and, with `trino`, its rules in Trino."""
    apply_policy(env["spark"], compiled, env["views"], "lake", str(env["schema"]))
    if trino:
        apply(env["folder"] / f"{name}.yaml", env["schema"])


def difference(got: Counter[Any] | str | None, want: Counter[Any]) -> Any:
    """What a failed comparison shows: the rows only one side has (or the engine's error)."""
    if not isinstance(got, Counter):
        return got
    return {"only here": list((got - want).elements())[:5], "only in DuckDB": list((want - got).elements())[:5]}


def mask_kinds(compiled: CompiledPolicy) -> set[str]:
    return {c.mask.kind for a in compiled.access.values() if a.visible for c in a.columns}


@pytest.mark.parametrize("name", [n for n in POLICIES if not n.startswith("hash-")])
def test_trino_spark_and_duckdb_return_the_same_rows(engines: dict[str, Any], name: str) -> None:
    compiled = compiled_for(engines, name, ("spark", "trino", "duckdb"))
    put_in_force(engines, name, compiled, trino=True)
    sizes: set[int] = set()
    for user in USERS:
        access = compiled.get(user, TABLE)
        streamed, viewed, served = duckdb_rows(engines, compiled, user), spark_rows(engines, user), \
            trino_rows(engines, user)
        if access is None or not access.visible:
            assert not streamed and viewed is None, (name, user)
            assert isinstance(served, str) and "Access Denied" in served, (name, user, served)
            continue
        assert streamed, (name, user)  # the comparison is not of two empty sets
        sizes.add(sum(streamed.values()))
        assert viewed == streamed, (name, user, difference(viewed, streamed))
        assert served == streamed, (name, user, difference(served, streamed))
    assert len(sizes) > 1 or name != "example", sizes  # some users' filters drop rows others keep


@pytest.mark.parametrize("name", [n for n in POLICIES if n.startswith("hash-")])
def test_hash_masks_agree_in_spark_and_duckdb_and_trino_refuses_them(engines: dict[str, Any], name: str) -> None:
    compiled = compiled_for(engines, name, ("spark", "duckdb"))
    assert "hash" in mask_kinds(compiled)
    with pytest.raises(TrinoTargetError, match="refuses keyed hashes"):
        trino_rules(compiled)
    put_in_force(engines, name, compiled, trino=False)
    for user in USERS:
        access = compiled.get(user, TABLE)
        streamed, viewed = duckdb_rows(engines, compiled, user), spark_rows(engines, user)
        if access is None or not access.visible:
            assert not streamed and viewed is None, (name, user)
            continue
        assert viewed == streamed and viewed, (name, user, difference(viewed, streamed))


def test_the_policies_exercise_every_mask() -> None:
    """The comparison means something only if the masks are in force: every kind in the three-engine policies,
    `hash` in the others, and data on both sides of every filter."""
    provider = DictSchemaProvider({TABLE: SCHEMA})
    kinds: set[str] = set()
    hashed: set[str] = set()
    for name, text in POLICIES.items():
        compiled = compile_policy(check_policy(parse_policy(text, f"{name}.yaml"), provider), KEY_ENV)
        (hashed if name.startswith("hash-") else kinds).update(mask_kinds(compiled))
    assert kinds == {"none", "null", "redact", "bucket", "show_first", "show_last", "year_only"}
    assert "hash" in hashed
