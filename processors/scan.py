"""Passes over the change topics before a run's faust worker starts.

- A full run must contain exactly one row per live entity at the cut. Change topics hold
  every version (compaction is lazy), so a first pass finds, per key of the run's tenants,
  the offset of its last record before the cut (processors/key_index.py keeps that in
  about 16 bytes a key). What the run keeps is only the set of those offsets, a bitmap
  over the partition's range or a sorted array, whichever is smaller.
- A run with opt-outs must know which rows are opted out before it meets their
  descendants, which may come first (a tenant's rows of every topic share one partition
  number, but the topics are read side by side); a pass over each judged entity's topic
  says (processors/opt_out.py). Only the run's tenants' opted-out rows are kept.
"""

from __future__ import annotations

import time
from bisect import bisect_left
from collections.abc import Callable, Iterable

import numpy as np
import numpy.typing as npt
from confluent_kafka import KafkaError, Message, TopicPartition

from sluiceway.common.codec import Codec, event_key
from sluiceway.common.entities import active_catalog
from sluiceway.common.errors import InvalidEventError
from sluiceway.common.kafka_io import consumer, watermarks
from sluiceway.common.partitioning import tenant_partitions
from sluiceway.common.runs import RunRecord
from sluiceway.common.settings import KafkaSettings
from sluiceway.common.spec import RunSpec
from sluiceway.processors.errors import ScanStoppedError, ScanTimeoutError
from sluiceway.processors.key_index import LastValues, TenantCodes
from sluiceway.processors.opt_out import OptedOut, Verdicts, cascade_of

BITMAP_SLICE = 1 << 20
DELETED = -1  # the value of a key whose last record before the cut is a tombstone
Ranges = dict[tuple[str, int], tuple[int, int]]  # (topic, partition) -> [start, cut)


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
            for msg in reader.consume(10_000, 0.5):
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


class Latest:
    """Per change-topic partition, the offsets of the records a full run exports: each run
    tenant's key's last record before the cut, unless that is a tombstone."""

    def __init__(self) -> None:
        self.bitmaps: dict[tuple[str, int], tuple[int, bytes]] = {}  # tp -> (start, bits)
        self.sorted: dict[tuple[str, int], memoryview] = {}  # of sorted int64 offsets

    def add(self, tp: tuple[str, int], start: int, cut: int, live: npt.NDArray[np.int64]) -> None:
        """Keep ``live`` (sorted offsets in [start, cut)) in the smaller of two forms."""
        span = cut - start
        if span > 64 * len(live):  # a bit per record in range costs more than 8 bytes a key
            self.sorted[tp] = live.data  # bisect over it: no numpy call per record
            return
        bits = np.zeros((span + 7) // 8, np.uint8)
        for at in range(0, len(live), BITMAP_SLICE):  # slices: bounded temporaries
            rel = live[at : at + BITMAP_SLICE] - start
            np.bitwise_or.at(bits, rel >> 3, np.left_shift(1, rel & 7).astype(np.uint8))
        self.bitmaps[tp] = (start, bits.tobytes())

    def is_latest(self, topic: str, partition: int, offset: int) -> bool:
        """Whether the record at ``offset`` is its key's last version before the cut."""
        bitmap = self.bitmaps.get((topic, partition))
        if bitmap is not None:  # the common case, about ten times faster than a search
            start, bits = bitmap
            at = offset - start
            return 0 <= at < 8 * len(bits) and bool(bits[at >> 3] >> (at & 7) & 1)
        live = self.sorted.get((topic, partition))
        if live is None:
            return False
        at = bisect_left(live, offset)
        return at < len(live) and live[at] == offset


class _LatestPass:
    """What the first pass keeps per partition while it reads: code -> last offset."""

    def __init__(self, tenants: Iterable[str]) -> None:
        self.codes = TenantCodes(tenants)
        self.parts: dict[tuple[str, int], LastValues] = {}
        self.odd: dict[tuple[str, int], dict[bytes, int]] = {}  # keys without a code

    def visit(self, msg: Message) -> None:
        key, offset = msg.key(), msg.offset()
        if key is None or offset is None:
            return
        code = self.codes.of_key(key)  # a code: a run tenant's key, exactly
        # else the run's own test (transforms.select): another tenant's is never exported
        if code is None and not self.codes.is_run_key(key):
            return
        tp = (msg.topic() or "", msg.partition() or 0)
        value = offset if msg.value() is not None else DELETED
        if code is None:
            self.odd.setdefault(tp, {})[key] = value
            return
        part = self.parts.get(tp)
        if part is None:
            part = self.parts[tp] = LastValues()
        part.add(code, value)

    def live(self, tp: tuple[str, int]) -> npt.NDArray[np.int64]:
        """The partition's live offsets, sorted; forgets its map."""
        part = self.parts.pop(tp, None)
        values = part.take_values() if part is not None else np.empty(0, np.int64)
        del part
        odd = self.odd.pop(tp, None)
        if odd:
            values = np.concatenate([values, np.fromiter(odd.values(), np.int64)])
        live = values[values >= 0]
        del values
        live.sort()
        return live


def latest_offsets(
    kafka: KafkaSettings, run: RunRecord, stopped: Callable[[], bool] = _never
) -> Latest:
    ranges = {
        (t, p): (run.start[t][p], cut) for t, parts in run.cut.items() for p, cut in parts.items()
    }
    found = _LatestPass(run.tenants)
    scan(kafka, f"sw-scan-{run.etl_id}", ranges, found.visit, stopped=stopped)
    latest = Latest()
    for tp, (start, cut) in ranges.items():
        latest.add(tp, start, cut, found.live(tp))
    return latest


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

    def visit(msg: Message) -> None:
        key = msg.key()
        if key is None or not codes.is_run_key(key):
            return  # another tenant's row: not decoded, not kept
        try:
            event = codec.decode(msg.value())
        except InvalidEventError:
            return  # the run itself dead-letters it when it meets it
        if key != event_key(event["tenant_id"], event["entity_id"]) or event["entity"] != entity:
            return  # so does it one whose body contradicts its key
        if event["after"] is not None:  # a delete leaves the row's last verdict standing
            verdicts.add(entity, event["tenant_id"], event["entity_id"], event["after"])

    scan(kafka, carrier_group(entity, run.etl_id), ranges, visit, stopped=stopped)
