"""Compact "last value per key" maps for the passes before a run (processors/scan.py).

A dict of bytes keys costs about 126 bytes a key; a full run over 40M keys would need
4.7 GiB. Here a run tenant's key ``<tenant>/<entity_id>`` becomes one uint64, the tenant's
index in the run's sorted tenant list in the high bits and the id in the low bits, so the
map is two sorted numpy arrays (8-byte code, 8-byte value): 16 bytes a key, and at most
about 30 while a chunk is merged in.

The code is exact, not a hash: a key gets one only when rebuilding it from the code gives
back the very same bytes (no leading zeros, an ASCII id that fits the id bits, a UTF-8
tenant of the run), so two keys never share one. The rare key that does not round-trip
(a corrupt or hand-made record) goes to a plain dict beside the arrays.
"""

from __future__ import annotations

from array import array
from bisect import bisect_left
from collections.abc import Iterable

import numpy as np
import numpy.typing as npt

from sluiceway.processors.transforms import key_tenant

# Records buffered before a merge into the sorted arrays: at least this many, and at most
# a sixteenth of the keys already held, so the buffer stays small next to the map.
MIN_CHUNK = 1 << 18


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

    def of(self, tenant: str, entity_id: int | str) -> int | None:
        """The code of the pair, or None when the tenant is not the run's or the id is not
        an integer that fits the id bits."""
        index = self.index.get(tenant)
        if index is None or type(entity_id) is not int or not 0 <= entity_id < self.id_limit:
            return None
        return index << self.id_bits | entity_id

    def of_key(self, key: bytes) -> int | None:
        """The code of a ``<tenant>/<entity_id>`` key, or None unless the code rebuilds
        exactly these bytes."""
        tenant, _, id_b = key.rpartition(b"/")
        index = self.by_bytes.get(tenant)
        # bytes.isdigit is ASCII only; a leading zero would not survive str(int(...))
        if index is None or not id_b.isdigit() or (id_b[:1] == b"0" and len(id_b) > 1):
            return None
        entity_id = int(id_b)
        return index << self.id_bits | entity_id if entity_id < self.id_limit else None

    def is_run_key(self, key: bytes) -> bool:
        """transforms.select(key, run tenants), with a quick answer for other tenants."""
        if not self.replaced and key.rpartition(b"/")[0] not in self.by_bytes:
            return False
        return key_tenant(key) in self.index


class LastValues:
    """code -> the value added last for it; ``add`` in the order that decides "last"."""

    def __init__(self) -> None:
        self.codes: npt.NDArray[np.uint64] = np.empty(0, np.uint64)  # sorted, unique
        self.values: npt.NDArray[np.int64] = np.empty(0, np.int64)
        self._new_codes = array("Q")
        self._new_values = array("q")
        self._room = MIN_CHUNK
        self._views: tuple[memoryview, memoryview] | None = None  # for get

    def add(self, code: int, value: int) -> None:
        self._new_codes.append(code)
        self._new_values.append(value)
        self._room -= 1
        if not self._room:
            self.flush()

    def __len__(self) -> int:
        self.flush()
        return len(self.codes)

    def flush(self) -> None:
        """Merge the buffered records into the sorted arrays."""
        if not self._new_codes:
            return
        codes, values = _last_per_code(
            np.frombuffer(self._new_codes, np.uint64), np.frombuffer(self._new_values, np.int64)
        )
        self._new_codes, self._new_values, self._views = array("Q"), array("q"), None
        at = np.searchsorted(self.codes, codes)
        inside = at < len(self.codes)
        known = np.zeros(len(codes), bool)
        known[inside] = self.codes[at[inside]] == codes[inside]
        self.values[at[known]] = values[known]  # in place: a later value replaces the older
        fresh = ~known
        # one array at a time: the old and the grown copy of one array are alive together
        self.codes = np.insert(self.codes, at[fresh], codes[fresh])
        self.values = np.insert(self.values, at[fresh], values[fresh])
        self._room = max(MIN_CHUNK, len(self.codes) >> 4)

    def get(self, code: int) -> int | None:
        if self._new_codes:
            self.flush()
        if self._views is None:
            self._views = (self.codes.data, self.values.data)
        # bisect over a memoryview: a few times faster than numpy's search for one value
        codes, values = self._views
        at = bisect_left(codes, code)
        if at < len(codes) and codes[at] == code:
            return int(values[at])
        return None

    def take_values(self) -> npt.NDArray[np.int64]:
        """The last values in code order; the map is empty afterwards (its codes freed)."""
        self.flush()
        values, self._views = self.values, None
        self.codes, self.values = np.empty(0, np.uint64), np.empty(0, np.int64)
        return values


def _last_per_code(
    codes: npt.NDArray[np.uint64], values: npt.NDArray[np.int64]
) -> tuple[npt.NDArray[np.uint64], npt.NDArray[np.int64]]:
    """Each code once, sorted, with the value that came last for it."""
    order = np.argsort(codes, kind="stable")  # stable: equal codes keep their arrival order
    codes, values = codes[order], values[order]
    del order
    last = np.ones(len(codes), bool)
    last[:-1] = codes[1:] != codes[:-1]
    return codes[last], values[last]
