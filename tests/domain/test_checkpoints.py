"""Flink's checkpoint rules in the pure core, one test each (issue 12, item 1),
and the statistics they fold to (item 7).

Acknowledgements go in as inputs only (``Cluster.ack``): decide records them in
the leader's view itself, as the live leader does.
"""

from typing import TypeVar

from coordinator.domain import DomainConfig, state_digest
from coordinator.domain.decide import Decision
from coordinator.domain.digest import state_from_dict, state_to_dict
from coordinator.domain.invariants import violations
from coordinator.domain.state import CHECKPOINT_HISTORY_LIMIT, CheckpointStatus
from schemas import codec
from schemas.events import (
    CheckpointAborted,
    CheckpointCompleted,
    CheckpointConfig,
    CheckpointStateDiscarded,
    CheckpointTriggered,
    DeployTask,
    ExecutionState,
    ExternalizedRetention,
    JobStatus,
    JobStatusChanged,
    NotifyCheckpointAborted,
    NotifyCheckpointComplete,
    RestartStrategy,
    RestartStrategyKind,
    RunningTask,
    SavepointRequested,
    TriggerCheckpoint,
)
from schemas.limits import FINISHED_TASK_HANDLE
from tests.domain.cluster import Cluster, replay

J = TypeVar("J")

E = ExecutionState
GRAPH = (("src", "map", 2), ("out", "sink", 1))
NO_RESTART = RestartStrategy(kind=RestartStrategyKind.NONE)


def _running(config: CheckpointConfig, **kwargs: object) -> Cluster:
    c = Cluster(config=DomainConfig(allow_checkpointing=True))
    c.register("tm-a", slots=2)
    c.register("tm-b", slots=2)
    c.submit("job", GRAPH, checkpoints=config, **kwargs)
    c.run_all("job")
    return c


def _tick(c: Cluster, advance_ms: int = 0) -> list[str]:
    c.now += advance_ms
    c.heartbeat_all()
    return [type(e).__name__ for e in c.tick().events]


def _check(c: Cluster) -> None:
    """Invariants hold, and replay and a snapshot round trip give the live state."""
    assert violations(c.state) == []
    digest = state_digest(c.state)
    assert state_digest(replay(c.journal)) == digest
    assert state_digest(state_from_dict(state_to_dict(c.state))) == digest


def _events(c: Cluster, cls: type[J]) -> list[J]:
    return [e for e in map(codec.decode, c.journal) if isinstance(e, cls)]


def test_periodic_trigger_at_the_interval_to_the_sources_only() -> None:
    c = _running(CheckpointConfig(interval_ms=1_000))
    assert _tick(c, 999) == []
    d = c.tick(1)
    assert [type(e).__name__ for e in d.events] == ["CheckpointTriggered"]
    triggers = [x for x in d.commands if isinstance(x, TriggerCheckpoint)]
    assert sorted((t.vertex_id, t.subtask_index) for x in triggers for t in x.tasks()) == [
        ("src", 0),
        ("src", 1),
    ]
    _check(c)


def test_one_trigger_and_one_notification_per_worker_naming_its_tasks() -> None:
    c = Cluster(config=DomainConfig(allow_checkpointing=True))
    c.register("tm-a", slots=3)
    c.register("tm-b", slots=3)
    c.submit("job", (("src", "map", 6),), checkpoints=CheckpointConfig(interval_ms=1_000))
    c.run_all("job")
    d = c.tick(1_000)
    triggers = [x for x in d.commands if isinstance(x, TriggerCheckpoint)]
    executions = c.state.jobs["job"].executions
    by_worker = {(x.tm_id, x.incarnation) for x in executions.values()}
    assert len(by_worker) == 2 and len(triggers) == 2
    for t in triggers:
        assert all(
            (executions[(task.vertex_id, task.subtask_index)].tm_id, t.incarnation)
            == (t.tm_id, t.incarnation)
            for task in t.tasks()
        )
    assert {task for t in triggers for task in t.tasks()} == set(c.tasks("job"))
    d = c.ack_all("job", 1)
    notes = [x for x in d.commands if isinstance(x, NotifyCheckpointComplete)]
    assert len(notes) == 2
    assert {task for n in notes for task in n.tasks()} == set(c.tasks("job"))
    _check(c)


def test_no_trigger_when_checkpoints_are_disabled() -> None:
    c = _running(CheckpointConfig())
    assert "CheckpointTriggered" not in _tick(c, 3_600_000)


