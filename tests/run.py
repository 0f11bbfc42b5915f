"""`make test`: the whole suite on one local stack, most of it on several pytest workers.

The integration tests spend most of their time waiting on Kafka, PostgreSQL and the
workers they start, so several run at once over the same stack (each has its own topics
and database). Tests marked ``serial`` stop a shared broker or start a three-broker
cluster; they run afterwards, alone. The stack is started once, before both phases, and
stopped after them unless it was already running or SLUICEWAY_KEEP_STACK=1.

Usage: ``python -m tests.run [pytest arguments...]``; SLUICEWAY_TEST_WORKERS sets the
number of workers of the first phase (default 3).
"""

from __future__ import annotations

import os
import subprocess
import sys

from sluiceway import devstack as stack
from sluiceway.common.settings import KafkaSettings, PostgresSettings, S3Settings, StackSettings

NO_TESTS = 5  # pytest's exit code when the selection is empty


def _pytest(*args: str) -> int:
    command = [sys.executable, "-m", "pytest", "-ra", *args]
    print("+", " ".join(command[1:]), flush=True)
    return subprocess.call(command)


def _phases(workers: str, extra: list[str]) -> int:
    parallel = _pytest("-n", workers, "--dist", "loadfile", "-m", "not serial",
                       "--durations=30", *extra)  # fmt: skip
    alone = _pytest("-p", "no:xdist", "-m", "serial", "--durations=10", *extra)
    codes = [code for code in (parallel, alone) if code != NO_TESTS]
    if not codes:
        return NO_TESTS
    return next((code for code in codes if code != 0), 0)


def main(argv: list[str]) -> int:
    settings = (StackSettings.for_dev_stack(), KafkaSettings(), PostgresSettings(), S3Settings())
    already = all(server.running for server in stack.status(*settings))
    stack.up(*settings)
    try:
        return _phases(os.environ.get("SLUICEWAY_TEST_WORKERS", "3"), argv)
    finally:
        if not already and os.environ.get("SLUICEWAY_KEEP_STACK") != "1":
            stack.down(*settings)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
