"""The passes before a run (processors/scan.py): exact, and bounded in memory.

The Kafka reader is replaced by a feed of fake records in offset order per partition, so
the index can be compared with a plain dict of what the records say, at a size the real
topics of a unit test could not reach.
"""

from __future__ import annotations

import json
import random
import subprocess
import sys
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest

from sluiceway.common.codec import Codec
from sluiceway.common.runs import RunRecord
from sluiceway.common.settings import KafkaSettings
from sluiceway.common.spec import parse_spec
from sluiceway.processors import key_index, scan
from sluiceway.processors.transforms import select
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


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("chunk", [7, key_index.MIN_CHUNK])
def test_latest_offsets_keep_exactly_each_run_keys_last_live_version(
    monkeypatch: pytest.MonkeyPatch, seed: int, chunk: int
) -> None:
    monkeypatch.setattr(key_index, "MIN_CHUNK", chunk)  # 7: merges all along the pass
    records, cuts = random_records(seed)
    feed_scan(monkeypatch, lambda: iter(records))
    tenants = ("tenant-a", "tenant-c")
    latest = scan.latest_offsets(KAFKA, run_of(tenants, cuts))
    run_tenants = frozenset(tenants)
    last: dict[tuple[str, bytes], Rec] = {}
    for rec in records:
        if rec.k is not None:
            last[(rec.t, rec.k)] = rec
    expected = {
        (r.t, r.p, r.o) for r in last.values() if r.v is not None and select(r.k, run_tenants)
    }
    found = {(r.t, r.p, r.o) for r in records if latest.is_latest(r.t, r.p, r.o)}
    assert found == expected
    assert not latest.is_latest(TOPICS[0], 0, -1)
    assert not latest.is_latest(TOPICS[0], 0, 10**9)


@pytest.mark.parametrize("seed", range(5))
def test_last_values_match_a_dict(monkeypatch: pytest.MonkeyPatch, seed: int) -> None:
    monkeypatch.setattr(key_index, "MIN_CHUNK", 5)
    rnd, expected, values = random.Random(seed), {}, key_index.LastValues()
    for step in range(2000):
        code = rnd.choice((0, 2**64 - 1, rnd.randrange(300), rnd.randrange(2**64)))
        values.add(code, step)
        expected[code] = step
    assert len(values) == len(expected)
    assert all(values.get(c) == v for c, v in expected.items())
    assert values.get(301) is None


def test_a_partition_of_many_versions_a_key_keeps_a_sorted_array(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    topic = TOPICS[0]
    records = [Rec(topic, 1, o, b"tenant-a/%d" % (o % 3), b"v") for o in range(600)]
    records.append(Rec(topic, 1, 600, b"tenant-a/1", None))  # deleted last
    feed_scan(monkeypatch, lambda: iter(records))
    latest = scan.latest_offsets(KAFKA, run_of(("tenant-a",), {(topic, 1): 601}))
    assert (topic, 1) in latest.sorted  # 601 records, 2 live: 8 bytes each beat 76 of bits
    assert [o for o in range(-1, 700) if latest.is_latest(topic, 1, o)] == [597, 599]


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


KEYS = 5_000_000
BYTES_PER_KEY = 40


def big_feed() -> Iterator[Rec]:
    """5M keys of the run's tenant, a tenth updated and a fiftieth deleted, and a key of a
    tenant outside the run (which shares the partition) for every tenth."""
    topic, offset = TOPICS[0], 0
    for i in range(KEYS):
        yield Rec(topic, 0, offset, b"tenant-run/%d" % i, b"v")
        offset += 1
        if i % 10 == 9:
            yield Rec(topic, 0, offset, b"tenant-run/%d" % (i - 5), b"v")
            yield Rec(topic, 0, offset + 1, b"tenant-other/%d" % i, b"v")
            offset += 2
        if i % 50 == 49:
            yield Rec(topic, 0, offset, b"tenant-run/%d" % (i - 7), None)
            offset += 1


def measure_big_pass() -> None:
    """Run in a fresh interpreter: prints the pass's peak resident memory a key and what
    the index says about a few records and the total number of live keys."""
    monkeypatch = pytest.MonkeyPatch()
    feed_scan(monkeypatch, big_feed)
    cut = KEYS + 2 * (KEYS // 10) + KEYS // 50
    run = run_of(("tenant-run",), {(TOPICS[0], 0): cut})
    Path("/proc/self/clear_refs").write_text("5")  # resets the resident high-water mark
    before = resident_kib("VmRSS")
    latest = scan.latest_offsets(KAFKA, run)
    peak = resident_kib("VmHWM")
    checks = [latest.is_latest(TOPICS[0], 0, o) for o in (0, 4, 10, 11)]
    live = sum(latest.is_latest(TOPICS[0], 0, o) for o in range(cut))
    found = {"rss_kib": before, "hwm_kib": peak, "checks": checks, "live": live}
    print(json.dumps({"bytes_per_key": (peak - before) * 1024 / KEYS, **found}))


def resident_kib(field: str) -> int:
    """A line of /proc/self/status: VmRSS (resident now) or VmHWM (its high-water mark)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1])
    raise AssertionError(f"no {field} in /proc/self/status")


def test_latest_offsets_of_5m_keys_stay_under_40_bytes_a_key() -> None:
    root = Path(__file__).resolve().parents[2]
    code = "from tests.unit.test_processor_scan import measure_big_pass; measure_big_pass()"
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=root, capture_output=True, text=True, check=True
    )
    found = json.loads(out.stdout)
    assert found["bytes_per_key"] < BYTES_PER_KEY, found
    # tenant-run/0 is live; /4 was updated at i = 9 (offset 10); tenant-other/9 is not the run's
    assert found["checks"] == [True, False, True, False]
    # every fiftieth key was deleted last
    assert found["live"] == KEYS - KEYS // 50
