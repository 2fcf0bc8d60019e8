"""Generator of the bad-input campaign (issue 10): bad records for every topic an
outsider can write (jm.submissions, jm.reports, jm.heartbeats), each with what the
leader must do with it, and a ledger that tells what it did.

Every generated record is a ``Probe``: its bytes as produced, the kind it was
generated as, and an ``Expect``:

- BAD: dead-lettered (jm.deadletter, matched by source topic/partition/offset) or
  rejected with a reason on the journal (JobRejected / InputRejected naming its
  event id);
- BAD_OR_IGNORED: as BAD, or ignored by design: a heartbeat that decodes is not
  journaled (worker liveness is volatile), and an exact duplicate of a submission
  is an idempotent no-op; neither may ever be admitted;
- ADMIT: a value at a documented limit, which must be admitted (joined, accepted);
- ANY: admitted or rejected, either is a reasoned answer (a worker with 0 slots).

The limits are the documented ones (schemas/limits.py, docs/wire-format.md).
"""

from __future__ import annotations

import dataclasses
import enum
import itertools
import random
import struct
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Final

from schemas import events as ev
from schemas.catalog import Catalog
from schemas.codec import HEADER_LEN, default_codec
from schemas.limits import (
    MAX_CONFIG_ENTRIES,
    MAX_CONFIG_VALUE_BYTES,
    MAX_EVENT_ID_BYTES,
    MAX_ID_BYTES,
    MAX_JOB_CONFIG_BYTES,
    MAX_MAX_PARALLELISM,
    MAX_NAME_BYTES,
    MAX_OPERATORS_PER_WORKER,
    MAX_RUNNING_TASKS_PER_WORKER,
    MAX_SLOTS_PER_WORKER,
    MAX_SUBTASKS,
    MAX_SUBTASKS_PER_JOB,
    MAX_VERTICES,
)

# ------------------------------------------------------------------ limits
#: What a record on an input topic may weigh in all (key + value + headers): the
#: topics' max.message.bytes is 1 MiB; the batch framing takes the rest.
RECORD_BUDGET: Final = 1_000_000
#: "Oversized" records: close to the topic limit, still accepted by the broker.
NEAR_LIMIT: Final = 900_000

#: Where the leader clips ids in what it journals; a clipped id keeps its start.
#: Generated event ids start with 32 unique hex characters, so a prefix names them.
UNIQUE_PREFIX: Final = 32


class Expect(enum.Enum):
    BAD = "dead-lettered or rejected"
    BAD_OR_IGNORED = "dead-lettered, rejected or ignored by design"
    ADMIT = "admitted"
    ANY = "admitted or rejected"


@dataclass
class Probe:
    """One record produced by the campaign, and where it landed."""

    kind: str
    role: str  # "submissions" | "reports" | "heartbeats"
    value: bytes | None
    key: bytes | None
    headers: list[tuple[str, bytes]]
    expect: Expect
    event: ev.Event | None = None  # the event, when the value is a valid encoding
    #: A JobSubmitted that is a valid job: the status it must reach.
    job_expect: ev.JobStatus | None = None
    partition: int = -1
    offset: int = -1
    refused: str | None = None  # the broker refused it (not an input then)
    heavy: bool = False  # drawn from a heavy kind

    @property
    def size(self) -> int:
        headers = sum(len(k) + len(v) for k, v in self.headers)
        return len(self.key or b"") + len(self.value or b"") + headers


@dataclass
class TaskSeen:
    task: ev.TaskRef
    tm_id: str
    incarnation: str
    state: ev.ExecutionState


@dataclass
class World:
    """What the campaign knows of the cluster, from the journal (fed incrementally)."""

    real_workers: frozenset[str]
    workers: dict[str, str] = field(default_factory=dict)  # real tm id -> incarnation
    tasks: dict[tuple[str, str, int, int], TaskSeen] = field(default_factory=dict)
    status: dict[str, ev.JobStatus] = field(default_factory=dict)
    history: dict[str, list[ev.JobStatus]] = field(default_factory=dict)
    submissions: dict[str, ev.JobSubmitted] = field(default_factory=dict)  # ours, valid
    waiting_jobs: int = 0  # jobs at the subtask limit sent (they wait for slots)

    def feed(self, events: Iterable[ev.Event]) -> None:
        for e in events:
            if isinstance(e, ev.TaskManagerJoined) and e.tm_id in self.real_workers:
                self.workers[e.tm_id] = e.incarnation
            elif isinstance(e, ev.TaskAssigned):
                t = e.task
                key = (t.job_id, t.vertex_id, t.subtask_index, t.attempt)
                self.tasks[key] = TaskSeen(
                    t, e.slot.tm_id, e.incarnation, ev.ExecutionState.DEPLOYING
                )
            elif isinstance(e, ev.TaskStateRecorded):
                t = e.task
                seen = self.tasks.get((t.job_id, t.vertex_id, t.subtask_index, t.attempt))
                if seen is not None:
                    seen.state = e.state
            elif isinstance(e, ev.JobStatusChanged):
                self.status[e.job_id] = e.to_status
                self.history.setdefault(e.job_id, []).append(e.to_status)

    def our_tasks(self, states: set[ev.ExecutionState]) -> list[TaskSeen]:
        """Tasks of our valid jobs on real workers, in one of `states`."""
        return [
            t
            for t in self.tasks.values()
            if t.task.job_id in self.submissions
            and t.state in states
            and t.tm_id in self.real_workers
        ]

    def ended(self) -> list[ev.JobSubmitted]:
        return [
            s
            for j, s in self.submissions.items()
            if j in self.status and self.status[j].is_globally_terminal
        ]

    def all_running(self, job_id: str) -> bool:
        mine = [t for t in self.tasks.values() if t.task.job_id == job_id]
        return bool(mine) and all(t.state is ev.ExecutionState.RUNNING for t in mine)


