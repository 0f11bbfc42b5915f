"""The source's rate budget: rows per second and queries at once, shared by every bulk reader.

Capture is the only stage that reads the source, and its bulk reads (snapshot chunks, the
rows of a tenant table added while streaming) all go through one ``SourceBudget``:

- **queries at once** (``capture.source_max_queries``): a semaphore held for the duration of
  each read query, and of each statement around the reads (a worker's snapshot import and
  its rollback), so however many snapshot workers there are, at most that many of their
  statements run on the source at the same time;
- **rows per second** (``capture.snapshot_rate``): a read reserves the rows it asks for (its
  ``LIMIT``) when it starts, and the next read may start only once those rows have had
  their time (``rows / rate``). Back-to-back reads therefore run at the rate; an idle spell
  earns no credit, so a burst is never more than one read. With a rate, one query asks for
  at most one second's worth of rows (``chunk_rows``), so no single query is a spike either.
  A short last chunk is charged as a full one: the budget errs on the source's side.

A budget set far too low still makes progress: every query reads at least one row and every
wait is finite (``rows / rate`` seconds). Waits are sliced so the process's liveness probe
(``HEALTH.beat``) keeps being told it is waiting on purpose.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from sluiceway.common.health import HEALTH

WAIT_SLICE_S = 1.0  # longest single sleep, so a long wait still beats the liveness probe


class SourceBudget:
    """Rows/s and concurrent-query limits for the reads of one process (thread-safe)."""

    def __init__(
        self,
        rows_per_s: float,
        max_queries: int,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
        on_wait: Callable[[], None] = HEALTH.beat,
    ) -> None:
        if rows_per_s < 0 or max_queries < 1:
            raise ValueError(
                f"rows_per_s {rows_per_s} must be >= 0, max_queries {max_queries} >= 1"
            )
        self.rows_per_s = rows_per_s
        self.max_queries = max_queries
        self.clock, self.sleep, self.on_wait = clock, sleep, on_wait
        self._slots = threading.BoundedSemaphore(max_queries)
        self._lock = threading.Lock()
        self._free_at = clock()  # when the next read may start (the rows/s budget)
        self.in_flight = 0
        self.peak = 0  # most queries seen at once: what the limit held
        self.reserved = 0  # rows asked for, in all
        self.waited_s = 0.0

    def chunk_rows(self, wanted: int) -> int:
        """Rows one query may ask for: ``wanted``, but at most one second of the budget."""
        if self.rows_per_s <= 0:
            return wanted
        return max(1, min(wanted, int(self.rows_per_s)))

    @contextmanager
    def query(self, rows: int) -> Iterator[None]:
        """Around one read query asking for up to ``rows`` rows: waits for the rows/s budget,
        then for a query slot, which is held until the block ends."""
        self._reserve(rows)  # before taking a slot: a paced reader holds none while it waits
        with self.statement():
            yield

    @contextmanager
    def statement(self) -> Iterator[None]:
        """Around a statement that reads no rows (a worker's ``SET TRANSACTION SNAPSHOT``, its
        ``ROLLBACK``): it takes a query slot, so the limit counts every statement the bulk
        readers have on the server, not only their reads, but it costs no rows/s budget."""
        with self._slots:
            self._enter()
            try:
                yield
            finally:
                with self._lock:
                    self.in_flight -= 1

    def _reserve(self, rows: int) -> None:
        while True:
            with self._lock:
                now = self.clock()
                delay = self._free_at - now
                if delay <= 0 or self.rows_per_s <= 0:
                    self.reserved += rows
                    if self.rows_per_s > 0:
                        self._free_at = now + rows / self.rows_per_s
                    return
            self.on_wait()
            pause = min(delay, WAIT_SLICE_S)
            self.sleep(pause)
            self.waited_s += pause

    def _enter(self) -> None:
        with self._lock:
            self.in_flight += 1
            self.peak = max(self.peak, self.in_flight)
