"""Where capture stands, seen from outside it (``sluiceway source status``): whether its slot
exists, whether the initial snapshot is published, and whether the slot has confirmed every
transaction committed before a given moment, so a user (or a script) knows when an export
started now holds what the source held."""

from __future__ import annotations

import time
from collections.abc import Callable
from contextlib import closing
from dataclasses import asdict, dataclass
from typing import Any

from sluiceway.common.errors import TransientError
from sluiceway.common.settings import KafkaSettings, PostgresSettings
from sluiceway.producers import checkpoint
from sluiceway.producers.db import connect


class CaptureBehindError(TransientError):
    """Capture did not catch up within the time given."""


@dataclass(frozen=True)
class CaptureStatus:
    slot: str
    slot_exists: bool
    active: bool  # a capture process is connected to the slot
    snapshot_done: bool
    confirmed_lsn: str | None
    target_lsn: str  # the source's WAL insert position when the status was taken
    behind_bytes: int | None  # WAL between the slot's confirmed position and the target

    @property
    def caught_up(self) -> bool:
        return self.snapshot_done and self.behind_bytes is not None and self.behind_bytes <= 0

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "caught_up": self.caught_up}

    def line(self) -> str:
        if not self.slot_exists:
            return (
                f"capture: no slot {self.slot} in the source yet (is `sluiceway capture` running?)"
            )
        running = "running" if self.active else "not connected"
        snapshot = "snapshot published" if self.snapshot_done else "snapshot not finished"
        return (
            f"capture: slot {self.slot} ({running}), {snapshot}, confirmed {self.confirmed_lsn}, "
            f"{max(self.behind_bytes or 0, 0)} bytes behind {self.target_lsn}"
        )


def insert_lsn(pg: PostgresSettings) -> str:
    """A WAL position past the commit record of every transaction committed so far (the
    insert position: with asynchronous commit the write position can lie before a commit
    that has already returned)."""
    with closing(connect(pg)) as conn, conn.cursor() as cur:
        cur.execute("SELECT pg_current_wal_insert_lsn()::text")
        row = cur.fetchone()
    return str(row[0])


def capture_status(
    kafka: KafkaSettings, pg: PostgresSettings, slot: str, target_lsn: str,
    snapshot_done: bool = False,
) -> CaptureStatus:  # fmt: skip
    """``snapshot_done``: already known (a snapshot once published stays so); else read from
    capture's checkpoint."""
    with closing(connect(pg)) as conn, conn.cursor() as cur:
        cur.execute(
            "SELECT active, confirmed_flush_lsn::text, "
            "pg_wal_lsn_diff(%s::pg_lsn, confirmed_flush_lsn)::bigint "
            "FROM pg_replication_slots WHERE slot_name = %s AND database = current_database()",
            (target_lsn, slot),
        )
        row = cur.fetchone()
    if row is not None and not snapshot_done:
        state = checkpoint.load(kafka, slot)
        snapshot_done = bool(state and state.snapshot_done)
    return CaptureStatus(
        slot=slot, slot_exists=row is not None, active=bool(row and row[0]),
        snapshot_done=snapshot_done and row is not None, confirmed_lsn=row[1] if row else None,
        target_lsn=target_lsn, behind_bytes=None if row is None or row[2] is None else int(row[2]),
    )  # fmt: skip


def wait_caught_up(
    kafka: KafkaSettings, pg: PostgresSettings, slot: str, timeout: float,
    on_poll: Callable[[CaptureStatus], None] = lambda _: None,
) -> CaptureStatus:  # fmt: skip
    """Wait until capture has published its snapshot and confirmed every transaction
    committed before this call; CaptureBehindError after ``timeout`` seconds."""
    target = insert_lsn(pg)
    deadline, snapshot_done = time.monotonic() + timeout, False
    while True:
        status = capture_status(kafka, pg, slot, target, snapshot_done)
        snapshot_done = status.snapshot_done
        on_poll(status)
        if status.caught_up:
            return status
        if time.monotonic() > deadline:
            where = status.line().removeprefix("capture: ")
            raise CaptureBehindError(f"capture has not caught up after {timeout:g}s: {where}")
        time.sleep(0.5)