_E = ev.ExecutionState
_TERMINAL: Final = {_E.FINISHED, _E.CANCELED, _E.FAILED}
# A report of one of these for a task journaled RUNNING (or later) is out of order
# whatever happened to the task since: none is reachable from RUNNING or after it.
_BEHIND_RUNNING: Final = (_E.CREATED, _E.SCHEDULED, _E.DEPLOYING, _E.INITIALIZING, _E.RECONCILING)
_ALL_STATES: Final = tuple(ev.ExecutionState)


def now_ms() -> int:
    return int(time.time() * 1000)


Builder = Callable[["Campaign", World], "Probe | None"]


@dataclass(frozen=True)
class Kind:
    name: str
    role: str
    build: Builder
    weight: float = 1.0
    heavy: bool = False  # a record near 1 MiB or a big graph: rationed


class Campaign:
    """Draws probes: every kind once in a shuffled round, then at random by weight."""

    def __init__(self, rng: random.Random, catalog: Catalog, skip: tuple[str, ...] = ()) -> None:
        """`skip`: kinds (name prefixes) left out, to look past one known defect."""
        self.rng = rng
        self.catalog = catalog
        self.codec = default_codec()
        self.kinds = [k for k in KINDS if not k.name.startswith(skip)] if skip else list(KINDS)
        first = list(self.kinds)
        rng.shuffle(first)
        self._first_round = first
        self._valid_n = itertools.count()

    # -------------------------------------------------------------- ids, records

    def hex(self, n: int = 32) -> str:
        return "".join(self.rng.choice("0123456789abcdef") for _ in range(n))

    def event_id(self, length: int = UNIQUE_PREFIX) -> str:
        unique = self.hex(UNIQUE_PREFIX)
        return unique + "e" * max(0, length - UNIQUE_PREFIX)

    def job_id(self, stem: str = "bad") -> str:
        return f"{stem}-{self.hex(12)}"

    def ghost(self) -> str:
        return f"ghost-{self.hex(10)}"

    def probe(
        self,
        kind: str,
        event: ev.Event,
        expect: Expect = Expect.BAD,
        role: str | None = None,
        job_expect: ev.JobStatus | None = None,
    ) -> Probe:
        value, headers = self.codec.encode(event)
        topic = self.catalog.topic_for(type(event))
        return Probe(
            kind,
            role or topic.role,
            value,
            self.catalog.key_for(event),
            headers,
            expect,
            event,
            job_expect,
        )

    def raw(self, kind: str, role: str, value: bytes | None, key: bytes | None = None) -> Probe:
        if key is None and role == "heartbeats":  # compacted: the broker wants a key
            key = self.ghost().encode()
        return Probe(kind, role, value, key, [("campaign", kind.encode())], Expect.BAD)

    def sample_event(self, role: str) -> ev.Event:
        """A valid event of a type the topic takes."""
        if role == "submissions":
            return cancel(self.event_id(), self.job_id())
        if role == "reports":
            return state_report(
                self.event_id(), self.ghost(), self.hex(8), task_ref(self.job_id()), _E.RUNNING
            )
        return heartbeat(self.event_id(), self.ghost(), self.hex(8))

    def foreign_event(self, role: str) -> ev.Event:
        """A valid event of a type the topic does not take."""
        options: list[ev.Event] = [
            self.sample_event("submissions"),
            self.sample_event("reports"),
            self.sample_event("heartbeats"),
            ev.JobRejected(
                event_id=self.event_id(),
                event_time=now_ms(),
                epoch=1,
                job_id=self.job_id(),
                reason="forged",
                input_event_id="x",
            ),
            ev.CancelTask(
                event_id=self.event_id(),
                event_time=now_ms(),
                epoch=1,
                tm_id=self.ghost(),
                incarnation="i",
                task=task_ref(self.job_id()),
            ),
        ]
        allowed = self.catalog.topic(role).allowed
        return self.rng.choice([e for e in options if type(e) not in allowed])

    # ---------------------------------------------------------------- drawing

    def draw(self, world: World, heavy_ok: bool) -> Probe:
        while True:
            if self._first_round:
                kind = self._first_round.pop()
            else:
                pool = [k for k in self.kinds if heavy_ok or not k.heavy]
                kind = self.rng.choices(pool, [k.weight for k in pool])[0]
            built = kind.build(self, world)
            if built is None:  # the world does not offer what it needs yet: another kind
                continue
            assert built.size <= RECORD_BUDGET, (kind.name, built.size)
            built.heavy = kind.heavy
            return built

    def valid_job(self, world: World) -> tuple[ev.JobSubmitted, ev.JobStatus]:
        """A small `sequence` job: bounded ones finish, endless ones run until canceled."""
        n = next(self._valid_n)
        endless = n % 3 == 1
        job_id = f"valid-{n}-{self.hex(6)}"
        config = {"rate": "20"} if endless else {"count": str(self.rng.choice((10, 50, 200)))}
        s = submission(
            self.event_id(), job_id, (vertex(par=self.rng.choice((1, 2)), config=config),)
        )
        world.submissions[job_id] = s
        return s, ev.JobStatus.CANCELED if endless else ev.JobStatus.FINISHED


# ------------------------------------------------------------------ events


def task_ref(job_id: str, vertex_id: str = "src", subtask: int = 0, attempt: int = 0) -> ev.TaskRef:
    return ev.TaskRef(job_id=job_id, vertex_id=vertex_id, subtask_index=subtask, attempt=attempt)


