"""Prometheus metrics of the sink, registered once per process."""

from __future__ import annotations

from prometheus_client import Counter

ROTATIONS = Counter(
    "sluiceway_sink_rotations_total", "Files closed by the sink, by reason.", ["reason"]
)
ROWS = Counter("sluiceway_sink_rows_total", "Rows written to published files.", ["table"])
BYTES = Counter("sluiceway_sink_bytes_total", "Bytes of published files.", ["table"])
FILES = Counter("sluiceway_sink_files_total", "Files published.", ["table"])
DEAD_LETTERS = Counter(
    "sluiceway_sink_dead_letters_total", "Run-topic messages sent to the dead-letter topic."
)