def test_every_subtask_acknowledging_completes_without_the_harness_recording_acks() -> None:
    c = _running(CheckpointConfig(interval_ms=1_000))
    _tick(c, 1_000)
    tasks = c.tasks("job")
    assert [type(e).__name__ for e in c.ack(tasks[0], 1).events] == []
    assert set(c.view.checkpoint_acks[("job", 1)]) == {("src", 0)}
    c.ack(tasks[1], 1)
    c.now += 40
    d = c.ack(tasks[2], 1, size=100, alignment_ms=7)
    (done,) = [e for e in d.events if isinstance(e, CheckpointCompleted)]
    assert len(done.task_states) == 3
    assert done.duration_ms == 40 and done.state_size == 64 + 64 + 100
    assert max(h.alignment_ms for h in done.task_states) == 7
    notified = {t for x in d.commands if isinstance(x, NotifyCheckpointComplete) for t in x.tasks()}
    assert notified == set(tasks)
    assert c.view.checkpoint_acks == {}  # forgotten once complete
    assert c.state.jobs["job"].checkpoints.latest_completed == 1
    _check(c)


def test_an_ack_of_a_stale_attempt_is_rejected_and_not_recorded() -> None:
    c = _running(CheckpointConfig(interval_ms=1_000))
    _tick(c, 1_000)
    c.ack(c.tasks("job")[0], 2)  # not pending
    assert c.view.checkpoint_acks == {}


def test_timeout_default_ten_minutes_aborts_and_counts() -> None:
    config = CheckpointConfig(interval_ms=1_000, tolerable_failures=5)
    assert config.timeout_ms == 600_000
    c = _running(config)
    _tick(c, 1_000)
    assert "CheckpointAborted" not in _tick(c, 599_999)
    assert _tick(c, 1)[0] == "CheckpointAborted"
    (aborted,) = _events(c, CheckpointAborted)
    assert aborted.counted and "expired" in aborted.reason
    assert c.state.jobs["job"].checkpoints.consecutive_failures == 1
    _check(c)


def test_min_pause_between_the_end_of_one_and_the_next_trigger() -> None:
    c = _running(CheckpointConfig(interval_ms=1_000, min_pause_ms=5_000))
    _tick(c, 1_000)
    c.now += 500
    c.ack_all("job", 1)  # ended at +1500: the next trigger is not before +6500
    assert "CheckpointTriggered" not in _tick(c, 4_999)
    assert _tick(c, 1) == ["CheckpointTriggered"]


def test_at_most_one_concurrent_checkpoint() -> None:
    c = _running(CheckpointConfig(interval_ms=1_000))
    _tick(c, 1_000)
    for _ in range(5):
        assert "CheckpointTriggered" not in _tick(c, 1_000)
    assert list(c.state.jobs["job"].checkpoints.pending) == [1]
    c.ack_all("job", 1)
    assert _tick(c, 0) == ["CheckpointTriggered"]  # overdue: right after the end


def test_zero_tolerable_failures_a_decline_fails_the_job_over() -> None:
    c = _running(CheckpointConfig(interval_ms=1_000))
    _tick(c, 1_000)
    d = c.decline(c.tasks("job")[1], 1, "disk full")
    names = [type(e).__name__ for e in d.events]
    assert names[0] == "CheckpointAborted"
    (change,) = [e for e in d.events if isinstance(e, JobStatusChanged)]
    assert change.to_status is JobStatus.RESTARTING
    assert "tolerable failure threshold" in (change.cause or "")
    assert any(isinstance(x, NotifyCheckpointAborted) for x in d.commands)
    _check(c)


def test_the_failure_counter_resets_on_completion() -> None:
    c = _running(CheckpointConfig(interval_ms=1_000, tolerable_failures=1))
    _tick(c, 1_000)
    c.decline(c.tasks("job")[0], 1)
    assert c.state.jobs["job"].checkpoints.consecutive_failures == 1
    _tick(c, 1_000)
    c.ack_all("job", 2)
    assert c.state.jobs["job"].checkpoints.consecutive_failures == 0
    _tick(c, 1_000)
    c.decline(c.tasks("job")[0], 3)  # one failure again: tolerated
    assert _status(c) is JobStatus.RUNNING
    _tick(c, 1_000)
    c.decline(c.tasks("job")[0], 4)  # two in a row: one more than tolerated
    assert _status(c) is JobStatus.RESTARTING


