"""Pure construction of change events from source rows."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sluiceway.codec import Event


def lsn_to_int(lsn: str) -> int:
    """PostgreSQL prints an LSN as two hex halves, ``16/B374D848``."""
    high, _, low = lsn.partition("/")
    return (int(high, 16) << 32) | int(low, 16)


def snapshot_event(
    entity: str, tenant_id: str, row: dict[str, Any], position: int, source_ts: datetime
) -> Event:
    return {
        "tenant_id": tenant_id,
        "entity": entity,
        "entity_id": row["id"],
        "op": "r",
        "position": position,
        "source_ts": source_ts,
        "snapshot": True,
        "after": row,
    }
