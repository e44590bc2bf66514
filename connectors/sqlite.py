"""SQLite sink: one database file; table `<namespace>__<table>` per source table.

Typed tables declare the types of `connectors.types` and store exact values (decimals as text, NaN
and -0.0 as text in REAL columns); SQLite cannot change a column's type, so widening or upgrading
one rebuilds the table in the batch's transaction (new table, rows converted, indexes and triggers
re-created, then renamed into place).

Identifiers are rendered by sqlglot (quoted), values are always bound as `?` parameters. The file
runs in WAL mode so readers (`icetide cdc verify`, tests) see committed batches while the consumer
writes; each batch is one `BEGIN IMMEDIATE` transaction holding the rows and the offsets.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from icetide.errors import DownstreamError, EventError, IcetideError
from sqlglot import exp

from connectors import evolve, types
from connectors.base import COLUMNS_TABLE, POSITIONS_TABLE, Applied, Sink, TableRef, TopicPartition, sql_value
from connectors.retry import SinkUnavailable, snake

# Primary result codes of the database's condition, not the row's: retried, never dead-lettered.
# BUSY/LOCKED another writer; NOMEM; READONLY (file or filesystem made read-only); INTERRUPT; IOERR
# (disk I/O error); CORRUPT/NOTADB (an operator must repair the file: events are kept meanwhile);
# FULL (database or disk is full); CANTOPEN; PROTOCOL (WAL lock race). Others (CONSTRAINT, MISMATCH,
# TOOBIG, RANGE, ERROR: SQL the row's values or shape make invalid) are the event's: EventError.
TRANSIENT_CODES = {
    sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED, sqlite3.SQLITE_NOMEM, sqlite3.SQLITE_READONLY,
    sqlite3.SQLITE_INTERRUPT, sqlite3.SQLITE_IOERR, sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_FULL,
    sqlite3.SQLITE_CANTOPEN, sqlite3.SQLITE_PROTOCOL, sqlite3.SQLITE_NOTADB,
}


@dataclass(frozen=True)
class SqliteConfig:
    path: Path


def ident(name: str) -> str:
    """A quoted SQLite identifier (sqlglot escapes embedded quotes)."""
    return exp.to_identifier(name, quoted=True).sql(dialect="sqlite")


def table_name(table: TableRef) -> str:
    namespace, name = table
    return f"{namespace.replace('.', '__')}__{name}"


def column_type(sample: Any) -> str:
    """The declared type of a column of an untyped table (no schema known), first seen with `sample`;
    no type (values kept as they come) when only NULLs were seen, so a later number is not turned
    into text by TEXT affinity."""
    if sample is None:
        return ""
    if isinstance(sample, bool):
        return "BOOLEAN"
    if isinstance(sample, int):
        return "INTEGER"
    if isinstance(sample, float):
        return "REAL"
    if isinstance(sample, dict | list):
        return "JSON"
    return "TEXT"


class SqliteSink(Sink):
    kind = "sqlite"

    def __init__(self, config: SqliteConfig) -> None:
        super().__init__()
        self.config = config
        self._conn: sqlite3.Connection | None = None

    @property
    def conn(self) -> sqlite3.Connection:
        if self._conn is None:
            raise RuntimeError("sink is not open")
        return self._conn

    def open(self) -> None:
        self.config.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self._conn = sqlite3.connect(self.config.path, isolation_level=None, timeout=30)
            self._create_bookkeeping_tables()
        except sqlite3.Error as exc:
            error = self.classify(exc)
            self.close()
            raise error from exc

    def _create_bookkeeping_tables(self) -> None:
        self.conn.execute("PRAGMA journal_mode=WAL")
        self.conn.execute(
            f"CREATE TABLE IF NOT EXISTS {ident(POSITIONS_TABLE)} (topic TEXT NOT NULL, "
            "kafka_partition INTEGER NOT NULL, applied_offset INTEGER NOT NULL, "
            "event_sequence INTEGER, event_ordinal INTEGER, PRIMARY KEY (topic, kafka_partition))"
        )
        self.conn.execute(
            f"CREATE TABLE IF NOT EXISTS {ident(COLUMNS_TABLE)} (namespace TEXT NOT NULL, table_name TEXT NOT NULL, "
            "column_name TEXT NOT NULL, field_id INTEGER, iceberg_type TEXT NOT NULL, "
            "PRIMARY KEY (namespace, table_name, column_name))"
        )
        have = {str(row[1]) for row in self.conn.execute(f"PRAGMA table_info({ident(POSITIONS_TABLE)})")}
        for column in ("event_sequence", "event_ordinal"):  # positions tables of icetide < 0.2
            if column not in have:
                self.conn.execute(f"ALTER TABLE {ident(POSITIONS_TABLE)} ADD COLUMN {column} INTEGER")

    def close(self) -> None:
        if self._conn is not None:
            conn, self._conn = self._conn, None
            conn.close()

    # -- transaction and positions -----------------------------------------------------------
    def _begin(self) -> None:
        self.conn.execute("BEGIN IMMEDIATE")

    def _commit(self) -> None:
        self.conn.execute("COMMIT")

    def _rollback(self) -> None:
        if self._conn is not None and self.conn.in_transaction:
            self.conn.execute("ROLLBACK")

    def _load_positions(self, lock: bool) -> dict[TopicPartition, Applied]:
        rows = self.conn.execute(
            "SELECT topic, kafka_partition, applied_offset, event_sequence, event_ordinal "
            f"FROM {ident(POSITIONS_TABLE)}"
        ).fetchall()
        return {(topic, int(part)): Applied(int(off), None if seq is None else (int(seq), int(ordinal)))
                for topic, part, off, seq, ordinal in rows}

    def _save_positions(self, positions: Mapping[TopicPartition, Applied]) -> None:
        self.conn.executemany(
            f"INSERT INTO {ident(POSITIONS_TABLE)} (topic, kafka_partition, applied_offset, event_sequence, "
            "event_ordinal) VALUES (?, ?, ?, ?, ?) ON CONFLICT (topic, kafka_partition) DO UPDATE SET "
            "applied_offset = excluded.applied_offset, event_sequence = excluded.event_sequence, "
            "event_ordinal = excluded.event_ordinal",
            [(topic, part, a.offset, *(a.event or (None, None))) for (topic, part), a in positions.items()],
        )

    # -- tables ------------------------------------------------------------------------------
    def _declared(self, table: TableRef) -> list[tuple[str, str]]:
        return [(str(n), str(t)) for n, t in self.conn.execute(
            "SELECT name, type FROM pragma_table_info(?) ORDER BY cid", (table_name(table),)).fetchall()]

    def _table_columns(self, table: TableRef) -> list[str] | None:
        declared = self._declared(table)
        return [name for name, _ in declared] or None

    def _create_table(self, table: TableRef, columns: Mapping[str, Any], key_fields: Sequence[str]) -> None:
        parts = [f"{ident(name)} {column_type(sample)}".rstrip() for name, sample in columns.items()]
        if key_fields:
            parts.append(f"PRIMARY KEY ({', '.join(ident(k) for k in key_fields)})")
        self.conn.execute(f"CREATE TABLE IF NOT EXISTS {ident(table_name(table))} ({', '.join(parts)})")

    def _add_column(self, table: TableRef, name: str, sample: Any) -> None:
        column = f"{ident(name)} {column_type(sample)}".rstrip()
        self.conn.execute(f"ALTER TABLE {ident(table_name(table))} ADD COLUMN {column}")

    # -- typed tables ------------------------------------------------------------------------
    def declared_type(self, iceberg: str) -> str:
        return types.sqlite_type(iceberg)

    def store(self, iceberg: str) -> types.Convert:
        return types.sqlite_store(iceberg)

    def _declared_types(self, table: TableRef) -> dict[str, str] | None:
        return dict(self._declared(table)) or None

    def _load_meta(self, table: TableRef) -> evolve.Meta:
        rows = self.conn.execute(f"SELECT column_name, field_id, iceberg_type FROM {ident(COLUMNS_TABLE)} "
                                 "WHERE namespace = ? AND table_name = ?", table).fetchall()
        return {str(name): (None if fid is None else int(fid), str(kind)) for name, fid, kind in rows}

    def _save_meta(self, table: TableRef, meta: evolve.Meta) -> None:
        self.conn.execute(f"DELETE FROM {ident(COLUMNS_TABLE)} WHERE namespace = ? AND table_name = ?", table)
        self.conn.executemany(f"INSERT INTO {ident(COLUMNS_TABLE)} VALUES (?, ?, ?, ?, ?)",
                              [(*table, name, fid, kind) for name, (fid, kind) in meta.items()])

    def _create_typed(self, table: TableRef, columns: Sequence[tuple[str, str]], key_fields: Sequence[str]) -> None:
        self.conn.execute(self._create_sql(ident(table_name(table)), columns, key_fields))

    @staticmethod
    def _create_sql(name: str, columns: Sequence[tuple[str, str]], key_fields: Sequence[str]) -> str:
        parts = [f"{ident(n)} {kind}".rstrip() for n, kind in columns]
        if key_fields:
            parts.append(f"PRIMARY KEY ({', '.join(ident(k) for k in key_fields)})")
        return f"CREATE TABLE {name} ({', '.join(parts)})"

    def _add_typed(self, table: TableRef, name: str, declared: str) -> None:
        self.conn.execute(f"ALTER TABLE {ident(table_name(table))} ADD COLUMN {ident(name)} {declared}")

    def _rename_column(self, table: TableRef, old: str, new: str) -> None:
        self.conn.execute(f"ALTER TABLE {ident(table_name(table))} RENAME COLUMN {ident(old)} TO {ident(new)}")

    def _retype(self, table: TableRef, retypes: Sequence[evolve.Retype], topic: str) -> None:
        """Rebuild the table with the new declared types; each value of a retyped column is read as its
        old declared type and stored as its new Iceberg type (DownstreamError if one does not convert)."""
        name = table_name(table)
        info = self.conn.execute("SELECT name, type, pk FROM pragma_table_info(?) ORDER BY cid", (name,)).fetchall()
        by_name = {r.name: r for r in retypes}
        columns = [(str(n), by_name[n].new_decl if n in by_name else str(t)) for n, t, _ in info]
        keys = [str(n) for n, _, pk in sorted(info, key=lambda r: r[2]) if pk]
        extras = [str(sql) for (sql,) in self.conn.execute(
            "SELECT sql FROM sqlite_schema WHERE tbl_name = ? AND type IN ('index', 'trigger') AND sql IS NOT NULL",
            (name,))]
        spare = ident(f"{name}__icetide_rebuild")
        self.conn.execute(f"DROP TABLE IF EXISTS {spare}")
        self.conn.execute(self._create_sql(spare, columns, keys))
        convert = [self._upgrade(table, by_name[str(n)], types.sqlite_reader(str(t)), topic) if n in by_name
                   else None for n, t, _ in info]
        names = ", ".join(ident(str(n)) for n, _, _ in info)
        marks = ", ".join("?" for _ in info)
        rows = self.conn.execute(f"SELECT {names} FROM {ident(name)}")
        while chunk := rows.fetchmany(5000):
            self.conn.executemany(f"INSERT INTO {spare} ({names}) VALUES ({marks})", [
                tuple(v if f is None or v is None else f(v) for f, v in zip(convert, row, strict=True))
                for row in chunk])
        self.conn.execute(f"DROP TABLE {ident(name)}")
        self.conn.execute("PRAGMA legacy_alter_table = ON")  # views naming the table are checked only when used
        try:
            self.conn.execute(f"ALTER TABLE {spare} RENAME TO {ident(name)}")
        finally:
            self.conn.execute("PRAGMA legacy_alter_table = OFF")
        for statement in extras:
            self.conn.execute(statement)

    @staticmethod
    def _upgrade(table: TableRef, retype: evolve.Retype, read: types.Convert | None, topic: str) -> types.Convert:
        store = types.sqlite_store(retype.iceberg)

        def convert(value: Any) -> Any:
            try:
                return store(read(value) if read is not None else value)
            except (EventError, ValueError, TypeError) as exc:
                raise DownstreamError(evolve.cannot_convert(
                    f"sqlite table {table_name(table)}", retype, f"value {value!r:.80}: {exc}",
                    f"DROP TABLE {ident(table_name(table))}", topic)) from None

        return convert

    def _delete_keys(self, table: TableRef, key_fields: Sequence[str], keys: Sequence[tuple[Any, ...]]) -> None:
        where = " AND ".join(f"{ident(k)} = ?" for k in key_fields)
        self.conn.executemany(f"DELETE FROM {ident(table_name(table))} WHERE {where}",
                              [tuple(sql_value(v) for v in key) for key in keys])

    def _insert_rows(self, table: TableRef, columns: Sequence[str], rows: Sequence[Mapping[str, Any]]) -> None:
        names = ", ".join(ident(c) for c in columns)
        marks = ", ".join("?" for _ in columns)
        self.conn.executemany(f"INSERT INTO {ident(table_name(table))} ({names}) VALUES ({marks})",
                              [tuple(sql_value(row.get(c)) for c in columns) for row in rows])

    def _delete_one(self, table: TableRef, image: Mapping[str, Any]) -> None:
        name = ident(table_name(table))
        where = " AND ".join(f"{ident(c)} IS ?" for c in image)
        self.conn.execute(f"DELETE FROM {name} WHERE rowid = (SELECT rowid FROM {name} WHERE {where} LIMIT 1)",
                          tuple(sql_value(v) for v in image.values()))

    def classify(self, exc: Exception) -> IcetideError:
        """By SQLite result code (TRANSIENT_CODES → SinkUnavailable, retried; others → EventError);
        a closed or missing connection is transient too."""
        text = str(exc)
        code = getattr(exc, "sqlite_errorcode", None)
        if code is not None and code & 0xFF in TRANSIENT_CODES:
            name = getattr(exc, "sqlite_errorname", None) or f"SQLITE_{code}"
            return SinkUnavailable(f"sqlite: {text} ({name})", snake(name))
        if self._conn is None or (isinstance(exc, sqlite3.ProgrammingError) and "closed" in text):
            return SinkUnavailable(f"sqlite: {text}", "connection_lost")
        return EventError(f"sqlite: {type(exc).__name__}: {text}")

    def read_rows(self, table: TableRef) -> list[dict[str, Any]]:
        declared = self._declared(table)
        if not declared:
            return []
        names = ", ".join(ident(n) for n, _ in declared)
        readers = [types.sqlite_reader(kind) for _, kind in declared]
        out = []
        for values in self.conn.execute(f"SELECT {names} FROM {ident(table_name(table))}"):
            out.append({name: value if value is None or read is None else read(value)
                        for (name, _), read, value in zip(declared, readers, values, strict=True)})
        return out
