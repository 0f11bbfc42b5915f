"""A chunk whose send fails is an error only while the worker still holds its partition.

A rebalance (or the worker's own stop) takes a partition and closes its transaction
producer, so the chunk being sent then fails: nothing went wrong, the next owner goes on
from the commits, and operators must not read an error. A send that fails while the
partition is still held is an error naming the partition, and the worker's next check
reads the partition again.
"""

from __future__ import annotations

import asyncio
import logging

import pytest

from sluiceway.processors import full_pass
from sluiceway.processors.chunks import Records
from sluiceway.processors.ownership import PartitionState
from tests.unit.test_processor_latest import TENANTS, FakeReader, FlakyHost
from tests.unit.test_processor_scan import PARTITIONS, TOPICS, random_records, run_of


class ClosingHost(FlakyHost):
    """Every send fails; with ``takes`` the partition is revoked just before."""

    def __init__(self, states: dict[int, PartitionState], takes: bool) -> None:
        super().__init__(states, 0)
        self.takes = takes

    async def forward_chunk(
        self, state: PartitionState, topic: str, partition: int, records: Records,
        read: int, low: int | None,
    ) -> None:  # fmt: skip
        if self.takes:
            self.states.pop(partition, None)
        raise RuntimeError("ProducerClosed")


def run_one_pass(takes: bool) -> full_pass.FullPass:
    records, cuts = random_records(1)
    states = {}
    for p in range(PARTITIONS):
        states[p] = PartitionState(next=dict.fromkeys(TOPICS, 0), dead_letters=0, marked=False)
        states[p].low = {t: cuts[(t, p)] for t in TOPICS}
    host = ClosingHost(states, takes)
    passing = full_pass.FullPass(
        run_of(TENANTS, cuts), list(TOPICS), 100, host, FakeReader(records)
    )

    async def once() -> None:
        passing.drive(sorted(states))
        await asyncio.gather(*passing.tasks.values(), return_exceptions=True)
        await asyncio.sleep(0)  # the done callbacks run

    asyncio.run(once())
    passing.close()
    return passing


def test_a_partition_taken_mid_chunk_is_left_without_an_error(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.INFO, logger="sluiceway.processor"):
        passing = run_one_pass(takes=True)
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR], caplog.text
    moved = [r.getMessage() for r in caplog.records if "moved away" in r.getMessage()]
    assert sorted(moved) == [
        f"partition {p} moved away while a chunk was sent; left to it" for p in range(PARTITIONS)
    ]
    assert all(t.exception() is None for t in passing.tasks.values())
    assert not passing.keys_of  # the next owner rebuilds from the commits


def test_a_send_failing_on_a_held_partition_is_an_error_naming_it(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.INFO, logger="sluiceway.processor"):
        passing = run_one_pass(takes=False)
    errors = sorted(r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR)
    assert errors == [
        f"reading partition {p} failed; starting it again: ProducerClosed"
        for p in range(PARTITIONS)
    ]
    assert all(isinstance(t.exception(), RuntimeError) for t in passing.tasks.values())
    assert not passing.keys_of
