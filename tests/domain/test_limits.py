"""Size limits through the pure domain: each limit accepted, one more refused with a
reason; the known triggers of oversized derived records refused; the worst case a
submission within every limit can derive stays well under the journal's 1 MiB."""

import dataclasses
import itertools
from collections.abc import Callable
from typing import Any, cast

import pytest

from coordinator.domain import Input, admission
from schemas import codec
from schemas import limits as lim
from schemas.catalog import DEFAULT_MAX_MESSAGE_BYTES, Catalog
from schemas.events import (
    CheckpointAcknowledged,
    CheckpointCompleted,
    CheckpointDeclined,
    CheckpointStateDiscarded,
    DeployTask,
    Edge,
    Event,
    ExecutionGraphCreated,
    ExecutionState,
    InputRejected,
    JobAccepted,
    JobCancelRequested,
    JobGraph,
    JobRejected,
    JobStatus,
    JobSubmitted,
    Partitioning,
    RunningTask,
    TaskManagerDeregistered,
    TaskManagerRegistered,
    TaskRef,
    TaskStateChanged,
    TaskStateHandle,
    Vertex,
)
from tests.domain.cluster import T0, Cluster, submission
from tests.oversized import deep_graph, wide_graph

#: What "comfortably under the journal's 1 MiB" means here.
COMFORT_BYTES = DEFAULT_MAX_MESSAGE_BYTES // 2


def _record_bytes(event: Event) -> int:
    """Value + key + headers, as the leader would send it."""
    value, headers = codec.encode(event)
    key = Catalog().key_for(event)
    return len(value) + len(key) + sum(len(k) + len(v) for k, v in headers)


def _rejection(c: Cluster, event: Event) -> JobRejected | InputRejected:
    d = c.feed(cast(Input, event))
    assert [type(e) for e in d.events] in ([JobRejected], [InputRejected]), d.events
    assert d.commands == []
    (rejected,) = d.events
    assert isinstance(rejected, (JobRejected, InputRejected))
    for e in d.events:
        assert _record_bytes(e) < 3 * lim.MAX_REJECTION_REASON_BYTES
        assert lim.utf8_len(e.event_id) <= lim.MAX_EVENT_ID_BYTES + 8
    return rejected


def _job(vertices: int = 1, parallelism: int = 1, **fields: object) -> JobSubmitted:
    vs = tuple(
        Vertex(
            id=f"v{i}",
            name=f"v{i}",
            operator="map",
            parallelism=parallelism,
            max_parallelism=max(128, parallelism),
        )
        for i in range(vertices)
    )
    edges = tuple(Edge(source=a.id, target=b.id) for a, b in itertools.pairwise(vs))
    s = JobSubmitted(
        event_id="sub-1",
        event_time=T0,
        job_id="job",
        name="job",
        job_graph=JobGraph(vertices=vs, edges=edges),
    )
    return dataclasses.replace(s, **fields)  # type: ignore[arg-type]


def _vertex_with(**fields: object) -> JobSubmitted:
    v = dataclasses.replace(Vertex(id="v0", name="v0", operator="map"), **fields)  # type: ignore[arg-type]
    return _job(job_graph=JobGraph(vertices=(v,)))


def _dag_edges(n: int) -> JobSubmitted:
    """A DAG of 128 vertices with `n` edges (i -> j for i < j, in order)."""
    vs = tuple(Vertex(id=f"v{i}", name="v", operator="map") for i in range(lim.MAX_VERTICES))
    pairs = itertools.islice(itertools.combinations(range(lim.MAX_VERTICES), 2), n)
    edges = tuple(Edge(source=f"v{a}", target=f"v{b}") for a, b in pairs)
    return _job(job_graph=JobGraph(vertices=vs, edges=edges))


def _config(entries: int, key_bytes: int = 8, value_bytes: int = 8) -> JobSubmitted:
    config = {f"{i:0{key_bytes}d}": "v" * value_bytes for i in range(entries)}
    return _vertex_with(config=config)


def _spread_config(total: int) -> JobSubmitted:
    """`total` bytes of config over 10 vertices of one 8-byte key each."""
    per, rest = divmod(total - 10 * 8, 10)
    vs = tuple(
        Vertex(
            id=f"v{i}",
            name="v",
            operator="map",
            config={f"{i:08d}": "c" * (per + (rest if i == 0 else 0))},
        )
        for i in range(10)
    )
    return _job(job_graph=JobGraph(vertices=vs))


