"""Which project keys the source has, for the opt-out list's "not found" check.

Read from the project change topic, which holds every project's row: projects are few,
so one pass over it is quick.
"""

from __future__ import annotations

import secrets

from confluent_kafka import Message

from sluiceway.common.codec import Codec
from sluiceway.common.entities import active_catalog
from sluiceway.common.errors import ConfigError, InvalidEventError
from sluiceway.common.kafka_io import partition_count, watermarks
from sluiceway.common.settings import KafkaSettings
from sluiceway.processors.scan import scan


def project_keys(kafka: KafkaSettings, timeout_s: float = 60.0) -> set[str]:
    """Keys of the projects capture has seen (also deleted ones: a key is never reused):
    the values of the catalog's ``opt_out`` field."""
    rule = active_catalog().opt_out
    if rule is None:
        return set()
    topic, field = kafka.cdc_topic(rule.entity), rule.field
    try:
        count = partition_count(kafka, topic)
    except ConfigError:
        return set()  # capture has not run: no project is known yet
    marks = watermarks(kafka, topic, range(count))
    ranges = {(topic, p): (low, high) for p, (low, high) in marks.items()}
    codec, found = Codec(), set()

    def visit(msg: Message) -> None:
        try:
            event = codec.decode(msg.value())
        except InvalidEventError:
            return
        row = event["after"]  # a delete carries no row; its key was seen when it was made
        if row is not None and row.get(field):
            found.add(str(row[field]))

    scan(kafka, f"sw-optout-keys-{secrets.token_hex(4)}", ranges, visit, timeout_s)
    return found
