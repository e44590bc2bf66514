"""Benchmark: the ten analyst queries through the embedded Trino, as the admin and as a masked, filtered analyst.

Starts Trino in a fresh state directory, builds `lake.sales.vendas` (default 1M rows, the batch generator's
columns, partitioned by year and month) and `lake.sales.products` through Trino itself (as the admin, before any
policy is in force), puts a policy in force with `apply_trino` (the example's rules, with `amount` bucketed
like `price` for analysts) and times each of `batch.bench.QUERIES` (median of --repeat warm runs, the three
variants of a query interleaved round by round; wall time and the server's CPU) as:

- carla, the admin (no filter, no masks);
- carla with ana's row filter written into the query (`region = 'North'` on the vendas scan): the same rows
  ana reads, unmasked — the baseline of what the masks cost;
- ana (the row filter and masks from `rules.json`: price and amount bucketed to 100s, e-mail redacted).

Reports the medians, the analyst's overhead over the same-rows baseline per query and on average, whether the
results match where no masked column is read, Trino's start-up time and memory. JSON on stdout.

    .venv/bin/python bench/trino_policy_overhead.py [--rows 1000000] [--repeat 3]
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml
from sqlglot import exp, parse_one

from batch.bench import QUERIES
from icetide.services.trino import TrinoServer, write_private
from icetide.settings import load_settings
from policies.compiler import compile_policy
from policies.loader import parse_policy
from policies.schemas import DictSchemaProvider
from policies.trino_apply import apply_trino
from policies.validate import check_policy

EXAMPLE = Path(__file__).resolve().parents[1] / "policies" / "examples" / "vendas.yaml"
SCHEMA = {
    "sales.vendas": {"sale_id": "long", "sale_ts": "timestamp", "year": "int", "month": "int", "region": "string",
                     "product": "string", "customer_email": "string", "price": "decimal(10,2)", "quantity": "int",
                     "channel": "string", "amount": "decimal(12,2)"},
    "sales.products": {"product": "string", "category": "string", "unit_cost": "decimal(10,2)"},
}
MASKED = {"price", "amount", "customer_email"}
PASSWORDS = {u: secrets.token_urlsafe(12) for u in ("carla", "ana")}


def policy_text() -> str:
    """The example policy over the benchmark's two tables (analysts: North rows, amounts bucketed)."""
    policy = yaml.safe_load(EXAMPLE.read_text().replace("mask: {hash: k1}", "mask: redact"))
    vendas = policy["tables"]["sales.vendas"]
    vendas["columns"] |= {"channel": ["public"], "amount": ["financial"]}
    vendas["masks"][0]["columns"] = ["price", "amount"]
    policy["tables"]["sales.products"] = {
        "columns": {"product": ["public"], "category": ["public"], "unit_cost": ["public"]},
        "row_filters": [{"id": "rf-products", "to": {"groups": ["analysts", "admins"]}}]}
    return yaml.safe_dump(policy, sort_keys=False)


def build_sql(rows: int) -> list[str]:
    """CTAS statements generating the rows in Trino (ids from two UNNEST(sequence) ranges)."""
    ids = (f"SELECT y * 1000 + x AS id FROM UNNEST(sequence(0, 999)) a(x) "
           f"CROSS JOIN UNNEST(sequence(0, {max(0, (rows - 1) // 1000)})) b(y) WHERE y * 1000 + x < {rows}")
    return [
        "CREATE SCHEMA IF NOT EXISTS lake.sales",
        "CREATE TABLE lake.sales.vendas WITH (partitioning = ARRAY['year', 'month']) AS "
        "SELECT sale_id, sale_ts, year, month, region, product, customer_email, price, quantity, channel, "
        "CAST(price * quantity AS decimal(12,2)) AS amount FROM ("
        "SELECT id AS sale_id, CAST(format('%04d-%02d-%02d %02d:%02d:00', 2023 + id % 3, 1 + id % 12, 1 + id % 28, "
        "id % 24, id % 60) AS timestamp(6)) AS sale_ts, CAST(2023 + id % 3 AS integer) AS year, "
        "CAST(1 + id % 12 AS integer) AS month, element_at(ARRAY['North', 'South', 'East', 'West'], id % 4 + 1) "
        "AS region, concat('P', CAST(id % 50 AS varchar)) AS product, "
        "concat('c', CAST(id % 100000 AS varchar), '@mail.example') AS customer_email, "
        "CAST(id % 100000 / 100.0 + 1 AS decimal(10,2)) AS price, CAST(id % 10 + 1 AS integer) AS quantity, "
        f"element_at(ARRAY['web', 'store', 'app'], id % 3 + 1) AS channel FROM ({ids}))",
        "CREATE TABLE lake.sales.products AS SELECT concat('P', CAST(x AS varchar)) AS product, "
        "element_at(ARRAY['food', 'tools', 'toys', 'books', 'garden'], x % 5 + 1) AS category, "
        "CAST(x * 1.5 + 2 AS decimal(10,2)) AS unit_cost FROM UNNEST(sequence(0, 49)) t(x)",
    ]


def with_north(sql: str) -> str:
    """`sql` with each scan of vendas replaced by its North rows (ana's filter, written by hand)."""
    tree = parse_one(sql, read="trino")
    north = parse_one("SELECT * FROM vendas WHERE region = 'North'", read="trino")
    for table in list(tree.find_all(exp.Table)):
        if table.name == "vendas":
            table.replace(exp.Subquery(this=north.copy(), alias=exp.TableAlias(this=exp.to_identifier(
                table.alias or "vendas"))))
    return tree.sql(dialect="trino")