def vertex(
    vid: str = "src",
    par: int = 1,
    maxp: int = 8,
    op: str = "sequence",
    config: dict[str, str] | None = None,
    name: str | None = None,
) -> ev.Vertex:
    return ev.Vertex(
        id=vid,
        name=name or vid,
        operator=op,
        parallelism=par,
        max_parallelism=maxp,
        config=config or {"count": "10"},
    )


def submission(
    event_id: str,
    job_id: str,
    vertices: tuple[ev.Vertex, ...],
    edges: tuple[ev.Edge, ...] = (),
    name: str | None = None,
    **extra: object,
) -> ev.JobSubmitted:
    return ev.JobSubmitted(
        event_id=event_id,
        event_time=now_ms(),
        job_id=job_id,
        name=name or job_id[:60],
        job_graph=ev.JobGraph(vertices=vertices, edges=edges),
        **{"restart_strategy": ev.RestartStrategy(kind=ev.RestartStrategyKind.NONE), **extra},  # type: ignore[arg-type]
    )


def cancel(event_id: str, job_id: str) -> ev.JobCancelRequested:
    return ev.JobCancelRequested(event_id=event_id, event_time=now_ms(), job_id=job_id)


def state_report(
    event_id: str,
    tm_id: str,
    incarnation: str,
    task: ev.TaskRef,
    state: ev.ExecutionState,
    error_name: str | None = None,
    error_stack: str | None = None,
) -> ev.TaskStateChanged:
    return ev.TaskStateChanged(
        event_id=event_id,
        event_time=now_ms(),
        tm_id=tm_id,
        incarnation=incarnation,
        task=task,
        state=state,
        error_name=error_name,
        error_stack=error_stack,
    )


def heartbeat(
    event_id: str,
    tm_id: str,
    incarnation: str,
    sequence: int = 1,
    slots_free: int = 1,
    running: int = 0,
) -> ev.TaskManagerHeartbeat:
    return ev.TaskManagerHeartbeat(
        event_id=event_id,
        event_time=now_ms(),
        tm_id=tm_id,
        incarnation=incarnation,
        sequence=sequence,
        slots_free=slots_free,
        running_tasks=running,
    )


def registration(
    c: Campaign,
    *,
    slots: int = 1,
    operators: tuple[str, ...] | None = None,
    tm_id: str | None = None,
    incarnation: str | None = None,
    host: str = "campaign",
    running: tuple[ev.RunningTask, ...] = (),
    event_id: str | None = None,
) -> ev.TaskManagerRegistered:
    # Ghost workers never offer `sequence`: the valid jobs must not be placed on them.
    return ev.TaskManagerRegistered(
        event_id=event_id or c.event_id(),
        event_time=now_ms(),
        tm_id=tm_id or c.ghost(),
        incarnation=incarnation or c.hex(12),
        host=host,
        slots=slots,
        operators=operators if operators is not None else (f"ghost-op-{c.hex(4)}",),
        running_tasks=running,
        version="campaign",
    )


def ack(
    c: Campaign,
    tm_id: str,
    incarnation: str,
    task: ev.TaskRef,
    checkpoint_id: int,
    declined: bool = False,
) -> ev.Event:
    if declined:
        return ev.CheckpointDeclined(
            event_id=c.event_id(),
            event_time=now_ms(),
            tm_id=tm_id,
            incarnation=incarnation,
            checkpoint_id=checkpoint_id,
            task=task,
            reason="campaign",
        )
    return ev.CheckpointAcknowledged(
        event_id=c.event_id(),
        event_time=now_ms(),
        tm_id=tm_id,
        incarnation=incarnation,
        checkpoint_id=checkpoint_id,
        task=task,
        state_handle="h",
        state_size=1,
        duration_ms=1,
    )


# ------------------------------------------------------------------ kinds: any topic

ROLES: Final = ("submissions", "reports", "heartbeats")
_SHORT: Final = {"submissions": "sub", "reports": "rep", "heartbeats": "hb"}


def _random_bytes(role: str, big: bool) -> Builder:
    def build(c: Campaign, w: World) -> Probe:
        size = c.rng.randint(NEAR_LIMIT, RECORD_BUDGET - 2_000) if big else c.rng.randint(0, 3_000)
        value = c.rng.randbytes(size)
        if value[:2] == b"\xc3\x01":
            value = b"\x00" + value[1:]
        name = f"{_SHORT[role]}/random-bytes" + ("-900k" if big else "")
        return c.raw(name, role, value, c.rng.choice([None, c.rng.randbytes(16)]))

    return build


def _truncated(role: str) -> Builder:
    def build(c: Campaign, w: World) -> Probe:
        value, _ = c.codec.encode(c.sample_event(role))
        cut = c.rng.randint(HEADER_LEN, len(value) - 1)
        return c.raw(f"{_SHORT[role]}/truncated-avro", role, value[:cut])

    return build


def _header_only(role: str) -> Builder:
    def build(c: Campaign, w: World) -> Probe:
        value, _ = c.codec.encode(c.sample_event(role))
        return c.raw(
            f"{_SHORT[role]}/magic-and-short-fingerprint",
            role,
            value[: c.rng.randint(2, HEADER_LEN - 1)],
        )

    return build


def _unknown_fingerprint(role: str) -> Builder:
    def build(c: Campaign, w: World) -> Probe:
        value, _ = c.codec.encode(c.sample_event(role))
        forged = b"\xc3\x01" + struct.pack("<Q", c.rng.getrandbits(64)) + value[HEADER_LEN:]
        return c.raw(f"{_SHORT[role]}/unknown-fingerprint", role, forged)

    return build


def _wrong_type(role: str) -> Builder:
    def build(c: Campaign, w: World) -> Probe:
        event = c.foreign_event(role)
        return c.probe(f"{_SHORT[role]}/wrong-event-type", event, role=role)

    return build


