"""The tenant offset index kept beside the change topics: which offsets hold which tenant.

A run of a few tenants among many would otherwise read its tenants' partitions whole. The
capture service keeps, per change topic ``<prefix>cdc.<entity>``, an index topic
``<prefix>index.<entity>`` (producers/indexer.py). Each of its records is a *block*: the
complete list, per tenant, of the offsets of one change-topic partition's range
``[lo, hi)``, as a read_committed consumer sees it. Complete is what makes a block safe to
trust: a reader that wants a tenant's records of ``[lo, hi)`` reads exactly the offsets the
block lists for it, and anything no block covers is read whole. A lost, late or deleted
block only costs speed, never a record.

A block is keyed by its partition and ``lo``; the indexer re-publishes a growing block under
the same key, so compaction keeps its latest, widest version. Tenants are the raw bytes
before a key's last ``/`` (``<tenant>/<entity_id>``): the processor's own tenant test is
stricter, so it still sees every record it would have picked. Pure (reading the
index: sluiceway/common/tenant_index_io.py).
"""

from __future__ import annotations

import io
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field

import fastavro
import numpy as np
import numpy.typing as npt

from sluiceway.common.settings import KafkaSettings

SCHEMA = fastavro.parse_schema(
    {
        "type": "record",
        "name": "TenantIndexBlock",
        "namespace": "sluiceway",
        "fields": [
            {"name": "topic", "type": "string"},
            {"name": "partition", "type": "int"},
            {"name": "lo", "type": "long"},
            {"name": "hi", "type": "long"},
            {"name": "records", "type": "long"},
            {"name": "tenants", "type": {"type": "array", "items": "bytes"}},
            # per tenant, in the order of ``tenants``: how many offsets (uint32 LE)
            {"name": "counts", "type": "bytes"},
            # every offset minus lo (uint32 LE), grouped by tenant in that order
            {"name": "offsets", "type": "bytes"},
        ],
    }
)
SPAN_LIMIT = 1 << 31  # offsets are stored as uint32 past lo

Offsets = npt.NDArray[np.int64]


def index_topic(kafka: KafkaSettings, change_topic: str) -> str:
    """``<prefix>index.<entity>`` of ``<prefix>cdc.<entity>``."""
    return f"{kafka.topic_prefix}index.{change_topic.removeprefix(kafka.topic_prefix + 'cdc.')}"


def tenant_of_key(key: bytes | None) -> bytes | None:
    """The raw tenant bytes of a ``<tenant>/<entity_id>`` key; None when there are none."""
    if not key:
        return None
    tenant, sep, _ = key.rpartition(b"/")
    return tenant if sep and tenant else None


def block_key(topic: str, partition: int, lo: int) -> bytes:
    return f"{topic}/{partition}/{lo}".encode()


@dataclass(frozen=True)
class Block:
    """Every committed record of ``topic[partition]`` in ``[lo, hi)``, by tenant."""

    topic: str
    partition: int
    lo: int
    hi: int
    records: int  # every record of the range, keyed or not
    by_tenant: dict[bytes, Offsets]

    def encode(self) -> bytes:
        tenants = sorted(self.by_tenant)
        counts = np.array([len(self.by_tenant[t]) for t in tenants], "<u4")
        parts = [self.by_tenant[t] - self.lo for t in tenants]
        offsets = np.concatenate(parts).astype("<u4") if parts else np.zeros(0, "<u4")
        out = io.BytesIO()
        fastavro.schemaless_writer(
            out,
            SCHEMA,
            {
                "topic": self.topic, "partition": self.partition, "lo": self.lo,
                "hi": self.hi, "records": self.records, "tenants": tenants,
                "counts": counts.tobytes(), "offsets": offsets.tobytes(),
            },
        )  # fmt: skip
        return out.getvalue()


@dataclass(frozen=True)
class Slice:
    """What a block says about some tenants: its range, its record count, their offsets."""

    lo: int
    hi: int
    records: int
    offsets: Offsets


