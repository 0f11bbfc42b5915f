"""A three-node SASL_SSL KRaft cluster of the project's own, for one test module."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sluiceway.common.settings import KafkaSettings, StackSettings
from sluiceway.devstack import kafka_cluster


@contextmanager
def running_cluster(home: Path, base_port: int) -> Iterator[dict[str, str]]:
    """Start the cluster under ``home`` (nodes on base_port, +10, +20; SASL_SSL +4) and
    yield a client's environment (stack, ports and SASL_SSL settings); stop it afterwards."""
    env = {
        "SLUICEWAY_STACK_HOME": str(home),
        "SLUICEWAY_STACK_KAFKA_HEAP": "384m",
        "SLUICEWAY_KAFKA_PORT": str(base_port),
        "SLUICEWAY_KAFKA_CONTROLLER_PORT": str(base_port + 1),
    }
    stack = StackSettings(home=home, kafka_heap="384m", kafka_brokers=3, kafka_sasl_ssl=True)
    nodes = kafka_cluster.nodes(stack, KafkaSettings(port=base_port, controller_port=base_port + 1))
    try:
        for node in nodes:
            node.up()
        lines = kafka_cluster.client_env_file(stack).read_text().splitlines()
        yield {**env, **dict(line.split("=", 1) for line in lines)}
    finally:
        for node in reversed(nodes):
            node.down()
