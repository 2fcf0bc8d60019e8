"""The state stays bounded under churn: lost workers and ended jobs are remembered
within documented bounds (pruned in event time, the same way on replay and after a
snapshot), the heartbeat view keeps only registered workers, and a job id that
already ran is never run again."""

import importlib
import random

import pytest

from coordinator.domain import DomainConfig, Tick, decide, state_digest
from coordinator.domain import state as state_module
from coordinator.domain.digest import canonical_json
from coordinator.domain.invariants import violations
from coordinator.runtime.snapshots import decode_state, encode_state
from schemas.events import (
    DeployTask,
    ExecutionState,
    JobAccepted,
    JobRejected,
    JobStatus,
    TaskManagerDeregistered,
    TaskManagerHeartbeat,
)
from tests.domain.cluster import T0, Cluster, replay, submission

ARCHIVE_AFTER_MS = 1_000


@pytest.fixture
def small_bounds(monkeypatch: pytest.MonkeyPatch) -> None:
    """Bounds small enough that a churn of a few hundred cycles passes warm-up."""
    evolve_module = importlib.import_module("coordinator.domain.evolve")
    monkeypatch.setattr(evolve_module, "LOST_WORKERS_KEPT", 20)
    monkeypatch.setattr(evolve_module, "ENDED_JOBS_KEPT", 30)


def _rand_id(rng: random.Random, prefix: str) -> str:
    return f"{prefix}-{rng.getrandbits(64):016x}"


def _churn(c: Cluster, rng: random.Random, cycles: int, sizes: list[int]) -> None:
    """Workers come and go with random ids (each start is a new incarnation of a
    random tm id, lost by deregistration or by heartbeat timeout); jobs with
    random ids are submitted, run, finish or are cancelled, and are archived."""
    c.register("tm-stable", incarnation="stable", slots=8, operators=("map", "sink"))
    for n in range(cycles):
        tm = _rand_id(rng, "tm")
        c.register(tm, incarnation=_rand_id(rng, "inc"), slots=2)
        job = _rand_id(rng, "job")
        c.submit(job, (("src", "map", 1), ("out", "sink", 1)))
        assert c.state.jobs[job].status is JobStatus.RUNNING
        c.run_all(job)
        if n % 3 == 0:
            c.cancel(job)
            c.run_all(job, ExecutionState.CANCELED)
        else:
            c.run_all(job, ExecutionState.FINISHED)
        assert c.state.jobs[job].status.is_globally_terminal
        if n % 2 == 0:
            c.deregister(tm, c.state.workers[tm].incarnation)
            c.now += 10
        else:
            c.view.last_heartbeat[("tm-stable", "stable")] = c.now + 6_000
            c.tick(6_000)  # tm times out, job archived
        c.view.last_heartbeat[("tm-stable", "stable")] = c.now + ARCHIVE_AFTER_MS
        c.tick(ARCHIVE_AFTER_MS)
        sizes.append(len(canonical_json(c.state)))


def test_a_long_churn_of_workers_and_jobs_keeps_the_state_flat(small_bounds: None) -> None:
    c = Cluster(config=DomainConfig(archive_after_ms=ARCHIVE_AFTER_MS))
    sizes: list[int] = []
    _churn(c, random.Random(7), 300, sizes)
    assert violations(c.state) == []
    assert len(c.state.lost_incarnations) == 20 and len(c.state.ended_jobs) == 30
    assert set(c.state.jobs) == set() and set(c.state.workers) == {"tm-stable"}
    warm = sizes[60]
    assert max(sizes[60:]) <= warm * 1.05, (warm, max(sizes[60:]))
    assert state_digest(replay(c.journal)) == state_digest(c.state)
    assert len(c.view.last_heartbeat) <= 2 * len(c.state.workers) + 16


