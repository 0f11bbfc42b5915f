"""A partition's transaction as the run's worker uses it, with faust's producer faked."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

import pytest
from aiokafka.errors import ProducerFenced

from sluiceway.processors.transactions import Transactions

TOPICS = ["t.issue", "t.comment"]


class FakeAio:
    """The aiokafka producer of one transaction: records what it was asked to do."""

    def __init__(self) -> None:
        self.calls: list[str] = []

    async def send_offsets_to_transaction(self, offsets: Any, group: str) -> None:
        self.calls.append(f"offsets {sorted(o.offset for o in offsets.values())} {group}")

    async def commit_transaction(self) -> None:
        self.calls.append("commit")

    async def begin_transaction(self) -> None:
        self.calls.append("begin")


def app_with(producers: dict[str, FakeAio]) -> Any:
    """A faust app whose producer holds these transactions' producers (by id)."""

    async def stop_transaction(tid: str) -> None:  # what faust's does, without a broker
        producers.pop(tid, None)

    producer = SimpleNamespace(
        _transaction_producers=producers,
        _trn_locks={tid: asyncio.Lock() for tid in ("app-0-1", *producers)},
        stop_transaction=stop_transaction,
    )
    assignor = SimpleNamespace(group_for_topic=lambda _topic: 0)
    return SimpleNamespace(producer=producer, assignor=assignor, conf=SimpleNamespace(id="app"))


def test_a_commit_goes_into_the_partitions_own_transaction() -> None:
    aio = FakeAio()
    txn = Transactions(app_with({"app-0-1": aio}), TOPICS, exactly_once=True)
    asyncio.run(txn.commit(1, {"t.issue": 5, "t.comment": 9}, {"t.issue": "{}", "t.comment": "{}"}))
    assert aio.calls == ["offsets [5, 9] app", "commit", "begin"]


def test_a_partition_whose_producer_faust_dropped_is_not_ours_to_send_or_commit() -> None:
    # faust drops the producer when the partition moves or a newer producer fenced it; its
    # own send and commit then only log a warning, so the worker would count a batch whose
    # outputs never went out, or a commit that never happened, as done
    txn = Transactions(app_with({}), TOPICS, exactly_once=True)
    with pytest.raises(ProducerFenced):
        asyncio.run(txn.send_many("run", 1, [(b"k", b"v")]))
    with pytest.raises(ProducerFenced):
        asyncio.run(
            txn.commit(1, {"t.issue": 5, "t.comment": 9}, {"t.issue": "{}", "t.comment": "{}"})
        )
    with pytest.raises(ProducerFenced):
        asyncio.run(txn.send("run", 1, None, b"marker", [], 1))


def test_producers_of_partitions_gone_elsewhere_are_dropped() -> None:
    # faust sometimes keeps them; reused when the partition comes back, they are fenced
    producers = {t: FakeAio() for t in ("app-0-0", "app-0-1", "app-0-2", "app-1-0", "other-0-1")}
    txn = Transactions(app_with(producers), TOPICS, exactly_once=True)
    asyncio.run(txn.drop_all_but({1}))
    # another topic group's (faust's own) and another app's transactions are not the run's
    assert sorted(producers) == ["app-0-1", "app-1-0", "other-0-1"]
    asyncio.run(txn.drop(1))
    assert sorted(producers) == ["app-1-0", "other-0-1"]
