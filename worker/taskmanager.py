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
import dataclasses
import logging
import os
import socket
import time
import uuid
from collections.abc import Callable
from importlib import metadata
from typing import TYPE_CHECKING

from schemas import events as ev
from schemas import timing
from schemas.limits import FINISHED_TASK_HANDLE, MAX_RUNNING_TASKS_PER_WORKER
from schemas.statestore import StateStore, open_store
from worker import checkpointing, errors, slotmsg, slots, usercode
from worker.epochs import CommandFilter, LeaderWatch
from worker.failures import MAX_STACK_BYTES, clip_middle
from worker.hooks import WorkerTestHooks
from worker.kafka import Commands, Reports
from worker.metrics import MetricsBook
from worker.operators.api import KafkaEnv, TaskSpec
from worker.operators.registry import OperatorRegistry
from worker.settings import WorkerSettings
from worker.slotproc import SlotProcess

if TYPE_CHECKING:  # imported only when telemetry is on (worker/app.py)
    from worker.telemetry import WorkerTelemetry

#: Chains remembered (as many as the slot table remembers ended attempts): a CancelTask
#: of a chained subtask finds its chain, running or ended, for that long.
_REMEMBER_CHAINS = 10_000
#: How long the report sender waits after the first new report for more to come along
#: (it replaces the producer's linger, which is 0).
REPORT_GATHER_S = 0.002
#: A task's DEPLOYING and INITIALIZING reports wait up to this long for its RUNNING (a
#: pre-started slot reaches it within a few milliseconds): the three then cost the leader
#: one transaction, and the RUNNING does not queue behind the commit of the first two.
REPORT_HOLD_STARTING_S = 0.015
#: Extra slot processes kept started and idle beyond one per slot: a task sharing a slot
#: (slot sharing: the second chain of a job in a slot) starts in one of them instead of
#: waiting 0.6-0.9 s for a new interpreter (docs/workers.md, "Why processes, pre-started").
SPARE_LANES = 1

log = logging.getLogger(__name__)
ES = ev.ExecutionState


def _artifact_store(url: str, kafka: KafkaEnv | None) -> StateStore | None:
    """The blob store jobs' packages are fetched from (the state store), if any."""
    if kafka is None:
        return None
    return open_store(url, catalog=kafka.catalog, bootstrap=kafka.bootstrap)


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


