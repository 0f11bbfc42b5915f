"""The opt-out pass before a run (processors/scan.py): exact.

The Kafka reader is replaced by a feed of fake records in offset order per partition.
"""

from __future__ import annotations

import random
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime

import pytest

from sluiceway.common.codec import Codec
from sluiceway.common.runs import RunRecord
from sluiceway.common.settings import KafkaSettings
from sluiceway.common.spec import parse_spec
from sluiceway.processors import scan
from tests.unit.test_processor_batch import _issue

KAFKA = KafkaSettings()
TOPICS = (KAFKA.cdc_topic("issue"), KAFKA.cdc_topic("comment"))
PARTITIONS = 3
CODEC = Codec()


@dataclass(frozen=True, slots=True)
class Rec:
    """The part of confluent_kafka.Message the passes read."""

    t: str
    p: int
    o: int
    k: bytes | None
    v: bytes | None

    def topic(self) -> str:
        return self.t

    def partition(self) -> int:
        return self.p

    def offset(self) -> int:
        return self.o

    def key(self) -> bytes | None:
        return self.k

    def value(self) -> bytes | None:
        return self.v

    def error(self) -> None:
        return None


Feed = Callable[[], Iterator[Rec]]


def run_of(tenants: tuple[str, ...], cuts: dict[tuple[str, int], int]) -> RunRecord:
    cut = {t: {p: cuts.get((t, p), 0) for p in range(PARTITIONS)} for t in TOPICS}
    return RunRecord(
        etl_id="test", type="full", tenants=tenants, entities=("issue", "comment"),
        destination="/tmp/unused", run_topic="unused", run_partitions=PARTITIONS,
        start={t: dict.fromkeys(range(PARTITIONS), 0) for t in TOPICS}, cut=cut,
        format="parquet", spec={},
    )  # fmt: skip


def feed_scan(monkeypatch: pytest.MonkeyPatch, feed: Feed) -> None:
    def fake_scan(
        _kafka: KafkaSettings,
        _group: str,
        _ranges: scan.Ranges,
        visit: Callable[[Rec], None],
        **_options: object,
    ) -> None:
        for rec in feed():
            visit(rec)

    monkeypatch.setattr(scan, "scan", fake_scan)


def random_records(seed: int) -> tuple[list[Rec], dict[tuple[str, int], int]]:
    """Records of run and other tenants, with several versions, tombstones and keys that
    only look alike (leading zeros, non-ASCII digits, bad UTF-8, ids past 64 bits)."""
    rnd = random.Random(seed)
    keys = [f"tenant-{t}/{i}".encode() for t in ("a", "b", "c") for i in range(60)]
    keys += [b"tenant-a/007", b"tenant-a/7", b"tenant-a/\xd9\xa7", b"tenant-a/" + b"9" * 30]
    keys += [b"tenant-\xff/7", b"tenant-a/x7", b"/7", b"tenant-a/", b"tenant-a/-7"]
    records, next_offset = [], {(t, p): 0 for t in TOPICS for p in range(PARTITIONS)}
    for _ in range(3000):
        key, topic = rnd.choice(keys), rnd.choice(TOPICS)
        part = zlib.crc32(key) % PARTITIONS  # a key stays in one partition, as tenant affinity does
        value = None if rnd.random() < 0.15 else b"v"
        offset = next_offset[(topic, part)]
        next_offset[(topic, part)] = offset + rnd.choice((1, 1, 1, 2))  # compaction gaps
        records.append(Rec(topic, part, offset, key if rnd.random() > 0.01 else None, value))
    return records, next_offset


def _project(tenant: str, project_id: int, key: str) -> dict[str, object]:
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    after = {"id": project_id, "key": key, "name": "n", "description": None, "lead_id": None,
             "project_type": "software", "category": None, "url": None, "created": t0,
             "updated": t0}  # fmt: skip
    return {
        "tenant_id": tenant, "entity": "project", "entity_id": project_id, "op": "u",
        "position": 1, "source_ts": t0, "snapshot": False, "after": after,
    }  # fmt: skip


def test_opt_out_pass_judges_the_run_tenants_rows_by_their_last_versions(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    projects = [
        (b"t1/1", _project("t1", 1, "HIDDEN")),
        (b"t1/2", _project("t1", 2, "OPEN")),
        (b"t2/1", _project("t2", 1, "HIDDEN")),  # another tenant's: never kept
    ]
    sub = _issue("t1", 5, t0, "OPEN")
    sub["after"] |= {"project_id": 2, "parent_id": 3}  # a sub-issue of an opted-out issue
    issues = [
        (b"t1/3", _issue("t1", 3, t0, "OPEN")),  # in project 1
        (b"t1/9", _issue("t1", 10, t0, "C")),  # contradicts its key: the run dead-letters it
        (b"t1/5", sub),
        (b"t1/3", {**_issue("t1", 3, t0, "D"), "op": "d", "after": None}),  # deleted at last
    ]
    records = [
        Rec(KAFKA.cdc_topic(e["entity"]), 0, i, k, CODEC.encode(e))  # type: ignore[arg-type]
        for i, (k, e) in enumerate(projects + issues)
    ]
    records.append(Rec(TOPICS[0], 0, len(records), b"t1/5", None))  # a tombstone: skipped
    records.append(Rec(TOPICS[0], 0, len(records), b"t1/6", b"corrupt"))  # dead-lettered later
    feed_scan(monkeypatch, lambda: iter(records))
    # the run selects issues and comments: the project topic is read to its end
    monkeypatch.setattr(scan, "watermarks", lambda _k, _t, parts: dict.fromkeys(parts, (0, 99)))
    run = run_of(("t1",), {(TOPICS[0], p): len(records) for p in range(PARTITIONS)})
    spec = parse_spec({"tenants": ["t1"], "destination": "/l", "opt_out": ["HIDDEN"]})
    opted = scan.opt_out_verdicts(KAFKA, run, spec, CODEC)
    assert opted.rows["project"] == {("t1", ("1",))}
    # issue 3 is judged by its last row (a delete keeps it), issue 5 through its parent
    assert opted.rows["issue"] == {("t1", ("3",)), ("t1", ("5",))}
    assert opted.ids["issue"] == {("t1", 3), ("t1", 5)}
