"""A test harness: the domain driven like the leader loop drives it.

Every journal event goes through the codec (encode, then decode) before it is
applied, exactly as a standby would read it, and is kept as bytes so tests can
replay the journal into a fresh state.
"""

import itertools
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from coordinator.domain import (
    Decision,
    DomainConfig,
    Input,
    LeaderView,
    State,
    Tick,
    decide,
    evolve,
    leader_elected,
)
from schemas import codec
from schemas.events import (
    CheckpointAcknowledged,
    CheckpointConfig,
    CheckpointDeclined,
    ExecutionState,
    JobCancelRequested,
    JobGraph,
    JobSubmitted,
    JournalEvent,
    RestartStrategy,
    RestartStrategyKind,
    RunningTask,
    TaskManagerDeregistered,
    TaskManagerRegistered,
    TaskRef,
    TaskStateChanged,
    Vertex,
    WorkerCommand,
)

T0 = 1_700_000_000_000


def roundtrip(event: JournalEvent) -> JournalEvent:
    data, _headers = codec.encode(event)
    decoded = codec.decode(data)
    assert isinstance(decoded, JournalEvent)
    assert decoded == event, (decoded, event)
    return decoded


def replay(journal: Iterable[bytes], state: State | None = None) -> State:
    state = State() if state is None else state
    for data in journal:
        event = codec.decode(data)
        assert isinstance(event, JournalEvent)
        evolve(state, event)
    return state


def submission(
    job_id: str,
    vertices: Sequence[tuple[str, str, int]] = (("src", "map", 2),),
    *,
    event_id: str | None = None,
    restart: RestartStrategy | None = None,
    name: str = "job",
    checkpoints: CheckpointConfig | None = None,
    chaining: bool = False,
    groups: dict[str, str] | None = None,
) -> JobSubmitted:
    """A submission of `vertices` (id, operator, parallelism), joined by FORWARD edges
    when parallelisms match (else REBALANCE). Operator chaining is off unless asked
    for (`chaining`): the tests written before it count one task per subtask.
    `groups`: vertex id -> slot sharing group (else "default")."""
    from schemas.events import Edge, Partitioning

    vs = tuple(
        Vertex(id=v, name=v, operator=op, parallelism=p,
               slot_sharing_group=(groups or {}).get(v, "default"))
        for v, op, p in vertices
    )  # fmt: skip
    edges = tuple(
        Edge(
            source=a.id,
            target=b.id,
            partitioning=Partitioning.FORWARD
            if a.parallelism == b.parallelism
            else Partitioning.REBALANCE,
        )
        for a, b in itertools.pairwise(vs)
    )
    return JobSubmitted(
        event_id=event_id or f"submit-{job_id}",
        event_time=T0,
        job_id=job_id,
        name=name,
        job_graph=JobGraph(vertices=vs, edges=edges, chaining=chaining),
        restart_strategy=restart
        or RestartStrategy(kind=RestartStrategyKind.FIXED_DELAY, attempts=3, delay_ms=1_000),
        checkpoint_config=checkpoints or CheckpointConfig(),
    )


