"""faust's aiokafka transport, delivering each fetched batch whole to the run's handler.

faust hands every record through its conductor, a channel queue and a stream, and waits on
each with a new task: about a hundred microseconds a record, five times what the run's own
work costs. A run reads a bounded backlog as fast as it can, so its worker takes the records
aiokafka fetched per partition and processes them as one batch. Everything else stays
faust's: the consumer group and its assignor, rebalancing, the per-partition transactional
producers of ``exactly_once`` and their commits (processors/app.py commits each batch's
offsets in its partition's transaction).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, ClassVar

import faust
from faust.tables import TableManager
from faust.transport.drivers import TRANSPORTS
from faust.transport.drivers import aiokafka as driver
from faust.types import TP

SCHEME = "sluiceway"  # broker URL scheme of this transport: sluiceway://host:port

BatchHandler = Callable[[TP, Sequence[Any]], Awaitable[None]]


class BatchApp(faust.App):
    """A faust app whose fetched records go to ``batch_handler`` instead of its agents."""

    batch_handler: BatchHandler | None = None
    reads_itself = False  # a full run: the worker reads its partitions (processors/full_pass.py)


class BatchConsumer(driver.Consumer):
    async def _drain_messages(self, fetcher: Any) -> None:
        handler = getattr(self.app, "batch_handler", None)
        if handler is None:
            await super()._drain_messages(fetcher)
            return
        fetcher_stopped = fetcher._stopped.is_set
        stopped: tuple[type[BaseException], ...] = (
            asyncio.CancelledError,
            *self.consumer_stopped_errors,
        )
        try:
            while getattr(self.app, "reads_itself", False) and not self.should_stop:
                # faust's consumer only keeps the group's assignment; nothing is drained, so
                # aiokafka stops after one small fetch per partition
                await self.sleep(1.0)
            while not (self.should_stop or fetcher_stopped()):
                records, _ = await self._wait_next_records(timeout=1.0)
                for tp, batch in (records or {}).items():
                    if batch:
                        await handler(tp, batch)
                await self.sleep(0)  # give the timers and the transaction manager their turn
        except stopped:
            # Stopping (SIGTERM) cancels the fetch; faust's own loop returns quietly then. Raised
            # during a rebalance, it made faust's fetcher crash the worker: exit 1, not 0.
            if not self.app.should_stop:
                raise


class DurableProducer(driver.Producer):
    """faust asks for acks=all and idempotence only inside transactions; a run's outputs and
    dead letters need them in at_least_once mode too, or a retried send may double a record
    or a leader change may drop one."""

    def _settings_extra(self) -> Mapping[str, Any]:
        return {**super()._settings_extra(), "acks": "all", "enable_idempotence": True}


class NoTableWait(TableManager):
    """faust's table manager sleeps a second as it starts, so that tables declared late can
    still register before recovery: a second before every processor joins its group, each
    run's start. A run's app declares no tables, so there is nothing to wait for."""

    async def on_start(self) -> None:
        if self.values():  # tables after all: keep faust's wait for late ones
            await super().on_start()
            return
        if not self.should_stop:
            await self._update_channels()
            await self.recovery.start()


class Transport(driver.Transport):
    Consumer: ClassVar[Any] = BatchConsumer
    Producer: ClassVar[Any] = DurableProducer


def register() -> None:
    """Make ``sluiceway://`` broker URLs use this transport (idempotent)."""
    TRANSPORTS.aliases[SCHEME] = f"{__name__}:Transport"
