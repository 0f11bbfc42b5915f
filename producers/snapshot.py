"""The initial snapshot: every source row as an ``op = r`` change event.

Rows are read in key chunks (tenant column, then record key) inside one REPEATABLE READ
transaction, normally the snapshot the replication slot exported at its consistent point,
so the snapshot and the stream that follows neither overlap nor leave a gap. Every
snapshot event carries the slot's consistent point as its position: any later change to
the same key has a higher one. Progress is checkpointed per chunk, so a crash resumes
after the last chunk Kafka acknowledged (in a fresh snapshot: rows it reads are
superseded by the stream anyway).
"""

from __future__ import annotations

import functools
import logging
import re
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import closing
from dataclasses import InitVar, dataclass, field
from datetime import datetime
from typing import Any

import pyarrow as pa
from confluent_kafka import KafkaError, Message, Producer
from fastavro.write import LOGICAL_WRITERS
from psycopg2 import sql

from sluiceway.common.codec import Codec, Event, event_key
from sluiceway.common.health import HEALTH
from sluiceway.common.partitioning import id_slot, partition_for
from sluiceway.common.pgtypes import PgType, unmappable_reason
from sluiceway.common.settings import KafkaSettings
from sluiceway.producers import checkpoint as ckpt
from sluiceway.producers import metrics
from sluiceway.producers.budget import SourceBudget
from sluiceway.producers.config import CaptureSettings
from sluiceway.producers.db import connect
from sluiceway.producers.errors import ProduceError
from sluiceway.producers.events import lsn_to_int, position, timestamp_ms
from sluiceway.producers.snapshot_columns import Chunk, ColumnChunks, last_row, rows_of, tenants_of
from sluiceway.producers.snapshot_copy import copy_out, copy_parse
from sluiceway.producers.snapshot_temporal import UNCARRIED, read_expression, refuse_uncarried
from sluiceway.producers.snapshot_workers import SNAPSHOT_APP, read_in_parallel
from sluiceway.producers.tables import CapturedTable, as_text
from sluiceway.producers.tenant_tables import TableLister, live_tables
from sluiceway.producers.tenants import Tenants

log = logging.getLogger("sluiceway.capture")
Progress = Callable[[str, int], None]
CHECKPOINT_EVERY_S = 2.0


@dataclass
class Acks:
    """Counts broker acknowledgements; the first failure is kept and raised later."""

    acked: int = 0
    error: KafkaError | None = None

    def __call__(self, err: KafkaError | None, _msg: Message) -> None:
        if err is not None:
            metrics.PRODUCE_ERRORS.inc()
            self.error = self.error or err
        else:
            self.acked += 1

    def raise_if_failed(self) -> None:
        if self.error is not None:
            raise ProduceError(f"Kafka refused a captured event: {self.error.str()}")


@dataclass
class SnapshotRun:
    """One pass over the tables; ``point`` is (position, source_ts) of every event.

    Without a point (and without a slot) the snapshot's own WAL position is used.
    """

    settings: CaptureSettings
    codec: Codec
    prod: Producer
    point: tuple[int, datetime] | None
    state: ckpt.Checkpoint | None
    progress: Progress | None = None
    acks: Acks = field(default_factory=Acks)
    counts: dict[str, int] = field(default_factory=dict)
    tenants: Tenants | None = None
    columnar: dict[str, ColumnChunks | None] = field(default_factory=dict)  # by table label
    clock: Callable[[], float] = time.monotonic
    sleep: Callable[[float], None] = time.sleep
    budget: SourceBudget = field(init=False)
    shared_budget: InitVar[SourceBudget | None] = None  # one per process: the reads share it
    saved_at: float = field(init=False)  # when the checkpoint was last saved

    def __post_init__(self, shared_budget: SourceBudget | None) -> None:
        tuning = self.settings.tuning
        self.budget = shared_budget or SourceBudget(
            tuning.snapshot_rate, tuning.source_max_queries, self.clock, self.sleep
        )
        self.saved_at = self.clock()


@functools.lru_cache(maxsize=65_536)
def _partition(tenant_id: str, slot: int, partitions: int, spread: int) -> int:
    return partition_for(tenant_id, slot, partitions, spread)


def partition_of(tenant_id: str, entity_id: int | str, partitions: int, spread: int) -> int:
    """``partition_for``, cached: it depends on the id only through ``id % min(spread,
    partitions)``, so the CRC of the tenant id is computed once per tenant, not per row."""
    return _partition(tenant_id, id_slot(entity_id) % min(spread, partitions), partitions, spread)


