"""A full run's one pass (processors/latest.py, full_pass.steps): exact, and small in memory.

Records of random keys, versions, tombstones, compaction gaps and keys that only look alike
are read in chunks from the cut downwards, as a worker reads them; what is picked must be
exactly each run key's last live version, compared with a plain dict of what the records
say. A worker that takes a partition over half-way must pick the rest, and nothing twice.
"""

from __future__ import annotations

import asyncio
import json
import random
import subprocess
import sys
from bisect import bisect_left
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from sluiceway.processors import full_pass
from sluiceway.processors.chunks import Chunk, Records
from sluiceway.processors.full_pass import steps
from sluiceway.processors.key_index import KeySet, TenantCodes
from sluiceway.processors.latest import Picker
from sluiceway.processors.ownership import PartitionState
from sluiceway.processors.transforms import select
from tests.unit.test_processor_scan import PARTITIONS, TOPICS, Rec, random_records, run_of

TENANTS = ("tenant-a", "tenant-c")


def expected_picks(records: list[Rec]) -> set[tuple[str, int, int]]:
    last: dict[tuple[str, bytes], Rec] = {}
    for rec in records:
        if rec.k is not None:
            last[(rec.t, rec.k)] = rec
    run = frozenset(TENANTS)
    return {(r.t, r.p, r.o) for r in last.values() if r.v is not None and select(r.k, run)}


def by_partition(records: list[Rec]) -> dict[tuple[str, int], list[Rec]]:
    parts: dict[tuple[str, int], list[Rec]] = {}
    for rec in records:
        parts.setdefault((rec.t, rec.p), []).append(rec)
    return parts


def walk(
    picker: Picker, tp: tuple[str, int], recs: list[Rec], lo: int, hi: int, chunk: int
) -> Iterator[tuple[int, int, list[int]]]:
    """Chunks of [lo, hi) from the top down, as (chunk lo, chunk hi, picked offsets)."""
    top = hi
    while top > lo:
        bottom = max(lo, top - chunk)
        inside = [r for r in recs if bottom <= r.o < top]
        picked = picker.pick(tp, [r.k for r in inside], [r.v for r in inside])
        yield bottom, top, [inside[at].o for at in picked]
        top = bottom


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("chunk", [1, 7, 500, 10**6])
def test_chunks_read_downwards_pick_each_run_keys_last_live_version(seed: int, chunk: int) -> None:
    records, cuts = random_records(seed)
    picker, found = Picker(TENANTS), []
    for tp, recs in by_partition(records).items():
        for _lo, _hi, picked in walk(picker, tp, recs, 0, cuts[tp], chunk):
            found += [(tp[0], tp[1], o) for o in picked]
    assert len(found) == len(set(found))
    assert set(found) == expected_picks(records)


@pytest.mark.parametrize("seed", range(6))
def test_a_worker_taking_over_half_way_picks_the_rest_and_nothing_twice(seed: int) -> None:
    records, cuts = random_records(seed)
    rnd, found = random.Random(seed), []
    for tp, recs in by_partition(records).items():
        first = Picker(TENANTS)
        chunks = walk(first, tp, recs, 0, cuts[tp], 50)
        low = cuts[tp]
        for _ in range(rnd.randrange(6)):  # the first worker does a few chunks, then dies
            step = next(chunks, None)
            if step is None:
                break
            low = step[0]
            found += [(tp[0], tp[1], o) for o in step[2]]
        second = Picker(TENANTS)  # its successor rebuilds [low, cut): keys only
        for _lo, _hi, _picked in walk(second, tp, recs, low, cuts[tp], 50):
            pass
        for _lo, _hi, picked in walk(second, tp, recs, 0, low, 50):
            found += [(tp[0], tp[1], o) for o in picked]
    assert len(found) == len(set(found))
    assert set(found) == expected_picks(records)


def test_steps_rebuild_what_was_done_then_go_down_to_the_start() -> None:
    state = PartitionState(next={"a": 10, "b": 0}, dead_letters=0, marked=False)
    state.low = {"a": 25, "b": 7}
    found = [
        (s.topic, s.lo, s.hi, s.rebuild)
        for s in steps(state, {"a": 40, "b": 7}, ["a", "b"], 10, rebuild=True)
    ]
    assert found == [
        ("a", 25, 35, True), ("a", 35, 40, True),
        ("a", 15, 25, False), ("a", 10, 15, False),
        ("b", 0, 7, False),
    ]  # fmt: skip
    # a worker that still holds the partition's keys goes on from low
    held = steps(state, {"a": 40, "b": 7}, ["a", "b"], 10, rebuild=False)
    assert [(s.lo, s.rebuild) for s in held] == [(15, False), (10, False), (0, False)]
    state.low = {"a": 10, "b": 0}
    assert state.done({"a": 40, "b": 7})


