"""Per-audience change streams: the table's events filtered and masked by the compiled policy.

An audience is a policy user with a visible view of the table (`lake.sec_<user>.<table>`). For a
batch of change events of one table, each audience gets its own events, on its own topic::

    <prefix>.sec_<user>.<namespace>.<table>        e.g. icetide.sec_ana.sales.vendas

The middle segment is the audience's secure-view namespace, so one name identifies an audience
everywhere, and a Kafka *prefixed* ACL on `<prefix>.sec_<user>.` grants a consumer exactly that
audience's topics. The base topic (`<prefix>.<namespace>.<table>`) has one segment fewer, so the
two never collide.

Why an audience's topic, applied downstream, equals its view:
- images are masked by the same SELECT the views use (`policies.compiler.masked_select`, run in
  DuckDB like `policies.stream`), on the before and the after image alike;
- the row filter turns a change into what the audience sees change: before and after visible →
  the same op (an `u` whose masked images are equal is dropped: nothing the audience sees
  changed, and forwarding it would tell that a hidden value did); only after → `c` (the row
  enters the view; `r` stays `r`); only before → `d` with the masked before image (it leaves);
  neither → nothing.
- deny by default: a table the policy does not name, a user it does not know or a user without
  a matching allow rule has no audience and gets nothing; columns no rule classifies come out as
  the policy says (null), and columns unknown to the policy (added after it was compiled) as null.

Batches: all images of a batch go into one Arrow table registered once in one DuckDB connection,
and each audience's masked SELECT runs once over it, so the cost per batch is one query per
audience, never one per event. A slot column carries each image's position through the query,
which is how a visible before/after pair is found again.

The record key of an audience event is taken from its *masked* image (an unmasked key would leak
what the mask hides). A key column masked with null or redact therefore makes keys collide on
that audience's topic: classify key columns `public` or hash them.

Audience topics are always JSON, also when the table topics are Avro (`cdc.format: avro`): a mask
may change a column's type (a hash or redaction of a number is a string, a null mask drops the
value's type), so an audience's Avro schema would have to be derived from each audience's masked
SELECT and registered per audience topic — not done. The consumer detects the encoding per record,
so one `cdc apply --schema-registry URL` reads both. With `cdc.tombstones`, an audience's deletes
(rows leaving its view) are followed by tombstones too, keyed tables only.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from icetide.errors import EventError
from icetide.events import ChangeEvent, from_json, topic_for
from policies.compiler import CompiledPolicy, audience, compile_policy, masked_select
from policies.local import coerce
from policies.stream import SOURCE, arrow_type, connect
from sqlglot import exp

from streaming.poller import SCHEMA_OP, TOMBSTONE_OP, Record, to_record, with_tombstones

if TYPE_CHECKING:
    import duckdb
    import pyarrow as pa
    from icetide.settings import Settings

SLOT = "__icetide_slot"  # position of an image in the batch: 2*i before, 2*i + 1 after


def audience_topic(prefix: str, user: str, table: str) -> str:
    """`icetide.sec_ana.sales.vendas` for user `ana` and table `sales.vendas` under `icetide`."""
    namespace, name = table.split(".", 1)
    return topic_for(f"{prefix}.{audience(user)}", namespace, name)


def audiences(compiled: CompiledPolicy, table: str) -> list[str]:
    """Users with a visible view of `table`, in the policy's order (deny by default)."""
    table = table.lower()
    return [u for u in compiled.checked.policy.users
            if (a := compiled.get(u, table)) is not None and a.visible]


def audience_topics(compiled: CompiledPolicy, prefix: str, tables: Iterable[str]) -> list[str]:
    """Every audience topic of `tables` (the job creates one Kafka sink per topic)."""
    return [audience_topic(prefix, u, t) for t in tables for u in audiences(compiled, t)]


def load_compiled(policy_file: str, settings: Settings, environ: Mapping[str, str] | None = None) -> CompiledPolicy:
    """Check the policy against the catalog's schemas and compile it; a bad file raises PolicyError."""
    from policies.schemas import CatalogSchemaProvider
    from policies.validate import check_file

    return compile_policy(check_file(policy_file, CatalogSchemaProvider(settings)), environ)