def decode_for(value: bytes, tenants: frozenset[bytes]) -> tuple[str, int, Slice]:
    """(topic, partition, slice) of an encoded block, keeping only ``tenants``' offsets."""
    raw = fastavro.schemaless_reader(io.BytesIO(value), SCHEMA, None)
    assert isinstance(raw, dict)
    counts = np.frombuffer(raw["counts"], "<u4").astype(np.int64)
    ends = np.cumsum(counts)
    offsets = np.frombuffer(raw["offsets"], "<u4")
    lo = int(raw["lo"])
    kept = [
        offsets[int(ends[i] - counts[i]) : int(ends[i])]
        for i, tenant in enumerate(raw["tenants"])
        if tenant in tenants
    ]
    found = np.concatenate(kept).astype(np.int64) + lo if kept else np.zeros(0, np.int64)
    found.sort()
    return (
        raw["topic"],
        int(raw["partition"]),
        Slice(lo, int(raw["hi"]), int(raw["records"]), found),
    )


@dataclass
class Coverage:
    """What the index says about some tenants in one change-topic partition: the ranges
    its blocks cover (disjoint, ascending) and, inside them, those tenants' offsets."""

    ranges: list[tuple[int, int]] = field(default_factory=list)
    offsets: Offsets = field(default_factory=lambda: np.zeros(0, np.int64))
    records: int = 0  # records of the covered ranges, every tenant's (an upper bound)

    @classmethod
    def of(cls, slices: Iterable[Slice]) -> Coverage:
        """Blocks may overlap (a block re-published wider, two indexers): each is exact,
        so the union of their ranges is covered and their offsets agree where they do."""
        ordered = sorted(slices, key=lambda s: (s.lo, s.hi))
        ranges: list[tuple[int, int]] = []
        for s in ordered:
            if ranges and s.lo <= ranges[-1][1]:
                ranges[-1] = (ranges[-1][0], max(ranges[-1][1], s.hi))
            elif s.hi > s.lo:
                ranges.append((s.lo, s.hi))
        found = [s.offsets for s in ordered if len(s.offsets)]
        offsets = _sorted_unique(np.concatenate(found)) if found else np.zeros(0, np.int64)
        records = sum(s.records for s in _widest(ordered))
        return cls(ranges, offsets, records)

    def pieces(self, lo: int, hi: int) -> Iterator[tuple[int, int, bool]]:
        """``[lo, hi)`` cut into ascending ``(a, b, covered)`` pieces."""
        at = lo
        for a, b in self.ranges:
            if b <= at or a >= hi:
                continue
            if a > at:
                yield at, a, False
            yield max(a, at), min(b, hi), True
            at = min(b, hi)
        if at < hi:
            yield at, hi, False

    def wanted(self, lo: int, hi: int) -> Offsets:
        """The tenants' offsets in ``[lo, hi)`` (meaningful inside covered pieces only)."""
        left, right = np.searchsorted(self.offsets, [lo, hi])
        return self.offsets[left:right]

    def covered_count(self, lo: int, hi: int) -> int:
        return sum(b - a for a, b, covered in self.pieces(lo, hi) if covered)


def _widest(ordered: Sequence[Slice]) -> list[Slice]:
    """Of blocks starting at one ``lo``, the widest (the others are its earlier versions)."""
    widest: dict[int, Slice] = {}
    for s in ordered:
        if s.lo not in widest or s.hi > widest[s.lo].hi:
            widest[s.lo] = s
    return list(widest.values())


def _sorted_unique(offsets: npt.NDArray[np.int64]) -> npt.NDArray[np.int64]:
    """``np.unique`` of offsets, through a sort: numpy 2.4's ``np.unique`` of integers hashes
    them, 70x slower than sorting (5 s for the 5M offsets of a full run of every tenant
    of the bench). Blocks that do not overlap are in order already: then nothing moves."""
    if len(offsets) > 1 and not bool(np.all(offsets[1:] > offsets[:-1])):
        offsets = np.sort(offsets)
        offsets = offsets[np.concatenate(([True], offsets[1:] != offsets[:-1]))]
    return offsets
