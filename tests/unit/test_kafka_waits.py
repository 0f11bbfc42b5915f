"""Short reads return with their first record; admin clients are shared within a block.

Pure units: a fake consumer records what it was asked; no broker is contacted (an
AdminClient connects lazily, on its first request).
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest

from sluiceway.common import kafka_io
from sluiceway.common.settings import KafkaSettings
from sluiceway.sinks import consume as sink_consume


class FakeConsumer:
    """poll() hands out ``first`` once; consume() hands out ``rest`` (what was buffered)."""

    def __init__(self, first: Any = None, rest: list[Any] | None = None) -> None:
        self.first, self.rest = first, list(rest or [])
        self.calls: list[tuple[str, int | None, float]] = []

    def poll(self, timeout: float) -> Any:
        self.calls.append(("poll", None, timeout))
        first, self.first = self.first, None
        return first

    def consume(self, num: int, timeout: float) -> list[Any]:
        self.calls.append(("consume", num, timeout))
        out, self.rest = self.rest[:num], self.rest[num:]
        return out


def test_ready_returns_nothing_after_waiting_when_no_record_comes() -> None:
    reader = FakeConsumer()
    assert kafka_io.ready(reader, 500, wait=0.05) == []  # type: ignore[arg-type]
    assert reader.calls == [("poll", None, 0.05)]


def test_ready_takes_what_is_buffered_without_waiting_once_the_first_came() -> None:
    reader = FakeConsumer(first="a", rest=["b", "c"])
    assert kafka_io.ready(reader, 500, wait=0.05) == ["a", "b", "c"]  # type: ignore[arg-type]
    assert reader.calls[1] == ("consume", 499, 0)


def test_ready_of_one_record_asks_for_no_more() -> None:
    reader = FakeConsumer(first="a", rest=["b"])
    assert kafka_io.ready(reader, 1, wait=0.05) == ["a"]  # type: ignore[arg-type]
    assert [c[0] for c in reader.calls] == ["poll"]


def _sink_poll(monkeypatch: pytest.MonkeyPatch, consumer: FakeConsumer, batch: int) -> list[Any]:
    handled: list[Any] = []

    def handle_batch(_reader: Any, messages: list[Any]) -> int:
        handled.extend(messages)
        return 0

    monkeypatch.setattr(sink_consume, "handle_batch", handle_batch)
    reader = SimpleNamespace(consumer=consumer, writer=SimpleNamespace(tick=lambda: 0))
    sink_consume.poll(reader, batch, timeout_s=1.0)  # type: ignore[arg-type]
    return handled


def test_idle_sink_wakes_at_the_first_record_then_waits_only_briefly_for_more(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    consumer = FakeConsumer(first="m1")
    # the first short consume finds nothing; after the poll, the rest of the batch arrives
    consumer.consume = _after_first_call(consumer.consume, ["m2", "m3"], consumer)  # type: ignore[method-assign]
    handled = _sink_poll(monkeypatch, consumer, batch=2000)
    assert handled == ["m1", "m2", "m3"]
    wait = sink_consume.FLOWING_WAIT_S
    assert consumer.calls == [
        ("consume", 2000, wait), ("poll", None, 1.0), ("consume", 1999, wait),
    ]  # fmt: skip


def test_idle_sink_with_nothing_arriving_hands_over_nothing(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    consumer = FakeConsumer()
    assert _sink_poll(monkeypatch, consumer, batch=2000) == []
    assert [c[0] for c in consumer.calls] == ["consume", "poll"]


def test_sink_with_one_message_batches_asks_for_no_more(monkeypatch: pytest.MonkeyPatch) -> None:
    consumer = FakeConsumer(first="m1")
    assert _sink_poll(monkeypatch, consumer, batch=1) == ["m1"]
    assert [c[0] for c in consumer.calls] == ["consume", "poll"]


def _after_first_call(consume: Any, later: list[Any], fake: FakeConsumer) -> Any:
    def wrapped(num: int, timeout: float) -> list[Any]:
        if fake.calls:  # not the first call: the records arrived meanwhile
            fake.rest.extend(later)
            later.clear()
        return list(consume(num, timeout))

    return wrapped


def test_admin_clients_are_shared_within_a_block_only_and_never_with_overrides() -> None:
    a = KafkaSettings(host="127.0.0.1", port=19999)
    b = KafkaSettings(host="127.0.0.1", port=19998)
    assert kafka_io.admin(a) is not kafka_io.admin(a)  # outside a block: a new one each time
    with kafka_io.shared_admins():
        first = kafka_io.admin(a)
        assert kafka_io.admin(a) is first
        assert kafka_io.admin(b) is not first
        assert kafka_io.admin(a, **{"socket.timeout.ms": 1000}) is not first
        with kafka_io.shared_admins():  # nested: still the outer block's clients
            assert kafka_io.admin(a) is first
    with kafka_io.shared_admins():
        assert kafka_io.admin(a) is not first  # a new block starts afresh