def produce(
    prod: Producer, topic: str, part: int, key: bytes, value: bytes | None, acks: Any,
    timestamp: int = 0,
) -> None:  # fmt: skip
    """``timestamp`` is the event's commit time in ms (0: now): the topics' time index is then
    commit time, which ``sluiceway replay`` looks up with offsets_for_times."""
    while True:
        try:
            prod.produce(
                topic, value=value, key=key, partition=part, on_delivery=acks, timestamp=timestamp
            )
            return
        except BufferError:
            prod.poll(0.1)  # the local queue is full: let deliveries drain it


# Avro types whose value psycopg2 reads exactly from a built-in column type (float8 text
# is read by float(), which gives the exact double PostgreSQL 12+ prints).
_NATIVE = frozenset({"int", "long", "boolean", "double"})
# Text types psycopg2 reads as the very text PostgreSQL prints (json, numeric and interval it
# would turn into other objects: those are cast to text).
_PLAIN_TEXT = re.compile(r"(?:text|character varying|varchar|character|char|bpchar)(?:\(\d+\))?")


def read_as(pg: PgType) -> str:
    """How the snapshot reads a column: ``us``/``days`` (temporal columns as the integers
    Avro stores: building datetimes in psycopg2 only for fastavro to take them apart again
    costs a tenth of the snapshot's time), ``native`` (psycopg2's value is the Avro value),
    ``string`` (the text is the Avro value) or ``text`` (parsed as the decoders parse it)."""
    logical = pg.avro.get("logicalType") if isinstance(pg.avro, dict) else None
    if logical == "timestamp-micros":
        return "us"
    if logical == "date":
        return "days"
    builtin = unmappable_reason(pg.sql, {}) is None  # psycopg2 reads a domain as text
    if isinstance(pg.avro, str) and pg.avro in _NATIVE and builtin:
        return "native"
    if builtin and _PLAIN_TEXT.fullmatch(pg.sql.strip().lower()):
        return "native"  # psycopg2 hands their output text as it is (padding included)
    return "string" if pg.avro == "string" else "text"


def select_expression(name: str, pg: PgType, blank_padded: bool = False) -> sql.Composable:
    column = sql.Identifier(name)
    how = read_as(pg)
    if how == "string":
        return sql.SQL("{} AS {}").format(as_text(name, blank_padded), column)
    if how in UNCARRIED:
        return read_expression(how, column)
    if how == "native":
        return column
    return sql.SQL("{0}::text AS {0}").format(column)


def _parsers(table: CapturedTable) -> list[tuple[int, Callable[[str], Any]]]:
    """(position, parser) of each selected column read as text to be parsed."""
    return [
        (i, table.types[name].parse)
        for i, name in enumerate(table.columns)
        if read_as(table.types[name]) == "text"
    ]


def _columnar(run: SnapshotRun, table: CapturedTable) -> ColumnChunks | None:
    if table.label not in run.columnar:
        run.columnar[table.label] = ColumnChunks.of(run.codec.schemas[table.entity], table)
    return run.columnar[table.label]


def _copy_types(run: SnapshotRun, table: CapturedTable) -> list[pa.DataType] | None:
    """The Arrow types of the tenant and each column when the table's chunks are read by
    COPY (producers/snapshot_copy.py): those the column path encodes, none parsed one by
    one (texts it converts a column at a time are read as text)."""
    columnar = _columnar(run, table)
    if columnar is None or not run.settings.tuning.snapshot_copy:
        return None
    if any(i not in columnar.from_text for i, _ in _parsers(table)):
        return None
    return [pa.string(), *columnar.read_types]