@pytest.mark.parametrize("seed", range(5))
def test_key_set_matches_a_python_set(seed: int) -> None:
    rnd, keys, expected = random.Random(seed), KeySet(), set()
    for _ in range(300):
        size = rnd.randrange(1, 40)
        pool = (0, 2**64 - 1)
        batch = {rnd.choice((*pool, rnd.randrange(500), rnd.randrange(2**64))) for _ in range(size)}
        codes = np.array(sorted(batch), np.uint64)
        held = keys.contains(codes)
        assert [bool(h) for h in held] == [int(c) in expected for c in codes]
        keys.add(codes[~held])
        expected |= batch
    assert len(keys) == len(expected)
    assert len(keys.levels) <= 2 * max(1, len(expected)).bit_length()


KEYS = 5_000_000
BYTES_PER_KEY = 40
CHUNK = 100_000


def big_chunks() -> Iterator[tuple[list[bytes | None], list[bytes | None]]]:
    """5M keys of the run's tenant read downwards in chunks, a tenth updated later and a
    fiftieth deleted later, and a key of a tenant outside the run for every tenth."""
    for top in range(KEYS, 0, -CHUNK):
        keys: list[bytes | None] = []
        values: list[bytes | None] = []
        for i in range(top - CHUNK, top):
            keys.append(b"tenant-run/%d" % i)
            values.append(None if i % 50 == 49 else b"v")
            if i % 10 == 9:
                keys.append(b"tenant-other/%d" % i)
                values.append(b"v")
        yield keys, values


def measure_big_pass() -> None:
    """Run in a fresh interpreter: the picker's peak resident memory a key, and what it
    picked."""
    Path("/proc/self/clear_refs").write_text("5")  # resets the resident high-water mark
    before = 0
    picker, picked = Picker(("tenant-run",)), 0
    for n, (keys, values) in enumerate(big_chunks()):
        if n == 0:  # a chunk's own records are the worker's, not the index's
            before = int(_resident_kib("VmRSS"))
        picked += len(picker.pick((TOPICS[0], 0), keys, values))
    peak = _resident_kib("VmHWM")
    print(json.dumps({"bytes_per_key": (peak - before) * 1024 / KEYS, "picked": picked}))


def _resident_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1])
    raise AssertionError(f"no {field} in /proc/self/status")


def test_the_keys_of_5m_rows_stay_under_40_bytes_a_key() -> None:
    root = Path(__file__).resolve().parents[2]
    code = "from tests.unit.test_processor_latest import measure_big_pass; measure_big_pass()"
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=root, capture_output=True, text=True, check=True
    )
    found = json.loads(out.stdout)
    assert found["bytes_per_key"] < BYTES_PER_KEY, found
    assert found["picked"] == KEYS - KEYS // 50  # every fiftieth key was deleted last


class FakeReader:
    """The change records of ``random_records``, read by range as ChunkReader does."""

    def __init__(self, records: list[Rec]) -> None:
        self.parts = by_partition(records)

    def read(self, topic: str, partition: int, lo: int, hi: int, _stopped: object) -> Chunk:
        recs = self.parts.get((topic, partition), [])
        offsets = [r.o for r in recs]
        inside = recs[bisect_left(offsets, lo) : bisect_left(offsets, hi)]
        return Chunk(
            lo, hi, [r.o for r in inside], [r.k for r in inside], [r.v for r in inside],
            len(inside),
        )  # fmt: skip

    def close(self) -> None:
        pass


class FlakyHost:
    """A worker whose sends fail now and then: a failed chunk's outputs never went out."""

    def __init__(self, states: dict[int, PartitionState], seed: int) -> None:
        self.states, self.rnd = states, random.Random(seed)
        self.locks: dict[int, asyncio.Lock] = {}
        self.sent: list[tuple[str, int, int]] = []
        self.failures = 0

    async def state_of(self, partition: int) -> PartitionState | None:
        return self.states.get(partition)

    def holds(self, partition: int, state: PartitionState) -> bool:
        return self.states.get(partition) is state

    def lock(self, partition: int) -> asyncio.Lock:
        return self.locks.setdefault(partition, asyncio.Lock())

    async def read_up(self, partition: int) -> None:
        pass

    async def forward_chunk(
        self, state: PartitionState, topic: str, partition: int, records: Records,
        read: int, low: int | None,
    ) -> None:  # fmt: skip
        if self.rnd.random() < 0.1:
            self.failures += 1
            raise RuntimeError("the send failed")
        self.sent += [(topic, partition, r.offset) for r in records]
        if low is not None:
            state.low[topic] = low


