"""The local cluster's node properties and layout, without starting anything."""

from __future__ import annotations

from pathlib import Path

import pytest

from sluiceway.common.errors import ConfigError
from sluiceway.common.settings import KafkaSettings, PostgresSettings, S3Settings, StackSettings
from sluiceway.devstack import kafka_cluster, servers


def _props(text: str) -> dict[str, str]:
    pairs = (line.split("=", 1) for line in text.splitlines() if "=" in line)
    return {k: v for k, v in pairs if not k.startswith("#")}


def test_three_nodes_form_one_quorum_with_replicated_internal_topics(tmp_path: Path) -> None:
    stack = StackSettings(home=tmp_path, kafka_brokers=3)
    nodes = kafka_cluster.nodes(stack, KafkaSettings(port=29092, controller_port=29093))
    props = _props(nodes[1].render_properties())
    assert props["node.id"] == "2"
    assert props["controller.quorum.voters"] == (
        "1@127.0.0.1:29093,2@127.0.0.1:29103,3@127.0.0.1:29113"
    )
    assert props["listeners"] == "PLAINTEXT://127.0.0.1:29102,CONTROLLER://127.0.0.1:29103"
    assert props["offsets.topic.replication.factor"] == "3"
    assert props["transaction.state.log.min.isr"] == "2"
    assert props["log.dirs"] == str((tmp_path / "kafka" / "node-2" / "data").resolve())
    names = [s.name for s in servers(stack, KafkaSettings(), PostgresSettings(), S3Settings())]
    assert names == ["kafka-1", "kafka-2", "kafka-3", "postgres", "s3proxy"]


def test_sasl_ssl_listener_and_scram_users(tmp_path: Path) -> None:
    stack = StackSettings(home=tmp_path, kafka_brokers=3, kafka_sasl_ssl=True)
    node = kafka_cluster.nodes(stack, KafkaSettings(port=29092, controller_port=29093))[0]
    props = _props(node.render_properties())
    assert props["listeners"].endswith(",SASL_SSL://127.0.0.1:29096")
    assert props["sasl.enabled.mechanisms"] == "SCRAM-SHA-256,SCRAM-SHA-512"
    assert Path(props["listener.name.sasl_ssl.ssl.keystore.location"]).stat().st_mode & 0o077 == 0
    options = node.format_options()
    assert options.count("--add-scram") == 2
    assert kafka_cluster.bootstrap(KafkaSettings(port=29092), 3, sasl=True) == (
        "127.0.0.1:29096,127.0.0.1:29106,127.0.0.1:29116"
    )


def test_a_formatted_layout_is_kept(tmp_path: Path) -> None:
    (tmp_path / "kafka").mkdir()
    (tmp_path / "kafka" / "cluster.json").write_text('{"brokers": 3, "sasl_ssl": false}')
    assert kafka_cluster.Layout.of(StackSettings(home=tmp_path)).brokers == 3
    with pytest.raises(ConfigError, match="created with 3 Kafka node"):
        kafka_cluster.Layout.of(StackSettings(home=tmp_path, kafka_brokers=5))


def test_a_single_node_stack_is_not_turned_into_a_cluster(tmp_path: Path) -> None:
    (tmp_path / "kafka" / "data").mkdir(parents=True)
    with pytest.raises(ConfigError, match="created with 1 Kafka node"):
        kafka_cluster.Layout.of(StackSettings(home=tmp_path, kafka_brokers=3))
    found = servers(StackSettings(home=tmp_path), KafkaSettings(), PostgresSettings(), S3Settings())
    assert [s.name for s in found] == ["kafka", "postgres", "s3proxy"]