def _chunks(cur: Any, run: SnapshotRun, table: CapturedTable) -> Iterator[Chunk]:
    """The table's rows in key chunks. While one chunk is published, the next is already
    being read (by a helper thread, on the same cursor, one query at a time). Every read
    waits for the run's budget (rows/s, queries at once: producers/budget.py)."""
    names = sql.SQL(", ").join(
        select_expression(c, table.types[c], c in table.blank_padded) for c in table.columns
    )
    # a schema-per-tenant table's rows all have its schema's tenant: read as a constant
    tenant = sql.Identifier(table.tenant) if table.tenant else sql.Literal(table.tenant_id)
    order = sql.SQL(", ").join(map(sql.Identifier, table.row_key))
    after_key = sql.SQL(", ").join(sql.Placeholder() * len(table.row_key))
    source = sql.Identifier(table.schema, table.name)
    budget = run.budget
    limit = budget.chunk_rows(run.settings.tuning.chunk_rows)
    skip = 1 - len(table.tenant_columns)  # the tenant leads a last key, not always the order
    copy = _copy_types(run, table)
    # "" names the tenant: PostgreSQL allows no empty identifier, so no column has that name
    copy_names = ["", *table.columns]

    def fetch(last: ckpt.Key | None) -> Chunk:
        after = None if last is None else tuple(last)[skip:]
        where = sql.SQL("WHERE ({}) > ({}) ").format(order, after_key) if after else sql.SQL("")
        select = sql.SQL("SELECT {}::text, {} FROM {} {}ORDER BY {} LIMIT %s")
        query, params = select.format(tenant, names, source, where, order), (*(after or ()), limit)
        if copy is not None:
            with budget.query(limit):
                out = copy_out(cur, cur.mogrify(query, params))
            return copy_parse(out, copy_names, copy)  # parsed outside the query's slot
        with budget.query(limit):
            cur.execute(query, params)
            rows: list[tuple[Any, ...]] = cur.fetchall()
        return rows

    with ThreadPoolExecutor(1, thread_name_prefix="snapshot-read") as reader:
        rows = fetch(run.state.resume_after(table.label) if run.state else None)
        while len(rows):
            last = _last_key(table, last_row(rows))
            ahead = reader.submit(fetch, last) if len(rows) == limit else None
            yield rows
            if ahead is None:
                return
            rows = ahead.result()


def _last_key(table: CapturedTable, record: tuple[Any, ...]) -> tuple[Any, ...]:
    """The (tenant, record key columns) of a read row (as read: JSON-able text or ints)."""
    return (record[0], *(record[1 + table.columns.index(k)] for k in table.key))


def _stamp_us(codec: Codec, entity: str, source_ts: datetime) -> int:
    """``source_ts`` as the integer fastavro writes for it (its own conversion, done once per
    chunk instead of once per event: a tenth of the encoding time)."""
    field = next(f for f in codec.schemas[entity].parsed["fields"] if f["name"] == "source_ts")
    micros: int = LOGICAL_WRITERS["long-timestamp-micros"](source_ts, field["type"])
    return micros


def encode_rows(
    codec: Codec, table: CapturedTable, point: tuple[int, datetime], kafka: KafkaSettings,
    rows: Chunk, columnar: ColumnChunks | None = None,
) -> list[tuple[int, bytes, bytes]]:  # fmt: skip
    """(partition, key, value) of each read row's snapshot event: column by column when
    ``columnar`` takes the chunk, else row by row."""
    shared = {"entity": table.entity, "op": "r", "position": point[0],
              "source_ts": _stamp_us(codec, table.entity, point[1]), "snapshot": True}  # fmt: skip
    done = None if columnar is None else columnar.encode(rows, _parsers(table), shared, kafka)
    return _encode_each(codec, table, shared, kafka, rows_of(rows)) if done is None else done


def _encode_each(
    codec: Codec, table: CapturedTable, shared: dict[str, Any], kafka: KafkaSettings,
    rows: list[tuple[Any, ...]],
) -> list[tuple[int, bytes, bytes]]:  # fmt: skip
    names, parsed = table.columns, _parsers(table)
    checked = [(i, read_as(table.types[n])) for i, n in enumerate(names)]
    checked = [(i, how) for i, how in checked if how in UNCARRIED]
    record_name = codec.schemas[table.entity].record_name
    encode, partitions, spread_of = codec.encode, kafka.partitions, kafka.spread_of
    base: Event = {"tenant_id": "", "entity_id": 0, **shared}
    out = []
    for record in rows:
        tenant = record[0]
        values = list(record[1:])
        for i, parse in parsed:
            if values[i] is not None:
                values[i] = parse(values[i])
        refuse_uncarried(table, tenant, values, checked)
        row = dict(zip(names, values, strict=True))
        entity_id, key = table.identity(row)
        # change_event's event, with ``after`` already naming its union branch (as
        # Codec.encode would) and ``source_ts`` already converted: the same bytes
        event = {**base, "tenant_id": tenant, "entity_id": entity_id,
                 "after": (record_name, row)}  # fmt: skip
        if key is not None:
            event["key"] = key
        part = partition_of(tenant, entity_id, partitions, spread_of(tenant))
        out.append((part, event_key(tenant, entity_id), encode(event)))
    return out