def _tombstone(role: str) -> Builder:
    def build(c: Campaign, w: World) -> Probe:
        return c.raw(f"{_SHORT[role]}/tombstone", role, None, c.ghost().encode())

    return build


# ------------------------------------------------------------------ kinds: submissions


def _job(kind: str, expect: Expect = Expect.BAD, runs: bool = True, **over: object) -> Builder:
    """A bounded job with one thing changed (`over` holds callables of the campaign).
    An admitted one must also finish, unless `runs` is False (it waits for slots)."""

    def build(c: Campaign, w: World) -> Probe:
        args: dict[str, object] = {
            "event_id": c.event_id(),
            "job_id": c.job_id(),
            "vertices": (vertex(),),
        }
        for name, make in over.items():
            args[name] = make(c) if callable(make) else make
        s = submission(**args)  # type: ignore[arg-type]
        job_expect = ev.JobStatus.FINISHED if expect is Expect.ADMIT and runs else None
        if job_expect is not None:
            w.submissions[s.job_id] = s
        return c.probe(kind, s, expect, job_expect=job_expect)

    return build


#: jobs at the subtask limit one campaign sends (they hold their subtasks).
WAITING_JOBS_MAX: Final = MAX_SUBTASKS // MAX_SUBTASKS_PER_JOB // 4


def _waiting_job(c: Campaign, w: World) -> Probe | None:
    if w.waiting_jobs >= WAITING_JOBS_MAX:
        return None
    w.waiting_jobs += 1
    build = _job(
        "sub/subtasks-1024-waits-for-slots",
        Expect.ADMIT,
        runs=False,
        vertices=_const((vertex("v", par=MAX_SUBTASKS_PER_JOB, maxp=MAX_SUBTASKS_PER_JOB),)),
    )
    return build(c, w)


def _chain(n: int, par: int = 1) -> tuple[tuple[ev.Vertex, ...], tuple[ev.Edge, ...]]:
    ids = [f"v{i}" for i in range(n)]
    vs = tuple(vertex(v, par=par, maxp=max(8, par)) for v in ids)
    es = tuple(ev.Edge(source=a, target=b) for a, b in itertools.pairwise(ids))
    return vs, es


def _dense(n: int) -> tuple[tuple[ev.Vertex, ...], tuple[ev.Edge, ...]]:
    ids = [f"v{i}" for i in range(n)]
    vs = tuple(vertex(v) for v in ids)
    es = tuple(ev.Edge(source=a, target=b) for a, b in itertools.combinations(ids, 2))
    return vs, es


Graph = tuple[tuple[ev.Vertex, ...], tuple[ev.Edge, ...]]


def _graph(kind: str, make: Callable[[Campaign], Graph]) -> Builder:
    def build(c: Campaign, w: World) -> Probe:
        vs, es = make(c)
        return c.probe(kind, submission(c.event_id(), c.job_id(), vs, es))

    return build


def _issue_graph(
    vertices: int, par: int, id_len: int
) -> Callable[[Campaign], tuple[tuple[ev.Vertex, ...], tuple[ev.Edge, ...]]]:
    def make(c: Campaign) -> tuple[tuple[ev.Vertex, ...], tuple[ev.Edge, ...]]:
        ids = [f"v{i:0{id_len - 1}d}" for i in range(vertices)]
        vs = tuple(vertex(v, par=par, maxp=par, config={"rate": "10"}) for v in ids)
        es = tuple(ev.Edge(source=a, target=b) for a, b in itertools.pairwise(ids))
        return vs, es

    return make


def _cycle(c: Campaign) -> tuple[tuple[ev.Vertex, ...], tuple[ev.Edge, ...]]:
    vs, es = _chain(c.rng.randint(2, 5))
    return vs, (*es, ev.Edge(source=vs[-1].id, target=vs[0].id))


def _self_loop(c: Campaign) -> tuple[tuple[ev.Vertex, ...], tuple[ev.Edge, ...]]:
    return (vertex("a"),), (ev.Edge(source="a", target="a"),)


def _dangling(c: Campaign) -> tuple[tuple[ev.Vertex, ...], tuple[ev.Edge, ...]]:
    return (vertex("a"),), (ev.Edge(source="a", target=f"nowhere-{c.hex(4)}"),)


def _one(**kw: object) -> Callable[[Campaign], tuple[tuple[ev.Vertex, ...], tuple[ev.Edge, ...]]]:
    def make(c: Campaign) -> tuple[tuple[ev.Vertex, ...], tuple[ev.Edge, ...]]:
        return (vertex(**kw),), ()  # type: ignore[arg-type]

    return make


def _valid_sent(c: Campaign, w: World, ended: bool) -> ev.JobSubmitted | None:
    pool = w.ended() if ended else list(w.submissions.values())
    return c.rng.choice(pool) if pool else None


def _duplicate(kind: str, ended: bool, exact: bool) -> Builder:
    def build(c: Campaign, w: World) -> Probe | None:
        original = _valid_sent(c, w, ended)
        if original is None:
            return None
        name = original.name if exact else f"{original.name} (other content {c.hex(4)})"
        s = dataclasses.replace(original, event_id=c.event_id(), event_time=now_ms(), name=name)
        return c.probe(kind, s, Expect.BAD_OR_IGNORED if exact else Expect.BAD)

    return build


def _request(
    kind: str, cls: type[ev.ClientCommand], ended: bool = False, event_id_len: int = UNIQUE_PREFIX
) -> Builder:
    def build(c: Campaign, w: World) -> Probe | None:
        if ended:
            done = w.ended()
            if not done:
                return None
            job_id = c.rng.choice(done).job_id
        else:
            job_id = c.job_id("unknown")
        event = cls(event_id=c.event_id(event_id_len), event_time=now_ms(), job_id=job_id)  # type: ignore[call-arg]
        return c.probe(kind, event)

    return build


