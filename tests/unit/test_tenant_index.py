"""The tenant offset index: blocks round-trip, coverage merges blocks, reads follow it."""

from __future__ import annotations

import numpy as np
import pytest

from sluiceway.common.read_path import GAP, decide, estimate, plan_reads
from sluiceway.common.tenant_index import Block, Coverage, Slice, decode_for, tenant_of_key
from sluiceway.producers.indexer import SEGMENT_RECORDS, Segment


def block(lo: int, hi: int, **tenants: list[int]) -> Block:
    offsets = {t.encode(): np.array(o, np.int64) for t, o in tenants.items()}
    return Block("sw.cdc.issue", 1, lo, hi, sum(len(o) for o in tenants.values()), offsets)


def test_a_block_keeps_only_the_asked_tenants_offsets() -> None:
    value = block(100, 110, a=[100, 104, 109], b=[101, 102]).encode()
    topic, partition, got = decode_for(value, frozenset({b"a"}))
    assert (topic, partition, got.lo, got.hi, got.records) == ("sw.cdc.issue", 1, 100, 110, 5)
    assert got.offsets.tolist() == [100, 104, 109]
    assert decode_for(value, frozenset({b"c"}))[2].offsets.tolist() == []


def test_tenants_are_the_raw_bytes_before_the_last_slash() -> None:
    assert tenant_of_key(b"acme/corp/42") == b"acme/corp"
    assert tenant_of_key(b"42") is None and tenant_of_key(b"/42") is None
    assert tenant_of_key(None) is None


def test_coverage_merges_overlapping_blocks_and_leaves_gaps_uncovered() -> None:
    older = Slice(0, 50, 50, np.array([3, 40], np.int64))
    wider = Slice(0, 80, 80, np.array([3, 40, 70], np.int64))
    later = Slice(100, 120, 20, np.array([101], np.int64))
    cov = Coverage.of([later, older, wider])
    assert cov.ranges == [(0, 80), (100, 120)]
    assert cov.offsets.tolist() == [3, 40, 70, 101]
    assert cov.records == 100  # the widest version of each block, once
    assert list(cov.pieces(10, 130)) == [
        (10, 80, True), (80, 100, False), (100, 120, True), (120, 130, False)
    ]  # fmt: skip


@pytest.mark.parametrize("seed", range(20))
def test_coverage_offsets_are_the_sorted_union_of_the_blocks(seed: int) -> None:
    # blocks in and out of order, apart, overlapping and repeated: each tenant offset once
    rng = np.random.default_rng(seed)
    slices = []
    for _ in range(int(rng.integers(1, 6))):
        lo = int(rng.integers(0, 200))
        hi = lo + int(rng.integers(1, 100))
        picked = np.sort(rng.choice(np.arange(lo, hi), int(rng.integers(0, hi - lo)), False))
        slices.append(Slice(lo, hi, hi - lo, picked.astype(np.int64)))
    union = sorted({int(o) for s in slices for o in s.offsets})
    assert Coverage.of(slices).offsets.tolist() == union


def test_reads_take_the_tenants_offsets_and_every_uncovered_offset() -> None:
    far = 3 * GAP
    cov = Coverage.of([Slice(0, 10 * GAP, 10 * GAP, np.array([5, 6, 10, far, far + 1], np.int64))])
    reads = list(plan_reads(cov, 0, 12 * GAP))
    assert [(r.lo, r.hi) for r in reads] == [(5, 11), (far, far + 2), (10 * GAP, 12 * GAP)]
    assert reads[0].keep is not None and reads[0].keep.tolist() == [5, 6, 10]
    assert reads[2].keep is None


def test_the_rule_prefers_the_index_only_when_it_reads_less() -> None:
    small = {("t", 0): Coverage.of([Slice(0, 1_000_000, 10**6, np.array([7, 9], np.int64))])}
    found = estimate(small, {("t", 0): (0, 1_000_000)})
    assert (found.scanned, found.tenant_records, found.reads) == (1_000_000, 2, 1)
    assert decide("auto", found)["path"] == "index"
    everyone = np.arange(0, 1000, 1, dtype=np.int64) * 3
    dense = {("t", 0): Coverage.of([Slice(0, 3000, 3000, everyone)])}
    unindexed = estimate({}, {("t", 0): (0, 3000)})
    assert decide("auto", unindexed)["path"] == "scan"
    assert decide("always", estimate(dense, {("t", 0): (0, 3000)}))["path"] == "index"
    assert decide("off", found)["path"] == "scan"
    assert decide("auto", found)["inputs"]["scanned_offsets"] == 1_000_000


def test_a_segment_covers_what_it_read_and_the_markers_after_it() -> None:
    segment = Segment("sw.cdc.issue", 0, 10, 10, started=0.0)
    segment.add(10, b"a/1")
    segment.add(12, b"b/2")  # 11: an aborted record, never delivered
    segment.add(13, None)
    segment.reach(15)  # a commit marker at 14
    got = segment.block()
    assert (got.lo, got.hi, got.records) == (10, 15, 3)
    assert {t: o.tolist() for t, o in got.by_tenant.items()} == {b"a": [10], b"b": [12]}
    assert segment.due(now=5.0) and not segment.full(now=5.0)
    segment.records = SEGMENT_RECORDS
    assert segment.full(now=5.0)