def _status(c: Cluster) -> JobStatus:
    return c.state.jobs["job"].status


def test_a_task_failure_aborts_pending_checkpoints_first_without_counting() -> None:
    c = _running(CheckpointConfig(interval_ms=1_000), restart=NO_RESTART)
    _tick(c, 1_000)
    c.ack(c.tasks("job")[0], 1)
    d = c.report(c.tasks("job")[2], E.FAILED, error="Boom")
    names = [type(e).__name__ for e in d.events]
    aborted_at = names.index("CheckpointAborted")
    assert aborted_at < names.index("JobStatusChanged")
    aborted = d.events[aborted_at]
    assert isinstance(aborted, CheckpointAborted)
    assert not aborted.counted and aborted.acknowledged == 1 and "Boom" in aborted.reason
    assert c.state.jobs["job"].checkpoints.consecutive_failures == 0
    # The state the acknowledged task wrote is discarded; the tasks are told.
    (discarded,) = [e for e in d.events if isinstance(e, CheckpointStateDiscarded)]
    assert discarded.checkpoint_ids == (1,) and len(discarded.handles) == 1
    assert any(isinstance(x, NotifyCheckpointAborted) for x in d.commands)
    assert c.view.checkpoint_acks == {}
    _check(c)


def test_retained_count_subsumes_older_checkpoints_and_discards_their_state() -> None:
    c = _running(CheckpointConfig(interval_ms=1_000, retained=2))
    for n in (1, 2):
        _tick(c, 1_000)
        c.ack_all("job", n)
    _tick(c, 1_000)
    d = c.ack_all("job", 3)
    (done,) = [e for e in d.events if isinstance(e, CheckpointCompleted)]
    assert done.subsumed == (1,)
    (discarded,) = [e for e in d.events if isinstance(e, CheckpointStateDiscarded)]
    assert discarded.checkpoint_ids == (1,)
    assert set(discarded.handles) == {h.state_handle for h in _completed(c, 1).task_states}
    cps = c.state.jobs["job"].checkpoints
    assert cps.completed == [2, 3] and list(cps.retained_handles) == [2, 3]
    assert cps.stats.history[0].discarded
    _check(c)


def _completed(c: Cluster, checkpoint_id: int) -> CheckpointCompleted:
    (done,) = [e for e in _events(c, CheckpointCompleted) if e.checkpoint_id == checkpoint_id]
    return done


def test_savepoints_are_never_subsumed_or_discarded() -> None:
    c = _running(CheckpointConfig(interval_ms=1_000))
    c.feed(SavepointRequested(event_id="sp", event_time=c.now, job_id="job"))
    c.ack_all("job", 1)
    _tick(c, 1_000)
    c.ack_all("job", 2)
    _tick(c, 1_000)
    c.ack_all("job", 3)  # subsumes checkpoint 2, not savepoint 1
    assert [e.checkpoint_ids for e in _events(c, CheckpointStateDiscarded)] == [(2,)]
    assert c.state.jobs["job"].checkpoints.stats.latest_savepoint is not None


def test_a_checkpoint_of_an_older_leader_is_aborted_by_the_new_one() -> None:
    c = _running(CheckpointConfig(interval_ms=1_000))
    _tick(c, 1_000)
    c.elect("replica-2")
    for tm_id in ("tm-a", "tm-b"):
        job = c.state.jobs["job"]
        running = tuple(
            RunningTask(task=job.task_ref(k), slot_index=x.slot_index or 0, state=x.state)
            for k, x in job.executions.items()
            if x.tm_id == tm_id
        )
        c.register(tm_id, slots=2, running=running)
    assert _tick(c)[0] == "CheckpointAborted"
    (aborted,) = _events(c, CheckpointAborted)
    assert not aborted.counted and "leader" in aborted.reason
    assert c.state.jobs["job"].status is JobStatus.RUNNING
    _check(c)


def _end(retention: ExternalizedRetention, how: JobStatus) -> list[CheckpointStateDiscarded]:
    c = _running(
        CheckpointConfig(interval_ms=1_000, externalized_retention=retention), restart=NO_RESTART
    )
    _tick(c, 1_000)
    c.ack_all("job", 1)
    if how is JobStatus.CANCELED:
        c.cancel("job")
        c.run_all("job", E.CANCELED)
    elif how is JobStatus.FAILED:
        c.report(c.tasks("job")[0], E.FAILED, error="Boom")
        for task in c.tasks("job")[1:]:
            c.report(task, E.CANCELED)
    else:
        c.run_all("job", E.FINISHED)
    assert c.state.jobs["job"].status is how
    _check(c)
    return _events(c, CheckpointStateDiscarded)


