"""The main function of a slot process: runs one task at a time, as told.

Started ahead of time (one per slot) so that a DeployTask only pays for
pickling the spec, not for starting Python and importing the operators. A task
that shares a slot with another (slot sharing) runs in an extra process of that
worker, a lane (worker/slots.py), started the first time one is needed and kept.
Each task runs in a fresh event loop; while it runs, the loop also watches the
pipe, so a CancelRun cancels the task at its next ``await``. User code that
never awaits (or blocks in C) cannot be cancelled that way: the TaskManager
kills the whole process after the cancel timeout and starts a new one.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import logging
import os
import signal
import sys
from collections import deque
from multiprocessing.connection import Connection

from schemas import events as ev
from schemas import kafkalog
from schemas.statestore import StateStore, open_store
from worker import slotmsg
from worker.checkpointing import CheckpointControl, CheckpointReport, Declined
from worker.functions import FunctionRegistry
from worker.metrics import SAMPLE_INTERVAL_S, TaskCounters
from worker.operators.api import KafkaEnv, TaskSpec
from worker.operators.registry import OperatorRegistry
from worker.task import default_links, run_task

log = logging.getLogger("worker.slot")

_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    """Linux: SIGKILL this process when the TaskManager dies, even by kill -9,
    so a hung task never outlives its worker as an orphan."""
    if not sys.platform.startswith("linux"):
        return
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


def slot_main(
    conn: Connection,
    slot_index: int,
    log_level: int,
    kafka: KafkaEnv | None = None,
    state_url: str | None = None,
) -> None:
    """Entry point of the slot process (multiprocessing target)."""
    _die_with_parent()
    # Ctrl-C reaches the whole process group; the TaskManager alone decides
    # how tasks stop (cancel, then kill), so the slots ignore it.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    logging.basicConfig(
        level=log_level,
        format=f"%(asctime)s %(levelname)s slot-{slot_index} %(name)s: %(message)s",
        stream=sys.stderr,
    )
    # aiokafka logs every reconnect at WARNING/ERROR; its INFO is noise here.
    logging.getLogger("aiokafka").setLevel(max(log_level, logging.WARNING))
    kafkalog.install()
    registry = OperatorRegistry.load()
    functions = FunctionRegistry.load()
    conn.send(slotmsg.Ready(os.getpid()))
    # Messages that arrived while a task was ending (the next RunTask can come
    # right after the previous FINISHED report): handled before reading more.
    backlog: deque[slotmsg.ToSlot] = deque()
    try:
        while True:
            if backlog:
                message = backlog.popleft()
            else:
                try:
                    message = conn.recv()
                except EOFError:
                    return  # the TaskManager is gone
            if isinstance(message, slotmsg.RunTask):
                ops, fns = (registry, functions) if message.code is None else _own(message.code)
                runner = _run(conn, message.spec, ops, fns, kafka, state_url, backlog)
                if not asyncio.run(runner):
                    return
            elif isinstance(message, slotmsg.Shutdown):
                return
            elif isinstance(message, slotmsg.TriggerRun):  # its task already ended
                conn.send(Declined(message.task, message.checkpoint_id, "task not running"))
            # A CancelRun or NotifyRun for a task that already ended: nothing to do.
    finally:
        conn.close()


async def _run(
    conn: Connection,
    spec: TaskSpec,
    registry: OperatorRegistry,
    functions: FunctionRegistry,
    kafka: KafkaEnv | None,
    state_url: str | None,
    backlog: deque[slotmsg.ToSlot],
) -> bool:
    """Run one task; False when the TaskManager went away or said to shut down."""
    loop = asyncio.get_running_loop()
    keep_going = True
    # Per task: each task runs in its own event loop, which a Kafka client is bound to.
    store = _open_store(state_url, kafka)

    def report_checkpoint(message: CheckpointReport) -> None:
        conn.send(message)

    checkpoints = CheckpointControl(
        spec, store, report_checkpoint, logging.getLogger(f"worker.task.{spec.describe()}")
    )
    # One link per operator of the task's chain (one without chaining), each its own
    # task attempt with its own counters and checkpoints (worker/chain.py).
    links = default_links(spec, checkpoints, TaskCounters())
    by_task = {link.spec.task: link for link in links}

    def send_sample() -> None:
        for link in links:
            conn.send(slotmsg.MetricsUpdate(link.counters.sample(link.spec.task)))

    def report(
        state: ev.ExecutionState, error_name: str | None, stack: str | None, fatal: bool
    ) -> None:
        send_sample()  # first: the counters a FINISHED report ends with are the final ones
        conn.send(slotmsg.StateUpdate(spec.task, state, error_name, stack, fatal))

    sampler: asyncio.TimerHandle | None = None

    def sample_now_and_later() -> None:
        nonlocal sampler
        with contextlib.suppress(OSError):  # the TaskManager is gone: the task ends anyway
            send_sample()
        sampler = loop.call_later(SAMPLE_INTERVAL_S, sample_now_and_later)

    sampler = loop.call_later(SAMPLE_INTERVAL_S, sample_now_and_later)
    runner = asyncio.create_task(
        run_task(
            spec,
            registry,
            report,
            kafka=kafka,
            functions=functions,
            checkpoints=checkpoints,
            counters=links[0].counters,
            links=links,
        )
    )

    def on_message() -> None:
        nonlocal keep_going
        try:
            message = conn.recv()
        except EOFError:
            message = slotmsg.Shutdown()
        if isinstance(message, slotmsg.CancelRun):
            if message.task in by_task:
                runner.cancel()
        elif isinstance(message, slotmsg.TriggerRun):
            if message.task == spec.task:
                checkpoints.trigger(message.checkpoint_id)
            else:
                conn.send(Declined(message.task, message.checkpoint_id, "task not running"))
        elif isinstance(message, slotmsg.NotifyRun):
            link = by_task.get(message.task)
            if link is not None:
                link.checkpoints.notify(message.checkpoint_id, completed=message.completed)
        elif isinstance(message, slotmsg.Shutdown):
            keep_going = False
            loop.remove_reader(conn.fileno())
            runner.cancel()
        else:
            backlog.append(message)

    loop.add_reader(conn.fileno(), on_message)
    try:
        with contextlib.suppress(asyncio.CancelledError):
            await runner
    finally:
        if sampler is not None:
            sampler.cancel()
        if keep_going:
            loop.remove_reader(conn.fileno())
        if store is not None:
            with contextlib.suppress(Exception):
                await store.close()
    return keep_going


def _own(code: str) -> tuple[OperatorRegistry, FunctionRegistry]:
    """The registries with the job's code first (this process is replaced after the task)."""
    from worker.usercode import registries

    return registries(code)


def _open_store(url: str | None, kafka: KafkaEnv | None) -> StateStore | None:
    """The worker's checkpoint storage (``state.checkpoints.dir``), or None without one."""
    if url is None or kafka is None:  # without Kafka, no catalog (cluster id) either
        return None
    return open_store(url, catalog=kafka.catalog, bootstrap=kafka.bootstrap)
