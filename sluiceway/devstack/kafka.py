"""Apache Kafka 4 of the local stack: one KRaft node in combined broker+controller mode.

Layout under ``<home>/kafka``: ``libs/`` (jars resolved by Maven from deploy/kafka/pom.xml),
``data/`` (log.dirs, formatted once), ``server.properties``, ``kafka.log``, ``pid``.
"""

from __future__ import annotations

import base64
import logging
import shutil
import uuid
from pathlib import Path

from sluiceway.common.resources import stack_files
from sluiceway.common.settings import KafkaSettings, StackSettings
from sluiceway.devstack import tools
from sluiceway.devstack.base import (
    ServerStatus,
    file_digest,
    live_pid,
    pid_alive,
    port_open,
    run_logged,
    spawn,
    terminate,
    wait_until,
)

NAME = "kafka"
MAIN_CLASS = "kafka.Kafka"
STORAGE_TOOL = "kafka.tools.StorageTool"
STOP_TIMEOUT_S = 60.0
MVN_TIMEOUT_S = 900.0
# Jars that must be present for libs/ to count as resolved.
REQUIRED_JARS: tuple[str, ...] = ("kafka_2.13-*.jar", "log4j-slf4j-impl-*.jar")
RESOLVED_MARKER = ".resolved-pom-sha256"


def deploy_dir() -> Path:
    return stack_files("kafka")


def random_cluster_id() -> str:
    """A cluster id like `kafka-storage random-uuid`: 16 random bytes, base64url, no padding."""
    while True:
        text = base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode()
        if not text.startswith("-"):
            return text


def render_server_properties(kafka: KafkaSettings, data_dir: Path) -> str:
    """server.properties of a single combined-mode KRaft node on kafka.host."""
    return render_properties(server_props(kafka, data_dir))


def server_props(kafka: KafkaSettings, data_dir: Path) -> dict[str, str | int]:
    """The properties of a single combined-mode node (a cluster's nodes start from these)."""
    host, port, cport = kafka.host, kafka.port, kafka.controller_port
    props: dict[str, str | int] = {
        "process.roles": "broker,controller",
        "node.id": 1,
        "controller.quorum.voters": f"1@{host}:{cport}",
        "listeners": f"PLAINTEXT://{host}:{port},CONTROLLER://{host}:{cport}",
        "advertised.listeners": f"PLAINTEXT://{host}:{port}",
        "controller.listener.names": "CONTROLLER",
        "inter.broker.listener.name": "PLAINTEXT",
        "listener.security.protocol.map": "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
        "log.dirs": str(data_dir.resolve()),
        "num.partitions": kafka.partitions,
        "default.replication.factor": 1,
        "min.insync.replicas": 1,
        "offsets.topic.replication.factor": 1,
        "offsets.topic.num.partitions": 10,
        "transaction.state.log.replication.factor": 1,
        "transaction.state.log.min.isr": 1,
        "transaction.state.log.num.partitions": 10,
        "share.coordinator.state.topic.replication.factor": 1,
        "share.coordinator.state.topic.min.isr": 1,
        # Kafka's default is 3 s. Workers of a run start together; with no delay the first
        # to join began alone, and each later one took partitions over and re-read them (a
        # tenth of a two-processor full export's events). A second keeps tests quick.
        "group.initial.rebalance.delay.ms": 1000,
        "auto.create.topics.enable": "true",
        "log.cleaner.enable": "true",
        "log.retention.hours": 168,
    }
    return props


def render_properties(props: dict[str, str | int]) -> str:
    lines = ["# Written by `sluiceway stack up`; edits are overwritten on the next start."]
    lines += [f"{key}={value}" for key, value in props.items()]
    return "\n".join(lines) + "\n"


def _silent_logger() -> logging.Logger:
    """librdkafka logs every refused connection; the readiness probe expects those."""
    logger = logging.getLogger("sluiceway.devstack.kafka.probe")
    logger.propagate = False
    if not logger.handlers:
        logger.addHandler(logging.NullHandler())
    return logger


def answers(kafka: KafkaSettings, timeout_s: float = 5.0) -> bool:
    """True when the broker serves metadata to an AdminClient."""
    if not port_open(kafka.host, kafka.port):
        return False
    from confluent_kafka import KafkaException
    from confluent_kafka.admin import AdminClient

    admin = AdminClient(
        {"bootstrap.servers": f"{kafka.host}:{kafka.port}"}, logger=_silent_logger()
    )
    try:
        admin.list_topics(timeout=timeout_s)
    except KafkaException:
        return False
    return True


