"""A realistic journal, generated the way the leader writes one.

A discrete-event simulation drives ``coordinator.domain.decide`` exactly as the
leader loop does (every journal event goes through the codec, and the decoded
copy is applied with ``evolve`` before the next input is decided), with a
simulated fleet reacting to the worker commands:

- 16 workers x 8 slots register; they heartbeat before every tick (100 ms);
- jobs arrive (1-3 vertices, parallelism 1-4, some with checkpointing), run
  for 1-20 s of simulated time and finish; 10% are cancelled by their client,
  2% of tasks fail (fixed-delay restart, 2 attempts);
- workers report DEPLOYING / INITIALIZING / RUNNING when they get DeployTask,
  CANCELED on CancelTask, and acknowledge checkpoints they are triggered for; a
  chained DeployTask's reports are made for every subtask of its chain;
- now and then a worker leaves (clean deregistration) and comes back with a
  new incarnation, and a new leader is elected (workers re-register with what
  they still run, so it reconciles);
- finished jobs are archived 5 s after they end, so memory stays bounded.

``JournalGenerator.batches()`` yields lists of ``(key, value, headers)`` as the leader
would produce them to the journal; ``digest()`` is the generator's live state
digest, which a full replay of the journal must reproduce.
"""

from __future__ import annotations

import functools
import heapq
import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from coordinator.domain import (
    DomainConfig,
    Input,
    LeaderView,
    State,
    Tick,
    decide,
    evolve,
    leader_elected,
    state_digest,
)
from schemas import events as ev
from schemas.catalog import Catalog
from schemas.codec import Codec, Headers, default_codec

T0 = 1_700_000_000_000
TICK_MS = 100
E = ev.ExecutionState

Record = tuple[bytes, bytes, Headers]  # key, value, headers


@dataclass
class _SimWorker:
    tm_id: str
    incarnation: str
    slots: int
    running: dict[tuple[str, str, int], ev.DeployTask] = field(default_factory=dict)
    online: bool = True


@dataclass(order=True)
class _Pending:
    due: int
    seq: int
    action: Callable[[], None] = field(compare=False)


