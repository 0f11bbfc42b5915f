"""The faust-streaming app of one export run.

Each run is its own consumer group (``sw-process-<etl_id>``), so a run reads the change
topics from the offsets it was given, and more workers of the same run share the work.
Run-topic partition p receives what change-topic partition p held: both use the same
tenant-affine partitioner, which is also what lets faust's exactly-once transactions
(one per source partition) cover the output.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from typing import Any

import faust
from aiokafka.structs import TopicPartition
from faust.types import EventT

from processors.config import ProcessorSettings
from processors.progress import RunProgress
from processors.run_schema import run_event_schemas
from processors.scan import Latest
from processors.spec import RunSpec
from processors.transforms import IssueProject, output_key, select, transform, validate
from sluiceway.codec import Codec
from sluiceway.errors import InvalidEventError
from sluiceway.runs import END_MARKER, MARKER_HEADER, RunRecord

log = logging.getLogger("sluiceway.processor")


@dataclass(frozen=True)
class Lookups:
    """What the passes before the worker found (processors/scan.py)."""

    latest: Latest | None  # full runs: each key's last offset; None for deltas
    issue_project: IssueProject


class RunProcessor:
    """The state one worker keeps for a run; the agent and timer below call into it."""

    def __init__(
        self, settings: ProcessorSettings, run: RunRecord, spec: RunSpec, codec: Codec,
        lookups: Lookups,
    ) -> None:  # fmt: skip
        self.settings, self.run, self.spec, self.codec = settings, run, spec, codec
        self.latest, self.issue_project = lookups.latest, lookups.issue_project
        self.run_schemas = run_event_schemas(spec, codec)
        self.tenants = frozenset(run.tenants)
        self.entities = frozenset(run.entities)
        self.progress = RunProgress(run.start, run.cut)
        self.forwarded = 0
        self.first_event_at: float | None = None  # for the throughput the run reports
        self.finished_at: float | None = None
        self.dead_lettered = 0
        self.finished = False
        self.app = self._build_app()

    def _build_app(self) -> faust.App:
        kafka, tuning = self.settings.kafka, self.settings.tuning
        app = faust.App(
            f"sw-process-{self.run.etl_id}",
            broker=f"kafka://{kafka.servers}",
            processing_guarantee=tuning.guarantee,
            broker_commit_interval=tuning.commit_interval_s,
            consumer_auto_offset_reset="earliest",
            topic_partitions=kafka.partitions,
            web_enabled=False,
            store="memory://",
            # large fetches and buffers: a run reads a bounded backlog as fast as it can
            stream_buffer_maxsize=tuning.buffer_events,
            broker_max_poll_records=tuning.poll_records,
            consumer_max_fetch_size=16 * 1024 * 1024,
            key_serializer="raw",
            value_serializer="raw",
        )
        self.source_topics = [kafka.cdc_topic(e) for e in self.run.entities]
        self.source = app.topic(*self.source_topics, key_type=bytes, value_type=bytes)
        self.out = app.topic(self.run.run_topic, key_type=bytes, value_type=bytes)
        self.dlq = app.topic(kafka.dlq_topic("processor"), key_type=bytes, value_type=bytes)
        app.agent(self.source, name="forward")(self._agent)
        app.timer(0.5)(self._check_done)
        return app

    async def _agent(self, stream: Any) -> None:
        tuning = self.settings.tuning
        async for batch in stream.take_events(tuning.batch_size, within=tuning.batch_within_s):
            if self.first_event_at is None:
                self.first_event_at = time.monotonic()
            for event in batch:
                await self._handle(event)

    async def _handle(self, event: EventT) -> None:
        msg = event.message
        if self._wanted(msg):
            try:
                out = self._transform(msg.key, msg.value)
            except InvalidEventError as exc:
                await self._dead_letter(msg, str(exc))
            else:
                if out is not None:
                    await self._send(msg.partition, *out)
                    self.forwarded += 1
        self.progress.observe(msg.topic, msg.partition, msg.offset)

    def _wanted(self, msg: Any) -> bool:
        """Cheap checks on the record alone, so most unwanted events are never decoded."""
        if msg.value is None:  # a tombstone after a delete: for compaction, not for exports
            return False
        if not self.progress.in_range(msg.topic, msg.partition, msg.offset):
            return False
        if self.latest is not None and self.latest[msg.topic].get(msg.key) != msg.offset:
            return False  # a full run keeps only each key's last version
        return select(msg.key, self.tenants)

    def _transform(
        self, key: bytes | None, value: bytes | None
    ) -> tuple[bytes | None, bytes | None] | None:
        event = validate(key, self.codec.decode(value), self.entities)
        if self.latest is not None and event["op"] == "d":
            return None  # deleted before the cut: not live, so not in a full export
        out = transform(event, self.spec, self.issue_project)
        if out is None:
            return None
        return output_key(out), self.codec.encode_with(self.run_schemas[out["entity"]], out)

    async def _send(
        self, partition: int, key: bytes | None, value: bytes | None, headers: Any = None
    ) -> None:
        """Send to run-topic ``partition`` inside the transaction of source partition ``partition``.

        faust's ``Topic.send`` goes through the non-transactional producer even under
        exactly_once, so the transactional id is named here exactly as faust's
        TransactionManager names the transaction of an assigned source partition.
        """
        producer: Any = self.app.producer
        if self.settings.tuning.guarantee != "exactly_once":
            await producer.send(self.run.run_topic, key, value, partition, None, headers)
            return
        group = self.app.assignor.group_for_topic(self.source_topics[0])
        await producer.send(
            self.run.run_topic,
            key,
            value,
            partition,
            None,
            headers,
            transactional_id=f"{self.app.conf.id}-{group}-{partition}",
        )

    async def _dead_letter(self, msg: Any, reason: str) -> None:
        self.dead_lettered += 1
        headers = {
            "sw-error": reason.encode(),
            "sw-etl-id": self.run.etl_id.encode(),
            "sw-topic": msg.topic.encode(),
            "sw-partition": str(msg.partition).encode(),
            "sw-offset": str(msg.offset).encode(),
        }
        await self.dlq.send(key=msg.key, value=msg.value, headers=headers)
        log.warning(
            "dead-lettered topic=%s partition=%s offset=%s reason=%s",
            msg.topic,
            msg.partition,
            msg.offset,
            reason,
        )

    async def _check_done(self) -> None:
        if self.finished or not self.progress.done:
            return
        self.finished = True
        for partition in range(self.run.run_partitions):
            # the run's dead-letter count travels once, on partition 0's marker, to the manifest
            dead = self.dead_lettered if partition == 0 else 0
            fields = {"etl_id": self.run.etl_id, "partition": partition, "dead_letters": dead}
            marker = json.dumps(fields).encode()
            await self._send(partition, None, marker, [(MARKER_HEADER, END_MARKER)])
        await self._commit_cut()
        self.finished_at = time.monotonic()
        log.info(
            "run %s processed: read=%s forwarded=%s dead_lettered=%s",
            self.run.etl_id,
            self.progress.read,
            self.forwarded,
            self.dead_lettered,
        )
        self.on_finished()

    async def _commit_cut(self) -> None:
        """Commit every partition's transaction with the run's cut as its source offsets.

        faust commits a transaction only when its source partition has newly acked events,
        so the end markers of a partition with nothing left to read would stay uncommitted.
        """
        producer: Any = self.app.producer
        if self.settings.tuning.guarantee != "exactly_once":
            await producer.flush()
            await self.app.consumer.commit()
            return
        await self.app.consumer.commit()
        group = self.app.assignor.group_for_topic(self.source_topics[0])
        by_transaction = {
            f"{self.app.conf.id}-{group}-{p}": {
                TopicPartition(topic, p): self.run.cut[topic][p] for topic in self.source_topics
            }
            for p in range(self.run.run_partitions)
        }
        await producer.commit_transactions(by_transaction, self.app.conf.id)

    def on_finished(self) -> None:
        """Replaced by main() with what stops the worker hosting this app."""
