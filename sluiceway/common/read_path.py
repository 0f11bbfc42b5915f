"""How a run reads its change-topic partitions: scanned whole, or through the tenant index.

The control plane decides once per run, when it takes the cut, and records the rule, its
inputs and the verdict in the run record (``read_path``); every worker of the run follows
it. The cost model counts records read, the one thing both paths spend:

- scan: every offset of ``[start, cut)`` of the run's partitions;
- index: every offset no block covers, plus, inside covered ranges, the tenants' records
  and the other records between two of them closer than ``GAP`` (read through rather than
  sought past), plus ``SEEK_RECORDS`` per separate read (a seek and a fetch round trip cost
  about what reading that many records does).

``plan_reads`` is what the processor's reader then does, so the estimate is its count.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from sluiceway.common.tenant_index import Coverage, Offsets

GAP = 1_000  # read through a gap of up to this many offsets instead of seeking past it
SEEK_RECORDS = 1_000
RULE = "index when (uncovered + read-through + seeks x 1000) < scanned offsets"


@dataclass(frozen=True)
class Read:
    """One forward read of ``[lo, hi)``; ``keep`` the offsets wanted of it (None: all)."""

    lo: int
    hi: int
    keep: Offsets | None


def plan_reads(coverage: Coverage, lo: int, hi: int) -> Iterator[Read]:
    """The reads that return every record of ``[lo, hi)`` the tenants may own."""
    for a, b, covered in coverage.pieces(lo, hi):
        if not covered:
            yield Read(a, b, None)
            continue
        wanted = coverage.wanted(a, b)
        if not len(wanted):
            continue
        breaks = np.flatnonzero(np.diff(wanted) > GAP) + 1
        for group in np.split(wanted, breaks):
            yield Read(int(group[0]), int(group[-1]) + 1, group)


@dataclass(frozen=True)
class Estimate:
    scanned: int  # offsets a scan reads
    uncovered: int  # offsets no block covers
    tenant_records: int  # the tenants' records in covered ranges
    read_through: int  # offsets read in covered ranges (the tenants' and the gaps between)
    reads: int  # separate reads through the index

    @property
    def index_cost(self) -> int:
        return self.uncovered + self.read_through + SEEK_RECORDS * self.reads


def estimate(
    coverage: Mapping[tuple[str, int], Coverage], ranges: Mapping[tuple[str, int], tuple[int, int]]
) -> Estimate:
    scanned = uncovered = tenant = through = reads = 0
    for tp, (lo, hi) in ranges.items():
        if hi <= lo:
            continue
        scanned += hi - lo
        for read in plan_reads(coverage.get(tp, Coverage()), lo, hi):
            reads += 1
            if read.keep is None:
                uncovered += read.hi - read.lo
            else:
                tenant += len(read.keep)
                through += read.hi - read.lo
    return Estimate(scanned, uncovered, tenant, through, reads)


def decide(mode: str, found: Estimate) -> dict[str, Any]:
    """The run record's ``read_path``: the verdict, the rule and its inputs."""
    if mode == "off":
        path, why = "scan", "tenant_index is off"
    elif mode == "always":
        path, why = "index", "tenant_index is always"
    else:
        cheaper = found.index_cost < found.scanned
        path, why = ("index" if cheaper else "scan"), RULE
    return {
        "path": path,
        "mode": mode,
        "rule": why,
        "inputs": {
            "scanned_offsets": found.scanned,
            "uncovered_offsets": found.uncovered,
            "tenant_records": found.tenant_records,
            "read_through_offsets": found.read_through,
            "reads": found.reads,
            "index_cost": found.index_cost,
        },
    }


def uses_index(read_path: Mapping[str, Any] | None) -> bool:
    return read_path is not None and read_path.get("path") == "index"
