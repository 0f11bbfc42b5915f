"""Streaming capture: changes from the slot (pgoutput or wal2json), produced to the change topics.

The slot's confirmed position advances only to a commit whose events, and those of every
earlier commit, Kafka has acknowledged. After a crash PostgreSQL re-sends everything after
that position; those events carry the same positions as before, so readers drop repeats.

psycopg2 also moves the confirmed position by itself, to the WAL end of a server keepalive,
whenever we have confirmed everything received so far. That never passes the commit record
of a transaction we have not received (the server sends it before any later WAL end), so a
restart still gets it; but it means a slot confirmed up to some position proves only the
transactions whose commit records lie before that position are on Kafka.
"""

from __future__ import annotations

import logging
import re
import select
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from confluent_kafka import KafkaError, Message, Producer
from psycopg2 import sql

from sluiceway.common.catalog import Catalog
from sluiceway.common.codec import Codec, EventSchema, event_key
from sluiceway.common.health import HEALTH
from sluiceway.common.schema_registry import register
from sluiceway.producers import metrics, pgoutput, wal2json
from sluiceway.producers.acks import AckTracker, PendingTxn
from sluiceway.producers.config import CaptureSettings
from sluiceway.producers.db import connect
from sluiceway.producers.decoded import HEARTBEAT_PREFIX, ChangeDecoder, Heartbeat, Transaction
from sluiceway.producers.errors import ProduceError
from sluiceway.producers.events import change_event, int_to_lsn, position, timestamp_ms
from sluiceway.producers.new_tables import NewTables
from sluiceway.producers.slot import emit_heartbeat
from sluiceway.producers.snapshot import partition_of, produce
from sluiceway.producers.tables import CapturedTable, as_text, captured_tables
from sluiceway.producers.tenants import Tenants

log = logging.getLogger("sluiceway.capture")


def _wal2json_name(name: str) -> str:
    # wal2json splits add-tables at commas and names at dots; a backslash escapes them
    return re.sub(r"([,.*\\\s])", r"\\\1", name)


def wal2json_options(catalog: Catalog) -> dict[str, str]:
    # a schema-per-tenant table in every schema (``*.name``, wal2json's wildcard), new
    # tenants' included; the decoder drops those of schemas outside the entity's pattern
    tables = ",".join(
        f"{'*' if t.per_schema else _wal2json_name(t.schema)}.{_wal2json_name(t.name)}"
        for t in captured_tables(catalog).values()
    )
    return {
        "format-version": "2",
        "include-lsn": "1",
        "include-timestamp": "1",
        "include-xids": "1",
        "include-types": "1",
        "add-tables": tables,
        "add-msg-prefixes": HEARTBEAT_PREFIX,
    }


def pgoutput_options(publication: str) -> dict[str, str]:
    # messages: our heartbeats are logical messages, which pgoutput leaves out by default
    return {"proto_version": "1", "publication_names": publication, "messages": "true"}


def plugin_options(settings: CaptureSettings, catalog: Catalog) -> dict[str, str]:
    tuning = settings.tuning
    if tuning.plugin == "pgoutput":
        return pgoutput_options(tuning.publication)
    return wal2json_options(catalog)


def row_reader(conn: Any) -> pgoutput.Fetch:
    """Reads columns of one source row by key, as text (what pgoutput would have sent)."""

    def fetch(
        table: CapturedTable, key: dict[str, Any], names: Sequence[str]
    ) -> dict[str, str | None] | None:
        select = sql.SQL("SELECT {} FROM {} WHERE {}").format(
            sql.SQL(", ").join(as_text(n, n in table.blank_padded) for n in names),
            sql.Identifier(table.schema, table.name),
            sql.SQL(" AND ").join(sql.SQL("{} = %s").format(sql.Identifier(k)) for k in key),
        )
        with conn.cursor() as cur:
            cur.execute(select, tuple(key.values()))
            row = cur.fetchone()
        return None if row is None else dict(zip(names, row, strict=True))

    return fetch


def type_names(conn: Any) -> pgoutput.TypeNames:
    """Names column types as ``format_type`` prints them (the catalog's spelling)."""
    names: dict[tuple[int, int], str] = {}

    def name(oid: int, mod: int) -> str:
        if (oid, mod) not in names:
            with conn.cursor() as cur:
                cur.execute("SELECT format_type(%s, %s)", (oid, mod))
                names[oid, mod] = cur.fetchone()[0]
        return names[oid, mod]

    return name


