"""Entity schema versions on the compacted control topic ``schemas``, keyed by fingerprint.

An entity's source table may change while capture runs (a column added, dropped or
widened). Capture then writes that entity's events with a new envelope, derived from the
catalog's with the table's live columns, and registers it here *before* it produces the
first event written with it. A value names its writer schema by fingerprint (the
single-object header, ``sluiceway.common.codec``), so a reader that meets a fingerprint
it does not know reads this topic once more and finds it there. Records are never
rewritten: a fingerprint names one schema forever, so the topic only grows by the number
of schema changes.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Iterable
from typing import Any

from sluiceway.common import control_topics as control
from sluiceway.common.codec import (
    HEADER_LEN,
    Codec,
    Event,
    EventSchema,
    event_schema_from,
    plain_schema,
)
from sluiceway.common.errors import StackDownError
from sluiceway.common.kafka_io import ensure_topics, producer, read_control
from sluiceway.common.settings import KafkaSettings

log = logging.getLogger("sluiceway.common.schema_registry")
SCHEMAS = "schemas"
# A fingerprint looked up in vain is looked up again only after this long: a corrupt value
# repeated many times must not re-read the topic for each copy.
MISS_RETRY_S = 5.0


def fingerprint_hex(schema: EventSchema) -> str:
    return schema.header[2:].hex()


def schema_value(schema: EventSchema) -> bytes:
    """The record of one schema version: its entity and the envelope as JSON."""
    return json.dumps({"entity": schema.entity, "schema": plain_schema(schema.parsed)}).encode()


def parse_value(data: bytes) -> EventSchema:
    """A record of the topic as an EventSchema; ControlRecordError when it is not one."""
    raw = control.json_object(data)
    entity, schema = raw.get("entity"), raw.get("schema")
    if not isinstance(entity, str) or not isinstance(schema, dict):
        raise control.ControlRecordError("not a schema version (needs entity and schema)")
    try:
        return event_schema_from(entity, schema)
    except Exception as exc:  # fastavro raises many types for a schema it cannot parse
        raise control.ControlRecordError(f"not an Avro schema ({exc})") from None


def register(kafka: KafkaSettings, schemas: Iterable[EventSchema], timeout: float = 30.0) -> None:
    """Put ``schemas`` on the topic and wait until Kafka has them; raises StackDownError
    when it does not take them (the events written with them must not go first)."""
    topic = kafka.control_topic(SCHEMAS)
    ensure_topics(kafka, [topic], 1, control.CONTROL_TOPIC_CONFIG)
    prod = producer(kafka, **{"linger.ms": 0})
    for schema in schemas:
        prod.produce(topic, key=fingerprint_hex(schema).encode(), value=schema_value(schema))
    if prod.flush(timeout) != 0:
        raise StackDownError(f"could not register schema versions on {topic} in {timeout:.0f}s")


def registered(kafka: KafkaSettings, timeout: float = 30.0) -> list[EventSchema]:
    """Every readable schema version on the topic (none when it does not exist yet)."""
    raw = read_control(kafka, SCHEMAS, timeout)
    return list(control.decode_each(SCHEMAS, raw, parse_value).values())


Loader = Callable[[], Iterable[EventSchema]]


class EvolvingCodec(Codec):
    """A codec that, meeting a fingerprint it does not know, loads the registered schema
    versions (``load``) and reads the value with its own writer schema."""

    def __init__(self, base: Codec, load: Loader) -> None:
        self.__dict__.update(base.__dict__)
        self._load = load
        self._missed: dict[bytes, float] = {}
        self.learned: list[EventSchema] = []
        """Schemas learned from the registry, in the order they were learned."""

    def _learn(self, header: bytes) -> None:
        if len(header) < HEADER_LEN or header in self._by_header:
            return
        now = time.monotonic()
        if now - self._missed.get(header, -MISS_RETRY_S) < MISS_RETRY_S:
            return
        new = [s for s in self._load() if s.header not in self._by_header]
        self._by_header = {**self._by_header, **{s.header: s for s in new}}
        self.learned += new
        if header not in self._by_header:
            self._missed[header] = now
        for schema in new:
            log.info("learned schema version %s of %s", fingerprint_hex(schema), schema.entity)

    def schema_of(self, data: bytes) -> EventSchema | None:
        self._learn(bytes(data[:HEADER_LEN]))
        return super().schema_of(data)

    def decode(self, data: bytes | None) -> Event:
        if data:
            self._learn(bytes(data[:HEADER_LEN]))
        return super().decode(data)


def evolving(codec: Codec, kafka: KafkaSettings) -> EvolvingCodec:
    """``codec``, resolving unknown fingerprints from the topic on ``kafka``."""
    return EvolvingCodec(codec, lambda: registered(kafka))


def versions_of(schemas: Iterable[EventSchema], entity: str) -> list[EventSchema]:
    return [s for s in schemas if s.entity == entity]


def field_names(schema: EventSchema) -> tuple[str, ...]:
    fields: list[dict[str, Any]] = schema.record["fields"]
    return tuple(f["name"] for f in fields)
