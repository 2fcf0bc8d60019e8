"""How the at-least-once ``kafka_sink`` writes: Kafka record batches it builds itself.

The records of a topic partition gather in one open batch (aiokafka's batch builder,
the C record builder underneath). Batches leave in *rounds*: when nothing the sink
sent is still unacknowledged, every open batch is sent at once (one produce request
for all the partitions of a broker); while a round is out, new records gather in the
open batches, and the round's last acknowledgement sends the next one. So a sink
that is keeping up sends what it got at once (no linger), and one that is behind
sends fewer, bigger batches instead of queueing many small ones (aiokafka holds a
``send_batch`` until the partition's previous batch has been taken by its sender, so
a batch per call, under a paced source, tied the sink to the broker's round trip).
A batch that is full leaves at once, whatever is out (that wait on the producer is
the sink's backpressure). Order per partition is kept: the one lock orders every
send, and each partition's batches are sent in the order they were opened.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Iterable
from typing import Any, Final

from aiokafka import AIOKafkaProducer

from worker.errors import TaskError

#: (key, value) of one Kafka record, as bytes.
Pair = tuple[bytes | None, bytes]
#: The C builder wants a list (it only reads it).
_NO_HEADERS: Final[list[tuple[str, bytes]]] = []


class SinkRecordTooLargeError(TaskError):
    """A record does not fit in one of the sink producer's batches."""


class SinkBatches:
    """The open batches of one sink subtask's topic and what it has in flight."""

    def __init__(self, producer: AIOKafkaProducer, topic: str, partitions: int) -> None:
        self._producer, self._topic = producer, topic
        self._open: list[Any | None] = [None] * partitions  # BatchBuilder per partition
        self._out = 0  # batches sent and not yet acknowledged (the round out)
        self._lock = asyncio.Lock()
        self._inflight: set[asyncio.Future[Any]] = set()  # sent, not yet acknowledged
        self._later: set[asyncio.Task[None]] = set()
        #: the first failed delivery (or send): the sink raises it at its next call.
        self.error: BaseException | None = None
        #: batches sent (tests and logs).
        self.batches = 0

    async def write(self, by_partition: dict[int, list[Pair]]) -> None:
        """Add the records to their partitions' open batches; send them at once if no
        round is out."""
        async with self._lock:
            for partition, pairs in by_partition.items():
                await self._append(partition, pairs)
            if self._out == 0:
                await self._send_open(range(len(self._open)))

    async def _append(self, partition: int, pairs: list[Pair]) -> None:
        """Append to the open batch, straight into aiokafka's C record builder
        underneath its ``BatchBuilder`` (``_builder``, with the offset ``BatchBuilder``
        keeps in ``_relative_offset``; aiokafka is pinned to 0.14.0): its Python
        ``append`` wrapper cost as much as the builder itself. Every record of the
        call takes the call's time as its timestamp (CreateTime)."""
        timestamp = int(time.time() * 1000)
        batch = self._open[partition]
        if batch is None:
            batch = self._open[partition] = self._producer.create_batch()
        append, offset = batch._builder.append, batch._relative_offset
        for key, value in pairs:
            if append(offset, timestamp, key, value, _NO_HEADERS) is None:  # full
                batch._relative_offset = offset
                await self._send_open((partition,))
                batch = self._open[partition] = self._producer.create_batch()
                append, offset = batch._builder.append, batch._relative_offset
                if append(offset, timestamp, key, value, _NO_HEADERS) is None:
                    raise SinkRecordTooLargeError(
                        f"kafka_sink: a record of {len(value)} bytes exceeds the "
                        f"producer's batch size ({self._topic})"
                    )
            offset += 1
        batch._relative_offset = offset

    async def _send_open(self, partitions: Iterable[int]) -> None:
        """Send the open batches of `partitions` (the caller holds the lock)."""
        for partition in partitions:
            batch = self._open[partition]
            self._open[partition] = None
            if batch is None or not batch.record_count():
                continue
            batch.close()
            future = await self._producer.send_batch(batch, self._topic, partition=partition)
            self._out += 1
            self.batches += 1
            self._inflight.add(future)
            future.add_done_callback(self._delivered)

    def _delivered(self, future: asyncio.Future[Any]) -> None:
        self._out -= 1
        self._inflight.discard(future)
        if future.cancelled():
            return
        error = future.exception()  # also marks it retrieved
        if error is not None and self.error is None:
            self.error = error
        if self._out == 0 and self.error is None and any(self._open):
            task = asyncio.create_task(self._next_round())
            self._later.add(task)
            task.add_done_callback(self._later.discard)

    async def _next_round(self) -> None:
        try:
            async with self._lock:
                if self._out == 0:
                    await self._send_open(range(len(self._open)))
        except Exception as err:  # the sink fails at its next record, checkpoint or end
            if self.error is None:
                self.error = err

    async def mark(self) -> list[asyncio.Future[Any]]:
        """Send every open batch; the deliveries of everything sent so far (the sink's
        records up to now), to wait for with ``delivered`` while later ones go on."""
        async with self._lock:
            await self._send_open(range(len(self._open)))
            return list(self._inflight)

    async def delivered(self, sent: list[asyncio.Future[Any]]) -> None:
        """Return once every delivery of `sent` (from ``mark``) is acknowledged; raise
        the first failure (of those, or any since)."""
        if sent:
            await asyncio.wait(sent)
        if self.error is not None:
            raise self.error

    async def flush(self) -> None:
        """Send every open batch and wait until Kafka acknowledged everything sent;
        raise the first failure."""
        async with self._lock:
            await self._send_open(range(len(self._open)))
        await self._producer.flush()
        if self.error is not None:
            raise self.error

    async def close(self) -> None:
        for task in list(self._later):
            task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.gather(*self._later, return_exceptions=True)
