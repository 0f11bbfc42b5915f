"""One run at a time per destination, decided by Kafka's transactional fencing.

Two starters that both read "no run at this destination" and then both announce would each
start a run. So every starter of a run at a destination first opens a transactional producer
whose id is derived from the destination, and only then checks the registry. Opening it
(``init_transactions``) fences any starter that opened it earlier and has not committed yet:
that one's commit fails. The run record goes onto the runs control topic inside the
transaction, so of starters that race exactly one commits, and a starter that opens after a
commit reads the committed run and finds the destination busy. A starter that dies midway
leaves no record: its transaction is aborted when the next starter opens, or after
``TXN_TIMEOUT_MS``.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
from collections.abc import Callable
from types import TracebackType

from confluent_kafka import KafkaError, KafkaException

from sluiceway.common.control_topics import CONTROL_TOPIC_CONFIG
from sluiceway.common.errors import StackDownError, TransientError
from sluiceway.common.kafka_io import ensure_topics, producer
from sluiceway.common.runs import RunRecord
from sluiceway.common.settings import KafkaSettings

# The record is produced just before the commit, so a transaction is open on the runs topic
# for milliseconds; this bounds how long a starter that died right there holds readers back.
TXN_TIMEOUT_MS = 10_000
# Losing the claim is an answer, not a fault: librdkafka's fatal-error lines about it would
# print above the one-line "busy" error.
CLAIM_LOG = logging.getLogger("sluiceway.kafka.client.claim")
CLAIM_LOG.addFilter(lambda record: "fenced" not in record.getMessage().lower())
FENCED = {KafkaError._FENCED, KafkaError.PRODUCER_FENCED, KafkaError.INVALID_PRODUCER_EPOCH}


class ClaimLost(TransientError):
    """Another starter of the same destination opened its claim after this one."""


def transactional_id(kafka: KafkaSettings, destination: str) -> str:
    digest = hashlib.sha256(destination.encode()).hexdigest()[:32]
    return f"{kafka.topic_prefix}claim.{digest}"


class DestinationClaim:
    """The right to publish a run at ``destination``: held until ``commit`` or ``close``."""

    def __init__(self, kafka: KafkaSettings, destination: str, timeout: float = 30.0) -> None:
        self.topic = kafka.control_topic("runs")
        self.destination, self.timeout = destination, timeout
        ensure_topics(kafka, [self.topic], 1, CONTROL_TOPIC_CONFIG)
        self._producer = producer(
            kafka,
            **{
                "transactional.id": transactional_id(kafka, destination),
                "transaction.timeout.ms": TXN_TIMEOUT_MS,
                "linger.ms": 0,
                "logger": CLAIM_LOG,
            },
        )
        self._call(lambda: self._producer.init_transactions(timeout), "open")
        self._call(self._producer.begin_transaction, "open")
        self._open = True

    def publish(self, record: RunRecord) -> None:
        """Add the run record to the transaction; it is visible once ``commit`` returns."""
        self._producer.produce(self.topic, key=record.etl_id.encode(), value=record.to_json())

    def commit(self) -> None:
        """Raises ClaimLost when another starter of the destination opened meanwhile."""
        self._call(lambda: self._producer.commit_transaction(self.timeout), "commit")
        self._open = False

    def close(self) -> None:
        """Abort what was not committed; nothing published becomes visible."""
        if not self._open:
            return
        self._open = False
        with contextlib.suppress(KafkaException):  # fenced or gone: the broker aborts it
            self._producer.abort_transaction(self.timeout)

    def __enter__(self) -> DestinationClaim:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def _call(self, step: Callable[[], object], what: str) -> None:
        try:
            step()
        except KafkaException as exc:
            error = exc.args[0]
            if error.code() in FENCED:
                raise ClaimLost("another run was started there at the same moment") from exc
            raise StackDownError(
                f"could not {what} the claim on destination {self.destination}: {error.str()}"
            ) from exc
