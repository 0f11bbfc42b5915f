"""CPU per change of streaming capture's in-process path, without the stack.

``python -m benchmarks.capture_cpu [--changes N] [--rounds R] [--digest]``

A stream shaped like the churn the capture bench writes (the Jira demo's tables, tenant
first, REPLICA IDENTITY FULL, entities and operations in the churn's proportions, 400
changes per transaction) is built as pgoutput messages, then fed through
``Streamer._handle``: decoding, typed conversion, Avro encoding, partitioning and
``Producer.produce``. The producer is a real librdkafka one with no reachable broker, so
messages only queue (the stack's figures also hold the broker's and PostgreSQL's CPU, and
are too noisy on a shared machine to compare small changes by).

``--digest`` feeds the stream to a recording producer instead and prints a SHA-256 of every
produce call (topic, partition, key, value, timestamp, the acknowledging transaction) and of
the acknowledgement counts: two versions of the path must print the same digest.
"""

from __future__ import annotations

import argparse
import hashlib
import logging
import random
import struct
import time
from collections.abc import Iterator, Sequence
from datetime import UTC, date, datetime, timedelta
from typing import Any
from unittest import mock

from confluent_kafka import Producer

from sluiceway.common.codec import Codec
from sluiceway.common.kafka_io import producer
from sluiceway.common.settings import KafkaSettings, PostgresSettings
from sluiceway.devstack import seed
from sluiceway.devstack.churn import ENTITY_WEIGHTS
from sluiceway.producers import pgoutput
from sluiceway.producers.acks import AckTracker
from sluiceway.producers.config import CaptureSettings, CaptureTuning
from sluiceway.producers.stream import Streamer
from sluiceway.producers.tenants import Tenants

PER_TXN = 400  # the churn's batch at 20,000 changes/s (50 commits per second)
OP_WEIGHTS = {"c": 40, "u": 45, "d": 15}  # as sluiceway.devstack.churn_run.OPS
# PostgreSQL type oids, as the Relation message carries them, and their format_type names
OIDS = {int: 20, str: 25, bool: 16, float: 701, datetime: 1184, date: 1082}
TYPE_NAMES = {20: "bigint", 25: "text", 16: "boolean", 701: "double precision",
              1184: "timestamp with time zone", 1082: "date"}  # fmt: skip
START_LSN = 0x16_0000_0000
RELIDS = {entity: 16_384 + i for i, entity in enumerate(ENTITY_WEIGHTS)}


def pg_text(value: Any) -> str:
    """A value as PostgreSQL's output function prints it (TimeZone UTC)."""
    if isinstance(value, bool):
        return "t" if value else "f"
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat(sep=" ").replace("+00:00", "+00")
    if isinstance(value, float):
        return repr(value)
    return str(value) if not isinstance(value, date) else value.isoformat()


def _s(text: str) -> bytes:
    return text.encode() + b"\0"


def tuple_data(values: Sequence[Any]) -> bytes:
    out = [struct.pack(">h", len(values))]
    for value in values:
        if value is None:
            out.append(b"n")
        else:
            raw = pg_text(value).encode()
            out.append(b"t" + struct.pack(">i", len(raw)) + raw)
    return b"".join(out)


def relation(entity: str, codec: Codec) -> bytes:
    columns = [(c.name, OIDS[_kind(c.type)]) for c in codec.catalog.entity(entity).columns]
    table = codec.catalog.entity(entity).table_name
    out = b"R" + struct.pack(">I", RELIDS[entity]) + _s("public") + _s(table) + b"f"
    out += struct.pack(">h", len(columns) + 1)
    for name, oid in [("tenant_id", OIDS[str]), *columns]:
        out += struct.pack(">b", int(name in ("tenant_id", "id"))) + _s(name)
        out += struct.pack(">Ii", oid, -1)
    return out


def _kind(type_name: str) -> type:
    kinds = {"bigint": int, "text": str, "boolean": bool, "double precision": float,
             "timestamp with time zone": datetime, "date": date}  # fmt: skip
    return kinds[type_name]


def _rows(tenants: int, issues: int) -> dict[str, list[tuple[str, dict[str, Any]]]]:
    plan = seed.SeedPlan(tenants, issues, 7)
    rows: dict[str, list[tuple[str, dict[str, Any]]]] = {e: [] for e in ENTITY_WEIGHTS}
    for index in range(tenants):
        tenant = seed.tenant_id(index)
        for entity, row in seed.gen_tenant(plan, index):
            rows[entity].append((tenant, row))
    return rows


def _change(rng: random.Random, entity: str, tenant: str, row: dict[str, Any], op: str,
            now: datetime) -> bytes:  # fmt: skip
    relid = struct.pack(">I", RELIDS[entity])
    old = [tenant, *row.values()]
    if op == "d":
        return b"D" + relid + b"O" + tuple_data(old)
    new = dict(row, updated=now)
    if op == "c":
        new["id"] = row["id"] + 1_000_000 + rng.randrange(1_000_000)
        return b"I" + relid + b"N" + tuple_data([tenant, *new.values()])
    return b"U" + relid + b"O" + tuple_data(old) + b"N" + tuple_data([tenant, *new.values()])


