"""The batch transport is what a run's faust app gets for its broker URL."""

from __future__ import annotations

from faust.transport.drivers import by_url

from sluiceway.processors import fetch


def test_sluiceway_urls_use_the_batch_consumer() -> None:
    fetch.register()
    transport = by_url("sluiceway://127.0.0.1:19092")
    assert transport is fetch.Transport
    assert transport.Consumer is fetch.BatchConsumer
    assert by_url("kafka://127.0.0.1:19092") is not fetch.Transport


def test_processor_metrics_are_served_on_loopback() -> None:
    import socket
    import urllib.request

    from sluiceway.processors import metrics

    with socket.socket() as probe:  # a free port on loopback
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    metrics.serve(port)
    metrics.READ.labels("t.sw.cdc.issue").inc(3)
    body = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    assert 'sluiceway_processor_events_read_total{topic="t.sw.cdc.issue"} 3.0' in body
    for name in ("events_forwarded", "dead_letters", "batch_seconds", "partitions_pending"):
        assert f"sluiceway_processor_{name}" in body
