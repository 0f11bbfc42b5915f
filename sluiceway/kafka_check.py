"""What ``sluiceway check`` asks Kafka: is the cluster reachable with the configured
security, are Sluiceway's topics as durable as the settings want, and does one partition of
a change topic hold more than its share of it (docs/topic-layout.md).

Each function returns lines for the user, one per problem, and never raises for a problem
it can describe.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient, ClusterMetadata, ConfigResource, ResourceType

from sluiceway.common.errors import SluicewayError
from sluiceway.common.kafka_io import admin, check_broker, known_tenants, watermarks
from sluiceway.common.partitioning import tenant_partitions
from sluiceway.common.settings import KafkaSettings

MIN_PRODUCTION_BROKERS = 3
SHOWN_TENANTS = 5  # named in a skew warning; the rest counted


def cluster_warnings(kafka: KafkaSettings, timeout: float = 10.0) -> list[str]:
    """Warnings that do not stop a run: a cluster too small to survive losing a broker."""
    brokers = len(admin(kafka).list_topics(timeout=timeout).brokers)
    if brokers >= MIN_PRODUCTION_BROKERS:
        return []
    return [
        f"Kafka at {kafka.servers} has {brokers} broker(s): topics get 1 replica, so losing "
        f"a broker loses their data; production needs at least {MIN_PRODUCTION_BROKERS}"
    ]


@dataclass(frozen=True)
class Skew:
    """One partition of a change topic holding more than its share of the topic's records."""

    topic: str
    partition: int
    records: int  # in that partition: its high minus low watermark
    total: int  # in the whole topic
    partitions: int

    def share(self) -> float:
        return self.records / self.total


def topic_skew(topic: str, records: dict[int, int], share: float, min_records: int) -> Skew | None:
    """The fullest partition of ``topic`` (partition -> records) when it holds more than
    ``share`` of the topic; None for one partition or fewer than ``min_records`` in all."""
    total = sum(records.values())
    if len(records) < 2 or total < max(min_records, 1):
        return None
    part, most = max(records.items(), key=lambda kv: (kv[1], -kv[0]))
    if most <= share * total:
        return None
    return Skew(topic, part, most, total, len(records))


def tenants_placed(skew: Skew, tenants: Iterable[str], kafka: KafkaSettings) -> list[str]:
    """The tenants whose partitions include the skewed one: the large tenant is among them."""
    return sorted(
        t
        for t in tenants
        if skew.partition in tenant_partitions(t, skew.partitions, kafka.spread_of(t))
    )


def skew_warning(skew: Skew, threshold: float, placed: list[str]) -> str:
    """One line naming the topic, the partition, its share, the threshold and what to do."""
    names = ", ".join(placed[:SHOWN_TENANTS]) + (", ..." if len(placed) > SHOWN_TENANTS else "")
    who = (
        f"{len(placed)} tenant(s) capture has seen are placed there ({names})"
        if placed
        else "no tenant capture has seen is placed there"
    )
    return (
        f"topic {skew.topic}: partition {skew.partition} holds {skew.share():.0%} of its "
        f"{skew.total:,} records ({skew.records:,}; an even share is {1 / skew.partitions:.0%}), "
        f"above kafka.skew_share={threshold:g}; {who}: find the large ones and give them a "
        "wider kafka.tenant_spread in a new kafka.topic_prefix (docs/topic-layout.md)"
    )


def partition_skew_warnings(kafka: KafkaSettings, timeout: float = 10.0) -> list[str]:
    """One warning per change topic whose fullest partition holds more than
    ``kafka.skew_share`` of its records, counted from its offsets: high minus low watermark,
    the records written (compaction removes some without moving the low watermark)."""
    meta = admin(kafka).list_topics(timeout=timeout)
    skews = []
    for name in sorted(meta.topics):
        if not name.startswith(kafka.cdc_topic("")):
            continue
        marks = watermarks(kafka, name, meta.topics[name].partitions, timeout)
        records = {part: max(high - low, 0) for part, (low, high) in marks.items()}
        skew = topic_skew(name, records, kafka.skew_share, kafka.skew_min_events)
        if skew is not None:
            skews.append(skew)
    if not skews:
        return []
    tenants = known_tenants(kafka, timeout)
    return [skew_warning(s, kafka.skew_share, tenants_placed(s, tenants, kafka)) for s in skews]


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
