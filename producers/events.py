"""Pure construction of change events from source rows and decoded changes."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from sluiceway.common.codec import Event
from sluiceway.producers.errors import SourceSchemaError

# A position is the commit LSN shifted left, plus the change's index in its transaction, so
# positions strictly increase in commit order even inside one transaction. 20 bits allow
# transactions of up to 1,048,575 captured changes and LSNs up to 8 TiB of WAL.
SEQ_BITS = 20
MAX_SEQ = (1 << SEQ_BITS) - 1


def lsn_to_int(lsn: str) -> int:
    """PostgreSQL prints an LSN as two hex halves, ``16/B374D848``."""
    high, _, low = lsn.partition("/")
    return (int(high, 16) << 32) | int(low, 16)


def int_to_lsn(value: int) -> str:
    return f"{value >> 32:X}/{value & 0xFFFFFFFF:X}"


def position(commit_lsn: int, seq: int) -> int:
    if not 0 <= seq <= MAX_SEQ:
        raise SourceSchemaError(
            f"transaction at {int_to_lsn(commit_lsn)} has more than {MAX_SEQ} captured changes; "
            "split bulk writes into smaller transactions"
        )
    return (commit_lsn << SEQ_BITS) | seq


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def timestamp_ms(source_ts: datetime) -> int:
    """The Kafka message timestamp of an event: its commit time, floored to the millisecond.

    Integer arithmetic, not ``timestamp() * 1000``: a float could round an event committed
    at x.9999995 ms up into the next millisecond, and replay cuts would then be off by one.
    """
    return (source_ts - _EPOCH) // timedelta(milliseconds=1)


def lsn_of(position_value: int) -> int:
    return position_value >> SEQ_BITS


def snapshot_event(
    entity: str, tenant_id: str, row: dict[str, Any], position: int, source_ts: datetime
) -> Event:
    return change_event(entity, tenant_id, row["id"], "r", row, position, source_ts)


def change_event(
    entity: str,
    tenant_id: str,
    entity_id: int | str,
    op: str,
    row: dict[str, Any] | None,
    position: int,
    source_ts: datetime,
    key: dict[str, Any] | None = None,
) -> Event:
    """``key``: the typed key columns of the second envelope (None for the first, whose
    ``entity_id`` is the key; sluiceway.common.record_keys)."""
    event: Event = {
        "tenant_id": tenant_id,
        "entity": entity,
        "entity_id": entity_id,
        "op": op,
        "position": position,
        "source_ts": source_ts,
        "snapshot": op == "r",
        "after": row,
    }
    if key is not None:
        event["key"] = key
    return event