@pytest.mark.parametrize("seed", range(5))
def test_a_chunk_that_fails_is_read_again_and_nothing_is_lost_or_doubled(seed: int) -> None:
    records, cuts = random_records(seed)
    states = {}
    for p in range(PARTITIONS):
        states[p] = PartitionState(next=dict.fromkeys(TOPICS, 0), dead_letters=0, marked=False)
        states[p].low = {t: cuts[(t, p)] for t in TOPICS}
    host = FlakyHost(states, seed)
    run = run_of(TENANTS, cuts)

    def left() -> list[int]:
        return [p for p, s in states.items() if not s.done({t: cuts[(t, p)] for t in TOPICS})]

    async def until_done() -> None:
        passing = full_pass.FullPass(run, list(TOPICS), 100, host, FakeReader(records))
        for _ in range(1_000_000):  # the worker's timer: a task for each partition left
            if not left():
                break
            passing.drive(left())
            await asyncio.sleep(0)
        await asyncio.gather(*passing.tasks.values(), return_exceptions=True)
        passing.close()

    asyncio.run(until_done())
    assert not left()
    assert host.failures > 0
    assert len(host.sent) == len(set(host.sent))
    assert set(host.sent) == expected_picks(records)


_ODD_KEYS = [
    b"tenant-a/0", b"tenant-a/007", b"tenant-a/", b"tenant-a/-1", b"tenant-a/1e3",
    b"tenant-a/\xd9\xa3", b"tenant-a/18446744073709551616", b"tenant-a/9223372036854775808",
    b"tenant-c/a1b2", b"tenant-a/b/5", b"tenant-b/5", b"tenant-a5", b"/5", b"5", b"",
    b"tenant-\xff/5", b"tenant-a/5\n", b"\xef\xbf\xbd/5", b"\xff/5", b"\xef\xbf\xbd/05",
]  # fmt: skip


def _rebuildable(key: bytes | None, tenants: tuple[str, ...], limit: int) -> bool:
    """Whether ``<run tenant>/<id>`` for some id below ``limit`` is exactly ``key``."""
    try:
        tenant, _, entity_id = (key or b"").decode().rpartition("/")
    except UnicodeDecodeError:  # a rebuilt key is UTF-8
        return False
    canonical = entity_id.isascii() and entity_id.isdigit() and str(int(entity_id)) == entity_id
    return tenant in tenants and canonical and int(entity_id) < limit


@pytest.mark.parametrize("tenants", [TENANTS, ("tenant-a", "tenant-c", "x"), ("\ufffd",)])
@pytest.mark.parametrize("seed", range(4))
def test_split_codes_exactly_the_keys_its_codes_rebuild_and_keeps_every_run_key(
    tenants: tuple[str, ...], seed: int
) -> None:
    """A code rebuilds its key byte for byte; a run key (transforms.select) without a code
    is left for the plain set; nothing else is kept."""
    rng = random.Random(seed)
    codes = TenantCodes(tenants)
    pool = [*_ODD_KEYS, *(f"{t}/{rng.randrange(10**7)}".encode() for t in tenants)]
    keys = [None if rng.random() < 0.05 else rng.choice(pool) for _ in range(500)]
    coded_at, coded, odd_at = codes.split(keys)
    ordered, ids = sorted(set(tenants)), codes.id_limit - 1
    rebuilt = [f"{ordered[c >> codes.id_bits]}/{c & ids}".encode() for c in coded]
    assert rebuilt == [keys[at] for at in coded_at]
    # every key that some code would rebuild got one
    assert coded_at == [at for at, k in enumerate(keys) if _rebuildable(k, tenants, ids + 1)]
    run_keys = [at for at, k in enumerate(keys) if select(k, frozenset(tenants))]
    assert sorted(coded_at + odd_at) == run_keys
    assert coded and odd_at  # the draw holds both kinds, so both lists were put to the test
