"""Running `sluiceway capture` as a real process, and reading the change topics back."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg2
from confluent_kafka import TopicPartition

from sluiceway.common.catalog import Catalog
from sluiceway.common.codec import Codec
from sluiceway.common.kafka_io import consumer, watermarks
from sluiceway.common.schema_registry import evolving
from sluiceway.common.settings import KafkaSettings, PostgresSettings
from tests.catalogs import ENTITIES


@dataclass
class CaptureProcess:
    env: dict[str, str]
    log: Path
    proc: subprocess.Popen[bytes] | None = None
    starts: int = 0

    def start(self) -> None:
        self.starts += 1
        out = self.log.open("ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "sluiceway.cli", "capture"],
            env=self.env, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
        )  # fmt: skip

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(30)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)

    def assert_alive(self) -> None:
        assert self.proc is not None
        if self.proc.poll() is not None:
            raise AssertionError(
                f"capture exited {self.proc.returncode}:\n{self.log.read_text()[-3000:]}"
            )


def wal_lsn(pg: PostgresSettings) -> str:
    """A WAL position past the commit record of every transaction committed so far.

    Not ``pg_current_wal_lsn()``: that is the write position, and with asynchronous commit
    (the local stack runs synchronous_commit=off) a commit returns before its record is
    written, so the write position can still lie before it. A slot confirmed up to there
    says nothing about that transaction: the replication client (psycopg2) moves its
    confirmed position up to the WAL end of a server keepalive whenever capture has
    confirmed everything it received so far, and a keepalive sent while the server waits
    for the commit record carries a WAL end just before it. The insert position is past
    every record already inserted."""
    with psycopg2.connect(pg.dsn()) as conn, conn.cursor() as cur:
        cur.execute("SELECT pg_current_wal_insert_lsn()::text")
        lsn: str = cur.fetchone()[0]
    conn.close()
    return lsn


def slot_caught_up(pg: PostgresSettings, slot: str, target_lsn: str) -> bool:
    with psycopg2.connect(pg.dsn()) as conn, conn.cursor() as cur:
        cur.execute(
            "SELECT confirmed_flush_lsn >= %s::pg_lsn FROM pg_replication_slots "
            "WHERE slot_name = %s",
            (target_lsn, slot),
        )
        row = cur.fetchone()
    conn.close()
    return bool(row and row[0])


@dataclass
class Record:
    topic: str
    partition: int
    offset: int
    key: bytes
    event: dict[str, Any] | None  # None for a tombstone


def read_change_topics(
    kafka: KafkaSettings, timeout: float = 60, catalog: Catalog | None = None
) -> list[Record]:
    """Every record on the change topics of ``catalog`` (default: the active one) up to
    their high watermarks now, in offset order."""
    codec = evolving(Codec(catalog=catalog), kafka)  # and the versions capture registered
    entities = catalog.names if catalog is not None else ENTITIES
    reader = consumer(kafka, group=f"verify-{time.monotonic_ns()}")
    ends = {
        (kafka.cdc_topic(e), p): high
        for e in entities
        for p, (_low, high) in watermarks(
            kafka, kafka.cdc_topic(e), range(kafka.partitions)
        ).items()
    }
    reader.assign([TopicPartition(t, p, 0) for (t, p) in ends])
    pending = {tp for tp, high in ends.items() if high > 0}
    records: list[Record] = []
    deadline = time.monotonic() + timeout
    while pending and time.monotonic() < deadline:
        for msg in reader.consume(10_000, 0.5):
            if msg.error():
                continue
            tp = (msg.topic(), msg.partition())
            value = msg.value()
            event = codec.decode(value) if value is not None else None
            records.append(Record(tp[0], tp[1], msg.offset(), msg.key(), event))
            if msg.offset() >= ends[tp] - 1:
                pending.discard(tp)
    reader.close()
    assert not pending, f"could not read {pending} to their ends"
    return records


def change_topic_ends(kafka: KafkaSettings, entities: tuple[str, ...] = ENTITIES) -> dict[str, int]:
    """Per entity, the number of records its change topic holds now (all partitions)."""
    return {
        e: sum(
            high
            for _low, high in watermarks(
                kafka, kafka.cdc_topic(e), range(kafka.partitions)
            ).values()
        )
        for e in entities
    }


def settings_for_capture(env: dict[str, str], slot: str, **extra: str) -> dict[str, str]:
    return {**env, "SLUICEWAY_CAPTURE_SLOT": slot, "SLUICEWAY_CAPTURE_HEARTBEAT_S": "0.5", **extra}