# ------------------------------------------------------------------ kinds: reports


def _register(
    kind: str, expect: Expect = Expect.BAD, **kw: Callable[[Campaign], object]
) -> Builder:
    def build(c: Campaign, w: World) -> Probe:
        args = {name: make(c) for name, make in kw.items()}
        return c.probe(kind, registration(c, **args), expect)  # type: ignore[arg-type]

    return build


def _running_tasks(n: int) -> Callable[[Campaign], object]:
    def make(c: Campaign) -> tuple[ev.RunningTask, ...]:
        job = c.job_id("ghost-job")
        return tuple(
            ev.RunningTask(task=task_ref(job, subtask=i), slot_index=i % 4, state=_E.RUNNING)
            for i in range(n)
        )

    return make


def _report(kind: str, pick: Callable[[Campaign, World], ev.Event | None]) -> Builder:
    def build(c: Campaign, w: World) -> Probe | None:
        event = pick(c, w)
        return None if event is None else c.probe(kind, event)

    return build


def _a_task(c: Campaign, w: World, states: set[ev.ExecutionState]) -> TaskSeen | None:
    found = w.our_tasks(states)
    return c.rng.choice(found) if found else None


_LIVE: Final = {_E.DEPLOYING, _E.INITIALIZING, _E.RUNNING}


def _unknown_job(c: Campaign, w: World) -> ev.Event:
    tm = c.rng.choice(sorted(w.workers)) if w.workers else c.ghost()
    return state_report(
        c.event_id(),
        tm,
        w.workers.get(tm, c.hex(8)),
        task_ref(c.job_id("unknown")),
        c.rng.choice(_ALL_STATES),
    )


def _unknown_worker(c: Campaign, w: World) -> ev.Event | None:
    t = _a_task(c, w, _LIVE | _TERMINAL)
    return (
        None
        if t is None
        else state_report(
            c.event_id(),
            c.ghost(),
            c.hex(8),
            t.task,
            _E.FAILED,
            error_name="Forged",
            error_stack="forged",
        )
    )


def _wrong_incarnation(c: Campaign, w: World) -> ev.Event | None:
    t = _a_task(c, w, _LIVE | _TERMINAL)
    return (
        None
        if t is None
        else state_report(
            c.event_id(),
            t.tm_id,
            c.hex(12),
            t.task,
            _E.FAILED,
            error_name="Forged",
            error_stack="forged",
        )
    )


def _stale_attempt(c: Campaign, w: World) -> ev.Event | None:
    t = _a_task(c, w, _LIVE | _TERMINAL)
    if t is None:
        return None
    task = dataclasses.replace(t.task, attempt=t.task.attempt + c.rng.randint(1, 5))
    return state_report(c.event_id(), t.tm_id, t.incarnation, task, c.rng.choice(_ALL_STATES))


def _negative_attempt(c: Campaign, w: World) -> ev.Event | None:
    t = _a_task(c, w, _LIVE | _TERMINAL)
    if t is None:
        return None
    task = dataclasses.replace(t.task, attempt=-1)
    return state_report(c.event_id(), t.tm_id, t.incarnation, task, _E.FAILED)


def _unknown_subtask(c: Campaign, w: World) -> ev.Event | None:
    t = _a_task(c, w, _LIVE | _TERMINAL)
    if t is None:
        return None
    task = c.rng.choice(
        [
            dataclasses.replace(t.task, subtask_index=999),
            dataclasses.replace(t.task, subtask_index=-1),
            dataclasses.replace(t.task, vertex_id="no-such-vertex"),
        ]
    )
    return state_report(c.event_id(), t.tm_id, t.incarnation, task, _E.RUNNING)


def _behind_running(c: Campaign, w: World) -> ev.Event | None:
    t = _a_task(c, w, {_E.RUNNING} | _TERMINAL)
    return (
        None
        if t is None
        else state_report(
            c.event_id(), t.tm_id, t.incarnation, t.task, c.rng.choice(_BEHIND_RUNNING)
        )
    )


def _after_terminal(c: Campaign, w: World) -> ev.Event | None:
    t = _a_task(c, w, _TERMINAL)
    if t is None:
        return None
    states = [s for s in _ALL_STATES if s is not t.state]
    return state_report(c.event_id(), t.tm_id, t.incarnation, t.task, c.rng.choice(states))


def _huge_stack(c: Campaign, w: World) -> ev.Event:
    return state_report(
        c.event_id(),
        c.ghost(),
        c.hex(8),
        task_ref(c.job_id("unknown")),
        _E.FAILED,
        error_name="Huge",
        error_stack="x" * NEAR_LIMIT,
    )


def _ack_unknown_checkpoint(declined: bool) -> Callable[[Campaign, World], ev.Event | None]:
    def pick(c: Campaign, w: World) -> ev.Event | None:
        t = _a_task(c, w, _LIVE | _TERMINAL)
        return (
            None
            if t is None
            else ack(c, t.tm_id, t.incarnation, t.task, 1_000_000 + c.rng.randint(0, 999), declined)
        )

    return pick


def _ack_unknown_job(declined: bool) -> Callable[[Campaign, World], ev.Event | None]:
    def pick(c: Campaign, w: World) -> ev.Event:
        return ack(
            c, c.ghost(), c.hex(8), task_ref(c.job_id("unknown")), c.rng.randint(1, 9), declined
        )

    return pick


def _deregister(real: bool) -> Callable[[Campaign, World], ev.Event | None]:
    def pick(c: Campaign, w: World) -> ev.Event | None:
        if real and not w.workers:
            return None
        tm = c.rng.choice(sorted(w.workers)) if real else c.ghost()
        return ev.TaskManagerDeregistered(
            event_id=c.event_id(),
            event_time=now_ms(),
            tm_id=tm,
            incarnation=c.hex(12),
            reason="campaign",
        )

    return pick


