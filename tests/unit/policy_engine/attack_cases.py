"""The attack cases, shared by the DuckDB gateway suite (tests/unit/policy_engine/test_attacks.py) and the
Trino suite (tests/integration/test_trino_attacks.py): the rows both engines hold, the values `ana` must never
see, and the queries, written against DuckDB's secure views `sec_<user>.vendas` (Spark-flavoured where the
attack is a Spark one). Trino reads them through `to_trino` in the Trino suite.
"""

from __future__ import annotations

from typing import Any

from tests.unit.policy_engine.support import rows

SOUTH_SECRET = "SOUTH-ONLY-SECRET"


def data() -> list[dict[str, Any]]:
    out = rows(24)
    out[1] = dict(out[1], region="South", product=SOUTH_SECRET)
    return out


def secrets() -> set[str]:
    values = data()
    tokens = {r["customer_email"] for r in values} | {str(r["price"]) for r in values} | {SOUTH_SECRET}
    return tokens


ALLOWED = [
    "SELECT * FROM sec_ana.vendas WHERE price > 1100",
    "SELECT count(*) FROM sec_ana.vendas WHERE customer_email LIKE 'secret%'",
    "SELECT price, count(*) FROM sec_ana.vendas GROUP BY price",
    "SELECT customer_email, count(*) FROM sec_ana.vendas GROUP BY customer_email",
    "SELECT sale_id FROM sec_ana.vendas ORDER BY price DESC, sale_id",
    "SELECT sale_id FROM sec_ana.vendas ORDER BY customer_email, sale_id",
    "SELECT a.sale_id, b.sale_id FROM sec_ana.vendas a JOIN sec_ana.vendas b ON a.price = b.price",
    "SELECT CAST(customer_email AS INT) FROM sec_ana.vendas",
    "SELECT * FROM sec_ana.vendas WHERE CAST(product AS INT) = 1",
    "SELECT * FROM sec_ana.vendas WHERE CAST(product AS DATE) IS NULL",
    "SELECT * FROM sec_ana.vendas WHERE region = 'South'",
    "SELECT * FROM sec_ana.vendas WHERE NOT (region = 'North')",
    "SELECT min(price), max(price), sum(price), avg(price) FROM sec_ana.vendas",
    "SELECT length(customer_email) FROM sec_ana.vendas",
    "SELECT * FROM vendas",
    "WITH s AS (SELECT * FROM sec_ana.vendas) SELECT * FROM s WHERE price < 2000",
    "SELECT * FROM sec_ana.vendas WHERE sale_id IN (SELECT sale_id FROM sec_ana.vendas WHERE price = 1037.02)",
    "SELECT sale_id FROM sec_ana.vendas WHERE price BETWEEN 1037 AND 1038",
    "SELECT count(*) FROM sec_ana.vendas GROUP BY substring(customer_email, 1, 3)",
    "SELECT * FROM sec_ana.vendas UNION ALL SELECT * FROM lake.sec_ana.vendas",
    "SELECT sum(CASE WHEN customer_email = 'secret0@mail.example' THEN 1 ELSE 0 END) FROM sec_ana.vendas",
    "SELECT count(*) FROM sec_ana.vendas v WHERE v.product = 'SOUTH-ONLY-SECRET'",
    "SELECT max(length(product)) FROM sec_ana.vendas HAVING max(price) > 0",
    "SELECT sale_id, price FROM sec_ana.vendas ORDER BY price LIMIT 3",
    "SELECT * FROM sec_ana.vendas WHERE price / 0 > 1",
    "SELECT DISTINCT customer_email FROM sec_ana.vendas",
    "SELECT sale_id FROM sec_ana.vendas WHERE customer_email > 'secret1' ORDER BY sale_id",
    "SELECT region, count(*) FROM sec_ana.vendas GROUP BY ROLLUP (region)",
]