def stream(changes: int, seed_value: int = 11) -> list[bytes]:
    """Relation messages, then ``changes`` changes in transactions of PER_TXN."""
    codec, rng = Codec(), random.Random(seed_value)
    rows = _rows(10, 60)
    messages = [relation(e, codec) for e in ENTITY_WEIGHTS]
    commit_ts = datetime(2026, 12, 6, 12, 0, tzinfo=UTC)
    lsn = START_LSN
    for first in range(0, changes, PER_TXN):
        lsn += 0x10_000
        commit_ts += timedelta(milliseconds=20, microseconds=rng.randrange(1000))
        us = (commit_ts - datetime(2000, 1, 1, tzinfo=UTC)) // timedelta(microseconds=1)
        messages.append(b"B" + struct.pack(">qqI", lsn, us, 1000 + first))
        for _ in range(min(PER_TXN, changes - first)):
            entity = rng.choices(list(ENTITY_WEIGHTS), list(ENTITY_WEIGHTS.values()))[0]
            op = rng.choices(list(OP_WEIGHTS), list(OP_WEIGHTS.values()))[0]
            tenant, row = rng.choice(rows[entity])
            messages.append(_change(rng, entity, tenant, row, op, commit_ts))
        messages.append(b"C" + struct.pack(">bqqq", 0, lsn, lsn + 0x30, us))
    return messages


class Recorder:
    """A producer that keeps what it is given."""

    def __init__(self) -> None:
        self.sent: list[tuple[Any, ...]] = []

    def produce(
        self, topic: str, value: bytes | None = None, key: bytes | None = None,
        partition: int = -1, on_delivery: Any = None, timestamp: int = 0,
    ) -> None:  # fmt: skip
        txn = getattr(on_delivery, "txn", None)
        acks = None if txn is None else txn.commit_lsn
        self.sent.append((topic, partition, key, value, timestamp, acks))

    def poll(self, _timeout: float = 0) -> int:
        return 0


def streamer(prod: Any) -> Streamer:
    settings = CaptureSettings(KafkaSettings(), PostgresSettings(), CaptureTuning())
    with mock.patch.object(Tenants, "load", return_value=Tenants("sw.control.tenants")):
        made = Streamer(settings, Codec(), prod, AckTracker(START_LSN), lambda: False)
    made.decoder = pgoutput.Decoder(made.codec, None, lambda oid, _mod: TYPE_NAMES[oid])
    return made


def feed(made: Streamer, messages: Sequence[bytes]) -> None:
    handle = made._handle
    for payload in messages:
        handle(payload)


def digest(messages: Sequence[bytes]) -> str:
    recorder = Recorder()
    made = streamer(recorder)
    feed(made, messages)
    sha = hashlib.sha256()
    for sent in recorder.sent:
        sha.update(repr(sent).encode())
    sha.update(repr([(t.commit_lsn, t.remaining) for t in made.tracker.queue]).encode())
    return f"{sha.hexdigest()} over {len(recorder.sent)} produce calls"


def unreachable_producer() -> Producer:
    # nothing listens on the discard port: produce only queues, and the queue holds a run
    return producer(KafkaSettings(), **{
        "bootstrap.servers": "127.0.0.1:9", "message.timeout.ms": 0,
        "queue.buffering.max.messages": 10_000_000, "queue.buffering.max.kbytes": 2_097_151,
    })  # fmt: skip


def rounds(messages: Sequence[bytes], count: int) -> Iterator[float]:
    """CPU seconds of each round, a fresh streamer (and empty producer queue) each."""
    prod = unreachable_producer()
    for _ in range(count):
        made = streamer(prod)
        started = time.process_time()
        feed(made, messages)
        yield time.process_time() - started
        prod.purge()
        prod.poll(0)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m benchmarks.capture_cpu", description=__doc__)
    p.add_argument("--changes", type=int, default=40_000)
    p.add_argument("--rounds", type=int, default=7)
    p.add_argument("--digest", action="store_true", help="print the output's digest only")
    args = p.parse_args(argv)
    logging.disable(logging.CRITICAL)  # the unreachable broker and purged queue are expected
    messages = stream(args.changes)
    if args.digest:
        print(digest(messages))
        return
    times = sorted(rounds(messages, args.rounds))
    per = [t / args.changes * 1e6 for t in times]
    print(f"{args.changes:,} changes x {args.rounds} rounds: CPU per change "
          f"min {per[0]:.2f} us, median {per[len(per) // 2]:.2f} us")  # fmt: skip


if __name__ == "__main__":
    main()
