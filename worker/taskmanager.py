"""The TaskManager: registers, heartbeats, obeys its commands, reports its tasks.

Wiring only: which command means what lives in ``epochs`` (filtering, epochs,
leader liveness) and ``slots`` (slot bookkeeping); running user code lives in
the slot processes (``slotproc``, ``slotchild``, ``task``); Kafka lives behind
the ``Commands`` and ``Reports`` ports (``kafka``). Everything here runs on one
event loop, so no locks.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
import uuid
from collections.abc import Callable
from importlib import metadata

from schemas import events as ev
from worker import errors, slotmsg, slots
from worker.epochs import CommandFilter, LeaderWatch
from worker.kafka import Commands, Reports
from worker.operators.api import KafkaEnv, TaskSpec
from worker.operators.registry import OperatorRegistry
from worker.settings import WorkerSettings
from worker.slotproc import SlotProcess

log = logging.getLogger(__name__)
ES = ev.ExecutionState


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


def _new_id() -> str:
    return uuid.uuid4().hex


def _version() -> str:
    try:
        return metadata.version("kafka-jobmanager")
    except metadata.PackageNotFoundError:
        return "0+unknown"


def _memory_bytes() -> int | None:
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


class TaskManager:
    """One worker incarnation."""

    def __init__(
        self,
        settings: WorkerSettings,
        registry: OperatorRegistry,
        commands: Commands,
        reports: Reports,
        *,
        incarnation: str | None = None,
        clock: Callable[[], float] = time.monotonic,
        log_level: int = logging.INFO,
        kafka: KafkaEnv | None = None,
    ) -> None:
        self.settings = settings
        self.tm_id = settings.tm_id
        self.incarnation = incarnation or _new_id()
        self.registry = registry
        self._commands = commands
        self._reports = reports
        self._clock = clock
        self.filter = CommandFilter(self.tm_id, self.incarnation)
        self.leader = LeaderWatch(settings.heartbeat_timeout_s)
        self.table = slots.SlotTable(settings.slots)
        self._slots = [
            SlotProcess(i, self._on_slot_message, self._on_slot_exit, log_level, kafka)
            for i in range(settings.slots)
        ]
        self._kill_timers: dict[int, asyncio.TimerHandle] = {}
        # The incarnation that accepted each task in a slot: its reports say so
        # even if the worker has become a new incarnation since.
        self._accepted_by: dict[ev.TaskRef, str] = {}
        self._outbox: list[ev.WorkerReport] = []
        self._outbox_changed = asyncio.Event()
        self._reports_sent = asyncio.Event()  # set while nothing waits to be sent
        self._slots_idle = asyncio.Event()  # set while no slot runs a task
        self._background: list[asyncio.Task[None]] = []
        self._heartbeat_seq = 0
        self._stopping = False
        self._started_at = clock()
        self._partition_logged = False

    # ------------------------------------------------------------------ run

    async def run(self, stop: asyncio.Event) -> None:
        """Run until `stop` is set, then stop every task and deregister."""
        for slot in self._slots:
            slot.start()
        self._register("started")
        sender = asyncio.create_task(self._send_reports(), name="reports")
        loops = [
            asyncio.create_task(self._read_commands(), name="commands"),
            asyncio.create_task(self._heartbeat(), name="heartbeat"),
            asyncio.create_task(self._watch_leader(), name="leader-watch"),
        ]
        stopped = asyncio.create_task(stop.wait())
        try:
            # A loop that ends (a Kafka error) ends the worker: running blind
            # would be worse than a restart under a new incarnation.
            done, _ = await asyncio.wait([stopped, sender, *loops], return_when="FIRST_COMPLETED")
            for task in done:
                if task is not stopped:
                    task.result()
            await self._shutdown(loops, sender)
        finally:
            for task in [stopped, sender, *loops, *self._background]:
                task.cancel()
            await asyncio.gather(stopped, sender, *loops, *self._background,
                                 return_exceptions=True)  # fmt: skip
            for slot in self._slots:
                await slot.stop(timeout_s=1.0)

    async def _shutdown(self, loops: list[asyncio.Task[None]], sender: asyncio.Task[None]) -> None:
        self._stopping = True
        for task in loops:
            task.cancel()
        await asyncio.gather(*loops, return_exceptions=True)
        self._cancel_all("worker shutting down")
        # Every task ends within the cancel timeout (killed if need be).
        if not self.table.running():
            self._slots_idle.set()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._slots_idle.wait(), self.settings.cancel_timeout_s + 2.0)
        self._report(
            ev.TaskManagerDeregistered(
                event_id=_new_id(),
                event_time=_now_ms(),
                tm_id=self.tm_id,
                incarnation=self.incarnation,
                reason="clean shutdown",
            )
        )
        await self._drain_outbox(sender)
        log.info("deregistered %s (incarnation %s)", self.tm_id, self.incarnation)

    # ------------------------------------------------------------- commands

    def _partitioned(self) -> bool:
        """The drill hook: cut off from the control topics after a while (see settings)."""
        after = self.settings.partition_after_s
        if after is None or self._clock() - self._started_at < after:
            return False
        if not self._partition_logged:
            self._partition_logged = True
            log.warning("drill: cut off from the leader (commands, heartbeats, reports)")
        return True

    async def _read_commands(self) -> None:
        while True:
            commands = await self._commands.poll(timeout_ms=100)
            if self._partitioned():
                continue
            for command in commands:
                self.on_command(command)

    def on_command(self, command: ev.WorkerCommand) -> None:
        verdict = self.filter.check(command)
        if verdict.stale:
            log.info(
                "dropped %s of epoch %d (highest seen %d)",
                type(command).__name__,
                command.epoch,
                self.filter.highest_epoch,
            )
            return
        if self.leader.heard(self._clock()):
            # We stopped our tasks for a silent leader, which has declared this
            # incarnation lost (and refuses it for good): come back as a new one,
            # but only once every slot is really free, so the leader never deploys
            # into a slot whose old task is still stopping.
            self._new_incarnation()
            self._background.append(asyncio.create_task(self._register_when_idle(command.epoch)))
        elif verdict.new_epoch:
            log.info("leader epoch %d announced", command.epoch)
            self._register(f"new leader epoch {command.epoch}")
        if not self.filter.addresses(command):
            return
        match command:
            case ev.DeployTask():
                self._deploy(command)
            case ev.CancelTask():
                self._cancel(command.task)
            case ev.TriggerCheckpoint():
                self._report(
                    ev.CheckpointDeclined(
                        event_id=_new_id(),
                        event_time=_now_ms(),
                        tm_id=self.tm_id,
                        incarnation=self.incarnation,
                        checkpoint_id=command.checkpoint_id,
                        task=command.task,
                        reason="checkpoints are not supported by this worker yet",
                    )
                )
            case _:
                pass  # keepalives; checkpoint notifications have nothing to act on yet

    async def _register_when_idle(self, epoch: int) -> None:
        while self.table.running():
            self._slots_idle.clear()
            await self._slots_idle.wait()
        self._register(f"leader heard again, epoch {epoch}")

    def _new_incarnation(self) -> None:
        old, self.incarnation = self.incarnation, _new_id()
        self.filter.incarnation = self.incarnation
        log.warning("incarnation %s replaced by %s", old, self.incarnation)

    def _deploy(self, command: ev.DeployTask) -> None:
        task = command.task
        if command.operator not in self.registry:
            error = errors.UnknownOperatorError(
                f"no operator named {command.operator!r} on this worker "
                f"(it offers {', '.join(self.registry.names())})"
            )
            self._report_state(task, ES.FAILED, error)
            return
        decision = self.table.deploy(task, command.slot_index)
        match decision:
            case slots.Start(slot_index=index):
                spec = TaskSpec.from_command(command)
                log.info("deploying %s in slot %d", spec.describe(), index)
                self._accepted_by[task] = self.incarnation
                self._report_state(task, ES.DEPLOYING)
                self._slots[index].send(slotmsg.RunTask(spec))
            case slots.AlreadyHere(state=state):
                log.info("DeployTask for %s again: already %s", slots.task_name(task), state)
            case slots.Reject(error=rejection):
                log.warning("DeployTask for %s rejected: %s", slots.task_name(task), rejection)
                self._report_state(task, ES.FAILED, rejection)

    def _cancel(self, task: ev.TaskRef) -> None:
        match self.table.cancel(task):
            case slots.CancelRunning(slot_index=index):
                self._ask_to_cancel(index)
            case slots.AlreadyEnded(state=state):
                self._report_state(task, state)
            case slots.UnknownTask():
                log.info("CancelTask for unknown %s ignored", slots.task_name(task))

    def _cancel_all(self, why: str) -> None:
        cancels = self.table.cancel_all()
        if cancels:
            log.warning("canceling %d task(s): %s", len(cancels), why)
        for cancel in cancels:
            self._ask_to_cancel(cancel.slot_index)

    def _ask_to_cancel(self, index: int) -> None:
        entry = self.table.entry(index)
        if entry is None or index in self._kill_timers:
            return
        self._slots[index].send(slotmsg.CancelRun(entry.task))
        loop = asyncio.get_running_loop()
        self._kill_timers[index] = loop.call_later(
            self.settings.cancel_timeout_s, self._cancel_timed_out, index, entry.task
        )

    def _cancel_timed_out(self, index: int, task: ev.TaskRef) -> None:
        self._kill_timers.pop(index, None)
        entry = self.table.entry(index)
        if entry is not None and entry.task == task:
            log.warning(
                "%s ignored cancellation for %.1f s: killing slot %d",
                slots.task_name(task),
                self.settings.cancel_timeout_s,
                index,
            )
            self._slots[index].kill()

    # ---------------------------------------------------------------- slots

    def _on_slot_message(self, index: int, message: slotmsg.FromSlot) -> None:
        if isinstance(message, slotmsg.Ready):
            log.debug("slot %d ready (pid %d)", index, message.pid)
            return
        if self.table.record(index, message.task, message.state):
            self._report(
                ev.TaskStateChanged(
                    event_id=_new_id(),
                    event_time=_now_ms(),
                    tm_id=self.tm_id,
                    incarnation=self._accepted_by.get(message.task, self.incarnation),
                    task=message.task,
                    state=message.state,
                    error_name=message.error_name,
                    error_stack=message.error_stack,
                )
            )
            if message.state.is_terminal:
                self._accepted_by.pop(message.task, None)
                self._slot_freed(index)

    def _on_slot_exit(self, index: int, exitcode: int | None, was_ready: bool) -> None:
        outcome = self.table.process_died(index)
        self._slot_freed(index)
        if outcome is not None:
            task, state = outcome
            error = None
            if state is ES.FAILED:
                error = errors.SlotProcessDiedError(f"slot process exited with code {exitcode}")
            self._report_state(task, state, error)
            self._accepted_by.pop(task, None)
        if self._stopping:
            return
        # A process that died before it was ready (a plugin that crashes the
        # interpreter on import) would otherwise be restarted in a tight loop.
        delay = 0.0 if was_ready else 1.0
        log.info("slot %d process exited (%s): starting a new one", index, exitcode)
        asyncio.get_running_loop().call_later(delay, self._restart_slot, index)

    def _restart_slot(self, index: int) -> None:
        if not self._stopping:
            self._slots[index].start()

    def _slot_freed(self, index: int) -> None:
        timer = self._kill_timers.pop(index, None)
        if timer is not None:
            timer.cancel()
        if not self.table.running():
            self._slots_idle.set()

    # -------------------------------------------------- leader, heartbeats

    async def _watch_leader(self) -> None:
        period = min(0.1, self.settings.heartbeat_timeout_s / 10)
        while True:
            await asyncio.sleep(period)
            if self.leader.check(self._clock()):
                log.warning(
                    "no leader heard for %.1f s: stopping every task",
                    self.settings.heartbeat_timeout_s,
                )
                self._cancel_all("leader lost")

    async def _heartbeat(self) -> None:
        while True:
            self._heartbeat_seq += 1
            self._report(
                ev.TaskManagerHeartbeat(
                    event_id=_new_id(),
                    event_time=_now_ms(),
                    tm_id=self.tm_id,
                    incarnation=self.incarnation,
                    sequence=self._heartbeat_seq,
                    slots_free=self.table.free_slots(),
                    running_tasks=len(self.table.running()),
                    last_seen_epoch=self.filter.highest_epoch,
                )
            )
            await asyncio.sleep(self.settings.heartbeat_interval_s)

    def _register(self, why: str) -> None:
        running = self.table.running()
        log.info("registering (%s) with %d running task(s)", why, len(running))
        self._report(
            ev.TaskManagerRegistered(
                event_id=_new_id(),
                event_time=_now_ms(),
                tm_id=self.tm_id,
                incarnation=self.incarnation,
                host=socket.gethostname(),
                slots=self.table.size,
                operators=self.registry.names(),
                running_tasks=running,
                version=_version(),
                cpu_cores=os.cpu_count(),
                memory_bytes=_memory_bytes(),
            )
        )

    # -------------------------------------------------------------- reports

    def _report_state(
        self, task: ev.TaskRef, state: ES, error: BaseException | None = None
    ) -> None:
        self._report(
            ev.TaskStateChanged(
                event_id=_new_id(),
                event_time=_now_ms(),
                tm_id=self.tm_id,
                incarnation=self._accepted_by.get(task, self.incarnation),
                task=task,
                state=state,
                error_name=type(error).__name__ if error is not None else None,
                error_stack=str(error) if error is not None else None,
            )
        )

    def _report(self, event: ev.WorkerReport) -> None:
        self._outbox.append(event)
        self._reports_sent.clear()
        self._outbox_changed.set()

    async def _send_reports(self) -> None:
        # One sender keeps reports in the order they were made; a batch is
        # pipelined in the producer and acknowledged before the next one.
        while True:
            await self._outbox_changed.wait()
            self._outbox_changed.clear()
            batch, self._outbox = self._outbox, []
            if batch and not self._partitioned():
                await self._reports.send(batch)
            if not self._outbox:
                self._reports_sent.set()

    async def _drain_outbox(self, sender: asyncio.Task[None]) -> None:
        """Wait until every report made so far is acknowledged."""
        sent = asyncio.create_task(self._reports_sent.wait())
        await asyncio.wait([sent, sender], timeout=10, return_when="FIRST_COMPLETED")
        sent.cancel()
        if sender.done():
            sender.result()  # a send error: raise it rather than pretend
