"""The pass over the change topics before a run's faust worker starts, for runs with opt-outs.

A run with opt-outs must know which rows are opted out before it meets their descendants,
which may come first (a tenant's rows of every topic share one partition number, but the
topics are read side by side); a pass over each judged entity's topic says
(processors/opt_out.py). Only the run's tenants' opted-out rows are kept. (A full run
needs no pass of its own: processors/full_pass.py.)
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

from confluent_kafka import KafkaError, Message, TopicPartition

from sluiceway.common.codec import Codec, event_key
from sluiceway.common.entities import active_catalog
from sluiceway.common.errors import InvalidEventError
from sluiceway.common.kafka_io import consumer, ready, watermarks
from sluiceway.common.partitioning import tenant_partitions
from sluiceway.common.read_path import uses_index
from sluiceway.common.runs import RunRecord
from sluiceway.common.settings import KafkaSettings
from sluiceway.common.spec import RunSpec
from sluiceway.processors.errors import ScanStoppedError, ScanTimeoutError
from sluiceway.processors.indexed import IndexedReader
from sluiceway.processors.key_index import TenantCodes
from sluiceway.processors.opt_out import OptedOut, Verdicts, cascade_of

Ranges = dict[tuple[str, int], tuple[int, int]]  # (topic, partition) -> [start, cut)
INDEXED_CHUNK = 100_000  # offsets per read through the index: its records are held meanwhile


def _never() -> bool:
    return False


def scan(kafka: KafkaSettings, group: str, ranges: Ranges, visit: Callable[[Message], None],
         timeout_s: float = 600, stopped: Callable[[], bool] = _never) -> None:  # fmt: skip
    """Call ``visit`` on every record of every range, in offset order per partition;
    ScanStoppedError as soon as ``stopped()`` says so (checked at least every half second)."""
    todo = {tp: cut for tp, (start, cut) in ranges.items() if cut > start}
    if not todo:
        return
    reader = consumer(kafka, group=group, **{"enable.partition.eof": True})
    reader.assign([TopicPartition(t, p, ranges[(t, p)][0]) for (t, p) in todo])
    deadline = time.monotonic() + timeout_s
    try:
        while todo:
            if stopped():
                raise ScanStoppedError(group)
            if time.monotonic() > deadline:
                raise ScanTimeoutError(
                    f"could not read {sorted(todo)} up to the cut in {timeout_s:.0f}s"
                )
            for msg in ready(reader, 10_000, wait=0.5):
                _step(msg, todo, visit)
    finally:
        reader.close()


def _step(msg: Message, todo: dict[tuple[str, int], int], visit: Callable[[Message], None]) -> None:
    tp = (msg.topic() or "", msg.partition() or 0)
    cut, offset = todo.get(tp), msg.offset() or 0
    if cut is None:
        return
    err = msg.error()
    if err is not None:
        # end of partition before the cut: compaction removed its tail records
        if err.code() == KafkaError._PARTITION_EOF:
            del todo[tp]
        return
    if offset < cut:
        visit(msg)
    if offset >= cut - 1:
        del todo[tp]


def opt_out_verdicts(
    kafka: KafkaSettings,
    run: RunRecord,
    spec: RunSpec,
    codec: Codec,
    stopped: Callable[[], bool] = _never,
) -> OptedOut:
    """Which rows of the cascade's judged entities the run leaves out (processors/opt_out.py):
    each judged entity's change topic read from its beginning up to the cut, parents first,
    for the run's tenants only."""
    cascade = cascade_of(active_catalog())
    verdicts = Verdicts(cascade, spec.opt_out)
    for entity in cascade.judged if cascade is not None else ():
        _read_entity(kafka, run, codec, entity, verdicts, stopped)
        verdicts.close(entity)
    return verdicts.result()


def carrier_group(entity: str, etl_id: str) -> str:
    """The consumer group of a run's pass over one judged entity's topic (cleanup deletes
    it with the run's other groups)."""
    return f"sw-scan-{entity}-{etl_id}"


def _read_entity(
    kafka: KafkaSettings,
    run: RunRecord,
    codec: Codec,
    entity: str,
    verdicts: Verdicts,
    stopped: Callable[[], bool],
) -> None:
    topic = kafka.cdc_topic(entity)
    parts = set().union(
        *(tenant_partitions(t, run.run_partitions, kafka.spread_of(t)) for t in run.tenants)
    )
    cut = run.cut.get(topic)
    if cut is None:
        # a run that selects an entity's descendants but not the entity has no cut on its
        # topic: it is read up to the topic's end now, or the descendants of its opted-out
        # rows would pass for want of their verdict
        cut = {p: high for p, (_low, high) in watermarks(kafka, topic, parts).items()}
    ranges = {(topic, p): (0, cut[p]) for p in parts if p in cut}
    codes = TenantCodes(run.tenants)

    def take(key: bytes | None, value: bytes | None) -> None:
        if key is None or not codes.is_run_key(key):
            return  # another tenant's row: not decoded, not kept
        try:
            event = codec.decode(value)
        except InvalidEventError:
            return  # the run itself dead-letters it when it meets it
        if key != event_key(event["tenant_id"], event["entity_id"]) or event["entity"] != entity:
            return  # so does it one whose body contradicts its key
        if event["after"] is not None:  # a delete leaves the row's last verdict standing
            verdicts.add(entity, event["tenant_id"], event["entity_id"], event["after"])

    group = carrier_group(entity, run.etl_id)
    if uses_index(run.read_path):
        read_indexed(kafka, group, run.tenants, ranges, take, stopped)
    else:
        scan(kafka, group, ranges, lambda msg: take(msg.key(), msg.value()), stopped=stopped)


def read_indexed(
    kafka: KafkaSettings, group: str, tenants: Sequence[str], ranges: Ranges,
    take: Callable[[bytes | None, bytes | None], None], stopped: Callable[[], bool],
) -> None:  # fmt: skip
    """``scan`` through the tenant index (processors/indexed.py): the run's tenants' records
    of each range, in offset order, a chunk at a time."""
    reader = IndexedReader(kafka, group, sorted({t for t, _p in ranges}), tenants)
    try:
        for (topic, partition), (start, cut) in ranges.items():
            for lo in range(start, cut, INDEXED_CHUNK):
                chunk = reader.read(topic, partition, lo, min(lo + INDEXED_CHUNK, cut), stopped)
                for key, value in zip(chunk.keys, chunk.values, strict=True):
                    take(key, value)
    finally:
        reader.close()