DENIED = [
    "SELECT * FROM lake.sales.vendas", "SELECT * FROM sales.vendas", "SELECT * FROM `lake.sales.vendas`",
    "SELECT * FROM sec_bruno.vendas", "SELECT * FROM lake.sec_bruno.vendas", "SELECT * FROM sec_ana.vendas.snapshots",
    "SELECT * FROM sec_ana.vendas.files", "SELECT * FROM lake.sec_ana.vendas.files",
    "SELECT * FROM lake.sales.vendas.history", "SELECT * FROM lake.sales.vendas.changes",
    "SELECT * FROM sales.vendas.snapshots", "SELECT * FROM lake.sales.vendas.`snapshot_id_1`",
    "SELECT * FROM sec_ana.vendas VERSION AS OF 1", "SELECT * FROM sec_ana.vendas TIMESTAMP AS OF '2020-01-01'",
    "SELECT * FROM sec_ana.vendas FOR SYSTEM_TIME AS OF 1", "SELECT * FROM lake.sales.vendas VERSION AS OF 'main'",
    "SELECT * FROM parquet.`/tmp/warehouse/sales/vendas/data`", "SELECT * FROM csv.`file:///etc/passwd`",
    "SELECT * FROM read_parquet('/tmp/x.parquet')", "SELECT * FROM read_csv_auto('/etc/passwd')",
    "SELECT * FROM IDENTIFIER('lake.sales.vendas')", "SELECT * FROM range(10)",
    "WITH x AS (SELECT * FROM lake.sales.vendas) SELECT * FROM x",
    "SELECT * FROM sec_ana.vendas a JOIN sales.vendas b ON a.sale_id = b.sale_id",
    "SELECT * FROM sec_ana.vendas UNION ALL SELECT * FROM sales.vendas",
    "SELECT * FROM sec_ana.vendas WHERE sale_id IN (SELECT sale_id FROM sales.vendas WHERE region = 'South')",
    "SELECT * FROM sec_ana.vendas WHERE EXISTS (SELECT 1 FROM sales.vendas WHERE price > 1000)",
    "SELECT (SELECT max(price) FROM sales.vendas) FROM sec_ana.vendas",
    "SELECT * FROM sec_ana.vendas, LATERAL (SELECT * FROM sales.vendas) x",
    "SELECT * FROM sec_ana.vendas, sales.vendas", "DROP VIEW sec_ana.vendas",
    "CREATE TABLE x AS SELECT * FROM sec_ana.vendas", "INSERT INTO sec_ana.vendas SELECT * FROM sec_ana.vendas",
    "DELETE FROM sales.vendas", "UPDATE sales.vendas SET price = 0",
    "MERGE INTO sales.vendas t USING sec_ana.vendas s ON t.sale_id = s.sale_id WHEN MATCHED THEN DELETE",
    "ALTER VIEW sec_ana.vendas AS SELECT * FROM sales.vendas", "SET spark.sql.ansi.enabled = true",
    "SHOW CREATE TABLE sec_ana.vendas", "DESCRIBE sales.vendas", "EXPLAIN SELECT * FROM sec_ana.vendas",
    "CACHE TABLE sales.vendas", "ADD JAR /tmp/evil.jar", "USE lake.sales",
    "CALL lake.system.rollback_to_snapshot('sales.vendas', 1)", "REFRESH TABLE sales.vendas",
    "SELECT * FROM sec_ana.vendas; DROP VIEW sec_ana.vendas", "SELECT 1; SELECT 2",
    "SELECT reflect('java.lang.System', 'getenv', 'HOME')", "SELECT java_method('java.lang.Math', 'random')",
    "SELECT raise_error(customer_email) FROM sec_ana.vendas", "SELECT assert_true(price < 0) FROM sec_ana.vendas",
    "SELECT input_file_name() FROM sec_ana.vendas", "SELECT '${spark.sql.catalog.lake.uri}'",
    "SELECT TRANSFORM(sale_id) USING 'cat' FROM sec_ana.vendas", "SELECT * INTO x FROM sec_ana.vendas",
    "INSERT OVERWRITE DIRECTORY '/tmp/out' SELECT * FROM sec_ana.vendas",
    "SELECT query('SELECT * FROM lake.sales.vendas')", "SELECT * FROM query_table('lake.sales.vendas')",
    "SELECT getenv('HOME')", "SELECT * FROM json.`/tmp/x.json`", "not sql at all (",
    "SELECT * FROM sec_ana.vendas WHERE sale_id = (SELECT sale_id FROM lake.sales.vendas LIMIT 1)",
    "SELECT * FROM lake.sec_ana.vendas.refs", "SELECT * FROM sec_ana.vendas.partitions",
    "SELECT * FROM lake.sales.vendas.all_data_files",
]
