"""Protocol workers for the latency benchmark, in a process of their own.

    python -m tests.bench.fleet BOOTSTRAP REDIS_URL CLUSTER_ID [--workers 4] [--slots 8]
        [--finish-after 0.2] [--first-index 0] [--operators sequence,map]

Runs ``tests.integration.harness.ProtocolWorker``s (they report DEPLOYING,
INITIALIZING, RUNNING as soon as they get DeployTask, in one batch, and FINISHED after
``--finish-after`` seconds; ``--finish-after 0``: never) until SIGTERM. Prints ``ready``
once registered. Workers are named ``bench-tm-N`` from N = ``--first-index`` on (several
fleets of one cluster, one process per simulated TaskManager as real ones would be, use
distinct ranges). ``--ack-checkpoints``: every ``TriggerCheckpoint`` is acknowledged at once
for the triggered task (trivial state: a fake 16-byte handle, nothing stored), the way a
source subtask with nothing downstream would (the checkpoint benchmark), and two lines
printed per trigger: ``got CHECKPOINT_ID MS`` (the command read) and ``ack CHECKPOINT_ID
EVENT_TIME_MS`` (its last acknowledgement). ``--insecure-unsigned``: commands are taken
without a signature (the coordinator runs ``--insecure-unsigned``); reports are signed
either way.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal

from schemas import events as ev
from schemas.catalog import Catalog
from tests.conftest import Stack
from tests.integration.harness import ProtocolWorker, now_ms, signed_record


class AckingWorker(ProtocolWorker):
    """Acknowledges each trigger for the tasks it names only (not every task of its job);
    reads its commands as a real worker does (read_committed, the worker's fetch wait,
    signatures checked)."""

    verify_commands = True

    async def _acknowledge(self, trigger: ev.TriggerCheckpoint) -> None:
        got, last = now_ms(), 0
        for task in trigger.tasks():
            ack = ev.CheckpointAcknowledged(
                event_id=self._id(), event_time=now_ms(), tm_id=self.tm_id,
                incarnation=self.incarnation, checkpoint_id=trigger.checkpoint_id, task=task,
                state_handle=f"bench://{trigger.checkpoint_id}/{task.subtask_index}",
                state_size=16, duration_ms=0,
            )  # fmt: skip
            # Not waiting for the broker's ack of each one: a worker's acks go out batched.
            topic, key, value, headers = signed_record(self.catalog, ack)
            await self._producer.producer.send(topic, value, key=key, headers=headers)
            last = ack.event_time
        # For the breakdown: when this worker got the trigger and sent its last ack.
        print(f"got {trigger.checkpoint_id} {got}\nack {trigger.checkpoint_id} {last}", flush=True)


async def main(args: argparse.Namespace) -> None:
    stack = Stack(args.bootstrap, args.redis_url, "bench")
    catalog = Catalog(args.cluster_id)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    AckingWorker.verify_commands = not args.insecure_unsigned
    async with contextlib.AsyncExitStack() as workers:
        for i in range(args.workers):
            await workers.enter_async_context(
                AckingWorker(stack, catalog, f"bench-tm-{args.first_index + i}", args.slots,
                             operators=tuple(args.operators.split(",")),
                             finish_after_s=args.finish_after or None,
                             acknowledge_checkpoints=args.ack_checkpoints)
            )  # fmt: skip
        print("ready", flush=True)
        await stop.wait()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("bootstrap")
    parser.add_argument("redis_url")
    parser.add_argument("cluster_id")
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--slots", type=int, default=8)
    parser.add_argument("--finish-after", type=float, default=0.2)
    parser.add_argument("--ack-checkpoints", action="store_true")
    parser.add_argument("--first-index", type=int, default=0)
    parser.add_argument("--operators", default="sequence", help="comma-separated, offered")
    parser.add_argument("--insecure-unsigned", action="store_true",
                        help="take unsigned commands (a coordinator run --insecure-unsigned), "
                        "as a worker run so does")  # fmt: skip
    asyncio.run(main(parser.parse_args()))