@dataclass
class Streamer:
    settings: CaptureSettings
    codec: Codec
    prod: Producer
    tracker: AckTracker
    stop: Callable[[], bool]
    clock: Callable[[], float] = time.monotonic
    decoder: ChangeDecoder = field(init=False)
    tenants: Tenants = field(init=False)
    last_feedback: float = 0.0
    last_heartbeat: float = 0.0
    last_look: float = float("-inf")
    new_tables: NewTables = field(init=False)
    registered: set[bytes] = field(default_factory=set)  # schema versions on the registry
    topics: dict[str, str] = field(default_factory=dict)  # change topic by entity

    def __post_init__(self) -> None:
        self.tenants = Tenants.load(self.settings.kafka)
        self.new_tables = NewTables(self.settings, self.codec, self.prod, self.tenants)

    def run(self, repl_conn: Any) -> None:
        """Stream until ``stop()``; returns after a final flush and feedback."""
        heartbeat_conn = connect(self.settings.pg)
        heartbeat_conn.autocommit = True
        binary = self.settings.tuning.plugin == "pgoutput"
        self.decoder = (
            pgoutput.Decoder(self.codec, row_reader(heartbeat_conn), type_names(heartbeat_conn))
            if binary
            else wal2json.Decoder(self.codec)
        )
        cur = repl_conn.cursor()
        cur.start_replication(
            slot_name=self.settings.tuning.slot, decode=not binary,
            options=plugin_options(self.settings, self.codec.catalog),
            start_lsn=self.tracker.confirmed, status_interval=10,
        )  # fmt: skip
        log.info("streaming from %s", int_to_lsn(self.tracker.confirmed))
        HEALTH.ready(True, "streaming")
        try:
            while not self.stop():
                self._step(cur, heartbeat_conn)
            self.prod.flush(self.settings.tuning.flush_timeout_s)
            self._feedback(cur)
        finally:
            heartbeat_conn.close()

    def _step(self, cur: Any, heartbeat_conn: Any) -> None:
        HEALTH.beat()  # each step waits at most 0.2 s for the slot: a silent loop is stuck
        msg = cur.read_message()
        if msg is None:
            self.prod.poll(0)
            select.select([cur], [], [], 0.2)
        else:
            self._handle(msg.payload)
        now = self.clock()
        if now - self.last_heartbeat >= self.settings.tuning.heartbeat_s:
            emit_heartbeat(heartbeat_conn)
            self.last_heartbeat = now
        if now - self.last_look >= self.settings.tuning.discover_s and self.new_tables.wanted:
            self.new_tables.look()
            self.last_look = self.clock()
        if now - self.last_feedback >= self.settings.tuning.feedback_s:
            self.prod.poll(0)
            self._feedback(cur)
            lag = max(0, cur.wal_end - self.tracker.confirmed) if cur.wal_end else 0
            metrics.LAG_BYTES.set(lag)

    def _handle(self, payload: str | bytes) -> None:
        decoded = self.decoder.feed(payload)
        if isinstance(decoded, Transaction):
            self._publish(decoded)
        elif isinstance(decoded, Heartbeat):
            self.tracker.saw_heartbeat(decoded.lsn)

    def _publish(self, txn: Transaction) -> None:
        changes = txn.changes
        deletes = sum(1 for c in changes if c.op == "d")
        pending = self.tracker.add(txn.commit_lsn, len(changes) + deletes)
        callback = _Delivery(self.tracker, pending)
        kafka, prod, encode = self.settings.kafka, self.prod, self.codec.encode
        topics, seen, lsn = self.topics, self.tenants.seen, txn.commit_lsn
        stamp = timestamp_ms(txn.commit_ts)
        for seq, change in enumerate(changes):
            tenant, entity_id, op = change.tenant_id, change.entity_id, change.op
            topic = topics.get(change.entity) or topics.setdefault(
                change.entity, kafka.cdc_topic(change.entity)
            )
            key = event_key(tenant, entity_id)
            part = partition_of(tenant, entity_id, kafka.partitions, kafka.spread_of(tenant))
            event = change_event(
                change.entity, tenant, entity_id, op, change.row,
                position(lsn, seq), txn.commit_ts, change.key,
            )  # fmt: skip
            value = encode(event) if change.schema is None else self._encode(change.schema, event)
            produce(prod, topic, part, key, value, callback, stamp)
            if op == "d":
                # the tombstone lets compaction drop the key once the delete has been read;
                # it shares the delete's timestamp, so a replay cut never falls between them
                produce(prod, topic, part, key, None, callback, stamp)
            if tenant not in seen:
                self.tenants.observe(prod, tenant)
        for (entity, op), n in Counter((c.entity, c.op) for c in changes).items():
            metrics.EVENTS.labels(entity, op).inc(n)
        prod.poll(0)
        age = (datetime.now(UTC) - txn.commit_ts).total_seconds()
        metrics.LAG_SECONDS.set(max(0.0, age))

    def _encode(self, schema: EventSchema, event: dict[str, Any]) -> bytes:
        """``event`` written with a schema version of its entity, registered first: a
        reader meeting its fingerprint must find the schema on the registry."""
        if schema.header not in self.registered:
            register(self.settings.kafka, [schema])
            self.registered.add(schema.header)
            log.info("%s events are written with schema version %s", schema.entity,
                     schema.header[2:].hex())  # fmt: skip
        return self.codec.encode_with(schema, event)

    def _feedback(self, cur: Any) -> None:
        if self.tracker.error:
            raise ProduceError(f"Kafka refused a captured event: {self.tracker.error}")
        safe = self.tracker.safe_lsn()
        # force: psycopg2 would otherwise hold it until its own status interval
        cur.send_feedback(flush_lsn=safe, write_lsn=safe, apply_lsn=safe, force=True)
        metrics.CONFIRMED_LSN.set(safe)
        self.last_feedback = self.clock()


@dataclass
class _Delivery:
    tracker: AckTracker
    txn: PendingTxn

    def __call__(self, err: KafkaError | None, _msg: Message) -> None:
        if err is not None:
            metrics.PRODUCE_ERRORS.inc()
        self.tracker.acked(self.txn, None if err is None else err.str())