def test_a_snapshot_prunes_like_a_replay(small_bounds: None) -> None:
    """The state restored from a snapshot forgets the same entries later as the
    replayed one: snapshots keep the order in which entries were added."""
    c = Cluster(config=DomainConfig(archive_after_ms=ARCHIVE_AFTER_MS))
    _churn(c, random.Random(11), 120, [])
    half = len(c.journal) // 2
    restored = decode_state(encode_state(replay(c.journal[:half])))
    replayed = replay(c.journal[:half])
    for record in c.journal[half:]:
        replay([record], restored)
        replay([record], replayed)
        assert list(restored.lost_incarnations) == list(replayed.lost_incarnations)
        assert list(restored.ended_jobs) == list(replayed.ended_jobs)
    assert state_digest(restored) == state_digest(c.state)


def test_lost_incarnations_expire_in_event_time() -> None:
    c = Cluster()
    c.register("tm-a", incarnation="old")
    c.deregister("tm-a", "old")
    assert "old" in c.state.lost_incarnations["tm-a"]
    assert c.register("tm-a", incarnation="old").events[0].__class__.__name__ == "InputRejected"
    c.now += state_module.LOST_WORKER_RETENTION_MS + 1
    c.register("tm-b", incarnation="b1")
    c.deregister("tm-b", "b1")  # a later loss prunes what is too old
    assert "tm-a" not in c.state.lost_incarnations and "tm-b" in c.state.lost_incarnations


def test_lost_incarnations_per_worker_are_capped() -> None:
    c = Cluster()
    for i in range(state_module.LOST_INCARNATIONS_PER_WORKER + 3):
        c.register("tm-a", incarnation=f"inc-{i}")
        c.deregister("tm-a", f"inc-{i}")
    kept = list(c.state.lost_incarnations["tm-a"])
    assert kept == [f"inc-{i}" for i in range(3, state_module.LOST_INCARNATIONS_PER_WORKER + 3)]


def test_a_decision_shares_the_remembered_sets_instead_of_copying_them() -> None:
    c = Cluster()
    c.register("tm-a", incarnation="old")
    c.deregister("tm-a", "old")
    fork = c.state.fork()
    assert fork.lost_incarnations is c.state.lost_incarnations
    assert fork.ended_jobs is c.state.ended_jobs
    before = state_digest(c.state)
    decide(c.state, c.view, Tick("t"), c.now)
    c.register("tm-b", incarnation="b")
    leaving = TaskManagerDeregistered(
        event_id="bye", event_time=c.now, tm_id="tm-b", incarnation="b"
    )
    decision = decide(c.state, c.view, leaving, c.now)  # loses tm-b in a fork only
    assert [type(e).__name__ for e in decision.events] == ["TaskManagerLost"]
    assert "tm-b" not in c.state.lost_incarnations and before != state_digest(c.state)


def test_the_heartbeat_view_keeps_only_registered_incarnations() -> None:
    c = Cluster()
    c.register("tm-a", incarnation="a1")

    def beat(tm_id: str, incarnation: str) -> None:
        hb = TaskManagerHeartbeat(
            event_id="hb",
            event_time=c.now,
            tm_id=tm_id,
            incarnation=incarnation,
            sequence=1,
            slots_free=0,
            running_tasks=0,
        )
        c.view.record_heartbeat(hb, c.now, c.state.workers)

    for i in range(10_000):
        beat(f"stranger-{i}", "x")
    beat("tm-a", "old-incarnation")
    beat("tm-a", "a1")
    assert c.view.last_heartbeat == {("tm-a", "a1"): c.now}
    assert c.view.ignored_heartbeats == 10_001
    for i in range(40):  # workers come, beat and go
        c.register(f"w{i}", incarnation="i")
        beat(f"w{i}", "i")
        c.deregister(f"w{i}", "i")
    beat("tm-a", "a1")
    assert len(c.view.last_heartbeat) <= 2 * len(c.state.workers) + 16


def _finished(c: Cluster, job_id: str) -> None:
    c.submit(job_id, (("src", "map", 1),))
    c.run_all(job_id)
    c.run_all(job_id, ExecutionState.FINISHED)
    assert c.state.jobs[job_id].status is JobStatus.FINISHED


