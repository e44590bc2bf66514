"""The PostgreSQL fixture is a real server that psycopg can use."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.integration


def test_server_answers_and_databases_are_isolated(postgres_dsn: str, postgres_db: str) -> None:
    import psycopg

    with psycopg.connect(postgres_db) as conn:
        version = conn.execute("SHOW server_version").fetchone()
        assert version is not None and int(version[0].split(".")[0]) >= 13
        conn.execute("CREATE TABLE t (id int PRIMARY KEY, v text)")
        conn.execute("INSERT INTO t VALUES (%s, %s)", (1, "x"))
        conn.commit()
        assert conn.execute("SELECT v FROM t WHERE id = %s", (1,)).fetchone() == ("x",)
    with psycopg.connect(postgres_dsn) as conn:
        tables = conn.execute("SELECT count(*) FROM pg_tables WHERE tablename = 't'").fetchone()
        assert tables == (0,)
