"""Whether the whole group has ended a run: every run partition's end marker committed,
by whichever worker held it (processors/ownership.py keeps ``end`` in the commits' metadata).

A worker that has ended all its own partitions asks the group's commits, at most every
GROUP_CHECK_S, and says once every WAIT_NOTE_S why it is still waiting.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence

from sluiceway.common.errors import TransientError
from sluiceway.common.runs import RunRecord
from sluiceway.processors.ownership import GroupOffsets

log = logging.getLogger("sluiceway.processor")
GROUP_CHECK_S = 1.0
WAIT_NOTE_S = 30.0  # how often a worker with nothing left says it still waits for the group


class GroupEnd:
    """Asks the run's group whether every partition has ended."""

    def __init__(self, group: GroupOffsets, run: RunRecord, topics: Sequence[str]) -> None:
        self.group, self.run, self.topics = group, run, list(topics)
        self.checked_at = 0.0
        self.waiting_since: float | None = None  # since when this worker waits for the others

    def ask_soon(self) -> None:
        """A partition just ended, perhaps the last one: the next check asks at once."""
        self.checked_at = 0.0

    async def all_ended(self, ended: set[int], revoked: set[int]) -> bool:
        """Whether the group has ended every partition; False until it is time to ask again.
        ``ended`` and ``revoked``: this worker's, for the line that explains a wait."""
        now = time.monotonic()
        if now - self.checked_at < GROUP_CHECK_S:
            return False
        self.checked_at = now
        if await self._committed_ends():
            return True
        if self.waiting_since is None:
            self.waiting_since = now
        elif now - self.waiting_since > WAIT_NOTE_S:
            self.waiting_since = now  # one line every WAIT_NOTE_S, to explain a wait
            log.warning(
                "run %s: this worker ended partitions %s; waiting for the others (revoked %s)",
                self.run.etl_id, sorted(ended), sorted(revoked),
            )  # fmt: skip
        return False

    async def _committed_ends(self) -> bool:
        tps = [(t, p) for p in range(self.run.run_partitions) for t in self.topics]
        loop = asyncio.get_running_loop()
        try:
            committed = await loop.run_in_executor(None, self.group.committed, tps)
        except TransientError as exc:
            log.warning("%s; asking again", exc)
            return False
        return all(c.end for c in committed)
