"""PostgreSQL sink (psycopg 3): schema `<namespace>`, table `<table>`, one transaction per batch.

Identifiers are composed with `psycopg.sql.Identifier`, values are bound parameters (or COPY rows);
nothing is pasted into SQL text. Every batch takes a transaction-scoped advisory lock first, so
two consumers pointed at the same database never interleave their position updates.
"""

from __future__ import annotations

import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from icetide.errors import DownstreamError, EventError, IcetideError

from connectors import evolve, types
from connectors.base import COLUMNS_TABLE, POSITIONS_TABLE, Applied, Sink, TableRef, TopicPartition
from connectors.retry import SinkUnavailable, snake

if TYPE_CHECKING:
    import psycopg

LOCK_ID = zlib.crc32(b"icetide-apply")
UNTYPED = "icetide:untyped"  # column comment: created while only NULLs were seen, typed on first value
# SQLSTATE classes (and codes) of the server's condition, not the row's: retried, never dead-lettered.
# 08 connection, 40 transaction rollback (serialization, deadlock), 53 insufficient resources (disk
# full, out of memory, too many connections), 57 operator intervention (query cancelled, admin or
# crash shutdown, cannot connect now), 58 system error (I/O); 55P03 lock not available, 55006 object
# in use, 42501 insufficient privilege (a revoked grant is fixed by an operator, not by the event).
TRANSIENT_CLASSES = ("08", "40", "53", "57", "58")
TRANSIENT_CODES = ("55P03", "55006", "42501")


@dataclass(frozen=True)
class PostgresConfig:
    dsn: str
    application_name: str = "icetide-apply"


def column_type(sample: Any) -> str:
    """The type of a column of an untyped table (no schema known), from its first non-NULL value."""
    if isinstance(sample, bool):
        return "boolean"
    if isinstance(sample, int):
        return "bigint"
    if isinstance(sample, float):
        return "double precision"
    if isinstance(sample, dict | list):
        return "jsonb"
    return "text"


def _uniform_scalars(values: Sequence[Any]) -> bool:
    """True if `values` bind as one typed array: all str, or all int (bool excluded), no NULLs."""
    kinds = {type(v) for v in values}
    return kinds == {str} or kinds == {int}


def _param(value: Any) -> Any:
    if isinstance(value, dict | list):
        from psycopg.types.json import Jsonb

        return Jsonb(value)
    return value