# ------------------------------------------------------------------ kinds: heartbeats


def _heartbeat(kind: str, tm_len: int = 16, absurd: bool = False, heavy: bool = False) -> Builder:
    def build(c: Campaign, w: World) -> Probe:
        tm = c.ghost() + "h" * max(0, tm_len - 16)
        beat = heartbeat(c.event_id(), tm, c.hex(8))
        if absurd:
            beat = dataclasses.replace(
                beat, sequence=-(2**62), slots_free=2**62, running_tasks=-5, last_seen_epoch=2**62
            )
        return c.probe(kind, beat, Expect.BAD_OR_IGNORED)

    return build


def _k(name: str, role: str, build: Builder, weight: float = 1.0, heavy: bool = False) -> Kind:
    return Kind(name, role, build, weight, heavy)


def _const(value: object) -> Callable[[Campaign], object]:
    return lambda c: value


def _kinds() -> list[Kind]:
    out: list[Kind] = []
    for role in ROLES:
        s = _SHORT[role]
        out += [
            _k(f"{s}/random-bytes", role, _random_bytes(role, big=False), 2),
            _k(f"{s}/random-bytes-900k", role, _random_bytes(role, big=True), heavy=True),
            _k(f"{s}/truncated-avro", role, _truncated(role), 2),
            _k(f"{s}/magic-and-short-fingerprint", role, _header_only(role)),
            _k(f"{s}/unknown-fingerprint", role, _unknown_fingerprint(role), 2),
            _k(f"{s}/wrong-event-type", role, _wrong_type(role), 2),
            _k(f"{s}/tombstone", role, _tombstone(role)),
        ]
    S, ID, NAME = "submissions", MAX_ID_BYTES, MAX_NAME_BYTES
    out += [
        # Sizes near 1 MiB and ids at and over their limits.
        _k("sub/name-900k", S, _job("sub/name-900k", name=lambda c: "n" * NEAR_LIMIT), heavy=True),
        _k(
            "sub/config-900k",
            S,
            _job(
                "sub/config-900k",
                vertices=lambda c: (vertex(config={"count": "10", "pad": "p" * NEAR_LIMIT}),),
            ),
            heavy=True,
        ),
        _k(
            "sub/job-id-100",
            S,
            _job("sub/job-id-100", Expect.ADMIT, job_id=lambda c: c.job_id().ljust(ID, "i")),
        ),
        _k(
            "sub/job-id-101",
            S,
            _job("sub/job-id-101", job_id=lambda c: c.job_id().ljust(ID + 1, "i")),
        ),
        _k(
            "sub/job-id-10000",
            S,
            _job("sub/job-id-10000", job_id=lambda c: c.job_id().ljust(10_000, "i")),
        ),
        _k(
            "sub/job-id-300000",
            S,
            _job(
                "sub/job-id-300000",
                job_id=lambda c: c.job_id().ljust(300_000, "i"),
                name=lambda c: "long id",
            ),
            heavy=True,
        ),
        _k(
            "sub/event-id-128",
            S,
            _job(
                "sub/event-id-128", Expect.ADMIT, event_id=lambda c: c.event_id(MAX_EVENT_ID_BYTES)
            ),
        ),
        _k(
            "sub/event-id-129",
            S,
            _job("sub/event-id-129", event_id=lambda c: c.event_id(MAX_EVENT_ID_BYTES + 1)),
        ),
        _k(
            "sub/event-id-10000",
            S,
            _job("sub/event-id-10000", event_id=lambda c: c.event_id(10_000)),
        ),
        _k(
            "sub/cancel-event-id-450k",
            S,
            _request("sub/cancel-event-id-450k", ev.JobCancelRequested, event_id_len=450_000),
            heavy=True,
        ),
        _k(
            "sub/vertex-id-100",
            S,
            _job("sub/vertex-id-100", Expect.ADMIT, vertices=_const((vertex("v".ljust(ID, "v")),))),
        ),
        _k(
            "sub/vertex-id-101",
            S,
            _job("sub/vertex-id-101", vertices=_const((vertex("v".ljust(ID + 1, "v")),))),
        ),
        _k("sub/name-256", S, _job("sub/name-256", Expect.ADMIT, name=_const("n" * NAME))),
        _k("sub/name-257", S, _job("sub/name-257", name=_const("n" * (NAME + 1)))),
        _k(
            "sub/vertex-name-257",
            S,
            _job("sub/vertex-name-257", vertices=_const((vertex(name="n" * (NAME + 1)),))),
        ),
        _k(
            "sub/operator-name-257",
            S,
            _job("sub/operator-name-257", vertices=_const((vertex(op="o" * (NAME + 1)),))),
        ),
        _k(
            "sub/config-entries-65",
            S,
            _job(
                "sub/config-entries-65",
                vertices=_const(
                    (
                        vertex(
                            config={
                                "count": "10",
                                **{f"k{i}": "v" for i in range(MAX_CONFIG_ENTRIES)},
                            }
                        ),
                    )
                ),
            ),
        ),
        _k(
            "sub/config-value-4097",
            S,
            _job(
                "sub/config-value-4097",
                vertices=_const(
                    (vertex(config={"count": "10", "pad": "p" * (MAX_CONFIG_VALUE_BYTES + 1)}),)
                ),
            ),
        ),
        _k(
            "sub/job-config-32769",
            S,
            _job(
                "sub/job-config-32769",
                vertices=_const(
                    (
                        vertex(
                            config={
                                "count": "10",
                                **{
                                    f"k{i}": "p" * 4_000
                                    for i in range(MAX_JOB_CONFIG_BYTES // 4_000 + 1)
                                },
                            }
                        ),
                    )
                ),
            ),
        ),
        _k(
            "sub/max-parallelism-32768",
            S,
            _job(
                "sub/max-parallelism-32768",
                Expect.ADMIT,
                vertices=_const((vertex(maxp=MAX_MAX_PARALLELISM),)),
            ),
        ),
        _k(
            "sub/max-parallelism-32769",
            S,
            _job(
                "sub/max-parallelism-32769",
                vertices=_const((vertex(maxp=MAX_MAX_PARALLELISM + 1),)),
            ),
        ),
        # Invalid graphs.
        _k("sub/graph-cycle", S, _graph("sub/graph-cycle", _cycle)),
        _k("sub/graph-self-loop", S, _graph("sub/graph-self-loop", _self_loop)),
        _k("sub/graph-dangling-edge", S, _graph("sub/graph-dangling-edge", _dangling)),
        _k("sub/graph-empty", S, _graph("sub/graph-empty", lambda c: ((), ()))),
        _k(
            "sub/graph-duplicate-vertex-ids",
            S,
            _graph("sub/graph-duplicate-vertex-ids", lambda c: ((vertex("a"), vertex("a")), ())),
        ),
        _k(
            "sub/graph-forward-unequal-parallelism",
            S,
            _graph(
                "sub/graph-forward-unequal-parallelism",
                lambda c: (
                    (vertex("a", par=1), vertex("b", par=2)),
                    (ev.Edge(source="a", target="b"),),
                ),
            ),
        ),
        _k(
            "sub/graph-hash-without-key",
            S,
            _graph(
                "sub/graph-hash-without-key",
                lambda c: (
                    (vertex("a"), vertex("b")),
                    (ev.Edge(source="a", target="b", partitioning=ev.Partitioning.HASH),),
                ),
            ),
        ),
        _k("sub/parallelism-0", S, _graph("sub/parallelism-0", _one(par=0))),
        _k("sub/parallelism-negative", S, _graph("sub/parallelism-negative", _one(par=-3))),
        _k("sub/parallelism-over-max", S, _graph("sub/parallelism-over-max", _one(par=9, maxp=8))),
        _k(
            "sub/parallelism-32768",
            S,
            _graph("sub/parallelism-32768", _one(par=32_768, maxp=32_768)),
            heavy=True,
        ),
        _k(
            "sub/parallelism-2^31-1",
            S,
            _graph("sub/parallelism-2^31-1", _one(par=2**31 - 1, maxp=2**31 - 1)),
        ),
        _k(
            "sub/subtasks-1025",
            S,
            _graph("sub/subtasks-1025", _one(par=MAX_SUBTASKS_PER_JOB + 1, maxp=2_048)),
        ),
        # At the limit: admitted, then it waits for 1024 slots (there are 6); the state
        # holds its 1024 subtasks meanwhile. Rationed to a quarter of MAX_SUBTASKS, so
        # the valid jobs still fit.
        _k("sub/subtasks-1024-waits-for-slots", S, _waiting_job, 0.5),
        _k("sub/vertices-129", S, _graph("sub/vertices-129", lambda c: _chain(MAX_VERTICES + 1))),
        _k(
            "sub/vertices-1000",
            S,
            _graph(
                "sub/vertices-1000", lambda c: (tuple(vertex(f"v{i}") for i in range(1_000)), ())
            ),
            heavy=True,
        ),
        _k("sub/edges-257", S, _graph("sub/edges-257", lambda c: _dense(24))),  # 276 edges
        _k(
            "sub/issue-10x4096-30char-ids",
            S,
            _graph("sub/issue-10x4096-30char-ids", _issue_graph(10, 4_096, 30)),
            heavy=True,
        ),
        _k(
            "sub/issue-1x32768-100char-ids",
            S,
            _graph("sub/issue-1x32768-100char-ids", _issue_graph(1, 32_768, 100)),
            heavy=True,
        ),
        _k(
            "sub/unknown-operator",
            S,
            # Admitted: it waits for a worker offering the operator (issue 11), and
            # fails after the slot-wait timeout if none comes.
            _job(
                "sub/unknown-operator",
                Expect.ADMIT,
                runs=False,
                vertices=lambda c: (vertex(op=f"no-such-op-{c.hex(6)}"),),
            ),
        ),
        _k("sub/empty-name", S, _job("sub/empty-name", name=_const("   "))),
        _k(
            "sub/bad-id-chars",
            S,
            _job(
                "sub/bad-id-chars",
                job_id=lambda c: (
                    c.rng.choice(["../etc-", "a b-", "x/y-", "jöb-", ".hidden-", "a\x00b-"])
                    + c.hex(4)
                ),
            ),
        ),
        # A pattern ending in `$` matched with re.match lets a final newline through.
        _k(
            "sub/job-id-trailing-newline",
            S,
            _job("sub/job-id-trailing-newline", job_id=lambda c: c.job_id() + "\n"),
        ),
        _k(
            "sub/vertex-id-trailing-newline",
            S,
            _job("sub/vertex-id-trailing-newline", vertices=_const((vertex("src\n"),))),
        ),
        _k(
            "sub/checkpoint-interval-5",
            S,
            _job(
                "sub/checkpoint-interval-5",
                checkpoint_config=_const(ev.CheckpointConfig(interval_ms=5)),
            ),
        ),
        _k(
            "sub/restart-negative-attempts",
            S,
            _job(
                "sub/restart-negative-attempts",
                restart_strategy=_const(
                    ev.RestartStrategy(kind=ev.RestartStrategyKind.FIXED_DELAY, attempts=-1)
                ),
            ),
        ),
        # Ids already used.
        _k(
            "sub/duplicate-id-other-content",
            S,
            _duplicate("sub/duplicate-id-other-content", ended=False, exact=False),
        ),
        _k("sub/duplicate-exact", S, _duplicate("sub/duplicate-exact", ended=False, exact=True)),
        _k(
            "sub/ended-id-other-content",
            S,
            _duplicate("sub/ended-id-other-content", ended=True, exact=False),
        ),
        _k("sub/ended-id-exact", S, _duplicate("sub/ended-id-exact", ended=True, exact=True)),
        # Requests about jobs that are not there (or no longer running).
        _k("sub/cancel-unknown-job", S, _request("sub/cancel-unknown-job", ev.JobCancelRequested)),
        _k(
            "sub/cancel-ended-job",
            S,
            _request("sub/cancel-ended-job", ev.JobCancelRequested, ended=True),
        ),
        _k(
            "sub/savepoint-unknown-job",
            S,
            _request("sub/savepoint-unknown-job", ev.SavepointRequested),
        ),
        _k(
            "sub/stop-with-savepoint-unknown-job",
            S,
            _request("sub/stop-with-savepoint-unknown-job", ev.StopWithSavepointRequested),
        ),
    ]
    R = "reports"
    out += [
        _k(
            "rep/register-slots-0",
            R,
            _register("rep/register-slots-0", Expect.ANY, slots=_const(0)),
        ),
        _k(
            "rep/register-slots-negative",
            R,
            _register("rep/register-slots-negative", slots=_const(-1)),
        ),
        _k("rep/register-slots-2^62", R, _register("rep/register-slots-2^62", slots=_const(2**62))),
        _k(
            "rep/register-slots-256",
            R,
            _register("rep/register-slots-256", Expect.ADMIT, slots=_const(MAX_SLOTS_PER_WORKER)),
        ),
        _k(
            "rep/register-slots-257",
            R,
            _register("rep/register-slots-257", slots=_const(MAX_SLOTS_PER_WORKER + 1)),
        ),
        _k(
            "rep/register-operators-257",
            R,
            _register(
                "rep/register-operators-257",
                operators=lambda c: tuple(
                    f"ghost-op-{i}" for i in range(MAX_OPERATORS_PER_WORKER + 1)
                ),
            ),
        ),
        _k(
            "rep/register-operators-800k",
            R,
            _register(
                "rep/register-operators-800k",
                operators=lambda c: tuple(f"ghost-op-{i:032d}" for i in range(20_000)),
            ),
            heavy=True,
        ),
        _k(
            "rep/register-host-10000",
            R,
            _register("rep/register-host-10000", host=_const("h" * 10_000)),
        ),
        _k(
            "rep/register-tm-id-101",
            R,
            _register("rep/register-tm-id-101", tm_id=lambda c: c.ghost().ljust(ID + 1, "t")),
        ),
        _k(
            "rep/register-tm-id-300000",
            R,
            _register("rep/register-tm-id-300000", tm_id=lambda c: c.ghost().ljust(300_000, "t")),
            heavy=True,
        ),
        _k(
            "rep/register-incarnation-101",
            R,
            _register("rep/register-incarnation-101", incarnation=lambda c: c.hex(ID + 1)),
        ),
        _k(
            "rep/register-running-tasks-4097",
            R,
            _register(
                "rep/register-running-tasks-4097",
                running=_running_tasks(MAX_RUNNING_TASKS_PER_WORKER + 1),
            ),
        ),
        _k("rep/state-unknown-job", R, _report("rep/state-unknown-job", _unknown_job), 2),
        _k("rep/state-unknown-worker", R, _report("rep/state-unknown-worker", _unknown_worker)),
        _k(
            "rep/state-wrong-incarnation",
            R,
            _report("rep/state-wrong-incarnation", _wrong_incarnation),
        ),
        _k("rep/state-stale-attempt", R, _report("rep/state-stale-attempt", _stale_attempt)),
        _k(
            "rep/state-negative-attempt",
            R,
            _report("rep/state-negative-attempt", _negative_attempt),
        ),
        _k("rep/state-unknown-subtask", R, _report("rep/state-unknown-subtask", _unknown_subtask)),
        _k("rep/state-behind-running", R, _report("rep/state-behind-running", _behind_running), 2),
        _k("rep/state-after-terminal", R, _report("rep/state-after-terminal", _after_terminal), 2),
        _k(
            "rep/failed-900k-stack-unknown-job",
            R,
            _report("rep/failed-900k-stack-unknown-job", _huge_stack),
            heavy=True,
        ),
        _k(
            "rep/ack-unknown-checkpoint",
            R,
            _report("rep/ack-unknown-checkpoint", _ack_unknown_checkpoint(False)),
        ),
        _k("rep/ack-unknown-job", R, _report("rep/ack-unknown-job", _ack_unknown_job(False))),
        _k(
            "rep/declined-unknown-checkpoint",
            R,
            _report("rep/declined-unknown-checkpoint", _ack_unknown_checkpoint(True)),
        ),
        _k(
            "rep/declined-unknown-job",
            R,
            _report("rep/declined-unknown-job", _ack_unknown_job(True)),
        ),
        _k(
            "rep/deregister-unknown-worker",
            R,
            _report("rep/deregister-unknown-worker", _deregister(real=False)),
        ),
        _k(
            "rep/deregister-wrong-incarnation",
            R,
            _report("rep/deregister-wrong-incarnation", _deregister(real=True)),
        ),
    ]
    H = "heartbeats"
    out += [
        _k("hb/unknown-worker", H, _heartbeat("hb/unknown-worker"), 2),
        _k("hb/absurd-numbers", H, _heartbeat("hb/absurd-numbers", absurd=True)),
        _k("hb/tm-id-300000", H, _heartbeat("hb/tm-id-300000", tm_len=300_000), heavy=True),
    ]
    return out


KINDS: Final = _kinds()
