"""Fixtures of the integration tests that need more than the shared local stack."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack

import pytest

from tests.integration.cluster import Cluster, free_base_port, running_cluster

# The three-node cluster's users run back to back, and the cluster stops after the last of
# them, so its three brokers do not idle (and take memory) through the rest of the session.
_cluster_stack = ExitStack()


def _uses_cluster(item: pytest.Item | None) -> bool:
    return item is not None and "kafka_cluster" in getattr(item, "fixturenames", ())


@pytest.hookimpl(tryfirst=True)  # before `-m` deselects by marker
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    users = [item for item in items if _uses_cluster(item)]
    for item in users:
        # three more brokers on two cores: run them when nothing else does
        item.add_marker(pytest.mark.serial)
    if users:
        first = items.index(users[0])
        others = [item for item in items if not _uses_cluster(item)]
        items[:] = others[:first] + users + others[first:]


@pytest.hookimpl(trylast=True)  # after the item's own fixtures are torn down
def pytest_runtest_teardown(item: pytest.Item, nextitem: pytest.Item | None) -> None:
    if _uses_cluster(item) and not _uses_cluster(nextitem):
        _cluster_stack.close()


@pytest.fixture(scope="session")
def kafka_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """The three-node SASL_SSL cluster, started once for every test that uses it."""
    home = tmp_path_factory.mktemp("cluster")
    yield _cluster_stack.enter_context(running_cluster(home, free_base_port()))
    _cluster_stack.close()


@pytest.fixture
def cluster(kafka_cluster: Cluster) -> Iterator[Cluster]:
    """The shared cluster, healthy (three brokers, every partition in sync) when the test
    starts; a broker the test killed is started again afterwards, for the next test."""
    kafka_cluster.restore()
    yield kafka_cluster
    kafka_cluster.restore()