class KafkaServer:
    """up/status/down of the local stack's Kafka node."""

    name = NAME

    def __init__(
        self, stack: StackSettings, kafka: KafkaSettings, directory: Path | None = None
    ) -> None:
        self.stack = stack
        self.kafka = kafka
        self.libs = stack.home / "kafka" / "libs"  # shared by a local cluster's nodes
        self.dir = directory or stack.home / "kafka"
        self.data = self.dir / "data"
        self.properties = self.dir / "server.properties"
        self.log_file = self.dir / "kafka.log"
        self.pid_file = self.dir / "pid"

    @property
    def address(self) -> str:
        return f"{self.kafka.host}:{self.kafka.port}"

    def status(self) -> ServerStatus:
        return ServerStatus(
            name=self.name,
            running=port_open(self.kafka.host, self.kafka.port),
            pid=live_pid(self.pid_file, MAIN_CLASS),
            address=self.address,
            data_dir=self.data,
            log_file=self.log_file,
        )

    def up(self) -> ServerStatus:
        """Start the node unless it already answers; wait until it serves metadata."""
        if answers(self.kafka):
            return self.status()
        self.wait(self.start())
        return self.status()

    def start(self) -> int:
        """Spawn the node unless its process runs; its pid."""
        pid = live_pid(self.pid_file, MAIN_CLASS)
        if pid is None:
            java = tools.find_java()
            self.resolve_jars()
            self.dir.mkdir(parents=True, exist_ok=True)
            self.properties.write_text(self.render_properties())
            self.format_storage(java)
            pid = spawn(self._command(java), self.log_file, self.pid_file, cwd=self.dir)
        return pid

    def render_properties(self) -> str:
        return render_server_properties(self.kafka, self.data)

    def format_options(self) -> list[str]:
        """Options of ``StorageTool format`` after the config file: a fresh cluster id."""
        return ["-t", random_cluster_id()]

    def wait(self, started: int) -> None:
        wait_until(
            lambda: answers(self.kafka, timeout_s=2.0),
            name=self.name,
            address=self.address,
            log_file=self.log_file,
            timeout_s=self.stack.start_timeout_s,
            alive=lambda: pid_alive(started, MAIN_CLASS),
        )

    def down(self) -> ServerStatus:
        terminate(live_pid(self.pid_file, MAIN_CLASS), MAIN_CLASS, STOP_TIMEOUT_S)
        self.pid_file.unlink(missing_ok=True)
        return self.status()

    def _command(self, java: Path) -> list[str]:
        return [
            str(java),
            f"-Xmx{self.stack.kafka_heap}",
            "-XX:+UseG1GC",
            "-Djava.awt.headless=true",
            f"-Dlog4j2.configurationFile={deploy_dir() / 'log4j2.properties'}",
            "-cp",
            f"{self.libs}/*",
            MAIN_CLASS,
            str(self.properties),
        ]

    def jars_resolved(self, pom: Path) -> bool:
        marker = self.libs / RESOLVED_MARKER
        if not marker.is_file() or marker.read_text().strip() != file_digest(pom):
            return False
        return all(any(self.libs.glob(pattern)) for pattern in REQUIRED_JARS)

    def resolve_jars(self) -> None:
        """Copy the broker's runtime jars into libs/ with Maven, unless already there."""
        pom = deploy_dir() / "pom.xml"
        if self.jars_resolved(pom):
            return
        mvn = tools.find_mvn()
        shutil.rmtree(self.libs, ignore_errors=True)
        self.libs.mkdir(parents=True)
        cmd = [
            str(mvn), "-B", "-q", "-f", str(pom), "dependency:copy-dependencies",
            f"-DoutputDirectory={self.libs}", "-DincludeScope=runtime",
        ]  # fmt: skip
        run_logged(cmd, self.dir / "mvn.log", "kafka: resolving jars with Maven", MVN_TIMEOUT_S)
        (self.libs / RESOLVED_MARKER).write_text(file_digest(pom) + "\n")

    def format_storage(self, java: Path) -> None:
        """Format log.dirs once with a fresh cluster id; skipped when meta.properties exists."""
        if (self.data / "meta.properties").is_file():
            return
        self.data.mkdir(parents=True, exist_ok=True)
        cmd = [
            str(java),
            f"-Dlog4j2.configurationFile={deploy_dir() / 'log4j2.properties'}",
            "-cp", f"{self.libs}/*", STORAGE_TOOL, "format",
            "-c", str(self.properties), *self.format_options(),
        ]  # fmt: skip
        run_logged(cmd, self.log_file, "kafka: formatting storage", 120.0)
