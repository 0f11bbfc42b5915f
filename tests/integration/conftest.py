"""Fixtures of the integration tests that need more than the shared local stack."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.integration.cluster import Cluster, free_base_port, running_cluster


@pytest.fixture(scope="session")
def kafka_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """The three-node SASL_SSL cluster, started once for every test that uses it."""
    with running_cluster(tmp_path_factory.mktemp("cluster"), free_base_port()) as cluster:
        yield cluster


@pytest.fixture
def cluster(kafka_cluster: Cluster) -> Iterator[Cluster]:
    """The shared cluster, healthy (three brokers, every partition in sync) when the test
    starts; a broker the test killed is started again afterwards, for the next test."""
    kafka_cluster.restore()
    yield kafka_cluster
    kafka_cluster.restore()