class JournalGenerator:
    """Scripted cluster workload; see the module docstring."""

    def __init__(
        self,
        catalog: Catalog,
        *,
        seed: int = 7,
        workers: int = 16,
        slots: int = 8,
        elect_every: int = 250_000,
        codec: Codec | None = None,
        max_jobs: int | None = None,
    ) -> None:
        """`max_jobs`: no arrivals after that many submissions (the cluster then drains)."""
        self.catalog = catalog
        self.max_jobs = max_jobs
        self.codec = codec or default_codec()
        self.rng = random.Random(seed)
        # Some jobs enable checkpointing: their bookkeeping is part of what replay costs.
        self.config = DomainConfig(
            archive_after_ms=5_000, heartbeat_timeout_ms=5_000, allow_checkpointing=True
        )
        self.state = State()
        self.now = T0
        self.elect_every = elect_every
        self.events = 0
        self.bytes = 0
        self.counts: dict[str, int] = {}
        self.jobs_submitted = 0
        self.max_jobs_in_memory = 0
        self._out: list[Record] = []
        self._triggered: set[tuple[str, int]] = set()
        self._queue: list[_Pending] = []
        self._seq = 0
        self._ids = 0
        self._replica = 0
        self._since_election = 0
        self._workers = {
            f"tm-{i:03d}": _SimWorker(f"tm-{i:03d}", "inc-0", slots) for i in range(workers)
        }
        self._elect()
        for w in self._workers.values():
            self._register(w)

    # ------------------------------------------------------------------ output

    def digest(self) -> str:
        return state_digest(self.state)

    def batches(self, n: int) -> Iterator[list[Record]]:
        """Records of one simulated tick at a time (whole decisions, as a leader commits
        them), until at least `n` records were made."""
        while self.events < n:
            self._step()
            out, self._out = self._out, []
            if out:
                yield out

    def _journal(self, event: ev.JournalEvent) -> None:
        value, headers = self.codec.encode(event)
        decoded = self.codec.decode(value)
        assert isinstance(decoded, ev.JournalEvent)
        evolve(self.state, decoded)
        self._out.append((self.catalog.key_for(event), value, headers))
        self.events += 1
        self._since_election += 1
        self.bytes += len(value)
        name = type(event).__name__
        self.counts[name] = self.counts.get(name, 0) + 1

    def _feed(self, item: Input) -> None:
        decision = decide(self.state, self.view, item, self.now)
        for event in decision.events:
            self._journal(event)
        for command in decision.commands:
            self._command(command)

    # -------------------------------------------------------------- simulation

    def _at(self, delay_ms: int, action: Callable[[], None]) -> None:
        self._seq += 1
        heapq.heappush(self._queue, _Pending(self.now + delay_ms, self._seq, action))

    def _id(self, prefix: str) -> str:
        self._ids += 1
        return f"{prefix}-{self._ids}"

    def _step(self) -> None:
        """Advance to the next tick, running every input due before it."""
        next_tick = self.now - (self.now - T0) % TICK_MS + TICK_MS
        while self._queue and self._queue[0].due < next_tick:
            pending = heapq.heappop(self._queue)
            self.now = max(self.now, pending.due)
            pending.action()
        self.now = next_tick
        self._arrivals()
        for w in self._workers.values():
            if w.online:
                self.view.last_heartbeat[(w.tm_id, w.incarnation)] = self.now
        self._feed(Tick(self._id(f"tick-{self.view.epoch}")))
        self.max_jobs_in_memory = max(self.max_jobs_in_memory, len(self.state.jobs))
        if self._since_election >= self.elect_every:
            self._elect()
            for w in self._workers.values():
                if w.online:
                    self._at(self.rng.randint(1, 50), functools.partial(self._register, w))
        if self.rng.random() < 0.002:
            self._churn()

    def _arrivals(self) -> None:
        # About 8 jobs/s of ~3.6 tasks for ~2.7 s: ~60-80% of the 128 slots are busy
        # on average, and bursts make jobs wait for slots now and then.
        for _ in range(self.rng.choice((0, 0, 0, 1, 1, 1, 1, 1, 2, 2))):
            if self.max_jobs is not None and self.jobs_submitted >= self.max_jobs:
                return
            self._submit()

    def _elect(self) -> None:
        self._replica += 1
        replica_id = f"replica-{self._replica}"
        self._journal(leader_elected(self.state, replica_id, self.events - 1, self.now))
        self.view = LeaderView(
            epoch=self.state.epoch, replica_id=replica_id, leader_since=self.now, config=self.config
        )
        self._since_election = 0

    def _churn(self) -> None:
        online = [w for w in self._workers.values() if w.online]
        if len(online) < 4:
            return
        w = self.rng.choice(online)
        w.online = False
        w.running.clear()
        self._feed(ev.TaskManagerDeregistered(
            event_id=self._id(f"dereg-{w.tm_id}"), event_time=self.now, tm_id=w.tm_id,
            incarnation=w.incarnation,
        ))  # fmt: skip

        def back() -> None:
            w.incarnation = self._id("inc")
            w.online = True
            self._register(w)

        self._at(self.rng.randint(2_000, 8_000), back)

    def _register(self, w: _SimWorker) -> None:
        self._feed(ev.TaskManagerRegistered(
            event_id=self._id(f"reg-{w.tm_id}"), event_time=self.now, tm_id=w.tm_id,
            incarnation=w.incarnation, host=f"host-{w.tm_id}", slots=w.slots,
            operators=("source", "map", "sink"), version="bench",
            running_tasks=tuple(
                ev.RunningTask(task=d.task, slot_index=d.slot_index, state=E.RUNNING)
                for d in w.running.values()
            ),
        ))  # fmt: skip

    def _submit(self) -> None:
        self.jobs_submitted += 1
        job_id = f"job-{self.jobs_submitted:07d}"
        shape = self.rng.choice((1, 1, 2, 2, 3))
        ops = ("source", "map", "sink")[:shape] if shape > 1 else ("source",)
        parallelism = [self.rng.choice((1, 1, 2, 2, 4)) for _ in ops]
        vertices = tuple(
            ev.Vertex(id=f"v{i}", name=op.title(), operator=op, parallelism=p,
                      max_parallelism=128, config={"topic": f"in-{job_id}"})
            for i, (op, p) in enumerate(zip(ops, parallelism, strict=True))
        )  # fmt: skip
        edges = tuple(
            ev.Edge(source=f"v{i}", target=f"v{i + 1}",
                    partitioning=ev.Partitioning.FORWARD if parallelism[i] == parallelism[i + 1]
                    else ev.Partitioning.REBALANCE)
            for i in range(len(ops) - 1)
        )  # fmt: skip
        checkpointing = self.rng.random() < 0.3
        submission = ev.JobSubmitted(
            event_id=self._id("submit"), event_time=self.now, job_id=job_id,
            name=f"bench {job_id}", job_graph=ev.JobGraph(vertices=vertices, edges=edges),
            restart_strategy=ev.RestartStrategy(
                kind=ev.RestartStrategyKind.FIXED_DELAY, attempts=2, delay_ms=500),
            checkpoint_config=ev.CheckpointConfig(interval_ms=2_000 if checkpointing else 0),
            submitted_by="bench",
        )  # fmt: skip
        self._feed(submission)
        duration = self.rng.randint(500, 5_000)
        if self.rng.random() < 0.1:
            self._at(self.rng.randint(200, duration), lambda: self._client_cancel(job_id))
        else:
            self._at(duration, lambda: self._finish(job_id))

    def _client_cancel(self, job_id: str) -> None:
        self._feed(ev.JobCancelRequested(
            event_id=self._id("cancel"), event_time=self.now, job_id=job_id, requested_by="bench",
        ))  # fmt: skip

    def _finish(self, job_id: str) -> None:
        """The job's input is exhausted: every task it still runs reports FINISHED."""
        job = self.state.jobs.get(job_id)
        if job is None or job.status is not ev.JobStatus.RUNNING:
            if job is not None and not job.status.is_globally_terminal:
                self._at(1_000, lambda: self._finish(job_id))  # restarting or waiting: later
            return
        for w in self._workers.values():
            for key, deploy in list(w.running.items()):
                if key[0] == job_id:
                    end = functools.partial(self._report_end, w, deploy, E.FINISHED)
                    self._at(self.rng.randint(1, 20), end)
        # A task failing meanwhile restarts the job: its new attempts finish later.
        self._at(1_000, lambda: self._finish(job_id))

    # -------------------------------------------------- the fleet's reactions

    def _command(self, command: ev.WorkerCommand) -> None:
        w = self._workers.get(getattr(command, "tm_id", ""))
        if w is None or not w.online or getattr(command, "incarnation", None) != w.incarnation:
            return
        if isinstance(command, ev.DeployTask):
            key = (command.task.job_id, command.task.vertex_id, command.task.subtask_index)
            w.running[key] = command
            for delay, state in ((1, E.DEPLOYING), (2, E.INITIALIZING), (3, E.RUNNING)):
                self._at(delay, functools.partial(self._report, w, command.task, state))
            if self.rng.random() < 0.02:
                fail = functools.partial(self._report_end, w, command, E.FAILED)
                self._at(self.rng.randint(50, 3_000), fail)
        elif isinstance(command, ev.CancelTask):
            key = (command.task.job_id, command.task.vertex_id, command.task.subtask_index)
            deploy = w.running.get(key)
            if deploy is not None and deploy.task == command.task:
                self._at(2, functools.partial(self._report_end, w, deploy, E.CANCELED))
        elif isinstance(command, ev.TriggerCheckpoint):
            # One trigger per worker running sources; barriers reach every task once.
            key2 = (command.task.job_id, command.checkpoint_id)
            if key2 not in self._triggered:
                self._triggered.add(key2)
                self._at(5, functools.partial(self._acknowledge, command))

    def _report(self, w: _SimWorker, task: ev.TaskRef, state: ev.ExecutionState,
                error: str | None = None) -> None:  # fmt: skip
        key = (task.job_id, task.vertex_id, task.subtask_index)
        deploy = w.running.get(key)
        if not w.online or deploy is None or deploy.task != task:
            return  # the worker no longer runs this attempt: nothing to report
        # A chain head's report stands for each subtask of its chain (as the worker does).
        for member in (task, *(c.task for c in deploy.chained)):
            self._feed(ev.TaskStateChanged(
                event_id=self._id(f"rep-{w.tm_id}"), event_time=self.now, tm_id=w.tm_id,
                incarnation=w.incarnation, task=member, state=state, error_name=error,
            ))  # fmt: skip

    def _report_end(self, w: _SimWorker, deploy: ev.DeployTask, state: ev.ExecutionState) -> None:
        self._report(w, deploy.task, state, "UserCodeError" if state is E.FAILED else None)
        key = (deploy.task.job_id, deploy.task.vertex_id, deploy.task.subtask_index)
        if w.running.get(key) is deploy:
            del w.running[key]

    def _acknowledge(self, trigger: ev.TriggerCheckpoint) -> None:
        """Barriers reached every task of the job: each acknowledges from its worker."""
        self._triggered.discard((trigger.task.job_id, trigger.checkpoint_id))
        job = self.state.jobs.get(trigger.task.job_id)
        if job is None:
            return
        for key, x in sorted(job.executions.items()):
            if x.state is not E.RUNNING or x.tm_id is None or x.incarnation is None:
                continue
            task = job.task_ref(key)
            ack = ev.CheckpointAcknowledged(
                event_id=self._id("ack"), event_time=self.now, tm_id=x.tm_id,
                incarnation=x.incarnation, checkpoint_id=trigger.checkpoint_id, task=task,
                state_handle=f"file:///ckpt/{task.job_id}/{trigger.checkpoint_id}/{key[0]}-{key[1]}",
                state_size=4096, duration_ms=5,
            )  # fmt: skip
            self._feed(ack)
