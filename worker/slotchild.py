"""The main function of a slot process: runs one task at a time, as told.

Started ahead of time (one per slot) so that a DeployTask only pays for
pickling the spec, not for starting Python and importing the operators. A task
that shares a slot with another (slot sharing) runs in an extra process of that
worker, a lane (worker/slots.py), started the first time one is needed and kept.
The process has one event loop: it watches the pipe, so a CancelRun cancels the
running task at its next ``await``, and while the slot waits it starts the edge
clients of the next task (``WarmEdgeClients``). (What a task leaves running is
not cancelled for it: the warm clients' own background tasks, begun while a task
runs, would go with it. A task closes what it opened; a job's own code runs in
a process that is replaced after it.) User code that
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
from collections.abc import Callable
from multiprocessing.connection import Connection

from schemas import events as ev
from schemas import kafkalog
from schemas.statestore import StateStore, open_store
from worker import slotmsg
from worker.checkpointing import CheckpointControl, CheckpointReport, Declined
from worker.edges import WarmEdgeClients
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
    # A broker outage is told once per worker, by the TaskManager (its own clients meet
    # it too); the slots' clients, idle warm ones included, stay quiet about it (their
    # aiokafka lines are still counted away; a task that cannot go on fails and says so).
    logging.getLogger(kafkalog.OUTAGE_LOGGER).setLevel(logging.ERROR)
    registry = OperatorRegistry.load()
    functions = FunctionRegistry.load()
    conn.send(slotmsg.Ready(os.getpid()))
    try:
        asyncio.run(_serve(conn, registry, functions, kafka, state_url))
    finally:
        conn.close()


#: An idle slot wakes this often to replace warm clients that grew old.
_IDLE_WAKE_S = 60.0

#: The running task's handler of the messages that concern it: True when it took one.
Handler = Callable[[slotmsg.ToSlot], bool]


async def _serve(
    conn: Connection,
    registry: OperatorRegistry,
    functions: FunctionRegistry,
    kafka: KafkaEnv | None,
    state_url: str | None,
) -> None:
    """The slot's one event loop: tasks one after the other, the edge clients of the
    next one started while it waits (worker/edges.py, ``WarmEdgeClients``)."""
    loop = asyncio.get_running_loop()
    inbox: asyncio.Queue[slotmsg.ToSlot] = asyncio.Queue()
    running: list[Handler] = []  # the current task's handler, while one runs

    def readable() -> None:
        try:
            message = conn.recv()
        except EOFError:  # the TaskManager is gone
            loop.remove_reader(conn.fileno())
            message = slotmsg.Shutdown()
        if not (running and running[0](message)):
            inbox.put_nowait(message)

    loop.add_reader(conn.fileno(), readable)
    clients = WarmEdgeClients(kafka.bootstrap) if kafka is not None else None
    try:
        while True:
            if clients is not None:
                clients.prepare()
            try:
                message = await asyncio.wait_for(inbox.get(), _IDLE_WAKE_S)
            except TimeoutError:
                continue
            if isinstance(message, slotmsg.RunTask):
                ops, fns = (registry, functions) if message.code is None else _own(message.code)
                ran = _run(conn, message.spec, ops, fns, kafka, state_url, running, clients)
                if not await ran:
                    return
            elif isinstance(message, slotmsg.Shutdown):
                return
            elif isinstance(message, slotmsg.TriggerRun):  # its task already ended
                conn.send(Declined(message.task, message.checkpoint_id, "task not running"))
            # A CancelRun or NotifyRun for a task that already ended: nothing to do.
    finally:
        with contextlib.suppress(Exception):
            loop.remove_reader(conn.fileno())
        if clients is not None:
            await clients.close()


async def _run(
    conn: Connection,
    spec: TaskSpec,
    registry: OperatorRegistry,
    functions: FunctionRegistry,
    kafka: KafkaEnv | None,
    state_url: str | None,
    running: list[Handler],
    clients: WarmEdgeClients | None,
) -> bool:
    """Run one task; False when the TaskManager went away or said to shut down."""
    loop = asyncio.get_running_loop()
    keep_going = True
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
            clients=clients,
        )
    )

    def on_message(message: slotmsg.ToSlot) -> bool:
        nonlocal keep_going
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
            runner.cancel()
        else:
            # Messages that arrive while a task is ending (the next RunTask can come
            # right after the previous FINISHED report): the loop takes them next.
            return False
        return True

    running.append(on_message)
    try:
        with contextlib.suppress(asyncio.CancelledError):
            await runner
    finally:
        running.clear()
        if sampler is not None:
            sampler.cancel()
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