def _archived(job_id: str) -> Cluster:
    """A cluster in which `job_id` ran, finished and was archived."""
    c = Cluster(config=DomainConfig(archive_after_ms=ARCHIVE_AFTER_MS))
    c.register("tm-a", slots=4)
    _finished(c, job_id)
    c.heartbeat_all()
    c.tick(ARCHIVE_AFTER_MS)
    assert job_id not in c.state.jobs and job_id in c.state.ended_jobs
    return c


def test_a_finished_and_archived_job_is_not_run_again() -> None:
    c = _archived("once")
    late = c.feed(submission("once", (("src", "map", 1),), event_id="late-duplicate"))
    (rejected,) = late.events
    assert isinstance(rejected, JobRejected) and late.commands == []
    assert "already ran and ended: FINISHED" in rejected.reason
    assert rejected.input_event_id == "late-duplicate"
    assert "once" not in c.state.jobs
    # The same id is refused while the ended job is still in memory, too...
    _finished(c, "twice")
    again = c.feed(submission("twice", (("src", "map", 1),), event_id="retry"))
    assert isinstance(again.events[0], JobRejected) and "FINISHED" in again.events[0].reason
    # ...but the very record that was accepted, read again, is still a no-op.
    assert c.feed(submission("twice", (("src", "map", 1),))).events == []


def test_an_ended_job_id_is_free_again_after_the_retention() -> None:
    c = _archived("old")
    c.now += state_module.ENDED_JOB_RETENTION_MS + 1
    c.register("tm-a", slots=4)
    c.heartbeat_all()
    d = c.feed(submission("old", (("src", "map", 1),), event_id="much-later"))
    assert isinstance(d.events[0], JobAccepted)
    assert any(isinstance(x, DeployTask) for x in d.commands)


def test_ended_jobs_survive_replay_and_snapshots() -> None:
    c = _archived("kept")
    state = decode_state(encode_state(replay(c.journal)))
    assert state.ended_jobs == c.state.ended_jobs
    assert state.ended_jobs["kept"].final_status is JobStatus.FINISHED
    assert state.ended_jobs["kept"].ended_at == T0


def test_the_doc_lists_every_state_bound() -> None:
    from pathlib import Path

    text = (Path(__file__).parents[2] / "docs" / "coordinator.md").read_text()
    for name in (
        "LOST_INCARNATIONS_PER_WORKER",
        "LOST_WORKERS_KEPT",
        "LOST_WORKER_RETENTION_MS",
        "ENDED_JOBS_KEPT",
        "ENDED_JOB_RETENTION_MS",
    ):
        assert f"`{name}`" in text, name
        assert isinstance(getattr(state_module, name), int)


def test_ended_jobs_past_the_count_are_archived_first_ended_first_and_replay_alike() -> None:
    """jobmanager.retention.ended-jobs.max-count: the leader journals JobArchived for
    the ended jobs beyond the count, those that ended first; live, full replay and
    snapshot + tail agree at every step."""
    c = Cluster(config=DomainConfig(archive_after_ms=None, max_ended_jobs=2))
    c.register("tm-a", slots=8)
    c.heartbeat_all()
    c.submit("running", (("src", "map", 1),))
    for n, job_id in enumerate(("a", "b", "c", "d")):
        c.now += 10
        _finished(c, job_id)
        c.heartbeat_all()
        c.tick()
        kept = {"a", "b", "c", "d"}.intersection(c.state.jobs)
        assert len(kept) == min(n + 1, 2), kept
    assert set(c.state.jobs) == {"running", "c", "d"}  # the two that ended last
    assert list(c.state.ended_jobs) == ["a", "b"]
    half = len(c.journal) // 2
    restored = decode_state(encode_state(replay(c.journal[:half])))
    replay(c.journal[half:], restored)
    assert state_digest(replay(c.journal)) == state_digest(c.state) == state_digest(restored)
