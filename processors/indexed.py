"""Reading a run's ranges through the tenant offset index (sluiceway/common/tenant_index.py).

Same contract as processors/chunks.py's ChunkReader (every record of ``[lo, hi)`` the run's
tenants may own, in offset order), but inside the ranges the index covers it reads only the
offsets listed for the run's tenants (common/read_path.py ``plan_reads``); what no block
covers is read whole. Records read but not wanted count in ``consumed`` all the same: that
is what the run reports as events read.

The index of a partition is loaded on its first read and kept for the run: any version of
it is exact for what it covers, so a newer one would only save reads.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from sluiceway.common.read_path import plan_reads
from sluiceway.common.settings import KafkaSettings
from sluiceway.common.tenant_index import Coverage
from sluiceway.common.tenant_index_io import load_coverage
from sluiceway.processors.chunks import Chunk, ChunkReader

# a seek returns whole producer batches: small fetches and a small queue keep a sparse
# read from pulling megabytes past the few records it wants
SPARSE_FETCH_BYTES = 1024 * 1024
SPARSE_PREFETCH_KBYTES = 1024


class IndexedReader:
    """Reads ranges of change-topic partitions for the run's tenants. Not thread-safe."""

    def __init__(
        self, kafka: KafkaSettings, group: str, topics: Sequence[str], tenants: Sequence[str]
    ) -> None:
        self.kafka, self.topics, self.tenants = kafka, list(topics), list(tenants)
        self.dense = ChunkReader(kafka, group)
        self.sparse = ChunkReader(
            kafka, group, fetch_bytes=SPARSE_FETCH_BYTES, prefetch_kbytes=SPARSE_PREFETCH_KBYTES
        )
        self.coverage: dict[tuple[str, int], Coverage] = {}
        self.loaded: set[int] = set()

    def _coverage(self, topic: str, partition: int) -> Coverage:
        if partition not in self.loaded:
            self.coverage.update(load_coverage(self.kafka, self.topics, [partition], self.tenants))
            self.loaded.add(partition)
        return self.coverage.get((topic, partition), Coverage())

    def read(
        self, topic: str, partition: int, lo: int, hi: int, stopped: Callable[[], bool]
    ) -> Chunk:
        chunk = Chunk(lo, hi, [], [], [])
        for plan in plan_reads(self._coverage(topic, partition), lo, hi):
            reader = self.dense if plan.keep is None else self.sparse
            part = reader.read(topic, partition, plan.lo, plan.hi, stopped)
            chunk.consumed += part.consumed
            kept: Sequence[int]
            if plan.keep is None:
                kept = range(len(part.offsets))
            else:
                wanted = np.isin(np.array(part.offsets, np.int64), plan.keep)
                kept = np.flatnonzero(wanted).tolist()
            for at in kept:
                chunk.offsets.append(part.offsets[at])
                chunk.keys.append(part.keys[at])
                chunk.values.append(part.values[at])
        return chunk

    def close(self) -> None:
        self.dense.close()
        self.sparse.close()