class _Backoff:
    """Exponential delays for retrying Kafka: 0.1 s doubling up to 5 s."""

    def __init__(self, first_s: float = 0.1, max_s: float = 5.0) -> None:
        self._first, self._max = first_s, max_s
        self._delay = first_s

    def next(self) -> float:
        delay, self._delay = self._delay, min(self._delay * 2, self._max)
        return delay

    def reset(self) -> None:
        self._delay = self._first


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
        hooks: WorkerTestHooks | None = None,
        telemetry: WorkerTelemetry | None = None,
    ) -> None:
        self.settings = settings
        self._telemetry = telemetry  # None: off, nothing is traced
        self._hooks = hooks or WorkerTestHooks.from_env()
        self.tm_id = settings.tm_id
        self.incarnation = incarnation or _new_id()
        self.registry = registry
        self._commands = commands
        self._reports = reports
        self._clock = clock
        self.filter = CommandFilter(self.tm_id, self.incarnation)
        self.leader = LeaderWatch(settings.heartbeat_timeout_s)
        self.table = slots.SlotTable(settings.slots)
        self._log_level, self._kafka = log_level, kafka
        # One slot process per lane (worker/slots.py): lane i < slots is slot i's own,
        # pre-started; so are SPARE_LANES extra lanes for tasks sharing a slot (an extra
        # lane is kept once made, idle again when its task ends); more are started when
        # needed.
        self._lanes = [self._new_process(i) for i in range(settings.slots)]
        while self.table.idle_extra_lanes() < SPARE_LANES:
            self._lanes.append(self._new_process(self.table.add_lane()))
        self._kill_timers: dict[int, asyncio.TimerHandle] = {}  # by lane
        #: jobs' own code: installed here once per artifact; lanes running it
        self.artifacts = usercode.cache_for(
            settings.tm_id,
            settings.artifact_cache_dir,
            _artifact_store(settings.state_checkpoints_dir, kafka),
            settings.package_index,
        )
        self._own_code_lanes: set[int] = set()
        # The incarnation that accepted each task in a slot: its reports say so
        # even if the worker has become a new incarnation since.
        self._accepted_by: dict[ev.TaskRef, str] = {}
        # Operator chains (worker/chain.py): the subtasks run in each chain head's task,
        # and the head of each of them. A head's state reports stand for its whole chain.
        self._chained: dict[ev.TaskRef, tuple[ev.TaskRef, ...]] = {}
        self._head_of: dict[ev.TaskRef, ev.TaskRef] = {}
        self._outbox: list[ev.WorkerReport] = []
        self._outbox_changed = asyncio.Event()
        self._reports_sent = asyncio.Event()  # set while nothing waits to be sent
        self._slots_idle = asyncio.Event()  # set while no slot runs a task
        self._background: list[asyncio.Task[None]] = []
        self._heartbeat_seq = 0
        #: counters of the tasks running here and of the last ones that ended.
        self.task_metrics = MetricsBook()
        self._stopping = False
        self._started_at = clock()
        self._partition_logged = False
        self._rejoining: asyncio.Task[None] | None = None
        self._timing_checked: tuple[int | None, int | None] | None = None
        self._timing_refused = asyncio.Event()
        #: why this worker refused its leader's timing, if it did (see run()).
        self.timing_error: str | None = None
        #: sends of a batch of reports that failed (and were retried).
        self.send_failures = 0

    def _new_process(self, lane: int) -> SlotProcess:
        return SlotProcess(
            lane,
            self._on_slot_message,
            self._on_slot_exit,
            self._log_level,
            self._kafka,
            self.settings.state_checkpoints_dir,
        )

    # ------------------------------------------------------------------ run

    async def run(self, stop: asyncio.Event) -> None:
        """Run until `stop` is set, then stop every task and deregister."""
        for process in self._lanes:
            process.start()
        self._register("started")
        sender = asyncio.create_task(self._send_reports(), name="reports")
        loops = [
            asyncio.create_task(self._read_commands(), name="commands"),
            asyncio.create_task(self._heartbeat(), name="heartbeat"),
            asyncio.create_task(self._watch_leader(), name="leader-watch"),
        ]
        stopped = asyncio.create_task(stop.wait())
        refused = asyncio.create_task(self._timing_refused.wait())
        ends = [stopped, refused]
        try:
            # The loops and the sender survive Kafka errors (they log, count and
            # retry); one that ends anyway is a bug, and running blind would be
            # worse than a restart under a new incarnation.
            done, _ = await asyncio.wait([*ends, sender, *loops], return_when="FIRST_COMPLETED")
            for task in done:
                if task not in ends:
                    task.result()
            await self._shutdown(loops, sender)
        finally:
            for task in [*ends, sender, *loops, *self._background]:
                task.cancel()
            await asyncio.gather(*ends, sender, *loops, *self._background,
                                 return_exceptions=True)  # fmt: skip
            for process in self._lanes:
                await process.stop(timeout_s=1.0)
            await self.artifacts.close()

    async def _shutdown(self, loops: list[asyncio.Task[None]], sender: asyncio.Task[None]) -> None:
        self._stopping = True
        for task in loops:
            task.cancel()
        await asyncio.gather(*loops, return_exceptions=True)
        self._cancel_all("TaskManager shutting down")
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
                reason="clean shutdown" if self.timing_error is None else "timeouts refused",
            )
        )
        await self._drain_outbox(sender)
        log.info("deregistered %s (incarnation %s)", self.tm_id, self.incarnation)

    # ------------------------------------------------------------- commands

    def _partitioned(self) -> bool:
        """The drill hook: cut off from the control topics after a while (worker/hooks.py)."""
        after = self._hooks.partition_after_s
        if after is None or self._clock() - self._started_at < after:
            return False
        if not self._partition_logged:
            self._partition_logged = True
            log.warning("drill: cut off from the leader (commands, heartbeats, reports)")
        return True

    async def _read_commands(self) -> None:
        backoff = _Backoff()
        while True:
            try:
                commands = await self._commands.poll(timeout_ms=100)
            except Exception as err:  # Kafka trouble: the leader watch decides, not us
                log.warning("reading commands failed: %s: %s", type(err).__name__, err)
                await asyncio.sleep(backoff.next())
                continue
            backoff.reset()
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
            # We stopped our tasks for a silent leader (and reported them FAILED).
            # Register again once they are gone; if the leader declared this
            # incarnation lost meanwhile, its DisconnectTaskManager (already on our
            # partition, or its answer to this registration) makes us a new one.
            self._register_later(f"leader heard again, epoch {command.epoch}")
        elif verdict.new_epoch and verdict.previous_epoch > 0:
            # A new leader: tell it what runs here so it reconciles. The first
            # epoch heard needs nothing: the registration sent at start is on
            # jm.reports, ahead of this command, for whichever leader reads it.
            log.info("leader epoch %d announced", command.epoch)
            self._register(f"new leader epoch {command.epoch}")
        if isinstance(command, ev.LeaderKeepalive):
            self._check_timing(command)
        if not self.filter.addresses(command):
            return
        match command:
            case ev.DisconnectTaskManager():
                lost, reason = command.incarnation, command.reason
                log.warning("the leader declared incarnation %s lost (%s)", lost, reason)
                self._cancel_all(f"declared lost by the leader: {command.reason}")
                self._rejoin("declared lost by the leader")
            case ev.DeployTask():
                self._deploy(command)
            case ev.CancelTask():
                self._cancel(command.task)
            case ev.TriggerCheckpoint():
                self._trigger(command)
            case ev.NotifyCheckpointComplete() | ev.NotifyCheckpointAborted():
                self._notify(command)
            case _:
                pass  # keepalives

    def _rejoin(self, why: str) -> None:
        """Become a new incarnation (the old one was declared lost) and register it."""
        old, self.incarnation = self.incarnation, _new_id()
        self.filter.incarnation = self.incarnation
        log.warning("incarnation %s replaced by %s (%s)", old, self.incarnation, why)
        self._register_later(why)

    def _register_later(self, why: str) -> None:
        """Register once every slot is really free, so the leader never deploys into
        a slot whose old task is still stopping. Replaces a registration still waiting."""
        if self._rejoining is not None:
            self._rejoining.cancel()
        self._rejoining = asyncio.create_task(self._register_when_idle(why))
        self._background = [t for t in self._background if not t.done()]
        self._background.append(self._rejoining)

    async def _register_when_idle(self, why: str) -> None:
        while self.table.running():
            self._slots_idle.clear()
            await self._slots_idle.wait()
        self._register(why)

    def _check_timing(self, keepalive: ev.LeaderKeepalive) -> None:
        """Refuse to run against a leader whose timeouts make ours unsafe (schemas/timing.py)."""
        told = (keepalive.heartbeat_timeout_ms, keepalive.keepalive_interval_ms)
        if told == self._timing_checked:
            return
        self._timing_checked = told
        timeout_ms, interval_ms = told
        if timeout_ms is None or interval_ms is None:
            return  # an older leader that does not say
        problems = timing.worker_problems(
            leader_timeout_s=self.settings.heartbeat_timeout_s,
            cancel_timeout_s=self.settings.cancel_timeout_s,
            heartbeat_interval_s=self.settings.heartbeat_interval_s,
            coordinator_heartbeat_timeout_ms=timeout_ms,
            keepalive_interval_ms=interval_ms,
        )
        if problems and self.timing_error is None:
            self.timing_error = "; ".join(problems)
            leader = keepalive.leader_replica_id
            log.error("refusing to run against leader %s: %s", leader, self.timing_error)
            self._timing_refused.set()

    def _remember_chain(self, command: ev.DeployTask) -> None:
        """The chain `command` deploys: its head's reports are made for every member."""
        members = tuple(c.task for c in command.chained)
        if not members:
            return
        self._chained[command.task] = members
        for member in members:
            self._head_of[member] = command.task
        while len(self._chained) > _REMEMBER_CHAINS:  # the oldest chains are long gone
            oldest = next(iter(self._chained))
            for member in self._chained.pop(oldest):
                self._head_of.pop(member, None)

    def _deploy(self, command: ev.DeployTask) -> None:
        task = command.task
        if self._telemetry is not None:
            self._telemetry.deploy_received(command)
        if command.task not in self._chained:
            self._remember_chain(command)
        brought = command.artifact.operators if command.artifact is not None else ()
        unknown = [o for o in (command.operator, *(c.operator for c in command.chained))
                   if o not in self.registry and o not in brought]  # fmt: skip
        if unknown:
            error = errors.UnknownOperatorError(
                f"no operator named {unknown[0]!r} on this worker "
                f"(it offers {', '.join(self.registry.names())})"
            )
            self._report_state(task, ES.FAILED, error)
            return
        decision = self.table.deploy(task, command.slot_index)
        match decision:
            case slots.Start(lane=lane):
                spec = TaskSpec.from_command(command)
                if lane == len(self._lanes):  # no spare left: an extra process now
                    self._lanes.append(self._new_process(lane))
                    self._lanes[lane].start()
                log.info("deploying %s in slot %d (process %d)", spec.describe(),
                         command.slot_index, lane)  # fmt: skip
                for t in (task, *self._chained.get(task, ())):
                    self._accepted_by[t] = self.incarnation
                self._report_state(task, ES.DEPLOYING)
                if command.artifact is None:
                    self._lanes[lane].send(slotmsg.RunTask(spec))
                else:
                    self._background.append(
                        asyncio.create_task(self._deploy_own_code(lane, command.artifact, spec))
                    )
            case slots.AlreadyHere(state=state):
                log.info("DeployTask for %s again: already %s", slots.task_name(task), state)
            case slots.Reject(error=rejection):
                log.warning("DeployTask for %s rejected: %s", slots.task_name(task), rejection)
                self._report_state(task, ES.FAILED, rejection)

    async def _deploy_own_code(self, lane: int, artifact: ev.ArtifactRef, spec: TaskSpec) -> None:
        """Install the job's code (once per worker, worker/usercode.py), then run the
        task; its slot gets a fresh interpreter when the task ends."""
        try:
            code = await asyncio.shield(self.artifacts.install(artifact))
        except Exception as err:  # every failure is the task's, with its reason
            failed = slotmsg.StateUpdate(spec.task, ES.FAILED, type(err).__name__,
                                         str(err), non_recoverable=True)  # fmt: skip
            self._on_slot_message(lane, failed)
            return
        entry = self.table.entry(lane)
        if entry is None or entry.task != spec.task:
            return
        if entry.cancel_requested:
            self._on_slot_message(lane, slotmsg.StateUpdate(spec.task, ES.CANCELED))
            return
        self._own_code_lanes.add(lane)
        self._lanes[lane].send(slotmsg.RunTask(spec, code=str(code)))

    def _trigger(self, command: ev.TriggerCheckpoint) -> None:
        """Source tasks checkpoint (their slot processes inject the barriers)."""
        if self._telemetry is not None:
            self._telemetry.checkpoint_triggered(command)
        for task in command.tasks():
            self._trigger_task(task, command.checkpoint_id)

    def _trigger_task(self, task: ev.TaskRef, checkpoint_id: int) -> None:
        lane = self.table.lane_of(task)
        entry = self.table.entry(lane) if lane is not None else None
        if entry is not None and entry.state is ES.FINISHED:
            # Reported FINISHED already (FLIP-147): it counts with no state (its chain too).
            for t in (task, *self._chained.get(task, ())):
                self._checkpoint_report(
                    checkpointing.Acked(t, checkpoint_id, FINISHED_TASK_HANDLE, 0, 0, 0)
                )
            return
        if lane is None or entry is None or entry.state is not ES.RUNNING:
            state = "not here" if entry is None else str(entry.state)
            why = f"task not running on this worker ({state})"
            self._checkpoint_report(checkpointing.Declined(task, checkpoint_id, why))
            return
        self._lanes[lane].send(slotmsg.TriggerRun(task, checkpoint_id))

    def _notify(self, command: ev.NotifyCheckpointComplete | ev.NotifyCheckpointAborted) -> None:
        """Pass a checkpoint's outcome to the tasks' slot processes (an operator may
        commit, e.g. an exactly-once sink); a task that is not running here ignores it."""
        completed = isinstance(command, ev.NotifyCheckpointComplete)
        for task in command.tasks():
            lane = self.table.lane_of(self._head_of.get(task, task))
            entry = self.table.entry(lane) if lane is not None else None
            if lane is None or entry is None or entry.state is not ES.RUNNING:
                log.debug(
                    "checkpoint %d %s: %s not running here",
                    command.checkpoint_id,
                    "complete" if completed else "aborted",
                    slots.task_name(task),
                )
                continue
            self._lanes[lane].send(slotmsg.NotifyRun(task, command.checkpoint_id, completed))

    def _checkpoint_report(self, report: checkpointing.CheckpointReport) -> None:
        incarnation = self._accepted_by.get(report.task, self.incarnation)
        event: ev.WorkerReport
        if isinstance(report, checkpointing.Acked):
            event = ev.CheckpointAcknowledged(
                event_id=_new_id(), event_time=_now_ms(), tm_id=self.tm_id,
                incarnation=incarnation, checkpoint_id=report.checkpoint_id, task=report.task,
                state_handle=report.handle, state_size=report.state_size,
                duration_ms=report.duration_ms, alignment_ms=report.alignment_ms,
            )  # fmt: skip
        else:
            event = ev.CheckpointDeclined(
                event_id=_new_id(), event_time=_now_ms(), tm_id=self.tm_id,
                incarnation=incarnation, checkpoint_id=report.checkpoint_id, task=report.task,
                reason=report.reason,
            )  # fmt: skip
        self._report(event)

    def _cancel(self, task: ev.TaskRef) -> None:
        task = self._head_of.get(task, task)  # a chained subtask: its chain is canceled
        match self.table.cancel(task):
            case slots.CancelRunning(lane=lane):
                self._ask_to_cancel(lane)
            case slots.AlreadyEnded(state=state):
                self._report_state(task, state)
            case slots.UnknownTask():
                log.info("CancelTask for unknown %s ignored", slots.task_name(task))

    def _cancel_all(self, why: str) -> None:
        cancels = self.table.cancel_all(why)
        if cancels:
            log.warning("canceling %d task(s): %s", len(cancels), why)
        for cancel in cancels:
            self._ask_to_cancel(cancel.lane)

    def _ask_to_cancel(self, lane: int) -> None:
        entry = self.table.entry(lane)
        if entry is None or lane in self._kill_timers:
            return
        self._lanes[lane].send(slotmsg.CancelRun(entry.task))
        loop = asyncio.get_running_loop()
        self._kill_timers[lane] = loop.call_later(
            self.settings.cancel_timeout_s, self._cancel_timed_out, lane, entry.task
        )

    def _cancel_timed_out(self, lane: int, task: ev.TaskRef) -> None:
        self._kill_timers.pop(lane, None)
        entry = self.table.entry(lane)
        if entry is not None and entry.task == task:
            log.warning(
                "%s ignored cancellation for %.1f s: killing its process (slot %d)",
                slots.task_name(task),
                self.settings.cancel_timeout_s,
                entry.slot_index,
            )
            self._lanes[lane].kill()

    # ---------------------------------------------------------------- slots

    def _on_slot_message(self, lane: int, message: slotmsg.FromSlot) -> None:
        if isinstance(message, slotmsg.Ready):
            log.debug("slot process %d ready (pid %d)", lane, message.pid)
            return
        if isinstance(message, slotmsg.MetricsUpdate):
            self.task_metrics.update(message.sample)
            return
        if isinstance(message, (checkpointing.Acked, checkpointing.Declined)):
            self._checkpoint_report(message)
            return
        report = self.table.record(lane, message.task, message.state)
        if report is not None:
            if report.stopped is not None:
                stopped = errors.TaskStoppedError(report.stopped)
                self._report_state(message.task, report.state, stopped)
            else:
                self._report(
                    ev.TaskStateChanged(
                        event_id=_new_id(),
                        event_time=_now_ms(),
                        tm_id=self.tm_id,
                        incarnation=self._accepted_by.get(message.task, self.incarnation),
                        task=message.task,
                        state=report.state,
                        error_name=message.error_name,
                        error_stack=message.error_stack,
                        non_recoverable=message.non_recoverable,
                    )
                )
            if report.state.is_terminal:
                if lane in self._own_code_lanes:
                    self._own_code_lanes.discard(lane)
                    self._lanes[lane].renew()
                for t in (message.task, *self._chained.get(message.task, ())):
                    self._accepted_by.pop(t, None)
                    self.task_metrics.ended(t)
                self._slot_freed(lane)

    def _on_slot_exit(self, lane: int, exitcode: int | None, was_ready: bool) -> None:
        self._own_code_lanes.discard(lane)  # the next process is a fresh one anyway
        outcome = self.table.process_died(lane)
        self._slot_freed(lane)
        if outcome is not None:
            task, report = outcome
            error: errors.TaskError | None = None
            if report.stopped is not None:
                error = errors.TaskStoppedError(f"{report.stopped} (killed)")
            elif report.state is ES.FAILED:
                error = errors.SlotProcessDiedError(f"slot process exited with code {exitcode}")
            self._report_state(task, report.state, error)
            for t in (task, *self._chained.get(task, ())):
                self._accepted_by.pop(t, None)
                self.task_metrics.ended(t)
        if self._stopping:
            return
        # A process that died before it was ready (a plugin that crashes the
        # interpreter on import) would otherwise be restarted in a tight loop.
        delay = 0.0 if was_ready else 1.0
        log.info("slot process %d exited (%s): starting a new one", lane, exitcode)
        asyncio.get_running_loop().call_later(delay, self._restart_slot, lane)

    def _restart_slot(self, lane: int) -> None:
        if not self._stopping:
            self._lanes[lane].start()

    def _slot_freed(self, lane: int) -> None:
        timer = self._kill_timers.pop(lane, None)
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
                self._cancel_all(f"no leader heard for {self.settings.heartbeat_timeout_s:g} s")

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
                    task_metrics=self.task_metrics.samples(),
                )
            )
            await asyncio.sleep(self.settings.heartbeat_interval_s)

    def _register(self, why: str) -> None:
        running = tuple(
            r if i == 0 else ev.RunningTask(task=t, slot_index=r.slot_index, state=r.state)
            for r in self.table.running()
            for i, t in enumerate((r.task, *self._chained.get(r.task, ())))
        )
        if len(running) > MAX_RUNNING_TASKS_PER_WORKER:  # a coordinator never places more
            log.warning("%d running tasks, a registration lists %d: the coordinator "
                        "ends the others as missing", len(running),
                        MAX_RUNNING_TASKS_PER_WORKER)  # fmt: skip
            running = running[:MAX_RUNNING_TASKS_PER_WORKER]
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
                error_stack=clip_middle(str(error), MAX_STACK_BYTES) if error is not None else None,
                non_recoverable=isinstance(error, errors.NonRecoverableError),
            )
        )

    def _report(self, event: ev.WorkerReport) -> None:
        if self._telemetry is not None:
            match event:
                case ev.TaskStateChanged():
                    self._telemetry.task_state(event.task, event.state)
                case ev.CheckpointAcknowledged() | ev.CheckpointDeclined():
                    acked = isinstance(event, ev.CheckpointAcknowledged)
                    self._telemetry.checkpoint_reported(event.task, event.checkpoint_id, acked)
                case _:
                    pass
        self._outbox.append(event)
        if isinstance(event, ev.TaskStateChanged):
            # A chain's state is each of its subtasks' (the journal shows vertices).
            for member in self._chained.get(event.task, ()):
                self._outbox.append(
                    dataclasses.replace(
                        event,
                        event_id=_new_id(),
                        task=member,
                        incarnation=self._accepted_by.get(member, event.incarnation),
                    )
                )
        self._reports_sent.clear()
        self._outbox_changed.set()

    async def _send_reports(self) -> None:
        # One sender keeps reports in the order they were made; a batch is
        # pipelined in the producer and acknowledged before the next one. A failed
        # send never ends it: what Kafka refuses for good (a record too large) is
        # dropped and counted by the port; anything else is retried with backoff,
        # the batch kept in front of what came since (heartbeats are not worth it).
        backoff = _Backoff()
        while True:
            await self._outbox_changed.wait()
            # A slot's INITIALIZING and RUNNING (or a chain's reports) come a moment
            # apart: gathered, they cost the leader one transaction, not two in a row.
            await asyncio.sleep(REPORT_GATHER_S)
            self._outbox_changed.clear()
            await self._hold_while_starting()
            batch, self._outbox = self._outbox, []
            if batch and not self._partitioned():
                try:
                    await self._reports.send(batch)
                    backoff.reset()
                except Exception as err:
                    self.send_failures += 1
                    delay = backoff.next()
                    kept = [e for e in batch if not isinstance(e, ev.TaskManagerHeartbeat)]
                    why = f"{type(err).__name__}: {err}"
                    log.warning(
                        "sending %d report(s) failed (%s): retrying %d in %.1f s",
                        len(batch),
                        why,
                        len(kept),
                        delay,
                    )
                    self._outbox[:0] = kept
                    await asyncio.sleep(delay)
                    self._outbox_changed.set()
            if not self._outbox:
                self._reports_sent.set()

    async def _hold_while_starting(self) -> None:
        """Keep the outbox while a task in it is still DEPLOYING or INITIALIZING, until
        it reports a later state or ``REPORT_HOLD_STARTING_S`` has passed."""
        deadline = time.monotonic() + REPORT_HOLD_STARTING_S
        while _starting(self._outbox):
            left = deadline - time.monotonic()
            if left <= 0:
                return
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._outbox_changed.wait(), left)
            self._outbox_changed.clear()

    async def _drain_outbox(self, sender: asyncio.Task[None]) -> None:
        """Wait until every report made so far is acknowledged."""
        sent = asyncio.create_task(self._reports_sent.wait())
        await asyncio.wait([sent, sender], timeout=10, return_when="FIRST_COMPLETED")
        sent.cancel()
        if sender.done():
            sender.result()  # a send error: raise it rather than pretend


def _starting(outbox: list[ev.WorkerReport]) -> bool:
    """Whether the last state `outbox` reports for some task is DEPLOYING or INITIALIZING."""
    last: dict[ev.TaskRef, ES] = {}
    for event in outbox:
        if isinstance(event, ev.TaskStateChanged):
            last[event.task] = event.state
    return any(state in (ES.DEPLOYING, ES.INITIALIZING) for state in last.values())
