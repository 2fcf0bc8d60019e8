"""Protocol workers for the latency benchmark, in a process of their own.

    python -m tests.bench.fleet BOOTSTRAP REDIS_URL CLUSTER_ID [--workers 4] [--slots 8]
        [--finish-after 0.2]

Runs ``tests.integration.harness.ProtocolWorker``s (they report DEPLOYING,
INITIALIZING, RUNNING as soon as they get DeployTask, and FINISHED after
``--finish-after`` seconds) until SIGTERM. Prints ``ready`` once registered.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal

from schemas.catalog import Catalog
from tests.conftest import Stack
from tests.integration.harness import ProtocolWorker


async def main(args: argparse.Namespace) -> None:
    stack = Stack(args.bootstrap, args.redis_url, "bench")
    catalog = Catalog(args.cluster_id)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    async with contextlib.AsyncExitStack() as workers:
        for i in range(args.workers):
            await workers.enter_async_context(
                ProtocolWorker(stack, catalog, f"bench-tm-{i}", args.slots,
                               operators=("sequence",), finish_after_s=args.finish_after)
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
    asyncio.run(main(parser.parse_args()))
