"""Small Kafka helpers shared by the stages: clients, topics, the run control topic."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any

from confluent_kafka import (
    Consumer,
    KafkaError,
    KafkaException,
    Message,
    Producer,
    TopicPartition,
)
from confluent_kafka.admin import (
    AdminClient,
    AlterConfigOpType,
    ConfigEntry,
    ConfigResource,
    NewTopic,
    ResourceType,
)

from sluiceway.common import control_topics as control
from sluiceway.common.errors import ConfigError, StackDownError
from sluiceway.common.kafka_security import confluent_security
from sluiceway.common.runs import RunRecord
from sluiceway.common.settings import KafkaSettings

# librdkafka's own log lines go through this logger; the CLI quiets it, workers keep it.
CLIENT_LOG = logging.getLogger("sluiceway.kafka.client")
PROBE_LOG = logging.getLogger("sluiceway.kafka.probe")
PROBE_LOG.addHandler(logging.NullHandler())
PROBE_LOG.propagate = False
log = logging.getLogger("sluiceway.kafka")


def client_config(kafka: KafkaSettings) -> dict[str, Any]:
    """What every confluent-kafka client Sluiceway builds starts from: where the brokers
    are and how to authenticate to them. Holds secrets: never log it."""
    return {"bootstrap.servers": kafka.servers, **confluent_security(kafka)}


# Admin clients shared within a shared_admins() block (None outside one): see admin().
_SHARED: ContextVar[dict[tuple[Any, ...], AdminClient] | None] = ContextVar(
    "sluiceway_shared_admins", default=None
)


@contextmanager
def shared_admins() -> Iterator[None]:
    """Within this block admin() hands out one client per settings. For bursts of questions
    (starting a run asks a dozen): a new client pays ~50 ms to connect before its first
    answer, more over TLS. Only for bursts: a long-lived client that lost its broker kept
    timing out where a new one, bootstrapping from every listed broker, answered at once."""
    token = _SHARED.set({}) if _SHARED.get() is None else None
    try:
        yield
    finally:
        if token is not None:
            _SHARED.reset(token)


def admin(kafka: KafkaSettings, **overrides: Any) -> AdminClient:
    """An admin client of these settings (within shared_admins(), the block's shared one
    unless ``overrides`` are given). Never asks the broker to auto-create a topic it looks
    up."""
    conf: dict[str, Any] = {
        **client_config(kafka), "logger": CLIENT_LOG, "allow.auto.create.topics": False,
        **overrides,
    }  # fmt: skip
    shared = _SHARED.get()
    if overrides or shared is None:
        return AdminClient(conf)
    key = _client_key(conf)
    client = shared.get(key)
    if client is None:
        client = shared[key] = AdminClient(conf)
    return client


def _client_key(conf: dict[str, Any]) -> tuple[Any, ...]:
    """Every setting; a callback by identity (the block's client keeps it alive)."""
    plain = (str, int, float, bool, type(None))
    return tuple(sorted((k, v if isinstance(v, plain) else id(v)) for k, v in conf.items()))


def broker_count(kafka: KafkaSettings, timeout: float = 30.0) -> int:
    return len(admin(kafka).list_topics(timeout=timeout).brokers)


def check_broker(kafka: KafkaSettings, timeout: float = 5.0) -> None:
    """Raise StackDownError with one line when no broker answers, ConfigError when one
    refuses the configured credentials or certificate."""
    refused, answered, last = probe(kafka, timeout)
    if refused is not None:
        raise ConfigError(refused)
    if not answered:
        raise StackDownError(
            f"Kafka at {kafka.servers} does not answer ({last}); "
            "start the stack with: sluiceway stack up"
        )


def check_credentials(kafka: KafkaSettings, timeout: float = 10.0) -> None:
    """A worker's first step: end at once, with one line, when the brokers refuse its login
    or its TLS handshake (librdkafka would retry that forever); brokers that are merely
    down are waited for as before."""
    refused, _answered, _last = probe(kafka, timeout)
    if refused is not None:
        raise ConfigError(refused)


def probe(kafka: KafkaSettings, timeout: float) -> tuple[str | None, bool, str]:
    """(why the brokers refused us, or None; whether they answered; the last error seen)."""
    errors: list[KafkaError] = []
    # its own log lines repeat what the one returned line says, once per broker and retry
    client = admin(kafka, error_cb=errors.append, logger=PROBE_LOG)
    deadline = time.monotonic() + timeout
    while True:
        try:
            client.list_topics(timeout=min(1.0, timeout))
            return None, True, ""
        except KafkaException as exc:
            errors.append(exc.args[0])
        client.poll(0)  # serves error_cb: the login and TLS failures arrive there
        refused = next((r for e in errors if (r := _refusal(kafka, e)) is not None), None)
        if refused is not None or time.monotonic() > deadline:
            return refused, False, errors[-1].str()


def _refusal(kafka: KafkaSettings, error: KafkaError) -> str | None:
    text = error.str()
    if error.code() in (KafkaError._AUTHENTICATION, KafkaError.SASL_AUTHENTICATION_FAILED):
        who = kafka.sasl_username or kafka.oauth_client_id
        return (
            f"Kafka at {kafka.servers} refused the {kafka.sasl_mechanism} login of {who!r}: "
            f"{text}; check SLUICEWAY_KAFKA_SASL_USERNAME and SLUICEWAY_KAFKA_SASL_PASSWORD"
        )
    if error.code() == KafkaError._SSL or "certificate verify failed" in text:
        return (
            f"TLS with Kafka at {kafka.servers} failed: {text}; check SLUICEWAY_KAFKA_SSL_CA "
            "(the CA that signed the brokers' certificates) and SLUICEWAY_KAFKA_SSL_CERT/_KEY"
        )
    return None


def producer(kafka: KafkaSettings, **overrides: Any) -> Producer:
    conf: dict[str, Any] = {
        **client_config(kafka),
        "logger": CLIENT_LOG,
        "enable.idempotence": True,
        "acks": "all",
        "linger.ms": 50,
        "compression.type": "lz4",
        "queue.buffering.max.messages": 500_000,
        "queue.buffering.max.kbytes": 1_048_576,
        "batch.size": 1_000_000,
    }
    conf.update(overrides)
    return Producer(conf)


def consumer(kafka: KafkaSettings, group: str, **overrides: Any) -> Consumer:
    conf: dict[str, Any] = {
        **client_config(kafka),
        "logger": CLIENT_LOG,
        "group.id": group,
        "enable.auto.commit": False,
        "auto.offset.reset": "earliest",
        "isolation.level": "read_committed",
        "fetch.max.bytes": 52_428_800,
        "queued.max.messages.kbytes": 262_144,
        # once its prefetch queue is full, librdkafka waits this long before it fetches
        # again (1 s by default): a reader with a small queue crawled at 8,000 records/s,
        # and a full run's chunks read at 65,000/s instead of 390,000/s
        "fetch.queue.backoff.ms": 5,
    }
    conf.update(overrides)
    return Consumer(conf)


def metadata_of(tp: TopicPartition) -> str | None:
    """A committed offset's metadata. confluent-kafka reads metadata committed by other
    clients (aiokafka) as a C string, past its end: random bytes after it, or a
    UnicodeDecodeError, unless the writer ended it with a NUL (callers cut there)."""
    try:
        return str(tp.metadata) if tp.metadata is not None else None
    except UnicodeDecodeError:
        return None


def ensure_topics(
    kafka: KafkaSettings,
    names: Iterable[str],
    partitions: int,
    config: dict[str, str] | None = None,
    timeout: float = 30.0,
) -> None:
    """Create missing topics, with their class's replication factor and min.insync.replicas,
    and wait until the broker lists every one of them."""
    client = admin(kafka)
    listed = client.list_topics(timeout=timeout)
    wanted = [n for n in names if n not in listed.topics]
    if wanted:
        brokers = len(listed.brokers)
        futures = client.create_topics(
            [new_topic(kafka, n, partitions, brokers, config) for n in wanted]
        )
        for name, fut in futures.items():
            try:
                fut.result(timeout)
            except KafkaException as exc:
                error = exc.args[0]
                if error.code() == 36:  # TOPIC_ALREADY_EXISTS: another worker won
                    continue
                if error.code() in (38, 39):  # INVALID_REPLICATION_FACTOR / _CONFIG
                    raise ConfigError(
                        f"cannot create topic {name} on {brokers} broker(s): {error.str()}; "
                        "check the SLUICEWAY_KAFKA_*_REPLICATION and *_MIN_INSYNC settings"
                    ) from exc
                raise
    _wait_for_topics(client, list(names), timeout)


def new_topic(
    kafka: KafkaSettings, name: str, partitions: int, brokers: int,
    config: dict[str, str] | None = None,
) -> NewTopic:  # fmt: skip
    """A topic as Sluiceway creates it: its class's durability on a cluster of ``brokers``."""
    topic_class = kafka.topic_class(name)
    replicas, min_isr = kafka.durability(topic_class, brokers) if topic_class else (1, 1)
    merged = {"min.insync.replicas": str(min_isr), **(config or {})}
    return NewTopic(name, partitions, replicas, config=merged)


def create_topic(kafka: KafkaSettings, name: str, partitions: int, timeout: float = 30.0) -> bool:
    """Create ``name`` unless it exists (atomic: of two creators one gets False); when
    created, wait until the broker lists it."""
    client = admin(kafka)
    brokers = len(client.list_topics(timeout=timeout).brokers)
    try:
        client.create_topics([new_topic(kafka, name, partitions, brokers)])[name].result(timeout)
    except KafkaException as exc:
        if exc.args[0].code() == KafkaError.TOPIC_ALREADY_EXISTS:
            return False
        raise
    _wait_for_topics(client, [name], timeout)
    return True


def ensure_dlq_topics(kafka: KafkaSettings, stages: Iterable[str], partitions: int) -> None:
    """Create the dead-letter topics of ``stages`` with their retention, and set it on any
    created before the setting existed or changed (Kafka keeps a topic's config otherwise)."""
    names = [kafka.dlq_topic(stage) for stage in stages]
    config = {"retention.ms": str(kafka.dlq_retention_ms)}
    ensure_topics(kafka, names, partitions, config)
    try:
        set_topic_config(kafka, names, config)
    except KafkaException as exc:  # e.g. no ALTER_CONFIGS right: a run needs none otherwise
        log.warning(
            "could not set retention.ms=%s on %s (%s); set it on the topics by hand",
            config["retention.ms"], ", ".join(names), exc.args[0],
        )  # fmt: skip


def set_topic_config(
    kafka: KafkaSettings, names: Iterable[str], config: dict[str, str], timeout: float = 30.0
) -> None:
    """Set these config entries of existing topics, leaving their other entries alone."""
    entries = [
        ConfigEntry(k, v, incremental_operation=AlterConfigOpType.SET) for k, v in config.items()
    ]
    resources = [
        ConfigResource(ResourceType.TOPIC, name, incremental_configs=entries) for name in names
    ]
    client = admin(kafka)  # must outlive its futures: they resolve on its thread
    for fut in client.incremental_alter_configs(resources).values():
        fut.result(timeout)


def _wait_for_topics(client: AdminClient, names: list[str], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        listed = client.list_topics(timeout=timeout).topics
        if all(n in listed and not listed[n].error for n in names):
            return
        if time.monotonic() > deadline:
            raise StackDownError(f"topics {names} not ready after {timeout:.0f}s")
        time.sleep(0.1)


# Errors a lookup meets while a broker goes away or leadership moves; asked again, it
# answers once the client has the new metadata (a worker starting during a broker's restart
# must not exit for them). _DESTROY_BROKER: librdkafka fails what was in flight to a broker
# that left the cluster's metadata. _UNKNOWN_PARTITION/_UNKNOWN_TOPIC: the client's own
# metadata lags the cluster's (a topic the admin client lists was created a moment ago, or
# a broker that knew it was just killed).
MOVING = frozenset({
    KafkaError._DESTROY_BROKER, KafkaError._TRANSPORT, KafkaError._TIMED_OUT,
    KafkaError._ALL_BROKERS_DOWN, KafkaError.LEADER_NOT_AVAILABLE,
    KafkaError.NOT_LEADER_FOR_PARTITION, KafkaError.UNKNOWN_TOPIC_OR_PART,
    KafkaError._UNKNOWN_PARTITION, KafkaError._UNKNOWN_TOPIC,
})  # fmt: skip


def watermark_offsets(reader: Consumer, tp: TopicPartition, timeout: float) -> tuple[int, int]:
    """(low, high) of ``tp``, asked again while the cluster is moving, up to ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            low, high = reader.get_watermark_offsets(tp, timeout=max(1.0, timeout / 4))
            return int(low), int(high)
        except KafkaException as exc:
            err = exc.args[0] if exc.args else None
            moving = isinstance(err, KafkaError) and (err.retriable() or err.code() in MOVING)
            if not moving or time.monotonic() > deadline:
                raise
            log.info("watermarks of %s[%d]: %s; asking again", tp.topic, tp.partition, err)
            time.sleep(0.5)  # the client refreshes its metadata meanwhile


def ready(reader: Consumer, most: int, wait: float) -> list[Message]:
    """Up to ``most`` records, as soon as the first is there (at most ``wait`` seconds for
    it). consume() alone waits out its whole timeout unless the batch fills: each short
    read (a control topic, an index partition) then cost its timeout, a run's start a dozen
    of them."""
    first = reader.poll(wait)
    if first is None:
        return []
    return [first, *reader.consume(most - 1, timeout=0)] if most > 1 else [first]


def watermarks(
    kafka: KafkaSettings, topic: str, partitions: Iterable[int], timeout: float = 10.0
) -> dict[int, tuple[int, int]]:
    """(low, high) offsets of each partition."""
    probe = consumer(kafka, group="sw-watermarks")
    try:
        return {p: watermark_offsets(probe, TopicPartition(topic, p), timeout) for p in partitions}
    finally:
        probe.close()


def partition_count(kafka: KafkaSettings, topic: str, timeout: float = 10.0) -> int:
    meta = admin(kafka).list_topics(topic, timeout=timeout).topics.get(topic)
    if meta is None or meta.error is not None:
        raise ConfigError(f"topic {topic!r} does not exist; run capture first")
    return len(meta.partitions)


def read_control(kafka: KafkaSettings, name: str, timeout: float = 30.0) -> dict[bytes, bytes]:
    """The latest value of every key of a one-partition control topic (deleted keys dropped)."""
    topic = kafka.control_topic(name)
    latest: dict[bytes, bytes] = {}
    if topic not in admin(kafka).list_topics(timeout=timeout).topics:
        return latest
    # end of partition is said at once: a transaction's commit marker may take the last
    # offset, and no message would come to say the reader got past it.
    reader = consumer(kafka, group=f"sw-control-reader-{name}", **{"enable.partition.eof": True})
    try:
        low, high = watermark_offsets(reader, TopicPartition(topic, 0), timeout)
        reader.assign([TopicPartition(topic, 0, low)])
        deadline, position = time.monotonic() + timeout, low
        while position < high:
            if time.monotonic() > deadline:
                raise StackDownError(f"could not read {topic} to its end in {timeout:.0f}s")
            for msg in ready(reader, 500, wait=0.05):
                key, value, offset = msg.key(), msg.value(), msg.offset()
                error = msg.error()
                if error is not None and error.code() == KafkaError._PARTITION_EOF:
                    position = max(position, offset or 0)
                    continue
                if error or key is None or offset is None:
                    continue
                position = offset + 1
                if value:
                    latest[key] = value
                else:
                    latest.pop(key, None)
            # a transaction's commit or abort marker takes an offset but is never a message
            position = max(position, reader.position([TopicPartition(topic, 0)])[0].offset)
    finally:
        reader.close()
    return latest


def load_run(kafka: KafkaSettings, etl_id: str, timeout: float = 30.0) -> RunRecord:
    """The latest record of ``etl_id`` on the runs control topic."""
    value = read_control(kafka, "runs", timeout).get(etl_id.encode())
    if value is None:
        raise ConfigError(f"run {etl_id!r} not found on {kafka.control_topic('runs')}")
    return RunRecord.from_json(value)


def known_tenants(kafka: KafkaSettings, timeout: float = 30.0) -> set[str]:
    """Tenants that capture has seen in the source."""
    return {k.decode() for k in read_control(kafka, "tenants", timeout)}


def set_status(kafka: KafkaSettings, etl_id: str, status: str, reason: str | None = None) -> None:
    topic = kafka.control_topic("status")
    ensure_topics(kafka, [topic], 1, control.CONTROL_TOPIC_CONFIG)
    record = {
        "etl_id": etl_id,
        "status": status,
        "reason": reason,
        "at": datetime.now(UTC).isoformat(),
    }
    prod = producer(kafka, **{"linger.ms": 0})
    prod.produce(topic, key=etl_id.encode(), value=json.dumps(record).encode())
    if prod.flush(30) != 0:
        raise StackDownError(f"could not record the status of run {etl_id} on {topic}")


def set_note(kafka: KafkaSettings, etl_id: str, note: str | None) -> None:
    """Record why a running run waits; None clears it (a tombstone on the compacted topic)."""
    topic = kafka.control_topic("notes")
    ensure_topics(kafka, [topic], 1, control.CONTROL_TOPIC_CONFIG)
    value = None
    if note is not None:
        value = json.dumps({"etl_id": etl_id, "note": note, "at": datetime.now(UTC).isoformat()})
    prod = producer(kafka, **{"linger.ms": 0})
    prod.produce(topic, key=etl_id.encode(), value=None if value is None else value.encode())
    if prod.flush(30) != 0:
        raise StackDownError(f"could not record the note of run {etl_id} on {topic}")
