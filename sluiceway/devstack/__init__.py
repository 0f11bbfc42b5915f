"""The local stack: real Kafka, PostgreSQL and S3Proxy servers on 127.0.0.1, no Docker.

Data, logs, jars and pid files live under ``StackSettings.home``. ``up`` is idempotent (a
server that already answers is left alone) and ``down`` stops what ``up`` started.
"""

from __future__ import annotations

from sluiceway.common.settings import KafkaSettings, PostgresSettings, S3Settings, StackSettings
from sluiceway.devstack.base import Server, ServerStatus
from sluiceway.devstack.kafka import KafkaServer
from sluiceway.devstack.kafka_cluster import Layout, nodes
from sluiceway.devstack.postgres import PostgresServer
from sluiceway.devstack.s3proxy import S3ProxyServer

# Every server the local stack runs, in start order (docker-compose.yml mirrors these).
SERVERS: tuple[str, ...] = ("kafka", "postgres", "s3proxy")

__all__ = [
    "SERVERS",
    "Server",
    "ServerStatus",
    "down",
    "servers",
    "status",
    "up",
]


def servers(
    stack: StackSettings, kafka: KafkaSettings, pg: PostgresSettings, s3: S3Settings
) -> list[Server]:
    """The stack's servers in start order (names as in SERVERS; a Kafka cluster's nodes are
    ``kafka-1``, ``kafka-2``...)."""
    brokers: list[Server] = [KafkaServer(stack, kafka)]
    if Layout.of(stack).clustered:
        brokers = list(nodes(stack, kafka))
    found: list[Server] = [*brokers, PostgresServer(stack, pg), S3ProxyServer(stack, s3)]
    assert tuple(dict.fromkeys(server.name.split("-")[0] for server in found)) == SERVERS
    return found


def up(
    stack: StackSettings, kafka: KafkaSettings, pg: PostgresSettings, s3: S3Settings
) -> list[ServerStatus]:
    """Start every server that does not answer yet and wait until each one does."""
    return [server.up() for server in servers(stack, kafka, pg, s3)]


def status(
    stack: StackSettings, kafka: KafkaSettings, pg: PostgresSettings, s3: S3Settings
) -> list[ServerStatus]:
    """Where each server runs and whether it accepts connections."""
    return [server.status() for server in servers(stack, kafka, pg, s3)]


def down(
    stack: StackSettings, kafka: KafkaSettings, pg: PostgresSettings, s3: S3Settings
) -> list[ServerStatus]:
    """Stop the servers the stack started, in reverse start order; idempotent."""
    stopped = [server.down() for server in reversed(servers(stack, kafka, pg, s3))]
    return stopped[::-1]
