"""Reads through the tenant index return every record a scan would give the run.

Random change records (several tenants, tombstones, keyless and odd keys, compaction gaps)
are indexed by the indexer's own Segment, with blocks covering only parts of each
partition; an IndexedReader over them must return, for any range, every record of the
range whose key is a run tenant's, and a delta read through it (ForwardPass) with sends
that fail now and then must forward each of them exactly once.
"""

from __future__ import annotations

import asyncio
import random

import pytest

from sluiceway.common.tenant_index import Coverage, decode_for
from sluiceway.processors import full_pass
from sluiceway.processors.chunks import Records
from sluiceway.processors.indexed import IndexedReader
from sluiceway.processors.ownership import PartitionState
from sluiceway.processors.transforms import key_tenant
from sluiceway.producers.indexer import Segment
from tests.unit.test_processor_latest import FakeReader, FlakyHost, by_partition
from tests.unit.test_processor_scan import PARTITIONS, TOPICS, Rec, random_records, run_of

TENANTS = ("tenant-a", "tenant-c")


def coverage_of(records: list[Rec], rnd: random.Random) -> dict[tuple[str, int], Coverage]:
    """Blocks of random spans of each partition, some of them left out (never published)."""
    found: dict[tuple[str, int], Coverage] = {}
    wanted = frozenset(t.encode() for t in TENANTS)
    for tp, recs in by_partition(records).items():
        slices, lo = [], 0
        end = recs[-1].o + 1 if recs else 0
        while lo < end:
            hi = min(end, lo + rnd.randint(1, 80))
            segment = Segment(tp[0], tp[1], lo, lo, 0.0)
            for r in recs:
                if lo <= r.o < hi:
                    segment.add(r.o, r.k)
            segment.reach(hi)
            if rnd.random() < 0.7:  # published, encoded as the indexer sends it
                slices.append(decode_for(segment.block().encode(), wanted)[2])
            lo = hi
        found[tp] = Coverage.of(slices)
    return found


def reader_over(records: list[Rec], coverage: dict[tuple[str, int], Coverage]) -> IndexedReader:
    reader = IndexedReader.__new__(IndexedReader)
    reader.dense = reader.sparse = FakeReader(records)  # type: ignore[assignment]
    reader.coverage, reader.loaded = coverage, set(range(PARTITIONS))
    return reader


def run_records(records: list[Rec], tp: tuple[str, int], lo: int, hi: int) -> list[int]:
    return [
        r.o for r in records
        if (r.t, r.p) == tp and lo <= r.o < hi and key_tenant(r.k) in TENANTS
    ]  # fmt: skip


@pytest.mark.parametrize("seed", range(8))
def test_any_range_read_through_the_index_holds_every_run_record(seed: int) -> None:
    rnd = random.Random(seed)
    records, ends = random_records(seed)
    reader = reader_over(records, coverage_of(records, rnd))
    for _ in range(200):
        tp = (rnd.choice(TOPICS), rnd.randrange(PARTITIONS))
        lo = rnd.randrange(ends[tp] + 1)
        hi = rnd.randint(lo, ends[tp] + 5)
        chunk = reader.read(tp[0], tp[1], lo, hi, lambda: False)
        got = [
            o for o, k in zip(chunk.offsets, chunk.keys, strict=True) if key_tenant(k) in TENANTS
        ]
        assert got == run_records(records, tp, lo, hi)
        assert chunk.offsets == sorted(set(chunk.offsets))


class FlakySpans(FlakyHost):
    """test_processor_latest's flaky worker, sent a delta's spans instead of a full run's
    chunks; a failed span's outputs never went out."""

    async def forward_span(
        self, state: PartitionState, topic: str, partition: int, records: Records,
        read: int, next_offset: int,
    ) -> None:  # fmt: skip
        if self.rnd.random() < 0.1:
            self.failures += 1
            raise RuntimeError("the send failed")
        self.sent += [(topic, partition, r.offset) for r in records if key_tenant(r.key) in TENANTS]
        state.next[topic] = next_offset


@pytest.mark.parametrize("seed", range(4))
def test_a_delta_through_the_index_forwards_each_run_record_once(seed: int) -> None:
    rnd = random.Random(seed)
    records, ends = random_records(seed)
    starts = {tp: rnd.randrange(end + 1) for tp, end in ends.items()}
    states = {
        p: PartitionState(next={t: starts[(t, p)] for t in TOPICS}, dead_letters=0, marked=False)
        for p in range(PARTITIONS)
    }
    host = FlakySpans(states, seed)
    run = run_of(TENANTS, ends)
    passing = full_pass.ForwardPass(
        run, list(TOPICS), 25, host, reader_over(records, coverage_of(records, rnd))
    )

    def left() -> list[int]:
        return [p for p, s in states.items() if not s.done({t: ends[(t, p)] for t in TOPICS})]

    async def until_done() -> None:
        for _ in range(1_000_000):
            if not left():
                break
            passing.drive(left())
            await asyncio.sleep(0)
        await asyncio.gather(*passing.tasks.values(), return_exceptions=True)

    asyncio.run(until_done())
    assert not left() and host.failures > 0
    expected = [
        (t, p, o)
        for (t, p), end in ends.items()
        for o in run_records(records, (t, p), starts[(t, p)], end)
    ]
    assert sorted(host.sent) == sorted(expected)
    assert len(host.sent) == len(set(host.sent))
