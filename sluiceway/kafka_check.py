"""What ``sluiceway check`` asks Kafka: is the cluster reachable with the configured
security, and are Sluiceway's topics as durable as the settings want.

Each function returns lines for the user, one per problem, and never raises for a problem
it can describe.
"""

from __future__ import annotations

from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient, ClusterMetadata, ConfigResource, ResourceType

from sluiceway.common.errors import SluicewayError
from sluiceway.common.kafka_io import admin, check_broker, watermarks
from sluiceway.common.settings import KafkaSettings

MIN_PRODUCTION_BROKERS = 3


def cluster_warnings(kafka: KafkaSettings, timeout: float = 10.0) -> list[str]:
    """Warnings that do not stop a run: a cluster too small to survive losing a broker."""
    brokers = len(admin(kafka).list_topics(timeout=timeout).brokers)
    if brokers >= MIN_PRODUCTION_BROKERS:
        return []
    return [
        f"Kafka at {kafka.servers} has {brokers} broker(s): topics get 1 replica, so losing "
        f"a broker loses their data; production needs at least {MIN_PRODUCTION_BROKERS}"
    ]


def skew_warning(events: dict[int, int], share: float, min_events: int) -> str | None:
    """A warning when one partition holds more than ``share`` of ``events`` (partition ->
    events in it across every change topic); None under ``min_events`` events in all."""
    total = sum(events.values())
    if len(events) < 2 or total < max(min_events, 1):
        return None
    part, most = max(events.items(), key=lambda kv: (kv[1], -kv[0]))
    if most <= share * total:
        return None
    return (
        f"partition {part} holds {most / total:.0%} of the change topics' {total:,} events "
        f"(an even share is {1 / len(events):.0%}; warning above {share:.0%}): the tenants "
        "hashed there are large; spread them (kafka.spread, kafka.tenant_spread) or add "
        "partitions (docs/operations.md, topic layout)"
    )


def partition_skew_warnings(kafka: KafkaSettings, timeout: float = 10.0) -> list[str]:
    """The change topics' events per partition (their offset ranges, summed over topics,
    since they are co-partitioned by tenant), judged by ``skew_warning``."""
    meta = admin(kafka).list_topics(timeout=timeout)
    events: dict[int, int] = {}
    for name, topic in meta.topics.items():
        if not name.startswith(kafka.cdc_topic("")):
            continue
        for part, (low, high) in watermarks(kafka, name, topic.partitions, timeout).items():
            events[part] = events.get(part, 0) + max(high - low, 0)
    warning = skew_warning(events, kafka.skew_share, kafka.skew_min_events)
    return [] if warning is None else [warning]


def durability_problems(kafka: KafkaSettings, timeout: float = 10.0) -> list[str]:
    """One line per Sluiceway topic whose replication factor or min.insync.replicas is
    below what its class's settings want on this cluster."""
    client = admin(kafka)
    meta = client.list_topics(timeout=timeout)
    brokers = len(meta.brokers)
    ours = {name: cls for name in meta.topics if (cls := kafka.topic_class(name))}
    min_isr = _min_insync(client, sorted(ours), timeout)
    problems = []
    for name, cls in sorted(ours.items()):
        want_rf, want_isr = kafka.durability(cls, brokers)
        setting = f"SLUICEWAY_KAFKA_{cls.upper()}"
        rf = _replication(meta, name)
        if rf < want_rf:
            problems.append(
                f"topic {name}: replication factor {rf}, below the {want_rf} wanted for "
                f"{cls} topics ({setting}_REPLICATION); recreate it or add replicas with "
                "kafka-reassign-partitions"
            )
        isr = min_isr.get(name)
        if isr is not None and isr < want_isr:
            problems.append(
                f"topic {name}: min.insync.replicas {isr}, below the {want_isr} wanted for "
                f"{cls} topics ({setting}_MIN_INSYNC); raise it with kafka-configs --alter"
            )
    return problems


def _replication(meta: ClusterMetadata, topic: str) -> int:
    partitions = meta.topics[topic].partitions.values()
    return min((len(p.replicas) for p in partitions), default=0)


def _min_insync(client: AdminClient, topics: list[str], timeout: float) -> dict[str, int]:
    if not topics:
        return {}
    resources = [ConfigResource(ResourceType.TOPIC, name) for name in topics]
    found: dict[str, int] = {}
    for resource, future in client.describe_configs(resources).items():
        try:
            entry = future.result(timeout).get("min.insync.replicas")
        except KafkaException:
            continue  # deleted meanwhile
        if entry is not None and entry.value is not None:
            found[resource.name] = int(entry.value)
    return found


def connection_problems(kafka: KafkaSettings, timeout: float = 10.0) -> list[str]:
    """One line when the brokers cannot be reached, or refuse the configured login or TLS."""
    try:
        check_broker(kafka, timeout)
    except SluicewayError as exc:
        return [str(exc)]
    return []
