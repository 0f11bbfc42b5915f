"""Announcing tenants on ``sw.control.tenants`` the first time capture sees them.

Exports check requested tenants against this topic, so they never read the source again.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field

from confluent_kafka import KafkaError, Message, Producer

from sluiceway.common.kafka_io import known_tenants
from sluiceway.common.settings import KafkaSettings
from sluiceway.producers import metrics

log = logging.getLogger("sluiceway.capture")


def _delivered(err: KafkaError | None, _msg: Message) -> None:
    if err is not None:
        metrics.PRODUCE_ERRORS.inc()
        log.error("could not announce a tenant: %s", err.str())


@dataclass
class Tenants:
    topic: str
    seen: set[str] = field(default_factory=set)

    @classmethod
    def load(cls, kafka: KafkaSettings) -> Tenants:
        return cls(kafka.control_topic("tenants"), known_tenants(kafka))

    def observe(self, prod: Producer, tenant: str) -> None:
        if tenant in self.seen:
            return
        self.seen.add(tenant)
        value = json.dumps({"tenant_id": tenant}).encode()
        prod.produce(self.topic, key=tenant.encode(), value=value, on_delivery=_delivered)