@dataclass
class Cluster:
    config: DomainConfig = field(default_factory=DomainConfig)
    now: int = T0
    state: State = field(default_factory=State)
    journal: list[bytes] = field(default_factory=list)
    commands: list[WorkerCommand] = field(default_factory=list)
    view: LeaderView = field(init=False)
    _seq: int = 0

    def __post_init__(self) -> None:
        self.elect("replica-1")

    def elect(self, replica_id: str) -> None:
        """A (new) leader: journals LeaderElected, starts with an empty view."""
        event = leader_elected(self.state, replica_id, len(self.journal) - 1, self.now)
        self.apply(event)
        self.view = LeaderView(
            epoch=event.epoch, replica_id=replica_id, leader_since=self.now, config=self.config
        )

    def apply(self, event: JournalEvent) -> None:
        data, _ = codec.encode(event)
        self.journal.append(data)
        decoded = codec.decode(data)
        assert isinstance(decoded, JournalEvent)
        evolve(self.state, decoded)

    def feed(self, input: Input) -> Decision:
        decision = decide(self.state, self.view, input, self.now)
        for event in decision.events:
            self.apply(event)
        self.commands.extend(decision.commands)
        return decision

    def next_id(self, prefix: str) -> str:
        self._seq += 1
        return f"{prefix}-{self._seq}"

    def tick(self, advance_ms: int = 0) -> Decision:
        self.now += advance_ms
        return self.feed(Tick(self.next_id(f"tick-{self.view.epoch}")))

    def heartbeat_all(self) -> None:
        for tm_id, worker in self.state.workers.items():
            self.view.last_heartbeat[(tm_id, worker.incarnation)] = self.now

    def register(
        self,
        tm_id: str,
        incarnation: str = "inc-1",
        slots: int = 2,
        operators: tuple[str, ...] = ("map", "sink"),
        running: tuple[RunningTask, ...] = (),
    ) -> Decision:
        return self.feed(
            TaskManagerRegistered(
                event_id=self.next_id(f"reg-{tm_id}"),
                event_time=self.now,
                tm_id=tm_id,
                incarnation=incarnation,
                host="localhost",
                slots=slots,
                operators=operators,
                running_tasks=running,
            )
        )

    def deregister(self, tm_id: str, incarnation: str = "inc-1") -> Decision:
        return self.feed(
            TaskManagerDeregistered(
                event_id=self.next_id(f"dereg-{tm_id}"),
                event_time=self.now,
                tm_id=tm_id,
                incarnation=incarnation,
            )
        )

    def submit(self, job_id: str, *args: object, **kwargs: object) -> Decision:
        return self.feed(submission(job_id, *args, **kwargs))  # type: ignore[arg-type]

    def cancel(self, job_id: str) -> Decision:
        return self.feed(
            JobCancelRequested(
                event_id=self.next_id(f"cancel-{job_id}"), event_time=self.now, job_id=job_id
            )
        )

    def report(
        self,
        task: TaskRef,
        state: ExecutionState,
        *,
        tm_id: str | None = None,
        incarnation: str | None = None,
        error: str | None = None,
        stack: str | None = None,
        non_recoverable: bool = False,
    ) -> Decision:
        """A worker reports; by default the worker the journal deployed the task on."""
        x = self.state.jobs[task.job_id].executions.get((task.vertex_id, task.subtask_index))
        tm = tm_id or (x.tm_id if x is not None and x.tm_id else "nobody")
        inc = incarnation or (x.incarnation if x is not None and x.incarnation else "none")
        return self.feed(
            TaskStateChanged(
                event_id=self.next_id("report"),
                event_time=self.now,
                tm_id=tm,
                incarnation=inc,
                task=task,
                state=state,
                error_name=error,
                error_stack=stack,
                non_recoverable=non_recoverable,
            )
        )

    def tasks(self, job_id: str) -> list[TaskRef]:
        job = self.state.jobs[job_id]
        return [job.task_ref(k) for k in job.executions]

    def run_all(self, job_id: str, state: ExecutionState = ExecutionState.RUNNING) -> None:
        for task in self.tasks(job_id):
            self.report(task, state)

    def ack(
        self, task: TaskRef, checkpoint_id: int, *, size: int = 64, alignment_ms: int = 0
    ) -> Decision:
        """The task acknowledges from the worker it is deployed on, as a worker would:
        only the input; recording it is decide's business."""
        x = self.state.jobs[task.job_id].executions[(task.vertex_id, task.subtask_index)]
        return self.feed(
            CheckpointAcknowledged(
                event_id=self.next_id("ack"), event_time=self.now, tm_id=x.tm_id or "nobody",
                incarnation=x.incarnation or "none", checkpoint_id=checkpoint_id, task=task,
                state_handle=f"mem://{task.job_id}/{checkpoint_id}/{task.vertex_id}-"
                f"{task.subtask_index}-{task.attempt}",
                state_size=size, duration_ms=3, alignment_ms=alignment_ms,
            )
        )  # fmt: skip

    def ack_all(self, job_id: str, checkpoint_id: int) -> Decision:
        """Every subtask acknowledges; the decision of the last acknowledgement."""
        decision = Decision()
        for task in self.tasks(job_id):
            decision = self.ack(task, checkpoint_id)
        return decision

    def decline(self, task: TaskRef, checkpoint_id: int, reason: str = "no") -> Decision:
        x = self.state.jobs[task.job_id].executions[(task.vertex_id, task.subtask_index)]
        return self.feed(
            CheckpointDeclined(
                event_id=self.next_id("decline"), event_time=self.now, tm_id=x.tm_id or "nobody",
                incarnation=x.incarnation or "none", checkpoint_id=checkpoint_id, task=task,
                reason=reason,
            )
        )  # fmt: skip
