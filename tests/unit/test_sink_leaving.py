"""A sink leaving its run's group (sinks/membership.py): partitions a last rebalance assigns
while its consumer closes are not taken over.

A CI-like run saw a sink stopped with SIGTERM get partitions assigned during
``consumer.close()``; taking them over read their commits, which timed out as the consumer
closed, and the sink exited 4 instead of 0."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from confluent_kafka import TopicPartition

from sluiceway.sinks.membership import Rebalancer


class ClosingConsumer:
    """A consumer in close(): asking it anything fails as the real one timed out."""

    def committed(self, *_args: Any, **_kwargs: Any) -> Any:
        raise AssertionError("a leaving sink asked for committed offsets")


def test_partitions_assigned_while_leaving_are_not_taken_over() -> None:
    taken: list[int] = []
    tracker = SimpleNamespace(take_over=lambda p, _c: taken.append(p), ended=set())
    reader = SimpleNamespace(topic="run", leaving=True, tracker=tracker, commits={})
    rebalancer = Rebalancer(reader, lake=None)  # type: ignore[arg-type]
    rebalancer.on_assign(ClosingConsumer(), [TopicPartition("run", p) for p in (0, 1, 2)])
    assert taken == [] and reader.commits == {}


def test_a_sink_not_leaving_takes_its_partitions_over() -> None:
    reader = SimpleNamespace(topic="run", leaving=False, tracker=None, commits={})
    rebalancer = Rebalancer(reader, lake=None)  # type: ignore[arg-type]
    try:
        rebalancer.on_assign(ClosingConsumer(), [TopicPartition("run", 0)])
    except AssertionError as asked:
        assert "committed offsets" in str(asked)
    else:
        raise AssertionError("on_assign did not read the commits of its new partitions")
