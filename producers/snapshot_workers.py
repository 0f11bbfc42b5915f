"""The snapshot's tables read by several workers at once (``capture.snapshot_workers``).

Each worker is a thread with its own connection that imports the same exported snapshot
(``SET TRANSACTION SNAPSHOT``, as ``pg_dump --jobs`` does), so every table is still read as
of the slot's consistent point. Workers only read: they take the next table not yet taken,
read it chunk by chunk and hand the chunks over a bounded queue to the calling thread, which
publishes them and keeps the checkpoint, one chunk at a time, as the serial snapshot does.
Their queries share the run's budget (producers/budget.py), so ``capture.source_max_queries``
bounds what runs on the source however many workers there are.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterable
from contextlib import AbstractContextManager, closing
from typing import Any

from sluiceway.common.health import HEALTH
from sluiceway.common.settings import PostgresSettings
from sluiceway.producers.db import connect
from sluiceway.producers.tables import CapturedTable

SNAPSHOT_APP = "sluiceway-snapshot"  # application_name of the snapshot's connections
ReadChunks = Callable[[Any, CapturedTable], Iterable[Any]]  # (cursor, table) -> its chunks
Item = tuple[str, CapturedTable | None, Any]  # ("chunk" | "done" | "error" | "exit", ...)
Slot = Callable[[], AbstractContextManager[None]]  # a query slot of the run's budget
PUT_WAIT_S = 0.5


def read_in_parallel(
    pg: PostgresSettings,
    snapshot: str,
    tables: list[CapturedTable],
    workers: int,
    read_chunks: ReadChunks,
    accept: Callable[[CapturedTable, Any], None],
    done: Callable[[CapturedTable], None],
    slot: Slot,
) -> None:
    """Read ``tables`` with up to ``workers`` connections importing ``snapshot``; call
    ``accept(table, chunk)`` and ``done(table)`` in this thread as the chunks arrive. A
    worker's statements other than its reads (``read_chunks`` takes the budget for those)
    each hold a ``slot``."""
    todo: queue.SimpleQueue[CapturedTable] = queue.SimpleQueue()
    for table in tables:
        todo.put(table)
    out: queue.Queue[Item] = queue.Queue(maxsize=2 * workers)  # bounds the memory read ahead
    stop = threading.Event()
    args = (pg, snapshot, todo, out, stop, read_chunks, slot)
    threads = [
        threading.Thread(target=_worker, args=args, name=f"snapshot-{i}", daemon=True)
        for i in range(min(workers, len(tables)))
    ]
    for thread in threads:
        thread.start()
    try:
        _drain(out, len(threads), accept, done)
    finally:
        stop.set()  # a worker blocked on the full queue gives up within PUT_WAIT_S
        for thread in threads:
            thread.join()


def _drain(
    out: queue.Queue[Item],
    workers: int,
    accept: Callable[[CapturedTable, Any], None],
    done: Callable[[CapturedTable], None],
) -> None:
    exited = 0
    while exited < workers:
        try:
            kind, table, item = out.get(timeout=1.0)
        except queue.Empty:
            HEALTH.beat()  # waiting on the workers (perhaps on the rows/s budget) on purpose
            continue
        if kind == "chunk" and table is not None:
            accept(table, item)
        elif kind == "done" and table is not None:
            done(table)
        elif kind == "error":
            raise item
        else:
            exited += 1


def _worker(
    pg: PostgresSettings,
    snapshot: str,
    todo: queue.SimpleQueue[CapturedTable],
    out: queue.Queue[Item],
    stop: threading.Event,
    read_chunks: ReadChunks,
    slot: Slot,
) -> None:
    try:
        with closing(connect(pg, SNAPSHOT_APP)) as conn:
            conn.set_session(isolation_level="REPEATABLE READ", readonly=True)
            with conn.cursor() as cur:
                with slot():  # psycopg2 sends its BEGIN with this, in the same slot
                    cur.execute("SET TRANSACTION SNAPSHOT %s", (snapshot,))
                _read_tables(cur, todo, out, stop, read_chunks)
            with slot():
                conn.rollback()
    except Exception as exc:  # handed to the calling thread, which raises it
        _put(out, ("error", None, exc), stop)
    finally:
        _put(out, ("exit", None, None), stop)


def _read_tables(
    cur: Any,
    todo: queue.SimpleQueue[CapturedTable],
    out: queue.Queue[Item],
    stop: threading.Event,
    read_chunks: ReadChunks,
) -> None:
    while not stop.is_set():
        try:
            table = todo.get_nowait()
        except queue.Empty:
            return
        for chunk in read_chunks(cur, table):
            if not _put(out, ("chunk", table, chunk), stop):
                return
        _put(out, ("done", table, None), stop)


def _put(out: queue.Queue[Item], item: Item, stop: threading.Event) -> bool:
    """Put ``item`` unless the run stopped; False when it did."""
    while not stop.is_set():
        try:
            out.put(item, timeout=PUT_WAIT_S)
            return True
        except queue.Full:
            continue
    return False
