"""Settings the control API keeps between restarts, on compacted Kafka control topics.

One key per setting with a JSON value, so a restarted ``sluiceway serve`` finds its config
again and several servers pointed at the same Kafka share it. A deleted setting is a
tombstone, which compaction eventually drops.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Protocol

from pydantic_core import PydanticCustomError

from sluiceway.common import control_topics as control
from sluiceway.common.errors import ConfigError, StackDownError
from sluiceway.common.kafka_io import ensure_topics, producer, read_control
from sluiceway.common.settings import KafkaSettings
from sluiceway.common.spec_fields import check_destination

# Keys of the "config" store.
TENANTS = "tenants"
EXPORT_PATH = "export-path"
OPT_OUT = "optout"


class KeyValueStore(Protocol):
    """What the API needs from a store: every value, and writes that the next load sees."""

    def load_all(self) -> dict[str, Any]: ...

    def put(self, key: str, value: Any) -> None: ...

    def delete(self, key: str) -> None: ...


class KafkaStore:
    """A JSON value per key on ``KafkaSettings.control_topic(name)`` (one partition, compacted)."""

    def __init__(self, kafka: KafkaSettings, name: str) -> None:
        self.kafka = kafka
        self.name = name
        self.topic = kafka.control_topic(name)
        self._ready = False

    def load_all(self) -> dict[str, Any]:
        # A request waits on this: fail within seconds, not librdkafka's 30, when Kafka is away.
        raw = read_control(self.kafka, self.name, timeout=10.0)
        return control.decode_each(self.name, raw, control.json_value)

    def put(self, key: str, value: Any) -> None:
        self._write(key, json.dumps(value, sort_keys=True).encode())

    def delete(self, key: str) -> None:
        self._write(key, None)

    def _write(self, key: str, value: bytes | None) -> None:
        if not self._ready:
            ensure_topics(self.kafka, [self.topic], 1, control.CONTROL_TOPIC_CONFIG)
            self._ready = True
        prod = producer(self.kafka, **{"linger.ms": 0})
        prod.produce(self.topic, key=key.encode(), value=value)
        # Flushed before we answer: the next load (here or on another server) must see it.
        if prod.flush(30) != 0:
            raise StackDownError(f"could not write {key!r} to {self.topic}")


class MemoryStore:
    """The same contract in memory: for tests and for tools that need no persistence."""

    def __init__(self, initial: Mapping[str, Any] | None = None) -> None:
        self._values: dict[str, Any] = dict(initial or {})
        self._lock = threading.Lock()

    def load_all(self) -> dict[str, Any]:
        with self._lock:
            return json.loads(json.dumps(self._values))

    def put(self, key: str, value: Any) -> None:
        with self._lock:
            self._values[key] = json.loads(json.dumps(value))

    def delete(self, key: str) -> None:
        with self._lock:
            self._values.pop(key, None)


def normal_export_path(path: str) -> str:
    """The export path as stored: a RunSpec destination whose local form is absolute.

    Absolute because the server's working directory is an accident of how it was started.
    """
    try:
        normal = check_destination(path)
    except PydanticCustomError as exc:
        raise ConfigError(f"export path {path!r}: {exc.message()}") from None
    if not normal.startswith("s3://") and not Path(normal).is_absolute():
        raise ConfigError(
            f"export path {path!r} is relative; give an absolute directory or s3://bucket/prefix"
        )
    return normal


def datapipeline_spec(config: Mapping[str, Any], run_type: str = "full") -> dict[str, Any]:
    """The run spec (as JSON data) a Data pipeline export of the stored config asks for."""
    tenants = list(config.get(TENANTS) or [])
    path = config.get(EXPORT_PATH)
    missing = [what for what, value in (("tenants", tenants), ("export path", path)) if not value]
    if missing:
        raise ConfigError(
            f"no {' and no '.join(missing)} configured; set them with PUT "
            "/rest/datapipeline/latest/config/tenants and /config/export-path"
        )
    return {
        "tenants": tenants,
        "destination": path,
        "opt_out": list(config.get(OPT_OUT) or []),
        "type": run_type,
    }
