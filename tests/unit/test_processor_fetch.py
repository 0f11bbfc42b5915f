"""The batch transport is what a run's faust app gets for its broker URL."""

from __future__ import annotations

from faust.transport.drivers import by_url

from processors import fetch


def test_sluiceway_urls_use_the_batch_consumer() -> None:
    fetch.register()
    transport = by_url("sluiceway://127.0.0.1:19092")
    assert transport is fetch.Transport
    assert transport.Consumer is fetch.BatchConsumer
    assert by_url("kafka://127.0.0.1:19092") is not fetch.Transport