def _registration(**fields: object) -> TaskManagerRegistered:
    r = TaskManagerRegistered(
        event_id="reg-1",
        event_time=T0,
        tm_id="tm-a",
        incarnation="inc-1",
        host="h",
        slots=2,
        operators=("map",),
    )
    return dataclasses.replace(r, **fields)  # type: ignore[arg-type]


def _task(job_id: str = "job", vertex_id: str = "v0", index: int = 0) -> TaskRef:
    return TaskRef(job_id=job_id, vertex_id=vertex_id, subtask_index=index, attempt=0)


def _running(n: int) -> TaskManagerRegistered:
    tasks = tuple(
        RunningTask(task=_task(index=i), slot_index=0, state=ExecutionState.RUNNING)
        for i in range(n)
    )
    return _registration(running_tasks=tasks)


def _checkpoint_report(cls: Callable[..., Event], **fields: Any) -> Event:
    common = {"event_time": T0, "tm_id": "tm-a", "incarnation": "inc-1", "checkpoint_id": 1}
    return cls(event_id="cp-1", task=_task(), **common, **fields)


def _ack(handle_bytes: int) -> Event:
    return _checkpoint_report(
        CheckpointAcknowledged, state_handle="h" * handle_bytes, state_size=1, duration_ms=1
    )


def _decline(reason_bytes: int) -> Event:
    return _checkpoint_report(CheckpointDeclined, reason="r" * reason_bytes)


def _cancel(**fields: object) -> JobCancelRequested:
    r = JobCancelRequested(event_id="cancel-1", event_time=T0, job_id="job")
    return dataclasses.replace(r, **fields)  # type: ignore[arg-type]


def _x(n: int) -> str:
    return "x" * n


