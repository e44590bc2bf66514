"""Snapshot boundaries as Debezium transaction metadata, on `<prefix>.transaction`.

One Iceberg snapshot of one table is one transaction (an Iceberg commit changes one table). The
job publishes, per table, a BEGIN record before the snapshot's first change event and an END
record after its last, in Debezium's shape (`TransactionStructMaker`)::

    key   {"id": "<namespace>.<table>:<snapshot id>"}
    value {"status": "BEGIN" | "END", "id": <the same>, "ts_ms": <the snapshot's commit time>,
           "event_count": null | N,
           "data_collections": null | [{"data_collection": "<namespace>.<table>", "event_count": N}],
           "snapshot_id": <id>, "sequence_number": <the snapshot's sequence number>}

`event_count` counts change events (ordinals 0..N-1 of the snapshot; tombstones and schema-change
records are not events). `snapshot_id` and `sequence_number` are icetide's additions (Debezium
readers ignore them): a consumer orders one table's snapshots by sequence number and recognises
an END whose snapshot it has applied already. Snapshots without events (compactions) get no
records, as Debezium publishes no empty transactions. Values are JSON whatever `cdc.format` says,
like the schema-change records, and `ts_ms` is the commit time, so a re-published record is
byte-for-byte the one before.

Delivery is at least once like every record of the job: a restart from a checkpoint taken before
a snapshot's END re-publishes its events (at new offsets) and its END, and, when the checkpoint
stood before the first event, its BEGIN. Consumers must take duplicates: `cdc apply
--snapshot-consistent` needs only the END (the event count) and dedupes by event position.

Order: the BEGIN/END of one table must stay in publish order, so the topic is created with one
partition if it does not exist (`ensure_topic`), and the job writes it with Flink's `fixed`
partitioner (each sink subtask to one partition; one table's records all come from one subtask:
the sink is chained to the publishing operator, same parallelism, no shuffle in between). A
consumer that read one table's END of a later snapshot before that of an earlier one could apply
them out of order; `cdc apply --snapshot-consistent` relies on this order.
"""

from __future__ import annotations

import logging
from typing import Any, Literal

from icetide import kafka_client
from icetide.errors import StackError
from icetide.events import key_to_json, transaction_id
from icetide.settings import Settings

TRANSACTION_OP = "transaction"  # Record.op of a BEGIN/END record
log = logging.getLogger(__name__)


def boundary(namespace: str, table: str, snapshot_id: int, sequence_number: int, ts_ms: int,
             status: Literal["BEGIN", "END"], event_count: int | None = None) -> tuple[bytes, bytes]:
    """The key and value bytes of a BEGIN or END record (module docstring)."""
    import json

    txid = transaction_id(namespace, table, snapshot_id)
    ended = status == "END"
    value: dict[str, Any] = {
        "status": status,
        "id": txid,
        "ts_ms": ts_ms,
        "event_count": event_count if ended else None,
        "data_collections": [{"data_collection": f"{namespace}.{table}", "event_count": event_count}]
        if ended else None,
        "snapshot_id": snapshot_id,
        "sequence_number": sequence_number,
    }
    return key_to_json({"id": txid}, ready=True), json.dumps(value, separators=(",", ":")).encode()


def ensure_topic(bootstrap: str, topic: str, timeout_s: float = 30.0, settings: Settings | None = None,
                 partitions: int = 1) -> int:
    """Create `topic` with `partitions` partitions unless it exists, as the CDC job's principal
    (`kafka_client`); its partition count. The transaction topic gets one (the module docstring on
    order); a table's topic under parallel derivation one per lane (`streaming/derivation.py`)."""
    from confluent_kafka import KafkaException
    from confluent_kafka.cimpl import NewTopic  # where the class lives (the admin package does not re-export it)

    admin = kafka_client.admin(settings or Settings(), "cdc", bootstrap,
                               {"logger": logging.getLogger("icetide.kafka.admin")})
    try:
        meta = admin.list_topics(timeout=timeout_s)
    except KafkaException as exc:
        raise StackError(f"Kafka at {bootstrap} did not answer (creating {topic}): {exc}") from None
    if topic in meta.topics:
        found = len(meta.topics[topic].partitions)
        if found > 1 and partitions == 1:
            log.warning("%s has %d partitions; the job writes one partition per Flink subtask, so "
                        "keep flink.parallelism unchanged between runs", topic, found)
        return found
    futures = admin.create_topics([NewTopic(topic, num_partitions=partitions)], operation_timeout=timeout_s)
    try:
        futures[topic].result(timeout=timeout_s)
    except KafkaException as exc:
        if "TOPIC_ALREADY_EXISTS" not in str(exc):  # created meanwhile by another job: fine
            raise StackError(f"cannot create {topic} at {bootstrap}: {exc}") from None
        return ensure_topic(bootstrap, topic, timeout_s, settings, partitions)
    return partitions
