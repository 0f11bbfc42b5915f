"""Several local Kafka nodes forming one KRaft cluster, optionally with a SASL_SSL listener.

Node i (1-based) is a combined broker+controller under ``<home>/kafka/node-<i>`` and
listens on the configured ports shifted by ``PORT_STEP * (i - 1)``; all nodes share the
jars in ``<home>/kafka/libs`` and one cluster id. The nodes talk to each other over
PLAINTEXT on loopback; with ``--sasl-ssl`` each also serves clients on a SASL_SSL port
(SCRAM users, certificates from a CA made at ``stack up``), and ``<home>/kafka/client.env``
holds the ``SLUICEWAY_KAFKA_*`` settings a client needs to use it.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import time
from dataclasses import dataclass
from pathlib import Path

from sluiceway.common.errors import ConfigError
from sluiceway.common.settings import KafkaSettings, StackSettings
from sluiceway.devstack import tls
from sluiceway.devstack.base import ServerStatus, live_pid, pid_alive, port_open
from sluiceway.devstack.kafka import (
    MAIN_CLASS,
    KafkaServer,
    answers,
    random_cluster_id,
    render_properties,
    server_props,
)

PORT_STEP = 10
SASL_PORT_OFFSET = 4  # node i's SASL_SSL port: its PLAINTEXT port + 4
SCRAM_USER = "sluiceway"
SCRAM_MECHANISMS = ("SCRAM-SHA-256", "SCRAM-SHA-512")


KILL_WAIT_S = 30.0


def _wait_gone(pid: int, timeout_s: float) -> None:
    """Wait until a killed process has exited (gone, or a zombie). Its command line empties
    before it closes its files, so until then it may still hold the data directory's lock and
    its ports, and a node started again at once exits ("exited while starting")."""
    deadline = time.monotonic() + timeout_s
    while pid_alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)


@dataclass(frozen=True)
class Layout:
    """How many nodes the local cluster has and whether they serve SASL_SSL."""

    brokers: int
    sasl_ssl: bool

    @staticmethod
    def of(stack: StackSettings) -> Layout:
        """The layout the stack was formatted with, or the settings' for a new stack; a
        different node count than the formatted one is refused (KRaft voters are fixed)."""
        wanted = Layout(stack.kafka_brokers, stack.kafka_sasl_ssl)
        saved = stack.home / "kafka" / "cluster.json"
        single = (stack.home / "kafka" / "data").is_dir()  # a one-node stack's own layout
        if not saved.is_file():
            found = Layout(1, False) if single else wanted
        else:
            found = Layout(**json.loads(saved.read_text()))
        other_count = stack.kafka_brokers not in (1, found.brokers)
        if other_count or (wanted.sasl_ssl and not found.sasl_ssl):
            raise ConfigError(
                f"the stack in {stack.home} was created with {found.brokers} Kafka node(s), "
                f"sasl_ssl={found.sasl_ssl}; expected the same, or a new SLUICEWAY_STACK_HOME"
            )
        return found

    @property
    def clustered(self) -> bool:
        return self.brokers > 1 or self.sasl_ssl


def node_settings(kafka: KafkaSettings, node_id: int) -> KafkaSettings:
    shift = PORT_STEP * (node_id - 1)
    return kafka.model_copy(
        update={"port": kafka.port + shift, "controller_port": kafka.controller_port + shift}
    )


def bootstrap(kafka: KafkaSettings, brokers: int, sasl: bool = False) -> str:
    offset = SASL_PORT_OFFSET if sasl else 0
    ports = [node_settings(kafka, i).port + offset for i in range(1, brokers + 1)]
    return ",".join(f"{kafka.host}:{port}" for port in ports)


class KafkaNode(KafkaServer):
    """One node of the local cluster; ``up`` spawns its peers too so a quorum can form."""

    def __init__(
        self, stack: StackSettings, kafka: KafkaSettings, layout: Layout, node_id: int
    ) -> None:
        self.root = stack.home / "kafka"
        super().__init__(stack, node_settings(kafka, node_id), self.root / f"node-{node_id}")
        self.base, self.layout, self.node_id = kafka, layout, node_id
        self.name = f"kafka-{node_id}"

    @property
    def sasl_port(self) -> int:
        return self.kafka.port + SASL_PORT_OFFSET

    @property
    def address(self) -> str:
        plain = f"{self.kafka.host}:{self.kafka.port}"
        return f"{plain} sasl_ssl:{self.sasl_port}" if self.layout.sasl_ssl else plain

    def peers(self) -> list[KafkaNode]:
        return [
            KafkaNode(self.stack, self.base, self.layout, i)
            for i in range(1, self.layout.brokers + 1)
        ]

    def up(self) -> ServerStatus:
        if answers(self.kafka):
            return self.status()
        for peer in self.peers():
            if peer.node_id != self.node_id:
                peer.start()
        self.wait(self.start())
        return self.status()

    def start(self) -> int:
        self.root.mkdir(parents=True, exist_ok=True)
        (self.root / "cluster.json").write_text(json.dumps(self.layout.__dict__) + "\n")
        if self.layout.sasl_ssl:
            self._write_client_env()
        return super().start()

    def kill(self) -> ServerStatus:
        """SIGKILL the node (a crash, for fault tests); its data stays."""
        pid = live_pid(self.pid_file, MAIN_CLASS)
        if pid is not None:
            os.killpg(pid, signal.SIGKILL)
            _wait_gone(pid, KILL_WAIT_S)
        return self.status()

    def status(self) -> ServerStatus:
        found = super().status()
        if self.layout.sasl_ssl and found.running:
            running = port_open(self.kafka.host, self.sasl_port)
            return ServerStatus(**{**found.__dict__, "running": running})
        return found

    def render_properties(self) -> str:
        host, layout = self.kafka.host, self.layout
        props = server_props(self.kafka, self.data)
        voters = [
            f"{i}@{host}:{node_settings(self.base, i).controller_port}"
            for i in range(1, layout.brokers + 1)
        ]
        replicas, min_isr = min(3, layout.brokers), 2 if layout.brokers >= 3 else 1
        props.update({
            "node.id": self.node_id,
            "controller.quorum.voters": ",".join(voters),
            "default.replication.factor": replicas,
            "min.insync.replicas": min_isr,
            "offsets.topic.replication.factor": replicas,
            "transaction.state.log.replication.factor": replicas,
            "transaction.state.log.min.isr": min_isr,
            "share.coordinator.state.topic.replication.factor": replicas,
            "share.coordinator.state.topic.min.isr": min_isr,
        })  # fmt: skip
        if layout.sasl_ssl:
            props.update(self._sasl_ssl_props(props))
        return render_properties(props)

    def _sasl_ssl_props(self, props: dict[str, str | int]) -> dict[str, str | int]:
        tls.make_ca(self.root / "tls")
        keystore = tls.make_server_keystore(self.root / "tls", self.root / "tls")
        login = "org.apache.kafka.common.security.scram.ScramLoginModule required;"
        sasl = f"SASL_SSL://{self.kafka.host}:{self.sasl_port}"
        found: dict[str, str | int] = {
            "listeners": f"{props['listeners']},{sasl}",
            "advertised.listeners": f"{props['advertised.listeners']},{sasl}",
            "listener.security.protocol.map": f"{props['listener.security.protocol.map']},"
            "SASL_SSL:SASL_SSL",
            "sasl.enabled.mechanisms": ",".join(SCRAM_MECHANISMS),
            "listener.name.sasl_ssl.ssl.keystore.type": "PEM",
            "listener.name.sasl_ssl.ssl.keystore.location": str(keystore),
        }
        for mechanism in SCRAM_MECHANISMS:
            found[f"listener.name.sasl_ssl.{mechanism.lower()}.sasl.jaas.config"] = login
        return found

    def format_options(self) -> list[str]:
        options = ["-t", self._cluster_id()]
        if self.layout.sasl_ssl:
            password = self._password()
            for mechanism in SCRAM_MECHANISMS:
                options += ["--add-scram", f"{mechanism}=[name={SCRAM_USER},password={password}]"]
        return options

    def _cluster_id(self) -> str:
        path = self.root / "cluster-id"
        if not path.is_file():
            path.write_text(random_cluster_id() + "\n")
        return path.read_text().strip()

    def _password(self) -> str:
        path = self.root / "scram-password"
        if not path.is_file():
            path.touch(mode=0o600)
            path.write_text(secrets.token_hex(16) + "\n")
        return path.read_text().strip()

    def _write_client_env(self) -> None:
        ca = tls.make_ca(self.root / "tls")
        env = {
            "SLUICEWAY_KAFKA_BOOTSTRAP": bootstrap(self.base, self.layout.brokers, sasl=True),
            "SLUICEWAY_KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
            "SLUICEWAY_KAFKA_SASL_MECHANISM": "SCRAM-SHA-512",
            "SLUICEWAY_KAFKA_SASL_USERNAME": SCRAM_USER,
            "SLUICEWAY_KAFKA_SASL_PASSWORD": self._password(),
            "SLUICEWAY_KAFKA_SSL_CA": str(ca),
        }
        path = client_env_file(self.stack)
        path.touch(mode=0o600)
        path.write_text("".join(f"{name}={value}\n" for name, value in env.items()))


def client_env_file(stack: StackSettings) -> Path:
    """The SLUICEWAY_KAFKA_* settings of a SASL_SSL client of the local cluster (a secret)."""
    return stack.home / "kafka" / "client.env"


def nodes(stack: StackSettings, kafka: KafkaSettings) -> list[KafkaNode]:
    layout = Layout.of(stack)
    return [KafkaNode(stack, kafka, layout, i) for i in range(1, layout.brokers + 1)]


def node(stack: StackSettings, kafka: KafkaSettings, node_id: int) -> KafkaNode:
    found = nodes(stack, kafka)
    if not 1 <= node_id <= len(found):
        raise ConfigError(f"broker {node_id} does not exist; expected 1 to {len(found)}")
    return found[node_id - 1]
