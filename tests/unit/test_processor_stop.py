"""A stop signal before the processor joins its group (processors/main.py): recorded by the
handler, acted on by the pass's loop.

A CI run saw SIGTERM land while the pre-pass built its Kafka consumer; the handler of the
time raised, and librdkafka's constructor reported that as "TypeError: expected
configuration property name as type unicode string", so the worker exited 1 instead of 0.
"""

from __future__ import annotations

import os
import signal
import threading

import pytest
from confluent_kafka import Consumer, Message

from sluiceway.common.settings import KafkaSettings
from sluiceway.processors.errors import ScanStoppedError
from sluiceway.processors.main import early_stop
from sluiceway.processors.scan import scan

# nothing listens there: a consumer is built without connecting
NOWHERE = {"bootstrap.servers": "127.0.0.1:9", "group.id": "sw-test-stop"}


def _never_visited(_msg: Message) -> None:
    raise AssertionError("the scan read a record after the stop")


def test_a_signal_while_a_consumer_is_built_is_only_recorded() -> None:
    """Signals sent from another thread land at any bytecode of the main thread, inside
    the constructor's calls back into Python too; none may surface as an exception."""
    done = threading.Event()

    def pester() -> None:
        while not done.wait(0.0005):
            os.kill(os.getpid(), signal.SIGTERM)

    with early_stop() as stop:
        thread = threading.Thread(target=pester)
        thread.start()
        try:
            for _ in range(300):
                Consumer(NOWHERE).close()
        finally:
            done.set()
            thread.join()
        assert stop.requested


def test_the_scan_ends_with_scan_stopped_once_a_stop_is_recorded() -> None:
    with early_stop() as stop:
        os.kill(os.getpid(), signal.SIGTERM)
        with pytest.raises(ScanStoppedError):
            scan(KafkaSettings(port=9), "sw-test-stop", {("t", 0): (0, 10)}, _never_visited,
                 timeout_s=30, stopped=stop.__bool__)  # fmt: skip


def test_the_previous_handlers_come_back_after_the_passes() -> None:
    before = signal.getsignal(signal.SIGTERM)
    with early_stop():
        assert signal.getsignal(signal.SIGTERM) is not before
    assert signal.getsignal(signal.SIGTERM) is before
