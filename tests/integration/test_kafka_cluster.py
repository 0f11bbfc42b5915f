"""The local three-node KRaft cluster with its SASL_SSL listener, started by the project:
per-broker status, a broker killed and started again, durable topics, and one clear line
for a wrong password or an untrusted CA (from the check and from a worker)."""

from __future__ import annotations

import json
import os
import ssl
import subprocess
import sys
import time
from pathlib import Path

import pytest
from pydantic import SecretStr

from sluiceway.common.kafka_io import admin, ensure_topics, producer
from sluiceway.common.settings import KafkaSettings
from sluiceway.kafka_check import cluster_warnings, connection_problems, durability_problems
from tests.integration.cluster import Cluster
from tests.polling import wait_for

pytestmark = pytest.mark.integration


@pytest.fixture
def cluster_env(cluster: Cluster, unique: str) -> dict[str, str]:
    """The shared cluster's client environment, with this test's own topic prefix."""
    return {**cluster.env, "SLUICEWAY_KAFKA_TOPIC_PREFIX": f"cl{unique}.sw."}


def _settings(env: dict[str, str], **update: object) -> KafkaSettings:
    names = {k.removeprefix("SLUICEWAY_KAFKA_").lower(): v for k, v in env.items()}
    fields = {k: v for k, v in names.items() if k in KafkaSettings.model_fields}
    return KafkaSettings(**fields).model_copy(update=update)


def _cli(env: dict[str, str], *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "sluiceway.cli", *args],
        env={**os.environ, **env}, capture_output=True, text=True, timeout=timeout, check=False,
    )  # fmt: skip


def test_status_lists_each_broker(cluster: Cluster, cluster_env: dict[str, str]) -> None:
    proc = _cli(cluster_env, "stack", "status", "--json")
    assert proc.returncode == 0, proc.stderr
    kafka = [s for s in json.loads(proc.stdout) if s["name"].startswith("kafka")]
    assert [(s["name"], s["running"]) for s in kafka] == [
        ("kafka-1", True), ("kafka-2", True), ("kafka-3", True),
    ]  # fmt: skip
    node_2 = cluster.base_port + 10
    assert kafka[1]["address"] == f"127.0.0.1:{node_2} sasl_ssl:{node_2 + 4}"


def test_topics_get_three_replicas_over_sasl_ssl(cluster_env: dict[str, str]) -> None:
    kafka = _settings(cluster_env)
    assert connection_problems(kafka) == [] and cluster_warnings(kafka) == []
    topic = kafka.cdc_topic("issue")
    ensure_topics(kafka, [topic], 3)
    meta = admin(kafka).list_topics(topic, timeout=10).topics[topic]
    assert {len(p.replicas) for p in meta.partitions.values()} == {3}
    assert durability_problems(kafka) == []
    weak = kafka.run_topic("weak")
    ensure_topics(kafka.model_copy(update={"run_replication": 1}), [weak], 1)
    assert durability_problems(kafka) == [
        f"topic {weak}: replication factor 1, below the 3 wanted for run topics "
        "(SLUICEWAY_KAFKA_RUN_REPLICATION); recreate it or add replicas with "
        "kafka-reassign-partitions",
        f"topic {weak}: min.insync.replicas 1, below the 2 wanted for run topics "
        "(SLUICEWAY_KAFKA_RUN_MIN_INSYNC); raise it with kafka-configs --alter",
    ]


def test_writes_go_on_while_a_broker_is_down(cluster_env: dict[str, str]) -> None:
    kafka = _settings(cluster_env)
    topic = kafka.dlq_topic("failover")
    ensure_topics(kafka, [topic], 1)
    killed = _cli(cluster_env, "stack", "kill-broker", "2")
    assert killed.returncode == 0, killed.stderr
    try:
        status = json.loads(_cli(cluster_env, "stack", "status", "--json").stdout)
        assert [s["running"] for s in status if s["name"].startswith("kafka")] == [
            True, False, True,
        ]  # fmt: skip
        prod = producer(kafka, **{"linger.ms": 0, "message.timeout.ms": 60_000})
        for i in range(100):
            prod.produce(topic, key=str(i).encode(), value=b"x")
        assert prod.flush(60) == 0  # acks=all: 2 of 3 replicas are the min ISR
    finally:
        started = _cli(cluster_env, "stack", "start-broker", "2", timeout=180)
    assert started.returncode == 0, started.stderr

    def back_in_sync() -> bool:
        meta = admin(kafka).list_topics(topic, timeout=10).topics[topic]
        return all(len(p.isrs) == 3 for p in meta.partitions.values())

    wait_for(back_in_sync, 120, "broker 2 to rejoin the ISR")


def test_wrong_password_is_one_line_not_a_hang(cluster_env: dict[str, str]) -> None:
    kafka = _settings(cluster_env, sasl_password=SecretStr("wrong-password"))
    (line,) = connection_problems(kafka)
    assert "refused the SCRAM-SHA-512 login of 'sluiceway'" in line
    assert "wrong-password" not in line
    started = time.monotonic()
    env = {**cluster_env, "SLUICEWAY_KAFKA_SASL_PASSWORD": "wrong-password"}
    proc = _cli(env, "sink", "--run", "any-run", timeout=60)
    assert proc.returncode != 0 and time.monotonic() - started < 45
    errors = [ln for ln in proc.stderr.splitlines() if ln.startswith("error:")]
    assert len(errors) == 1 and "refused the SCRAM-SHA-512 login" in errors[0], proc.stderr
    assert "wrong-password" not in proc.stderr + proc.stdout


def test_untrusted_ca_is_one_line(cluster_env: dict[str, str], tmp_path: Path) -> None:
    system_ca = Path(ssl.get_default_verify_paths().openssl_cafile)
    other_ca = system_ca if system_ca.is_file() else tmp_path / "none.pem"
    (line,) = connection_problems(_settings(cluster_env, ssl_ca=other_ca))
    assert line.startswith("TLS with Kafka at ") and "certificate verify failed" in line
    env = {**cluster_env, "SLUICEWAY_KAFKA_SSL_CA": str(other_ca)}
    proc = _cli(env, "process", "--run", "any-run", timeout=60)
    errors = [ln for ln in proc.stderr.splitlines() if ln.startswith("error:")]
    assert proc.returncode != 0 and len(errors) == 1 and "TLS with Kafka" in errors[0]


def _check_findings(env: dict[str, str]) -> dict[str, dict[str, object]]:
    proc = _cli(env, "check", "--json", timeout=120)
    return {f["name"]: f for f in json.loads(proc.stdout)["checks"]}


def test_check_names_a_wrong_password_and_an_untrusted_ca(
    cluster_env: dict[str, str], tmp_path: Path
) -> None:
    assert _check_findings(cluster_env)["kafka"]["ok"] is True
    wrong = _check_findings({**cluster_env, "SLUICEWAY_KAFKA_SASL_PASSWORD": "wrong-password"})
    assert wrong["kafka"]["ok"] is False
    assert "refused the SCRAM-SHA-512 login of 'sluiceway'" in str(wrong["kafka"]["detail"])
    system_ca = Path(ssl.get_default_verify_paths().openssl_cafile)
    other_ca = system_ca if system_ca.is_file() else tmp_path / "none.pem"
    untrusted = _check_findings({**cluster_env, "SLUICEWAY_KAFKA_SSL_CA": str(other_ca)})
    assert str(untrusted["kafka"]["detail"]).startswith("TLS with Kafka at ")