#: name, limit, event at a given size. Each is accepted at the limit, refused one above.
CASES: list[tuple[str, int, Callable[[int], Event]]] = [
    ("JobSubmitted.event_id", lim.MAX_EVENT_ID_BYTES, lambda n: _job(event_id=_x(n))),
    ("JobSubmitted.job_id", lim.MAX_ID_BYTES, lambda n: _job(job_id=_x(n))),
    ("JobSubmitted.name", lim.MAX_NAME_BYTES, lambda n: _job(name=_x(n))),
    ("JobSubmitted.submitted_by", lim.MAX_NAME_BYTES, lambda n: _job(submitted_by=_x(n))),
    ("JobSubmitted.savepoint_path", lim.MAX_PATH_BYTES, lambda n: _job(savepoint_path=_x(n))),
    ("vertices", lim.MAX_VERTICES, lambda n: _job(vertices=n)),
    ("edges", lim.MAX_EDGES, _dag_edges),
    (
        "subtasks per job",
        lim.MAX_SUBTASKS_PER_JOB,
        lambda n: (
            _job(vertices=2, parallelism=n // 2)
            if n % 2 == 0
            else _vertex_with(parallelism=n, max_parallelism=n)
        ),
    ),
    ("vertex id", lim.MAX_ID_BYTES, lambda n: _vertex_with(id=_x(n))),
    ("vertex name", lim.MAX_NAME_BYTES, lambda n: _vertex_with(name=_x(n))),
    ("vertex operator", lim.MAX_NAME_BYTES, lambda n: _vertex_with(operator=_x(n))),
    ("max_parallelism", lim.MAX_MAX_PARALLELISM, lambda n: _vertex_with(max_parallelism=n)),
    ("config entries", lim.MAX_CONFIG_ENTRIES, _config),
    ("config key", lim.MAX_CONFIG_KEY_BYTES, lambda n: _config(1, key_bytes=n)),
    ("config value", lim.MAX_CONFIG_VALUE_BYTES, lambda n: _config(1, value_bytes=n)),
    ("config per job", lim.MAX_JOB_CONFIG_BYTES, _spread_config),
    ("JobCancelRequested.event_id", lim.MAX_EVENT_ID_BYTES, lambda n: _cancel(event_id=_x(n))),
    (
        "JobCancelRequested.requested_by",
        lim.MAX_NAME_BYTES,
        lambda n: _cancel(requested_by=_x(n)),
    ),
    ("slots", lim.MAX_SLOTS_PER_WORKER, lambda n: _registration(slots=n)),
    ("tm_id", lim.MAX_ID_BYTES, lambda n: _registration(tm_id=_x(n))),
    ("incarnation", lim.MAX_ID_BYTES, lambda n: _registration(incarnation=_x(n))),
    ("host", lim.MAX_NAME_BYTES, lambda n: _registration(host=_x(n))),
    ("version", lim.MAX_NAME_BYTES, lambda n: _registration(version=_x(n))),
    (
        "operators",
        lim.MAX_OPERATORS_PER_WORKER,
        lambda n: _registration(operators=tuple(f"op{i}" for i in range(n))),
    ),
    ("operator name", lim.MAX_NAME_BYTES, lambda n: _registration(operators=(_x(n),))),
    ("running_tasks", lim.MAX_RUNNING_TASKS_PER_WORKER, _running),
    ("state_handle", lim.MAX_STATE_HANDLE_BYTES, _ack),
    ("decline reason", lim.MAX_REASON_BYTES, _decline),
    (
        "deregistration reason",
        lim.MAX_REASON_BYTES,
        lambda n: TaskManagerDeregistered(
            event_id="d", event_time=T0, tm_id="tm-a", incarnation="i", reason=_x(n)
        ),
    ),
    (
        "error_name",
        lim.MAX_NAME_BYTES,
        lambda n: TaskStateChanged(
            event_id="r",
            event_time=T0,
            tm_id="tm-a",
            incarnation="i",
            task=_task(),
            state=ExecutionState.FAILED,
            error_name=_x(n),
        ),
    ),
]


@pytest.mark.parametrize(("what", "limit", "make"), CASES, ids=[c[0] for c in CASES])
def test_each_limit_is_accepted_and_one_more_is_refused(
    what: str, limit: int, make: Callable[[int], Event]
) -> None:
    c = Cluster()
    assert admission.problems(c.state, make(limit)) == []
    at_limit = make(limit)
    if isinstance(at_limit, JobSubmitted):
        offered = tuple(sorted({v.operator for v in at_limit.job_graph.vertices}))
        c.register("tm-a", slots=lim.MAX_SLOTS_PER_WORKER, operators=offered)
        c.view.savepoint_checks[at_limit.event_id] = None  # the leader read it: restorable
        d = c.feed(at_limit)
        assert type(d.events[0]) is JobAccepted, d.events
    over = make(limit + 1)
    assert admission.problems(c.state, over) != []
    rejected = _rejection(c, over)
    assert "allowed" in rejected.reason or "between" in rejected.reason, rejected.reason


def test_ten_vertices_of_parallelism_4096_are_refused() -> None:
    c = Cluster()
    c.register("tm-a", slots=lim.MAX_SLOTS_PER_WORKER, operators=("map",))
    rejected = _rejection(c, _job(job_graph=wide_graph("map")))
    assert isinstance(rejected, JobRejected)
    assert "40960 subtasks" in rejected.reason and "at most 1024" in rejected.reason


def test_one_vertex_of_parallelism_32768_with_long_ids_is_refused() -> None:
    c = Cluster()
    rejected = _rejection(c, _job(job_id="j" * 100, job_graph=deep_graph("map")))
    assert isinstance(rejected, JobRejected) and "32768 subtasks" in rejected.reason
    assert rejected.job_id == "j" * 100


def test_a_job_id_of_300000_chars_is_not_echoed() -> None:
    c = Cluster()
    job_id = "a" * 300_000
    rejected = _rejection(c, _job(job_id=job_id))
    assert isinstance(rejected, JobRejected)
    assert "job_id: 300000 bytes, at most 100 allowed" in rejected.reason
    assert lim.utf8_len(rejected.job_id) <= lim.MAX_ID_BYTES and rejected.job_id.startswith("aaa")
    assert lim.utf8_len(rejected.reason) <= lim.MAX_REJECTION_REASON_BYTES
    assert len(Catalog().key_for(rejected)) <= lim.MAX_ID_BYTES


def test_a_cancel_request_with_a_600k_event_id_is_not_echoed() -> None:
    c = Cluster()
    c.register("tm-a", slots=4, operators=("map",))
    c.submit("job", (("src", "map", 1),))
    event_id = "e" * 600_000
    rejected = _rejection(c, _cancel(event_id=event_id))
    assert isinstance(rejected, InputRejected) and rejected.job_id == "job"
    assert lim.utf8_len(rejected.input_event_id) <= lim.MAX_EVENT_ID_BYTES
    assert "event_id: 600000 bytes" in rejected.reason
    assert c.state.jobs["job"].status is JobStatus.RUNNING  # not cancelled


def test_a_registration_with_2_pow_62_slots_is_refused_without_allocating() -> None:
    c = Cluster()
    rejected = _rejection(c, _registration(slots=2**62))
    assert isinstance(rejected, InputRejected) and rejected.tm_id == "tm-a"
    assert "slots: must be between 0 and 256" in rejected.reason
    assert c.state.workers == {}


def test_workers_and_jobs_held_at_once_are_capped(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(admission, "MAX_WORKERS", 2)
    monkeypatch.setattr(admission, "MAX_JOBS", 1)
    c = Cluster()
    c.register("tm-a", slots=4, operators=("map",))
    c.register("tm-b", slots=4, operators=("map",))
    assert "MAX_WORKERS" in _rejection(c, _registration(tm_id="tm-c")).reason
    c.register("tm-a", slots=4, operators=("map",))  # a known worker may register again
    c.submit("one", (("src", "map", 1),))
    assert "MAX_JOBS" in _rejection(c, submission("two", (("src", "map", 1),))).reason


def test_subtasks_held_at_once_are_capped(monkeypatch: pytest.MonkeyPatch) -> None:
    """However many jobs wait for slots, the state every digest and snapshot walks
    stays bounded: a job whose subtasks would pass MAX_SUBTASKS is rejected."""
    monkeypatch.setattr(admission, "MAX_SUBTASKS", 5)
    c = Cluster()
    c.register("tm-a", slots=1, operators=("map",))
    c.submit("three", (("src", "map", 3),))  # waits for slots: its subtasks are held
    reason = _rejection(c, submission("three-more", (("src", "map", 3),))).reason
    assert "3 subtasks do not fit" in reason and "holds 3 of at most 5" in reason
    assert "MAX_SUBTASKS" in reason
    c.submit("two", (("src", "map", 2),))  # exactly at the limit
    assert set(c.state.jobs) == {"three", "two"}


def test_long_failure_traces_are_cut_keeping_the_message() -> None:
    c = Cluster()
    c.register("tm-a", slots=4, operators=("map",))
    c.submit("job", (("src", "map", 1),))
    (task,) = c.tasks("job")
    c.report(task, ExecutionState.RUNNING)
    message = "RuntimeError: the user's own message"
    trace = "Traceback (most recent call last):\n" + "  frame\n" * 100_000 + message
    c.feed(
        TaskStateChanged(
            event_id="fail-1",
            event_time=c.now,
            tm_id="tm-a",
            incarnation="inc-1",
            task=task,
            state=ExecutionState.FAILED,
            error_name="RuntimeError",
            error_stack=trace,
        )
    )
    entry = c.state.jobs["job"].exceptions[-1]
    assert lim.utf8_len(entry.message) <= lim.MAX_ERROR_STACK_BYTES
    assert entry.message.endswith(message)


def _worst_submission() -> JobSubmitted:
    """Every limit of a submission at its maximum at once."""
    ids = [f"{i:03d}" + "v" * (lim.MAX_ID_BYTES - 3) for i in range(lim.MAX_VERTICES)]
    per_vertex = lim.MAX_SUBTASKS_PER_JOB // lim.MAX_VERTICES
    config = {f"{i:03d}" + "k" * 125: "c" * 380 for i in range(lim.MAX_CONFIG_ENTRIES)}
    assert sum(len(k) + len(v) for k, v in config.items()) <= lim.MAX_JOB_CONFIG_BYTES
    vertices = tuple(
        Vertex(
            id=vid,
            name="n" * lim.MAX_NAME_BYTES,
            operator=f"{i:03d}" + "o" * 253,
            parallelism=per_vertex,
            max_parallelism=lim.MAX_MAX_PARALLELISM,
            config=config if i == 1 else {},
        )
        for i, vid in enumerate(ids)
    )
    # Edges concentrated on the first vertices: the most a DeployTask can carry.
    pairs = itertools.islice(itertools.combinations(range(lim.MAX_VERTICES), 2), lim.MAX_EDGES)
    edges = tuple(
        Edge(
            source=ids[a],
            target=ids[b],
            partitioning=Partitioning.HASH,
            key_field="k" * lim.MAX_NAME_BYTES,
        )
        for a, b in pairs
    )
    return JobSubmitted(
        event_id="e" * lim.MAX_EVENT_ID_BYTES,
        event_time=T0,
        job_id="j" * lim.MAX_ID_BYTES,
        name="n" * lim.MAX_NAME_BYTES,
        job_graph=JobGraph(vertices=vertices, edges=edges),
        savepoint_path="p" * lim.MAX_PATH_BYTES,
        submitted_by="s" * lim.MAX_NAME_BYTES,
    )


def test_the_worst_submission_within_limits_derives_records_well_under_1_mib(
    capsys: pytest.CaptureFixture[str],
) -> None:
    s = _worst_submission()
    c = Cluster()
    operators = tuple(v.operator for v in s.job_graph.vertices)
    workers = lim.MAX_SUBTASKS_PER_JOB // lim.MAX_SLOTS_PER_WORKER
    for w in range(workers):
        c.register(f"{w:03d}" + "t" * 97, slots=lim.MAX_SLOTS_PER_WORKER, operators=operators)
    c.view.savepoint_checks[s.event_id] = None  # the leader read the savepoint: restorable
    d = c.feed(s)
    assert c.state.jobs[s.job_id].status is JobStatus.RUNNING
    # A worker with every registration limit at its maximum (its tasks unknown: cancelled):
    # every slot full of shared-slot tasks.
    running = tuple(
        RunningTask(
            task=TaskRef(job_id="j" * 100, vertex_id="v" * 100, subtask_index=32767, attempt=2**40),
            slot_index=i % lim.MAX_SLOTS_PER_WORKER,
            state=ExecutionState.RUNNING,
        )
        for i in range(lim.MAX_RUNNING_TASKS_PER_WORKER)
    )
    joined = c.feed(
        TaskManagerRegistered(
            event_id="e" * lim.MAX_EVENT_ID_BYTES,
            event_time=c.now,
            tm_id="w" * 100,
            incarnation="i" * 100,
            host="h" * 256,
            slots=lim.MAX_SLOTS_PER_WORKER,
            operators=tuple(f"{i:03d}" + "o" * 253 for i in range(lim.MAX_OPERATORS_PER_WORKER)),
            running_tasks=running,
            version="v" * 256,
        )
    )
    largest: dict[str, int] = {}
    for e in [*d.events, *d.commands, *joined.events, *joined.commands]:
        name = type(e).__name__
        largest[name] = max(largest.get(name, 0), _record_bytes(e))
    # A checkpoint of every subtask with the longest handles and largest numbers.
    largest["CheckpointCompleted"] = _record_bytes(
        CheckpointCompleted(
            event_id="e" * lim.MAX_EVENT_ID_BYTES + ":999999",
            event_time=T0,
            epoch=2**40,
            job_id=s.job_id,
            checkpoint_id=2**40,
            state_size=2**62,
            duration_ms=2**40,
            task_states=tuple(
                TaskStateHandle(
                    task=dataclasses.replace(t, attempt=2**40),
                    state_handle="h" * lim.MAX_STATE_HANDLE_BYTES,
                    state_size=2**62,
                    duration_ms=2**40,
                    alignment_ms=2**40,
                )
                for t in c.tasks(s.job_id)
            ),
        )
    )
    # The discard of a retained checkpoint of every subtask (job ended or subsumed).
    largest["CheckpointStateDiscarded"] = _record_bytes(
        CheckpointStateDiscarded(
            event_id="e" * lim.MAX_EVENT_ID_BYTES + ":999999",
            event_time=T0,
            epoch=2**40,
            job_id=s.job_id,
            checkpoint_ids=(2**40,),
            handles=tuple(
                f"{i:08d}" + "h" * (lim.MAX_STATE_HANDLE_BYTES - 8)
                for i in range(len(c.tasks(s.job_id)))
            ),
            reason="subsumed by checkpoint 1099511627776",
        )
    )
    assert isinstance(d.events[2], ExecutionGraphCreated)
    with capsys.disabled():
        print("\nlargest derived records (value + key + headers, bytes):")
        for name, size in sorted(largest.items(), key=lambda kv: -kv[1]):
            print(f"  {name}: {size}")
    assert largest[JobAccepted.__name__] > 100_000  # the case really is large
    # The registration's own record: a worker's every running task, the largest by design;
    # it fits the journal's 1 MiB with room for the signature and the batch's overhead.
    joined_bytes = largest.pop("TaskManagerJoined")
    assert 900_000 < joined_bytes < DEFAULT_MAX_MESSAGE_BYTES - 64 * 1024, joined_bytes
    assert max(largest.values()) < COMFORT_BYTES, largest
    largest["TaskManagerJoined"] = joined_bytes
    assert {DeployTask.__name__, "TaskManagerJoined", "CancelTask"} <= set(largest)
