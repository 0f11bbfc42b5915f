"""What a decoder of an output plugin hands the streaming loop, whichever plugin it is."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, NamedTuple, Protocol

from sluiceway.common.codec import EventSchema

HEARTBEAT_PREFIX = "sluiceway-heartbeat"


class Change(NamedTuple):
    """One captured change. A named tuple, not a frozen dataclass: as immutable, and made
    in a quarter of the time (one is made per change; a frozen dataclass's ``__init__`` sets
    each field through ``object.__setattr__``)."""

    entity: str
    tenant_id: str
    entity_id: int | str
    op: str
    row: dict[str, Any] | None
    key: dict[str, Any] | None = None
    """The typed key columns, for an entity of the second envelope (record_keys)."""
    schema: EventSchema | None = None
    """The envelope to write the event with; None: the entity's catalog envelope."""


@dataclass
class Transaction:
    xid: int
    commit_lsn: int
    commit_ts: datetime
    changes: list[Change] = field(default_factory=list)


@dataclass(frozen=True)
class Heartbeat:
    lsn: int


class ChangeDecoder(Protocol):
    """Fed one replication message at a time; returns a Transaction at each commit and a
    Heartbeat for each of our logical messages, None otherwise."""

    def feed(self, payload: Any) -> Transaction | Heartbeat | None: ...
