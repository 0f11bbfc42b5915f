"""A three-node SASL_SSL KRaft cluster of the project's own, shared by the tests that need one.

Starting the cluster takes the better part of a minute, so one cluster serves the whole
session (the ``kafka_cluster`` fixture in conftest.py). Tests keep to their own topic
prefixes, and before and after each test the fixture brings every node back and waits until
every partition is fully in sync, so a test that killed a broker hands a healthy cluster on.
"""

from __future__ import annotations

import random
import socket
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path

from sluiceway.common.kafka_io import admin
from sluiceway.common.settings import KafkaSettings, StackSettings
from sluiceway.devstack import kafka_cluster
from tests.polling import wait_for

NODES = 3
SASL_OFFSET = kafka_cluster.SASL_PORT_OFFSET
# below the ephemeral ports (a client's port once took a broker's), clear of the stacks' own
PORT_RANGE = (20_000, 32_000)


@dataclass(frozen=True)
class Cluster:
    """The running cluster: its client environment and the port of node 1."""

    env: dict[str, str]
    base_port: int

    @property
    def home(self) -> Path:
        return Path(self.env["SLUICEWAY_STACK_HOME"])

    def node(self, node_id: int) -> kafka_cluster.KafkaNode:
        base = KafkaSettings(port=self.base_port, controller_port=self.base_port + 1)
        return kafka_cluster.node(StackSettings(home=self.home), base, node_id)

    def settings(self) -> KafkaSettings:
        """A SASL_SSL client's settings (the environment's ``SLUICEWAY_KAFKA_*``)."""
        names = {k.removeprefix("SLUICEWAY_KAFKA_").lower(): v for k, v in self.env.items()}
        return KafkaSettings(**{k: v for k, v in names.items() if k in KafkaSettings.model_fields})

    def in_sync(self) -> bool:
        """Every node serves and every partition of every topic has all its replicas in sync."""
        meta = admin(self.settings()).list_topics(timeout=10)
        parts = [p for t in meta.topics.values() for p in t.partitions.values()]
        return len(meta.brokers) == NODES and all(len(p.isrs) == len(p.replicas) for p in parts)

    def restore(self) -> None:
        """Start any node a test killed and wait until the cluster is fully in sync again."""
        for node_id in range(1, NODES + 1):
            node = self.node(node_id)
            if not node.status().running:
                node.wait(node.start())
        wait_for(self.in_sync, 180, "every broker back and every partition in sync")


def _free(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_base_port() -> int:
    """A node-1 port whose whole block (every node's client, controller and SASL_SSL port)
    is free now, so that parallel test runs on one machine do not take each other's ports."""
    step = kafka_cluster.PORT_STEP
    for _ in range(200):
        base = random.randrange(PORT_RANGE[0], PORT_RANGE[1], 100)
        ports = [base + step * i + off for i in range(NODES) for off in (0, 1, SASL_OFFSET)]
        if all(_free(p) for p in ports):
            return base
    raise AssertionError(f"no free block of ports for the test cluster in {PORT_RANGE}")


@contextmanager
def running_cluster(home: Path, base_port: int) -> Iterator[Cluster]:
    """Start the cluster under ``home`` (nodes on base_port, +10, +20; SASL_SSL +4) and
    yield it; kill it afterwards (its data is thrown away, so no clean shutdown is needed)."""
    env = {
        "SLUICEWAY_STACK_HOME": str(home),
        "SLUICEWAY_STACK_KAFKA_HEAP": "384m",
        "SLUICEWAY_KAFKA_PORT": str(base_port),
        "SLUICEWAY_KAFKA_CONTROLLER_PORT": str(base_port + 1),
    }
    stack = StackSettings(home=home, kafka_heap="384m", kafka_brokers=NODES, kafka_sasl_ssl=True)
    nodes = kafka_cluster.nodes(stack, KafkaSettings(port=base_port, controller_port=base_port + 1))
    try:
        for node in nodes:
            node.up()
        lines = kafka_cluster.client_env_file(stack).read_text().splitlines()
        yield Cluster({**env, **dict(line.split("=", 1) for line in lines)}, base_port)
    finally:
        for node in nodes:
            with suppress(OSError):
                node.kill()