def _publish_chunk(run: SnapshotRun, table: CapturedTable, rows: Chunk) -> None:
    entity = table.entity
    topic, prod, acks = run.settings.kafka.cdc_topic(entity), run.prod, run.acks
    assert run.point is not None
    if run.tenants is not None:
        for tenant in tenants_of(rows):
            run.tenants.observe(prod, tenant)
    stamp = timestamp_ms(run.point[1])  # the snapshot's consistent point, as its source_ts
    columnar = _columnar(run, table)
    encoded = encode_rows(run.codec, table, run.point, run.settings.kafka, rows, columnar)
    for part, key, value in encoded:
        produce(prod, topic, part, key, value, acks, stamp)
    prod.poll(0)
    run.counts[entity] = run.counts.get(entity, 0) + len(rows)
    metrics.SNAPSHOT_ROWS.labels(table.label).inc(len(rows))
    if run.progress:
        run.progress(entity, len(rows))


def _save(run: SnapshotRun) -> None:
    if run.state is not None:
        ckpt.save(run.settings.kafka, run.prod, run.state, run.settings.tuning.flush_timeout_s)
        run.acks.raise_if_failed()


def accept_chunk(run: SnapshotRun, table: CapturedTable, chunk: Chunk) -> None:
    """Publish a read chunk and note how far the table has been read (checkpointed now and
    then; the checkpoint is saved after Kafka acknowledged everything before it)."""
    _publish_chunk(run, table, chunk)
    HEALTH.beat()
    if run.state is not None:
        run.state.last_key[table.label] = list(_last_key(table, last_row(chunk)))
        if run.clock() - run.saved_at > CHECKPOINT_EVERY_S:
            _save(run)
            run.saved_at = run.clock()


def table_done(run: SnapshotRun, table: CapturedTable) -> None:
    if run.state is not None:
        run.state.tables_done.append(table.label)
    _save(run)
    metrics.SNAPSHOT_DONE.labels(table.label).set(1)


def snapshot_table(cur: Any, run: SnapshotRun, table: CapturedTable) -> None:
    for chunk in _chunks(cur, run, table):
        accept_chunk(run, table, chunk)
    table_done(run, table)


def run_snapshot(
    run: SnapshotRun, snapshot_name: str | None, tables: TableLister = live_tables
) -> dict[str, int]:
    """Publish the rows of every table ``tables`` lists (as the snapshot sees the database)
    not yet done; return events per entity."""
    with closing(connect(run.settings.pg, SNAPSHOT_APP)) as conn:
        conn.set_session(isolation_level="REPEATABLE READ", readonly=True)
        with conn.cursor() as cur:
            if snapshot_name:
                cur.execute("SET TRANSACTION SNAPSHOT %s", (snapshot_name,))
            run.tenants = run.tenants or Tenants.load(run.settings.kafka)
            if run.point is None:
                cur.execute("SELECT pg_current_wal_lsn()::text, now()")
                lsn, now = cur.fetchone()
                run.point = (position(lsn_to_int(lsn), 0), now)
            todo = [
                table for table in tables(cur, run.codec.catalog)
                if run.state is None or table.label not in run.state.tables_done
            ]  # fmt: skip
            _read_tables(cur, run, todo)
        conn.rollback()
    if run.prod.flush(run.settings.tuning.flush_timeout_s) != 0:
        raise ProduceError("Kafka did not acknowledge the snapshot in time")
    run.acks.raise_if_failed()
    log.info("snapshot published events=%s", run.counts)
    return run.counts


def _read_tables(cur: Any, run: SnapshotRun, todo: list[CapturedTable]) -> None:
    """One table after the other on ``cur``, or (``capture.snapshot_workers`` > 1) several at
    once, each worker on a connection importing this transaction's snapshot."""
    workers = run.settings.tuning.snapshot_workers
    if workers <= 1 or len(todo) <= 1:
        for table in todo:
            snapshot_table(cur, run, table)
        return
    cur.execute("SELECT pg_export_snapshot()")
    (exported,) = cur.fetchone()
    read_in_parallel(
        run.settings.pg, exported, todo, workers,
        lambda worker_cur, table: _chunks(worker_cur, run, table),
        lambda table, chunk: accept_chunk(run, table, chunk),
        lambda table: table_done(run, table),
        run.budget.statement,
    )  # fmt: skip
