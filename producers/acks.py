"""Which source position capture may confirm to PostgreSQL (pure bookkeeping).

The slot's confirmed position may only pass a transaction once Kafka has acknowledged every
event of it and of every transaction before it; otherwise a crash would lose events.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass


@dataclass
class PendingTxn:
    commit_lsn: int
    remaining: int


class AckTracker:
    def __init__(self, confirmed: int) -> None:
        self.confirmed = confirmed
        self.queue: deque[PendingTxn] = deque()
        self.heartbeat = confirmed
        self.error: str | None = None

    def add(self, commit_lsn: int, events: int) -> PendingTxn:
        txn = PendingTxn(commit_lsn, events)
        self.queue.append(txn)
        return txn

    def acked(self, txn: PendingTxn, error: str | None = None) -> None:
        if error is not None:
            self.error = self.error or error
            return
        txn.remaining -= 1

    def saw_heartbeat(self, lsn: int) -> None:
        """Every commit before a heartbeat has been decoded and handed to us."""
        self.heartbeat = max(self.heartbeat, lsn)

    @property
    def in_flight(self) -> int:
        return sum(t.remaining for t in self.queue)

    def safe_lsn(self) -> int:
        while self.queue and self.queue[0].remaining <= 0:
            self.confirmed = max(self.confirmed, self.queue.popleft().commit_lsn)
        if not self.queue:
            self.confirmed = max(self.confirmed, self.heartbeat)
        return self.confirmed
