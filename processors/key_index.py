"""Compact sets of the keys a full run has met (processors/latest.py).

A set of bytes keys costs about 100 bytes a key; a full run over 40M keys would need
4 GiB. Here a run tenant's key ``<tenant>/<entity_id>`` becomes one uint64, the tenant's
index in the run's sorted tenant list in the high bits and the id in the low bits, so the
set is a few sorted numpy arrays of 8-byte codes.

The code is exact, not a hash: a key gets one only when rebuilding it from the code gives
back the very same bytes (no leading zeros, an ASCII id that fits the id bits, a UTF-8
tenant of the run), so two keys never share one. The rare key that does not round-trip
(a corrupt or hand-made record) goes to a plain set beside the arrays.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np
import numpy.typing as npt

from sluiceway.processors.transforms import key_tenant


class TenantCodes:
    """Exact uint64 codes of (run tenant, entity id) pairs."""

    def __init__(self, tenants: Iterable[str]) -> None:
        self.tenants = sorted(set(tenants))
        self.index = {t: i for i, t in enumerate(self.tenants)}
        self.by_bytes = {t.encode(): i for i, t in enumerate(self.tenants)}
        # key_tenant decodes with "replace": only a tenant holding U+FFFD can match bytes
        # that are not its own encoding
        self.replaced = any("\ufffd" in t for t in self.tenants)
        self.id_bits = 64 - max(1, (len(self.tenants) - 1).bit_length())
        self.id_limit = 1 << self.id_bits

    def split(self, keys: Sequence[bytes | None]) -> tuple[list[int], list[int], list[int]]:
        """A chunk's keys coded in one loop: the indexes of the keys with a code, their codes,
        and the indexes of run keys without one (``is_run_key``). A key that is None or
        another tenant's is in neither list. A key gets a code only when rebuilding it from
        the code gives back these very bytes.

        One loop with ``is_run_key``'s steps inlined: at a million keys per full run, a
        method call and a second ``rpartition`` per key were a tenth of a processor's CPU."""
        by_bytes, bits, limit, replaced = self.by_bytes, self.id_bits, self.id_limit, self.replaced
        coded_at: list[int] = []
        coded: list[int] = []
        odd_at: list[int] = []
        for at, key in enumerate(keys):
            if key is None:
                continue
            tenant, _, id_b = key.rpartition(b"/")
            index = by_bytes.get(tenant)
            if index is None:
                if replaced and key_tenant(key) in self.index:
                    odd_at.append(at)
                continue
            # bytes.isdigit is ASCII only; a leading zero would not survive str(int(...))
            exact = id_b.isdigit() and (id_b[:1] != b"0" or len(id_b) == 1)
            entity_id = int(id_b) if exact else limit
            if entity_id < limit:
                coded_at.append(at)
                coded.append(index << bits | entity_id)
            elif key_tenant(key) in self.index:
                odd_at.append(at)
        return coded_at, coded, odd_at

    def is_run_key(self, key: bytes) -> bool:
        """transforms.select(key, run tenants), with a quick answer for other tenants."""
        if not self.replaced and key.rpartition(b"/")[0] not in self.by_bytes:
            return False
        return key_tenant(key) in self.index


class KeySet:
    """A set of codes kept as a few sorted uint64 arrays (8 bytes a code).

    Codes arrive a chunk at a time. Each chunk's fresh codes become a new sorted level; a
    level merges with the one before it while that one is at most twice its size, so there
    are about log2(n) levels and each code is copied about log2(n) times in all, instead of
    once per chunk as a single growing array would be.
    """

    def __init__(self) -> None:
        self.levels: list[npt.NDArray[np.uint64]] = []

    def __len__(self) -> int:
        return sum(len(level) for level in self.levels)

    def contains(self, codes: npt.NDArray[np.uint64]) -> npt.NDArray[np.bool_]:
        """Per code, whether the set holds it."""
        found = np.zeros(len(codes), bool)
        for level in self.levels:
            at = np.searchsorted(level, codes)
            inside = at < len(level)
            found[inside] |= level[at[inside]] == codes[inside]
        return found

    def add(self, codes: npt.NDArray[np.uint64]) -> None:
        """Add sorted, unique codes the set does not hold yet (``contains`` said so)."""
        if not len(codes):
            return
        self.levels.append(codes)
        while len(self.levels) > 1 and len(self.levels[-2]) <= 2 * len(self.levels[-1]):
            # levels never share a code, so a merge is a concatenation sorted in place: the
            # two levels and the merged one are all that is alive at once (16 bytes a code)
            merged = np.concatenate(self.levels[-2:])
            del self.levels[-2:]
            merged.sort()
            self.levels.append(merged)