class PostgresSink(Sink):
    kind = "postgres"

    def __init__(self, config: PostgresConfig) -> None:
        super().__init__()
        self.config = config
        self._conn: psycopg.Connection[Any] | None = None

    @property
    def conn(self) -> psycopg.Connection[Any]:
        if self._conn is None:
            raise RuntimeError("sink is not open")
        return self._conn

    def open(self) -> None:
        import psycopg

        try:
            self._conn = psycopg.connect(self.config.dsn, autocommit=True,
                                         application_name=self.config.application_name)
        except psycopg.OperationalError as exc:
            # libpq gives no SQLSTATE for a refused connection (too many connections, starting up, a
            # wrong password alike): all are retried, the first failure's message is logged once.
            raise SinkUnavailable(f"postgres: cannot connect: {_first_line(exc)}", "cannot_connect") from None
        try:
            self._create_bookkeeping_tables()
        except psycopg.Error as exc:
            error = self.classify(exc)
            self.close()
            raise error from exc

    def _create_bookkeeping_tables(self) -> None:
        """Under the apply lock: `CREATE TABLE IF NOT EXISTS` is not safe against itself — two workers
        opening on a fresh database at once race on the catalog, and one fails with a unique violation."""
        from psycopg import sql

        with self.conn.transaction():
            self.conn.execute("SELECT pg_advisory_xact_lock(%s)", (LOCK_ID,))
            self.conn.execute(sql.SQL(
                "CREATE TABLE IF NOT EXISTS {} (topic text NOT NULL, kafka_partition integer NOT NULL, "
                "applied_offset bigint NOT NULL, event_sequence bigint, event_ordinal bigint, "
                "PRIMARY KEY (topic, kafka_partition))"
            ).format(sql.Identifier(POSITIONS_TABLE)))
            self.conn.execute(sql.SQL(
                "CREATE TABLE IF NOT EXISTS {} (namespace text NOT NULL, table_name text NOT NULL, "
                "column_name text NOT NULL, field_id integer, iceberg_type text NOT NULL, "
                "PRIMARY KEY (namespace, table_name, column_name))"
            ).format(sql.Identifier(COLUMNS_TABLE)))
            self.conn.execute(sql.SQL(  # positions tables of icetide < 0.2
                "ALTER TABLE {} ADD COLUMN IF NOT EXISTS event_sequence bigint, "
                "ADD COLUMN IF NOT EXISTS event_ordinal bigint"
            ).format(sql.Identifier(POSITIONS_TABLE)))

    def close(self) -> None:
        if self._conn is not None:
            conn, self._conn = self._conn, None
            conn.close()

    # -- transaction and positions -----------------------------------------------------------
    def _begin(self) -> None:
        self.conn.execute("BEGIN")

    def _commit(self) -> None:
        self.conn.execute("COMMIT")

    def _rollback(self) -> None:
        if self._conn is not None and not self._conn.closed:
            self._conn.execute("ROLLBACK")

    def _load_positions(self, lock: bool) -> dict[TopicPartition, Applied]:
        from psycopg import sql

        if lock:
            self.conn.execute("SELECT pg_advisory_xact_lock(%s)", (LOCK_ID,))
        rows = self.conn.execute(sql.SQL(
            "SELECT topic, kafka_partition, applied_offset, event_sequence, event_ordinal FROM {}"
        ).format(sql.Identifier(POSITIONS_TABLE))).fetchall()
        return {(topic, int(part)): Applied(int(off), None if seq is None else (int(seq), int(ordinal)))
                for topic, part, off, seq, ordinal in rows}

    def _save_positions(self, positions: Mapping[TopicPartition, Applied]) -> None:
        from psycopg import sql

        query = sql.SQL(
            "INSERT INTO {} (topic, kafka_partition, applied_offset, event_sequence, event_ordinal) "
            "VALUES (%s, %s, %s, %s, %s) ON CONFLICT (topic, kafka_partition) DO UPDATE SET "
            "applied_offset = excluded.applied_offset, event_sequence = excluded.event_sequence, "
            "event_ordinal = excluded.event_ordinal"
        ).format(sql.Identifier(POSITIONS_TABLE))
        with self.conn.cursor() as cur:
            cur.executemany(query, [(topic, part, a.offset, *(a.event or (None, None)))
                                    for (topic, part), a in positions.items()])

    # -- tables ------------------------------------------------------------------------------
    @staticmethod
    def _name(table: TableRef) -> Any:
        from psycopg import sql

        return sql.Identifier(table[0], table[1])

    def _table_columns(self, table: TableRef) -> list[str] | None:
        rows = self.conn.execute(
            "SELECT column_name FROM information_schema.columns WHERE table_schema = %s AND table_name = %s "
            "ORDER BY ordinal_position", table).fetchall()
        return [str(r[0]) for r in rows] or None

    def _create_table(self, table: TableRef, columns: Mapping[str, Any], key_fields: Sequence[str]) -> None:
        from psycopg import sql

        parts = [sql.SQL("{} {}").format(sql.Identifier(n), sql.SQL(column_type(v))) for n, v in columns.items()]
        if key_fields:
            parts.append(sql.SQL("PRIMARY KEY ({})").format(sql.SQL(", ").join(map(sql.Identifier, key_fields))))
        self.conn.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(table[0])))
        self.conn.execute(sql.SQL("CREATE TABLE IF NOT EXISTS {} ({})").format(
            self._name(table), sql.SQL(", ").join(parts)))
        for name, sample in columns.items():
            if sample is None:
                self._comment(table, name, UNTYPED)

    def _add_column(self, table: TableRef, name: str, sample: Any) -> None:
        from psycopg import sql

        self.conn.execute(sql.SQL("ALTER TABLE {} ADD COLUMN IF NOT EXISTS {} {}").format(
            self._name(table), sql.Identifier(name), sql.SQL(column_type(sample))))
        if sample is None:
            self._comment(table, name, UNTYPED)

    def _comment(self, table: TableRef, name: str, text: str | None) -> None:
        from psycopg import sql

        self.conn.execute(sql.SQL("COMMENT ON COLUMN {}.{} IS {}").format(
            self._name(table), sql.Identifier(name), sql.Literal(text)))

    def _untyped_columns(self, table: TableRef) -> set[str]:
        qualified = self._name(table).as_string(self.conn)
        rows = self.conn.execute(
            "SELECT a.attname FROM pg_attribute a WHERE a.attrelid = to_regclass(%s) AND a.attnum > 0 "
            "AND NOT a.attisdropped AND col_description(a.attrelid, a.attnum) = %s", (qualified, UNTYPED)).fetchall()
        return {str(r[0]) for r in rows}

    def _type_column(self, table: TableRef, name: str, sample: Any) -> None:
        """`ALTER COLUMN ... TYPE <type of sample> USING col::<type>` (the column holds only NULLs)."""
        from psycopg import sql

        kind = column_type(sample)
        if kind != "text":
            self.conn.execute(sql.SQL("ALTER TABLE {t} ALTER COLUMN {c} TYPE {k} USING {c}::{k}").format(
                t=self._name(table), c=sql.Identifier(name), k=sql.SQL(kind)))
        self._comment(table, name, None)

    # -- typed tables ------------------------------------------------------------------------
    def declared_type(self, iceberg: str) -> str:
        return types.pg_type(iceberg)

    def store(self, iceberg: str) -> types.Convert:
        return types.converter(iceberg)  # psycopg binds the Python values (dict/list as jsonb)

    def _declared_types(self, table: TableRef) -> dict[str, str] | None:
        rows = self.conn.execute(
            "SELECT a.attname, format_type(a.atttypid, a.atttypmod) FROM pg_attribute a "
            "WHERE a.attrelid = to_regclass(%s) AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum",
            (self._name(table).as_string(self.conn),)).fetchall()
        return {str(name): str(kind) for name, kind in rows} or None

    def _load_meta(self, table: TableRef) -> evolve.Meta:
        from psycopg import sql

        rows = self.conn.execute(sql.SQL(
            "SELECT column_name, field_id, iceberg_type FROM {} WHERE namespace = %s AND table_name = %s"
        ).format(sql.Identifier(COLUMNS_TABLE)), table).fetchall()
        return {str(name): (None if fid is None else int(fid), str(kind)) for name, fid, kind in rows}

    def _save_meta(self, table: TableRef, meta: evolve.Meta) -> None:
        from psycopg import sql

        self.conn.execute(sql.SQL("DELETE FROM {} WHERE namespace = %s AND table_name = %s").format(
            sql.Identifier(COLUMNS_TABLE)), table)
        with self.conn.cursor() as cur:
            cur.executemany(sql.SQL("INSERT INTO {} VALUES (%s, %s, %s, %s, %s)").format(
                sql.Identifier(COLUMNS_TABLE)), [(*table, name, fid, kind) for name, (fid, kind) in meta.items()])

    def _create_typed(self, table: TableRef, columns: Sequence[tuple[str, str]], key_fields: Sequence[str]) -> None:
        from psycopg import sql

        parts = [sql.SQL("{} {}").format(sql.Identifier(n), sql.SQL(kind)) for n, kind in columns]
        if key_fields:
            parts.append(sql.SQL("PRIMARY KEY ({})").format(sql.SQL(", ").join(map(sql.Identifier, key_fields))))
        self.conn.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(table[0])))
        self.conn.execute(sql.SQL("CREATE TABLE {} ({})").format(self._name(table), sql.SQL(", ").join(parts)))

    def _add_typed(self, table: TableRef, name: str, declared: str) -> None:
        from psycopg import sql

        self.conn.execute(sql.SQL("ALTER TABLE {} ADD COLUMN {} {}").format(
            self._name(table), sql.Identifier(name), sql.SQL(declared)))

    def _rename_column(self, table: TableRef, old: str, new: str) -> None:
        from psycopg import sql

        self.conn.execute(sql.SQL("ALTER TABLE {} RENAME COLUMN {} TO {}").format(
            self._name(table), sql.Identifier(old), sql.Identifier(new)))

    def _retype(self, table: TableRef, retypes: Sequence[evolve.Retype], topic: str) -> None:
        """One `ALTER COLUMN … TYPE … USING` per column (base64 text → bytea decoded, else a cast);
        PostgreSQL checks every value, and one that does not convert stops the sink (DownstreamError)."""
        import psycopg
        from psycopg import sql

        untyped = self._untyped_columns(table)
        for retype in retypes:
            column = sql.Identifier(retype.name)
            using = (sql.SQL("decode({}, 'base64')").format(column)
                     if retype.new_decl == "bytea" and retype.old_decl == "text"
                     else sql.SQL("{}::{}").format(column, sql.SQL(retype.new_decl)))
            try:
                self.conn.execute(sql.SQL("ALTER TABLE {} ALTER COLUMN {} TYPE {} USING {}").format(
                    self._name(table), column, sql.SQL(retype.new_decl), using))
            except psycopg.Error as exc:
                first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
                drop = sql.SQL("DROP TABLE {}").format(self._name(table)).as_string(self.conn)
                raise DownstreamError(evolve.cannot_convert(
                    f"postgres table {table[0]}.{table[1]}", retype, first, drop, topic)) from None
            if retype.name in untyped:
                self._comment(table, retype.name, None)

    def _delete_keys(self, table: TableRef, key_fields: Sequence[str], keys: Sequence[tuple[Any, ...]]) -> None:
        """One statement for the whole batch when the key values are plain scalars of one type per
        column (`(k1, k2) IN (SELECT * FROM unnest(%s, %s))`, each column bound as one array);
        otherwise one parameterised DELETE per key."""
        from psycopg import sql

        if not keys:
            return
        columns = list(zip(*keys, strict=True))
        meta = self._meta.get(table) or {}
        decls = [types.pg_type(meta[k][1]) for k in key_fields if k in meta]
        if len(decls) == len(key_fields) and "jsonb" not in decls:  # typed: arrays of the column types
            arrays = sql.SQL(", ").join(sql.SQL("%s::{}[]").format(sql.SQL(d)) for d in decls)
            query = sql.SQL("DELETE FROM {} WHERE ({}) IN (SELECT * FROM unnest({}))").format(
                self._name(table), sql.SQL(", ").join(map(sql.Identifier, key_fields)), arrays)
            self.conn.execute(query, [list(col) for col in columns])
            return
        if all(_uniform_scalars(col) for col in columns):
            targets = sql.SQL(", ").join(map(sql.Identifier, key_fields))
            # typed arrays: a bare list of str reaches PostgreSQL as unknown[] (unnest is then ambiguous)
            arrays = sql.SQL(", ").join(sql.SQL("%s::text[]" if isinstance(col[0], str) else "%s::bigint[]")
                                        for col in columns)
            query = sql.SQL("DELETE FROM {} WHERE ({}) IN (SELECT * FROM unnest({}))").format(
                self._name(table), targets, arrays)
            self.conn.execute(query, [list(col) for col in columns])
            return
        where = sql.SQL(" AND ").join(sql.SQL("{} = %s").format(sql.Identifier(k)) for k in key_fields)
        query = sql.SQL("DELETE FROM {} WHERE {}").format(self._name(table), where)
        with self.conn.cursor() as cur:
            cur.executemany(query, [tuple(_param(v) for v in key) for key in keys])

    def _insert_rows(self, table: TableRef, columns: Sequence[str], rows: Sequence[Mapping[str, Any]]) -> None:
        """COPY the rows in (the fastest bulk path); struct, map and list values go in as jsonb."""
        from psycopg import sql
        from psycopg.types.json import JsonbDumper

        query = sql.SQL("COPY {} ({}) FROM STDIN").format(
            self._name(table), sql.SQL(", ").join(map(sql.Identifier, columns)))
        with self.conn.cursor() as cur:
            for nested in (dict, list):  # this cursor only: elsewhere lists bind as arrays
                cur.adapters.register_dumper(nested, JsonbDumper)
            with cur.copy(query) as copy:
                self._copy_rows(copy, rows, columns)

    @staticmethod
    def _copy_rows(copy: Any, rows: Sequence[Mapping[str, Any]], columns: Sequence[str]) -> None:
        from operator import itemgetter

        pick = itemgetter(*columns)
        single = len(columns) == 1
        for row in rows:
            try:
                values = pick(row)
            except KeyError:  # an image of an older schema: its missing columns are NULL
                copy.write_row([row.get(c) for c in columns])
                continue
            copy.write_row((values,) if single else values)

    def _delete_one(self, table: TableRef, image: Mapping[str, Any]) -> None:
        from psycopg import sql

        where = sql.SQL(" AND ").join(
            sql.SQL("{} IS NOT DISTINCT FROM %s").format(sql.Identifier(c)) for c in image)
        query = sql.SQL("DELETE FROM {t} WHERE ctid = (SELECT ctid FROM {t} WHERE {w} LIMIT 1)").format(
            t=self._name(table), w=where)
        self.conn.execute(query, [_param(v) for v in image.values()])

    def classify(self, exc: Exception) -> IcetideError:
        """By SQLSTATE: the server's condition (TRANSIENT_CLASSES/CODES) → SinkUnavailable, retried;
        the row's (22 data exception, 23 integrity constraint, …) → EventError, dead-lettered. Without a
        SQLSTATE (client side): a lost or closed connection is transient, anything else the row's."""
        import psycopg

        first = _first_line(exc)
        state = getattr(exc, "sqlstate", None)
        if state is not None:
            if state[:2] in TRANSIENT_CLASSES or state in TRANSIENT_CODES:
                return SinkUnavailable(f"postgres: {first} (SQLSTATE {state})", _kind(exc, state))
            return EventError(f"postgres: {type(exc).__name__}: {first}")
        if self._conn is None or self._conn.closed:
            return SinkUnavailable(f"postgres: {first}", "connection_lost")
        if isinstance(exc, psycopg.OperationalError | psycopg.InterfaceError):
            return SinkUnavailable(f"postgres: {first}", _kind(exc, "connection_lost"))
        return EventError(f"postgres: {type(exc).__name__}: {first}")

    def read_rows(self, table: TableRef) -> list[dict[str, Any]]:
        from psycopg import sql
        from psycopg.rows import dict_row

        if self._table_columns(table) is None:
            return []
        with self.conn.cursor(row_factory=dict_row) as cur:
            return list(cur.execute(sql.SQL("SELECT * FROM {}").format(self._name(table))).fetchall())


def _first_line(exc: Exception) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _kind(exc: Exception, fallback: str) -> str:
    """The condition's name for the metrics: `too_many_connections`, `disk_full`, `admin_shutdown`."""
    name = type(exc).__name__
    return fallback if name in ("OperationalError", "InterfaceError", "DatabaseError", "Error") else snake(name)