def connect(server: TrinoServer, user: str) -> Any:
    import trino
    from trino.auth import BasicAuthentication

    return trino.dbapi.connect(host="127.0.0.1", port=server.port(), user=user, http_scheme="https",
                               auth=BasicAuthentication(user, PASSWORDS[user]), verify=str(server.ca_file),
                               catalog="lake", schema="sales")


def run(conn: Any, sql: str) -> list[Any]:
    cur = conn.cursor()
    cur.execute(sql)
    return [tuple(r) for r in cur.fetchall()]


def cpu_s(pid: int | None) -> float:
    """CPU seconds (user + system) of the Trino server so far (0 when it is not known)."""
    if pid is None:
        return 0.0
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def timed(runs: dict[str, tuple[Any, str]], repeat: int, pid: int | None) -> dict[str, tuple[float, float, list[Any]]]:
    """Median wall time, median server CPU and rows of each (connection, query), interleaved round by round (the
    order rotated every round) so a change in the machine's load falls on every variant alike."""
    rows = {name: run(conn, sql) for name, (conn, sql) in runs.items()}  # warm-up
    walls: dict[str, list[float]] = {name: [] for name in runs}
    cpus: dict[str, list[float]] = {name: [] for name in runs}
    names = list(runs)
    for round_ in range(repeat):
        for name in names[round_ % len(names):] + names[:round_ % len(names)]:
            conn, sql = runs[name]
            cpu, start = cpu_s(pid), time.perf_counter()
            rows[name] = run(conn, sql)
            walls[name].append(time.perf_counter() - start)
            cpus[name].append(cpu_s(pid) - cpu)
    return {name: (statistics.median(walls[name]), statistics.median(cpus[name]), sorted(rows[name], key=repr))
            for name in runs}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    state = Path(tempfile.mkdtemp(prefix="icetide-bench-trino-"))
    for key in ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE"):  # they would override the client's verify=
        os.environ.pop(key, None)
    settings = load_settings(None, environ={"ICETIDE__STACK__STATE_DIR": str(state), "ICETIDE__TRINO__HEAP": "2G"})
    server = TrinoServer(settings.state_dir)
    server.home.mkdir(parents=True, exist_ok=True)
    for user, password in PASSWORDS.items():
        server.set_password(user, password)
    write_private(server.rules_file, json.dumps({"catalogs": [{"user": "^carla$", "allow": "all"}]}))
    try:
        start = time.perf_counter()
        server.start(settings, settings.state_dir)
        start_s = time.perf_counter() - start
        admin = connect(server, "carla")
        start = time.perf_counter()
        run(admin, "SELECT 1")
        first_query_s = time.perf_counter() - start
        start = time.perf_counter()
        for statement in build_sql(args.rows):
            run(admin, statement)
        build_s = time.perf_counter() - start
        text = policy_text()
        compiled = compile_policy(check_policy(parse_policy(text, "bench-policy.yaml"), DictSchemaProvider(SCHEMA)),
                                  {"ICETIDE_POLICY_KEY_K1": secrets.token_hex(16)})
        apply_trino(compiled, server.rules_file, settings.catalog.name)
        time.sleep(4)  # the rules file's refresh period
        analyst = connect(server, "ana")
        results: dict[str, Any] = {}
        for name, sql in QUERIES.items():
            runs = timed({"admin": (admin, sql), "north": (admin, with_north(sql)), "ana": (analyst, sql)},
                         args.repeat, server.process.live_pid())
            (admin_s, _, _), (north_s, north_cpu, north_rows) = runs["admin"], runs["north"]
            ana_s, ana_cpu, ana_rows = runs["ana"]
            tree = parse_one(sql, read="trino")
            reads_masked = bool(tree.find(exp.Star)) or bool(MASKED & {c.name for c in tree.find_all(exp.Column)})
            results[name] = {
                "admin_s": round(admin_s, 4), "admin_north_s": round(north_s, 4), "analyst_s": round(ana_s, 4),
                "analyst_overhead_pct": round(100 * (ana_s - north_s) / north_s, 1),
                "server_cpu_s": {"admin_north": round(north_cpu, 3), "analyst": round(ana_cpu, 3)},
                "analyst_cpu_overhead_pct": round(100 * (ana_cpu - north_cpu) / north_cpu, 1) if north_cpu else None,
                "reads_masked_column": reads_masked,
                "same_result": None if reads_masked else ana_rows == north_rows,
            }
        rss = server.process.rss_bytes()
    finally:
        server.stop()
    overheads = [r["analyst_overhead_pct"] for r in results.values()]
    masked = [r["analyst_overhead_pct"] for r in results.values() if r["reads_masked_column"]]
    avg = {k: round(statistics.mean(r[k] for r in results.values()), 4) for k in ("admin_s", "admin_north_s",
                                                                                  "analyst_s")}
    print(json.dumps({
        "benchmark": "trino_policy_overhead", "rows": args.rows, "repeat": args.repeat, "engine": "trino 476",
        "start_s": round(start_s, 1), "first_query_s": round(first_query_s, 2),
        "build_tables_s": round(build_s, 1), "rss_mb": round(rss / 2**20) if rss else None,
        "queries": results, "average_s": avg, "goal_average_s": 1.0,
        "median_analyst_overhead_pct": statistics.median(overheads),
        "median_analyst_overhead_masked_queries_pct": statistics.median(masked) if masked else None,
        "median_analyst_cpu_overhead_pct": statistics.median(
            r["analyst_cpu_overhead_pct"] for r in results.values() if r["analyst_cpu_overhead_pct"] is not None),
        "goal_overhead_pct": 10.0, "meets_goal": statistics.median(overheads) <= 10.0,
        "machine": {"cpus": os.cpu_count(), "loadavg": os.getloadavg()},
    }, indent=2, default=str))
    shutil.rmtree(state, ignore_errors=True)


if __name__ == "__main__":
    main()
