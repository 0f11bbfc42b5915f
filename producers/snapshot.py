"""A consistent snapshot of the source, published as ``op = r`` change events.

Every table is read inside one REPEATABLE READ transaction, so the snapshot is a single
point in time; that point's WAL position becomes every snapshot event's ``position``.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterator
from contextlib import closing
from datetime import datetime
from typing import Any

from confluent_kafka import KafkaError, Message, Producer

from producers.config import CaptureSettings
from producers.db import connect
from producers.errors import ProduceError, SourceSchemaError
from producers.events import lsn_to_int, snapshot_event
from producers.source import TABLES, columns
from sluiceway.codec import Codec, event_key
from sluiceway.kafka_io import ensure_topics, producer
from sluiceway.partitioning import partition_for
from sluiceway.settings import ENTITIES

log = logging.getLogger("sluiceway.capture")
Progress = Callable[[str, int], None]


class _Acks:
    """Counts broker acknowledgements; the first failure is kept and raised later."""

    def __init__(self) -> None:
        self.acked = 0
        self.error: KafkaError | None = None

    def __call__(self, err: KafkaError | None, _msg: Message) -> None:
        if err is not None:
            self.error = self.error or err
        else:
            self.acked += 1


def create_change_topics(settings: CaptureSettings) -> None:
    kafka = settings.kafka
    ensure_topics(
        kafka,
        [kafka.cdc_topic(e) for e in ENTITIES],
        kafka.partitions,
        {"cleanup.policy": "compact", "min.compaction.lag.ms": "3600000"},
    )
    ensure_topics(kafka, [kafka.control_topic("tenants")], 1, {"cleanup.policy": "compact"})


def _rows(cur: Any, codec: Codec, entity: str, fetch: int) -> Iterator[tuple[str, dict[str, Any]]]:
    names = [c.name for c in columns(codec, entity)]
    cur.itersize = fetch
    cur.execute(
        f"SELECT tenant_id, {', '.join(names)} FROM {TABLES[entity]} ORDER BY tenant_id, id"
    )
    for record in cur:
        yield record[0], dict(zip(names, record[1:], strict=True))


def _publish_table(
    conn: Any,
    settings: CaptureSettings,
    codec: Codec,
    entity: str,
    point: tuple[int, datetime],
    prod: Producer,
    acks: _Acks,
    tenants: set[str],
    progress: Progress | None,
) -> int:
    kafka, sent = settings.kafka, 0
    topic = kafka.cdc_topic(entity)
    with conn.cursor(name=f"snapshot_{entity}") as cur:
        for tenant, row in _rows(cur, codec, entity, settings.tuning.fetch_rows):
            value = codec.encode(snapshot_event(entity, tenant, row, *point))
            part = partition_for(tenant, row["id"], kafka.partitions, kafka.spread)
            _produce(prod, topic, part, event_key(tenant, row["id"]), value, acks)
            tenants.add(tenant)
            sent += 1
            if progress and sent % 5000 == 0:
                progress(entity, 5000)
    if progress:
        progress(entity, sent % 5000)
    return sent


def _produce_plain(prod: Producer, topic: str, key: bytes, value: bytes, acks: _Acks) -> None:
    _produce(prod, topic, 0, key, value, acks)


def _produce(prod: Producer, topic: str, part: int, key: bytes, value: bytes, acks: _Acks) -> None:
    while True:
        try:
            prod.produce(topic, value=value, key=key, partition=part, on_delivery=acks)
            return
        except BufferError:
            prod.poll(0.1)  # the local queue is full: let deliveries drain it


def _open_snapshot(settings: CaptureSettings) -> Any:
    conn = connect(settings.pg)
    conn.set_session(isolation_level="REPEATABLE READ", readonly=True)
    return conn


def _check_tables(cur: Any) -> None:
    cur.execute("SELECT tablename FROM pg_tables WHERE schemaname = current_schema()")
    present = {r[0] for r in cur.fetchall()}
    missing = [t for t in TABLES.values() if t not in present]
    if missing:
        raise SourceSchemaError(
            f"source tables {', '.join(missing)} do not exist; "
            "create them with: sluiceway source seed"
        )


def run_snapshot(
    settings: CaptureSettings, codec: Codec, progress: Progress | None = None
) -> dict[str, int]:
    """Publish one event per source row; return events per entity once all are acknowledged."""
    create_change_topics(settings)
    prod, acks, tenants = producer(settings.kafka), _Acks(), set[str]()
    counts: dict[str, int] = {}
    with closing(_open_snapshot(settings)) as conn:
        with conn.cursor() as cur:
            _check_tables(cur)
            cur.execute("SELECT pg_current_wal_lsn()::text, now()")
            lsn, now = cur.fetchone()
        point = (lsn_to_int(lsn), now)
        for entity in ENTITIES:
            counts[entity] = _publish_table(
                conn, settings, codec, entity, point, prod, acks, tenants, progress
            )
        conn.rollback()
    _announce_tenants(settings, prod, tenants, acks)
    _flush(prod, acks, sum(counts.values()) + len(tenants), settings.tuning.flush_timeout_s)
    log.info("snapshot published position=%s events=%s", point[0], counts)
    return counts


def _announce_tenants(
    settings: CaptureSettings, prod: Producer, tenants: set[str], acks: _Acks
) -> None:
    """Record the tenants seen, so exports can reject unknown ones without asking the source."""
    topic = settings.kafka.control_topic("tenants")
    for tenant in sorted(tenants):
        value = json.dumps({"tenant_id": tenant}).encode()
        _produce_plain(prod, topic, tenant.encode(), value, acks)


def _flush(prod: Producer, acks: _Acks, expected: int, timeout: float) -> None:
    remaining = prod.flush(timeout)
    if acks.error is not None or remaining:
        reason = acks.error.str() if acks.error else f"{remaining} events unacknowledged"
        raise ProduceError(f"Kafka did not acknowledge the snapshot: {reason}")
    if acks.acked < expected:
        raise ProduceError(f"Kafka acknowledged {acks.acked} of {expected} snapshot events")
