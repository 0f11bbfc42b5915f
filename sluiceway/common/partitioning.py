"""Tenant-affine partitioning (docs/architecture.md, "Topics and events").

A tenant's events sit in ``spread`` consecutive partitions starting at a partition chosen
by a stable hash of the tenant id, so a single-tenant run reads only those partitions.
CRC-32 is used because it is stable across processes and Python versions (``hash()`` is not).
"""

from __future__ import annotations

import zlib


def tenant_base(tenant_id: str, partitions: int) -> int:
    return zlib.crc32(tenant_id.encode()) % partitions


def id_slot(entity_id: int | str) -> int:
    """A number of the id that spreads a tenant's keys: the id itself, or the CRC-32 of a
    canonical text form (sluiceway.common.record_keys)."""
    return entity_id if type(entity_id) is int else zlib.crc32(str(entity_id).encode())


def partition_for(tenant_id: str, entity_id: int | str, partitions: int, spread: int = 1) -> int:
    width = min(spread, partitions)
    return (tenant_base(tenant_id, partitions) + id_slot(entity_id) % width) % partitions


def tenant_partitions(tenant_id: str, partitions: int, spread: int = 1) -> frozenset[int]:
    base = tenant_base(tenant_id, partitions)
    return frozenset((base + i) % partitions for i in range(min(spread, partitions)))
