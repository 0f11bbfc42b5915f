"""What a run's worker makes of the records it keeps, and where it sends them.

The batch path (processors/batch.py) transforms a batch of one writer schema column-wise;
whatever it doubts goes event by event (processors/transforms.py), where an invalid event
is dead-lettered alone with its reason. Outputs and dead letters are sent inside the source
partition's transaction (processors/transactions.py), so a batch that is aborted and read
again neither doubles nor counts anything twice.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any, cast

from sluiceway.common.codec import HEADER_LEN, Codec, EventSchema
from sluiceway.common.errors import InvalidEventError
from sluiceway.common.run_schema import run_event_schema, run_event_schemas
from sluiceway.common.runs import RunRecord
from sluiceway.common.settings import KafkaSettings
from sluiceway.common.spec import RunSpec
from sluiceway.processors import metrics
from sluiceway.processors.batch import BatchPath
from sluiceway.processors.chunks import Records
from sluiceway.processors.dead_letter import BODY_HEADER, dead_letter_body
from sluiceway.processors.opt_out import OptedOut
from sluiceway.processors.ownership import PartitionState
from sluiceway.processors.transactions import Transactions
from sluiceway.processors.transforms import output_key, transform, validate

log = logging.getLogger("sluiceway.processor")
Output = tuple[bytes | None, bytes | None]
# Events the batch path decodes and encodes at once. A full run's chunk hands over up to
# 100,000 records of a partition; taken whole, each batch's buffers (tens of MB) were fresh
# memory the kernel had to fault in, three times as many page faults as in slices of this
# size, whose buffers the allocators reuse. Polars' fixed cost per call is nothing at this size.
BATCH_EVENTS = 16_384


class Outputs:
    """The transform and the sends of one run's worker."""

    def __init__(
        self, run: RunRecord, spec: RunSpec, codec: Codec, opted: OptedOut, full: bool,
        txn: Transactions, kafka: KafkaSettings,
    ) -> None:  # fmt: skip
        self.run, self.spec, self.codec, self.opted, self.full = run, spec, codec, opted, full
        self.txn = txn
        self.dlq_topic = kafka.dlq_topic("processor")
        self.entities = frozenset(run.entities)
        self.run_schemas = run_event_schemas(spec, codec)
        self.version_schemas: dict[bytes, EventSchema] = {}  # by writer header
        self.batch = BatchPath(spec, codec, self.run_schemas, opted, full)
        self.dead_lettered = 0

    async def send(self, state: PartitionState, topic: str, partition: int, wanted: Records) -> int:
        """Transform wanted records and send their outputs in the partition's transaction;
        the number of outputs."""
        outs: list[Output] = []
        for lo in range(0, len(wanted), BATCH_EVENTS):
            part = wanted.slice(lo, lo + BATCH_EVENTS)
            # the records wanted are never tombstones (processors/app.py _wanted, the picker)
            values = cast(list[bytes], part.values)
            got = self.batch.transform(part.keys, values, self.entities)
            if got is None:  # the batch path doubts something: event by event, as it always was
                got = await self._transform_each(state, topic, partition, part)
            outs.extend(got)
        await self.txn.send_many(self.run.run_topic, partition, outs)
        metrics.FORWARDED.labels(topic).inc(len(outs))
        return len(outs)

    async def _transform_each(
        self, state: PartitionState, topic: str, partition: int, records: Iterable[Any]
    ) -> list[Output]:
        """The per-event path: each record decoded, transformed and encoded alone, and an
        invalid one dead-lettered with its reason."""
        outs: list[Output] = []
        for record in records:
            try:
                out = self._transform(record.key, record.value)
            except InvalidEventError as exc:
                await self._dead_letter(state, topic, partition, record, str(exc))
            else:
                if out is not None:
                    outs.append(out)
        return outs

    def _transform(self, key: bytes | None, value: bytes | None) -> Output | None:
        event = validate(key, self.codec.decode(value), self.entities)
        if self.full and event["op"] == "d":
            return None  # deleted before the cut: not live, so not in a full export
        out = transform(event, self.spec, self.opted)
        if out is None:
            return None
        return output_key(out), self.codec.encode_with(self._run_schema(value, out["entity"]), out)

    def _run_schema(self, value: bytes | None, entity: str) -> EventSchema:
        """The run-topic schema for an event of the writer schema ``value`` names: a schema
        version capture wrote after a change of the table has its own."""
        writer = self.codec.schema_of(value or b"")
        if writer is None or writer.header == self.codec.schemas[entity].header:
            return self.run_schemas[entity]
        found = self.version_schemas.get(writer.header)
        if found is None:
            found = self.version_schemas[writer.header] = run_event_schema(writer, self.spec)
        return found

    async def _dead_letter(
        self, state: PartitionState, topic: str, partition: int, record: Any, reason: str
    ) -> None:
        """Send a bad event to the dead-letter topic in its partition's transaction, so a
        batch that is aborted and read again does not count or send it twice. What is sent
        is redacted as the run's spec says wherever it decodes (processors/dead_letter.py)."""
        self.dead_lettered += 1
        state.dead_letters += 1
        metrics.DEAD_LETTERS.inc()
        body, kind = dead_letter_body(record.value, self.codec, self.spec, self.opted)
        headers = [
            ("sw-error", reason.encode()),
            ("sw-etl-id", self.run.etl_id.encode()),
            ("sw-topic", topic.encode()),
            ("sw-partition", str(partition).encode()),
            ("sw-offset", str(record.offset).encode()),
            (BODY_HEADER, kind),
        ]
        await self.txn.send(self.dlq_topic, None, record.key, body, headers, partition)
        log.warning(
            "dead-lettered topic=%s partition=%s offset=%s reason=%s",
            topic, partition, record.offset, reason,
        )  # fmt: skip


def by_writer(records: Records) -> list[Records]:
    """Records grouped by writer schema (their first bytes), each group in offset order:
    the batch path decodes one writer schema at a time."""
    if not records:
        return []
    values = records.values
    first = bytes((values[0] or b"")[:HEADER_LEN])
    if len(first) == HEADER_LEN and all((v or b"").startswith(first) for v in values):
        return [records]  # the common case, without a slice per record
    groups: dict[bytes, list[int]] = {}
    for at, value in enumerate(values):
        groups.setdefault(bytes((value or b"")[:HEADER_LEN]), []).append(at)
    return [records.take(at) for at in groups.values()]
