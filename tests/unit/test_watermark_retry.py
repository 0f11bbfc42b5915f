"""watermark_offsets asks again while the client's metadata lags the cluster's."""

from __future__ import annotations

import pytest
from confluent_kafka import KafkaError, KafkaException, TopicPartition

from sluiceway.common.kafka_io import watermark_offsets


class _Lagging:
    """A consumer whose metadata learns of the partition after ``misses`` asks."""

    def __init__(self, misses: int, code: int) -> None:
        self.misses, self.code, self.asked = misses, code, 0

    def get_watermark_offsets(self, tp: TopicPartition, timeout: float) -> tuple[int, int]:
        self.asked += 1
        if self.asked <= self.misses:
            raise KafkaException(KafkaError(self.code))
        return 3, 9


@pytest.mark.parametrize("code", [KafkaError._UNKNOWN_PARTITION, KafkaError._UNKNOWN_TOPIC])
def test_a_partition_the_client_does_not_know_yet_is_asked_again(code: int) -> None:
    reader = _Lagging(misses=2, code=code)
    assert watermark_offsets(reader, TopicPartition("t", 0), timeout=10) == (3, 9)  # type: ignore[arg-type]
    assert reader.asked == 3


def test_a_partition_that_never_appears_fails_after_the_timeout() -> None:
    reader = _Lagging(misses=10**6, code=KafkaError._UNKNOWN_PARTITION)
    with pytest.raises(KafkaException, match="Unknown partition"):
        watermark_offsets(reader, TopicPartition("t", 0), timeout=1)  # type: ignore[arg-type]
    assert reader.asked >= 2


def test_an_error_that_will_not_go_away_is_not_asked_again() -> None:
    reader = _Lagging(misses=1, code=KafkaError.TOPIC_AUTHORIZATION_FAILED)
    with pytest.raises(KafkaException):
        watermark_offsets(reader, TopicPartition("t", 0), timeout=10)  # type: ignore[arg-type]
    assert reader.asked == 1