def derive(compiled: CompiledPolicy, table: str, events: Sequence[ChangeEvent],
           con: duckdb.DuckDBPyConnection | None = None) -> dict[str, list[ChangeEvent]]:
    """Each audience's events for a batch of `table`'s events, in input order (see module docstring).

    Audiences without any event in the batch are absent from the result.
    """
    table = table.lower()
    users = audiences(compiled, table)
    if not users or not events:
        return {}
    batch, extras = _batch(compiled, table, events)
    own = con is None
    con = con or connect()
    out: dict[str, list[ChangeEvent]] = {}
    try:
        con.register(SOURCE, batch)
        for user in users:
            masked = _masked(con, compiled, user, table, extras)
            derived = [e for i, ev in enumerate(events) if (e := _change(ev, masked, i)) is not None]
            if derived:
                out[user] = derived
        con.unregister(SOURCE)
    finally:
        if own:
            con.close()
    return out


def records(compiled: CompiledPolicy, table: str, prefix: str, key_fields: list[str],
            batch: Sequence[Record], con: duckdb.DuckDBPyConnection | None = None,
            tombstones: bool = False) -> list[Record]:
    """The audience records for a batch of the job's records of `table` (schema records and
    tombstones are skipped).

    Each record's event (decoded from its JSON value when the record does not carry it) is
    derived (images typed again by the policy's schema) and encoded as JSON with the base topic's
    conventions; output is grouped by audience, input order kept within each (one key's events
    stay in order on its topic). `tombstones`: a tombstone after each delete of a keyed table.
    """
    events = [r.event if r.event is not None else from_json(r.value) for r in batch
              if r.op not in (SCHEMA_OP, TOMBSTONE_OP)]
    out: list[Record] = []
    for user, derived in derive(compiled, table, events, con).items():
        topic = audience_topic(prefix, user, table)
        encoded = [to_record(e, topic, key_fields) for e in derived]
        out += with_tombstones(encoded, key_fields) if tombstones else encoded
    return out


def _batch(compiled: CompiledPolicy, table: str, events: Sequence[ChangeEvent]) -> tuple[pa.Table, list[str]]:
    """One Arrow table of every image (typed by the policy's schema) and the columns it does not know."""
    import pyarrow as pa

    schema = compiled.checked.schemas[table]
    known = dict(schema.columns)
    seen = dict.fromkeys(k for e in events for img in (e.before, e.after) if img is not None for k in img)
    if SLOT in known or SLOT in seen:
        raise EventError(f"column name {SLOT!r} is reserved for audience streams")
    extras = [k for k in seen if k not in known]
    fields = [pa.field(n, arrow_type(t)) for n, t in schema.columns] + [pa.field(SLOT, pa.int64())]
    rows: list[dict[str, Any]] = []
    for i, event in enumerate(events):
        for side, image in enumerate((event.before, event.after)):
            if image is not None:
                row = {n: _typed(image.get(n), t, n) for n, t in schema.columns}
                row[SLOT] = 2 * i + side
                rows.append(row)
    try:
        return pa.Table.from_pylist(rows, schema=pa.schema(fields)), extras
    except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError) as exc:
        raise EventError(f"images of {table} do not fit its schema: {exc}") from None


def _typed(value: Any, col_type: str, name: str) -> Any:
    """A row value as its column's Python value: images decoded from JSON carry strings."""
    if value is None:
        return None
    try:
        if col_type == "binary" and isinstance(value, str):
            return base64.b64decode(value, validate=True)
        return coerce(value, col_type)
    except (ValueError, binascii.Error):
        raise EventError(f"column {name!r}: value is not a valid {col_type}") from None


def _masked(con: duckdb.DuckDBPyConnection, compiled: CompiledPolicy, user: str, table: str,
            extras: list[str]) -> dict[int, dict[str, Any]]:
    """slot → masked image, for the images `user` may see."""
    access = compiled.get(user, table)
    assert access is not None
    select = masked_select(compiled, access, exp.to_table(SOURCE), "duckdb")
    for extra in extras:  # unknown to the policy: present, and null (deny by default)
        select = select.select(exp.alias_(exp.Null(), extra, quoted=True), copy=False)
    select = select.select(exp.column(SLOT, quoted=True), copy=False)
    masked: dict[int, dict[str, Any]] = {}
    for row in con.sql(select.sql(dialect="duckdb")).to_arrow_table().to_pylist():
        masked[int(row.pop(SLOT))] = row
    return masked


def _change(event: ChangeEvent, masked: dict[int, dict[str, Any]], index: int) -> ChangeEvent | None:
    """What `event` is for an audience that sees the masked images in `masked`."""
    before = masked.get(2 * index) if event.before is not None else None
    after = masked.get(2 * index + 1) if event.after is not None else None
    if before is not None and after is not None:
        return None if before == after else replace(event, before=before, after=after)
    if after is not None:
        return replace(event, op="r" if event.op == "r" else "c", before=None, after=after)
    if before is not None:
        return replace(event, op="d", before=before, after=None)
    return None

