from __future__ import annotations

import pytest

from sluiceway.common.partitioning import partition_for, tenant_partitions

TENANTS = [f"tenant-{i:03d}" for i in range(1, 40)]


@pytest.mark.parametrize("partitions", [1, 3, 8])
@pytest.mark.parametrize("spread", [1, 2, 5])
def test_every_event_of_a_tenant_lands_in_its_partitions(partitions: int, spread: int) -> None:
    for tenant in TENANTS:
        allowed = tenant_partitions(tenant, partitions, spread)
        assert len(allowed) == min(spread, partitions)
        seen = {partition_for(tenant, i, partitions, spread) for i in range(200)}
        assert seen == allowed


def test_partition_is_stable_across_calls() -> None:
    # crc32 of the tenant id, not Python's salted hash(), so other processes agree.
    # zlib.crc32(b"tenant-001") == 612102200, a fixed value any process can recompute.
    assert partition_for("tenant-001", 7, 1000) == 200
    assert partition_for("tenant-001", 7, 1000, spread=4) == 203


def test_tenants_spread_over_partitions() -> None:
    bases = {next(iter(tenant_partitions(t, 8))) for t in TENANTS}
    assert len(bases) >= 5