def test_externalized_retention_on_cancel_and_failure() -> None:
    kept: list[tuple[int, ...]] = []
    deleted = [(1,)]
    R = ExternalizedRetention
    for retention, how, expected in [
        (R.RETAIN_ON_CANCELLATION, JobStatus.CANCELED, kept),
        (R.RETAIN_ON_CANCELLATION, JobStatus.FAILED, kept),
        (R.RETAIN_ON_CANCELLATION, JobStatus.FINISHED, deleted),
        (R.DELETE_ON_CANCELLATION, JobStatus.CANCELED, deleted),
        (R.DELETE_ON_CANCELLATION, JobStatus.FAILED, kept),
        (R.NO_EXTERNALIZED_CHECKPOINTS, JobStatus.FAILED, deleted),
    ]:
        found = [e.checkpoint_ids for e in _end(retention, how)]
        assert found == expected, (retention, how)
    assert CheckpointConfig().externalized_retention is R.RETAIN_ON_CANCELLATION


def test_statistics_counts_history_latest_and_summary() -> None:
    c = _running(CheckpointConfig(interval_ms=1_000, tolerable_failures=100))
    for n in range(1, 15):
        _tick(c, 1_000)
        if n % 3 == 0:
            c.decline(c.tasks("job")[0], n, f"no {n}")
        else:
            c.now += n
            c.ack_all("job", n)
    _tick(c, 1_000)  # 15 in progress
    stats = c.state.jobs["job"].checkpoints.stats
    assert (stats.triggered, stats.completed, stats.failed, stats.restored) == (15, 10, 4, 0)
    assert len(stats.history) == CHECKPOINT_HISTORY_LIMIT
    assert [r.checkpoint_id for r in stats.history] == list(range(6, 16))
    last = stats.history[-1]
    assert last.status is CheckpointStatus.IN_PROGRESS and last.num_subtasks == 3
    assert stats.latest_completed is not None and stats.latest_completed.checkpoint_id == 14
    assert stats.latest_completed.num_acknowledged_subtasks == 3
    failed = stats.latest_failed
    assert failed is not None and failed.failure_message is not None
    assert failed.checkpoint_id == 12 and "no 12" in failed.failure_message
    durations = [n for n in range(1, 15) if n % 3]
    summary = stats.end_to_end_duration
    assert (summary.min, summary.max, summary.avg) == (1, 14, sum(durations) // len(durations))
    assert stats.state_size.min == stats.state_size.max == 3 * 64
    # A failover restores the latest completed checkpoint: counted as a restore.
    c.report(c.tasks("job")[0], E.FAILED, error="Boom")
    for task in c.tasks("job")[1:]:
        c.report(task, E.CANCELED)
    _tick(c, 1_000)
    stats = c.state.jobs["job"].checkpoints.stats
    assert stats.history[-1].status is CheckpointStatus.FAILED  # 15, aborted by the failure
    assert stats.restored == 1
    assert stats.latest_restored is not None and stats.latest_restored.checkpoint_id == 14
    _check(c)


def test_the_view_holds_only_acks_of_pending_checkpoints() -> None:
    c = _running(CheckpointConfig(interval_ms=1_000, tolerable_failures=1_000))
    for n in range(1, 40):
        _tick(c, 1_000)
        c.ack(c.tasks("job")[0], n)
        c.decline(c.tasks("job")[1], n)
        assert list(c.view.checkpoint_acks) == []
    _tick(c, 1_000)
    c.ack(c.tasks("job")[0], 40)
    assert list(c.view.checkpoint_acks) == [("job", 40)]
    assert len(_events(c, CheckpointTriggered)) == 40


# Finished tasks (FLIP-147, simplified; docs/checkpoints.md "Finished tasks")


def _finish(c: Cluster, vertex: str, index: int) -> Decision:
    (task,) = [t for t in c.tasks("job") if (t.vertex_id, t.subtask_index) == (vertex, index)]
    return c.report(task, E.FINISHED)


def test_after_a_source_finished_triggers_go_on_to_the_running_sources() -> None:
    c = _running(CheckpointConfig(interval_ms=1_000))
    _finish(c, "src", 0)
    d = c.tick(1_000)
    assert [type(e).__name__ for e in d.events] == ["CheckpointTriggered"]
    triggers = [x for x in d.commands if isinstance(x, TriggerCheckpoint)]
    assert [(t.vertex_id, t.subtask_index) for x in triggers for t in x.tasks()] == [("src", 1)]
    _check(c)


def test_a_finished_task_counts_as_acknowledged_with_the_finished_handle() -> None:
    c = _running(CheckpointConfig(interval_ms=1_000))
    _finish(c, "src", 0)
    _tick(c, 1_000)
    src1, out = c.tasks("job")[1], c.tasks("job")[2]
    c.ack(src1, 1)
    c.ack(out, 1)
    handles = {
        (h.task.vertex_id, h.task.subtask_index): h.state_handle
        for h in _completed(c, 1).task_states
    }
    assert handles[("src", 0)] == FINISHED_TASK_HANDLE
    assert handles[("src", 1)] != FINISHED_TASK_HANDLE
    cps = c.state.jobs["job"].checkpoints
    assert cps.restore_handles[("src", 0)] == FINISHED_TASK_HANDLE
    assert FINISHED_TASK_HANDLE not in cps.retained_handles[1]  # nothing to discard
    _check(c)


def test_an_acknowledgement_before_finishing_wins_over_the_finished_handle() -> None:
    c = _running(CheckpointConfig(interval_ms=1_000))
    _tick(c, 1_000)
    src0 = c.tasks("job")[0]
    c.ack(src0, 1)
    _finish(c, "src", 0)  # its records after the barrier are not in the snapshots
    c.ack(c.tasks("job")[1], 1)
    c.ack(c.tasks("job")[2], 1)
    (state,) = [h for h in _completed(c, 1).task_states if h.task == src0]
    assert state.state_handle != FINISHED_TASK_HANDLE
    _check(c)


def test_the_last_missing_task_finishing_completes_the_checkpoint() -> None:
    c = _running(CheckpointConfig(interval_ms=1_000))
    _tick(c, 1_000)
    c.ack(c.tasks("job")[1], 1)
    c.ack(c.tasks("job")[2], 1)
    assert not _events(c, CheckpointCompleted)
    d = _finish(c, "src", 0)
    assert [type(e).__name__ for e in d.events][-1] == "CheckpointCompleted"
    _check(c)


def test_a_decline_from_a_task_that_finished_meanwhile_is_not_a_failure() -> None:
    c = _running(CheckpointConfig(interval_ms=1_000))  # tolerable_failures 0
    _tick(c, 1_000)
    src0 = c.tasks("job")[0]
    _finish(c, "src", 0)  # the trigger crossed this report
    c.decline(src0, 1, "task not running on this worker (not here)")
    assert not _events(c, CheckpointAborted)
    c.ack_all("job", 1)
    assert _completed(c, 1) is not None
    assert c.state.jobs["job"].status is JobStatus.RUNNING
    _check(c)


def test_no_trigger_once_every_source_finished() -> None:
    c = _running(CheckpointConfig(interval_ms=1_000))
    _finish(c, "src", 0)
    _finish(c, "src", 1)
    assert "CheckpointTriggered" not in _tick(c, 5_000)


def test_a_restart_deploys_finished_tasks_with_the_finished_handle() -> None:
    c = _running(CheckpointConfig(interval_ms=1_000))
    _finish(c, "src", 0)
    _tick(c, 1_000)
    c.ack(c.tasks("job")[1], 1)
    c.ack(c.tasks("job")[2], 1)
    c.report(c.tasks("job")[2], E.FAILED, error="Boom")
    c.report(c.tasks("job")[1], E.CANCELED)
    d = c.tick(1_000)
    deploys = {
        (x.task.vertex_id, x.task.subtask_index): x for x in d.commands
        if isinstance(x, DeployTask)
    }  # fmt: skip
    assert set(deploys) == {("src", 0), ("src", 1), ("out", 0)}
    assert all(x.restore_checkpoint_id == 1 for x in deploys.values())
    assert deploys[("src", 0)].restore_state_handle == FINISHED_TASK_HANDLE
    assert deploys[("src", 1)].restore_state_handle not in (None, FINISHED_TASK_HANDLE)
    _check(c)
