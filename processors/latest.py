"""Which records of a full run are each key's last version before the cut, in one pass. Pure.

A full run holds exactly one row per entity live at the cut: per key, its last record
before the cut, unless that is a delete. Change topics keep every version (compaction is
lazy), so a forward reader cannot tell whether a record is its key's last until it has
read the rest of the partition. Read backwards instead, the first record met of a key IS
its last version. Kafka reads forwards only, so a partition is read in chunks from the
cut down to the run's start (processors/chunks.py): each chunk forwards, then judged
newest first against the set of keys met in the chunks above it (``Picker.pick``).

That makes one pass over the change topics instead of two (a pass to find each key's
last offset, then a pass to forward those records), and the first events go out after
one chunk rather than after the whole first pass. What the run keeps is the set of keys
met so far: about 8 bytes a key (processors/key_index.py).

A worker that takes a partition over mid-way (a crash, a rebalance) rebuilds the set from
the chunks already done, ``[low, cut)``, before it goes on below ``low``: keys only, nothing
is forwarded twice.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np

from sluiceway.processors.key_index import KeySet, TenantCodes

TP = tuple[str, int]


class Picker:
    """The keys met so far per change-topic partition, and the choice each chunk makes."""

    def __init__(self, tenants: Iterable[str]) -> None:
        self.codes = TenantCodes(tenants)
        self.met: dict[TP, KeySet] = {}
        self.odd: dict[TP, set[bytes]] = {}  # run keys without an exact code

    def pick(
        self, tp: TP, keys: Sequence[bytes | None], values: Sequence[bytes | None]
    ) -> list[int]:
        """The indexes (ascending) of the records of one chunk, read forwards, that are
        their key's last version below everything met before: a run tenant's key met for
        the first time, newest first, and not a tombstone. Every key of the chunk counts
        as met afterwards, so older chunks never pick it again."""
        coded_at, coded, odd_at = self.codes.split(keys)
        picked = self._pick_coded(tp, coded_at, coded) + self._pick_odd(tp, odd_at, keys)
        picked = [at for at in picked if values[at] is not None]
        picked.sort()
        return picked

    def _pick_coded(self, tp: TP, coded_at: list[int], coded: list[int]) -> list[int]:
        if not coded:
            return []
        # newest first: np.unique's first index of each code is then its last version
        newest = np.array(coded[::-1], np.uint64)
        where = np.array(coded_at[::-1], np.int64)
        codes, first = np.unique(newest, return_index=True)
        met = self.met.setdefault(tp, KeySet())
        fresh = ~met.contains(codes)
        met.add(codes[fresh])
        return [int(at) for at in where[first[fresh]]]

    def _pick_odd(self, tp: TP, odd_at: list[int], keys: Sequence[bytes | None]) -> list[int]:
        if not odd_at:
            return []
        met = self.odd.setdefault(tp, set())
        picked = []
        for at in reversed(odd_at):
            key = keys[at]
            if key is not None and key not in met:
                met.add(key)
                picked.append(at)
        return picked

    def forget(self, tp: TP) -> None:
        """Drop a partition's keys: it moved to another worker, or it is done."""
        self.met.pop(tp, None)
        self.odd.pop(tp, None)

    def size(self) -> int:
        """Keys held, over all partitions."""
        return sum(len(s) for s in self.met.values()) + sum(len(s) for s in self.odd.values())
