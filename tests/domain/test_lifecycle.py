"""Job and worker lifecycles, driven through decide + codec + evolve."""

import dataclasses

from coordinator.domain import DomainConfig, SavepointWritten, Tick, decide, state_digest
from coordinator.domain.invariants import violations
from schemas.events import (
    CancelTask,
    CheckpointAcknowledged,
    DeployTask,
    DisconnectTaskManager,
    ExecutionState,
    InputRejected,
    JobRejected,
    JobStatus,
    JobStatusChanged,
    RestartScheduled,
    RestartStrategy,
    RestartStrategyKind,
    RunningTask,
    SavepointCompleted,
    SavepointRequested,
    StopWithSavepointRequested,
    TaskManagerDeregistered,
    TaskManagerLost,
    TriggerCheckpoint,
)
from tests.domain.cluster import Cluster, replay, submission

E = ExecutionState


def _types(events: object) -> list[str]:
    return [type(e).__name__ for e in events]  # type: ignore[attr-defined]


def _status(c: Cluster, job_id: str) -> JobStatus:
    return c.state.jobs[job_id].status


def _check(c: Cluster) -> None:
    assert violations(c.state) == []
    assert state_digest(replay(c.journal)) == state_digest(c.state)


def test_happy_path_spreads_tasks_and_finishes() -> None:
    c = Cluster()
    c.register("tm-a", slots=2)
    c.register("tm-b", slots=3)
    d = c.submit("job", (("src", "map", 2), ("out", "sink", 2)))
    assert _types(d.events)[:3] == ["JobAccepted", "JobStatusChanged", "ExecutionGraphCreated"]
    assert _types(d.events)[-1] == "JobStatusChanged"
    deploys = [x for x in d.commands if isinstance(x, DeployTask)]
    # Slot sharing: subtask i of src and of out share a slot; the slot of subtask 0
    # goes to the worker with the most free slots (b: 3), then ties by tm_id (a).
    assert [(x.tm_id, x.slot_index) for x in deploys] == [
        ("tm-b", 0),
        ("tm-a", 0),
        ("tm-b", 0),
        ("tm-a", 0),
    ]
    assert all(x.epoch == 1 and x.event_time == c.now for x in d.commands)
    assert [e.event_id for e in d.events][:2] == ["submit-job:1", "submit-job:2"]
    assert c.state.jobs["job"].status is JobStatus.RUNNING
    c.run_all("job")
    c.run_all("job", E.FINISHED)
    job = c.state.jobs["job"]
    assert job.status is JobStatus.FINISHED
    assert all(not tasks for w in c.state.workers.values() for tasks in w.slots)
    _check(c)


def test_identical_resubmission_is_a_noop_and_different_one_rejected() -> None:
    c = Cluster()
    c.register("tm-a")
    c.submit("job")
    again = c.feed(submission("job", event_id="other-id"))
    assert again.events == [] and again.commands == []
    d = c.feed(submission("job", (("src", "map", 1),), event_id="third"))
    assert _types(d.events) == ["JobRejected"]
    _check(c)


def test_an_invalid_graph_is_rejected_with_reasons() -> None:
    c = Cluster()
    c.register("tm-a", operators=("map",))
    d = c.submit("bad", (("v", "map", 0), ("v", "map", 1)))
    (rejected,) = d.events
    assert isinstance(rejected, JobRejected)
    assert "parallelism" in rejected.reason and "duplicate" in rejected.reason
    assert "bad" not in c.state.jobs
    _check(c)


def test_a_job_waits_for_a_worker_offering_its_operator_then_runs() -> None:
    """No worker offers 'nope' yet (none registered at all): accepted, not rejected;
    it waits with the reason, and runs once such a worker registers."""
    c = Cluster()
    d = c.submit("waits", (("v", "nope", 1),))
    assert not any(isinstance(e, JobRejected) for e in d.events)
    job = c.state.jobs["waits"]
    assert job.status is JobStatus.CREATED
    assert job.waiting_reason == "waiting for a worker offering 'nope' (for v#0)"
    c.register("tm-a", operators=("map",))
    assert _status(c, "waits") is JobStatus.CREATED
    c.register("tm-b", operators=("nope",))
    assert _status(c, "waits") is JobStatus.RUNNING
    _check(c)


def test_a_job_no_worker_can_run_fails_after_the_slot_wait_timeout() -> None:
    c = Cluster(config=DomainConfig(slot_wait_timeout_ms=10_000))
    c.submit("waits", (("v", "nope", 1),))
    c.tick(10_000)
    job = c.state.jobs["waits"]
    assert job.status is JobStatus.FAILED
    assert "waiting for a worker offering 'nope'" in job.exceptions[-1].message
    _check(c)


def test_short_of_slots_waits_then_runs_when_a_worker_joins() -> None:
    c = Cluster()
    c.register("tm-a", slots=1)
    c.submit("job", (("src", "map", 3),))
    job = c.state.jobs["job"]
    assert job.status is JobStatus.CREATED
    assert job.waiting_reason is not None and "3 slots needed, 1 free" in job.waiting_reason
    d = c.register("tm-b", slots=2)
    assert c.state.jobs["job"].status is JobStatus.RUNNING
    assert sum(isinstance(x, DeployTask) for x in d.commands) == 3
    _check(c)


def test_slot_wait_timeout_fails_the_job() -> None:
    c = Cluster(config=DomainConfig(slot_wait_timeout_ms=10_000))
    c.register("tm-a", slots=1)
    c.submit("job", (("src", "map", 2),))
    c.heartbeat_all()
    c.tick(9_999)
    assert c.state.jobs["job"].status is JobStatus.CREATED
    c.heartbeat_all()
    c.tick(1)
    job = c.state.jobs["job"]
    assert job.status is JobStatus.FAILED
    assert job.exceptions[-1].message.startswith("NoResourceAvailableException")
    assert all(x.state is E.CANCELED for x in job.executions.values())
    _check(c)


def test_cancel_running_and_created_jobs() -> None:
    c = Cluster()
    c.register("tm-a", slots=2)
    c.submit("run", (("src", "map", 2),))
    c.run_all("run")
    d = c.cancel("run")
    assert sum(isinstance(x, CancelTask) for x in d.commands) == 2
    assert _status(c, "run") is JobStatus.CANCELLING
    c.run_all("run", E.CANCELED)
    assert _status(c, "run") is JobStatus.CANCELED
    c.submit("wait", (("src", "map", 5),))
    d = c.cancel("wait")
    assert [(e.from_status, e.to_status) for e in d.events if isinstance(e, JobStatusChanged)] == [
        (JobStatus.CREATED, JobStatus.CANCELLING),
        (JobStatus.CANCELLING, JobStatus.CANCELED),
    ]
    assert _types(c.cancel("wait").events) == ["InputRejected"]
    assert _types(c.cancel("nope").events) == ["InputRejected"]
    _check(c)


def test_worker_loss_restarts_with_new_attempts() -> None:
    c = Cluster()
    c.register("tm-a", slots=2)
    c.register("tm-b", slots=2)
    c.submit("job", (("src", "map", 2),))
    c.run_all("job")
    c.now += 4_000
    c.view.last_heartbeat[("tm-b", "inc-1")] = c.now
    d = c.tick(2_000)  # tm-a silent for 6 s > 5 s
    assert any(isinstance(e, TaskManagerLost) and e.tm_id == "tm-a" for e in d.events)
    job = c.state.jobs["job"]
    assert job.status is JobStatus.RESTARTING
    assert job.restart_at == c.now + 1_000
    assert any(isinstance(x, CancelTask) for x in d.commands)
    c.run_all("job", E.CANCELED)  # the survivor confirms its cancel
    c.heartbeat_all()
    c.tick(1_000)
    job = c.state.jobs["job"]
    assert job.status is JobStatus.RUNNING  # both on tm-b now
    assert {x.attempt for x in job.executions.values()} == {1}
    assert {x.tm_id for x in job.executions.values()} == {"tm-b"}
    assert job.exceptions and job.exceptions[0].error_name == "TaskManagerLost"
    _check(c)


def test_failure_with_exhausted_strategy_fails_the_job() -> None:
    c = Cluster()
    c.register("tm-a", slots=2)
    c.submit("job", (("src", "map", 2),), restart=RestartStrategy(kind=RestartStrategyKind.NONE))
    c.run_all("job")
    first, second = c.tasks("job")
    c.report(first, E.FAILED, error="Boom")
    assert c.state.jobs["job"].status is JobStatus.FAILING
    c.report(second, E.CANCELED)
    job = c.state.jobs["job"]
    assert job.status is JobStatus.FAILED
    assert [x.error_name for x in job.exceptions] == ["JobFailure", "Boom"] or [
        x.error_name for x in job.exceptions
    ] == ["Boom", "JobFailure"]
    _check(c)


def test_a_non_recoverable_failure_fails_the_job_at_once() -> None:
    """A restart cannot fix a typo'd function: FAILED without a restart, whatever the
    strategy allows, with the worker's own message as the cause."""
    c = Cluster()
    c.register("tm-a", slots=2)
    c.submit("job", (("src", "map", 2),))  # FIXED_DELAY, 3 attempts
    c.run_all("job")
    first, second = c.tasks("job")
    stack = "Traceback ...\nUnknownFunctionError: no function named 'nope' on this worker\n"
    d = c.report(first, E.FAILED, error="UnknownFunctionError", stack=stack, non_recoverable=True)
    assert not any(isinstance(e, RestartScheduled) for e in d.events)
    assert _status(c, "job") is JobStatus.FAILING
    c.report(second, E.CANCELED)
    job = c.state.jobs["job"]
    assert job.status is JobStatus.FAILED
    assert job.restart_count == 0
    (failure,) = [x for x in job.exceptions if x.error_name == "JobFailure"]
    assert "non-recoverable" in failure.message
    assert "no function named 'nope' on this worker" in failure.message
    _check(c)


def test_impossible_reports_are_rejected_not_raised() -> None:
    c = Cluster()
    c.register("tm-a", slots=2)
    c.submit("job", (("src", "map", 1),))
    (task,) = c.tasks("job")
    stale = type(task)(job_id="job", vertex_id="src", subtask_index=0, attempt=7)
    for d in (
        c.report(stale, E.RUNNING),
        c.report(task, E.RUNNING, incarnation="old"),
        c.report(task, E.RUNNING, tm_id="tm-x"),
        c.report(task, E.CANCELED),  # DEPLOYING -> CANCELED is illegal
    ):
        assert _types(d.events) == ["InputRejected"], d.events
    c.report(task, E.RUNNING)
    # A repeat of the journaled state is no news: nothing journaled, counted in the view.
    assert c.report(task, E.RUNNING).events == []
    assert c.view.repeated_reports == 1
    assert c.state.rejected_inputs == 4
    _check(c)


def test_new_incarnation_replaces_the_old_one() -> None:
    c = Cluster()
    c.register("tm-a", slots=1)
    c.submit("job", (("src", "map", 1),))
    c.run_all("job")
    d = c.register("tm-a", incarnation="inc-2", slots=1)
    assert _types(d.events)[:2] == ["TaskStateRecorded", "TaskManagerLost"]
    # The old incarnation may still be alive: it is told to stop and come back new.
    (told,) = (x for x in d.commands if isinstance(x, DisconnectTaskManager))
    assert (told.tm_id, told.incarnation) == ("tm-a", "inc-1")
    assert "replaced by incarnation inc-2" in told.reason
    assert c.state.workers["tm-a"].incarnation == "inc-2"
    assert c.state.jobs["job"].status is JobStatus.RESTARTING
    again = c.register("tm-a", incarnation="inc-1", slots=1)
    assert _types(again.events) == ["InputRejected"]
    # ... and told again each time it registers, since it did not hear it the first time.
    assert [
        (x.tm_id, x.incarnation) for x in again.commands if isinstance(x, DisconnectTaskManager)
    ] == [("tm-a", "inc-1")]
    assert len(again.commands) == 1
    _check(c)


def test_heartbeat_timeout_tells_the_worker_a_clean_exit_does_not() -> None:
    c = Cluster()
    c.register("tm-a", slots=1)
    c.register("tm-b", slots=1)
    d = c.tick(c.config.heartbeat_timeout_ms + 1)
    told = [x for x in d.commands if isinstance(x, DisconnectTaskManager)]
    assert [(x.tm_id, x.reason) for x in told] == [
        ("tm-a", "heartbeat timeout (5000 ms)"),
        ("tm-b", "heartbeat timeout (5000 ms)"),
    ]
    c.register("tm-c", slots=1)
    gone = c.feed(
        TaskManagerDeregistered(
            event_id="bye", event_time=c.now, tm_id="tm-c", incarnation="inc-1", reason="bye"
        )
    )
    assert _types(gone.events) == ["TaskManagerLost"] and gone.commands == []


def test_reconciliation_after_leader_change_keeps_running_tasks() -> None:
    c = Cluster()
    c.register("tm-a", slots=2)
    c.submit("job", (("src", "map", 2),))
    c.run_all("job")
    t0, t1 = c.tasks("job")
    c.elect("replica-2")
    assert c.state.epoch == 2
    d = c.register(
        "tm-a",
        slots=2,
        running=(
            RunningTask(task=t0, slot_index=0, state=E.RUNNING),
            RunningTask(task=t1, slot_index=1, state=E.RUNNING),
        ),
    )
    assert _types(d.events) == ["TaskManagerJoined"]
    assert d.commands == []
    assert c.state.jobs["job"].status is JobStatus.RUNNING
    # grace: silent workers survive a full timeout after the takeover
    c.tick(5_000)
    assert "tm-a" in c.state.workers
    c.tick(1)
    assert "tm-a" not in c.state.workers
    _check(c)


def test_reregistration_crossing_a_deploy_in_flight_keeps_the_deployment() -> None:
    """A worker's registration can be sent before the DeployTask reaches it: a task
    the worker has not acknowledged yet (DEPLOYING) is kept, not declared missing."""
    c = Cluster()
    c.register("tm-a", slots=2)
    c.submit("job", (("src", "map", 2),))
    t0, t1 = c.tasks("job")
    c.report(t0, E.RUNNING)
    d = c.register("tm-a", slots=2, running=(RunningTask(task=t0, slot_index=0, state=E.RUNNING),))
    assert _types(d.events) == ["TaskManagerJoined"]
    executions = c.state.jobs["job"].executions
    assert executions[("src", 1)].state is E.DEPLOYING
    assert executions[("src", 1)].attempt == t1.attempt
    assert c.state.jobs["job"].status is JobStatus.RUNNING
    _check(c)


def test_stale_epoch_events_are_ignored_and_counted() -> None:
    c = Cluster()
    c.register("tm-a", slots=1)
    fenced_view, fenced_state = c.view, replay(c.journal)  # what the old leader saw
    c.elect("replica-2")
    fenced = decide(fenced_state, fenced_view, submission("job"), c.now)
    for e in fenced.events:
        c.apply(e)  # the fenced leader's leftovers reach the journal
    assert "job" not in c.state.jobs
    assert c.state.ignored_stale_events == len(fenced.events) > 0
    _check(c)


def test_savepoint_round_trip() -> None:
    c = Cluster()
    c.register("tm-a", slots=2)
    c.submit("job", (("src", "map", 1), ("out", "sink", 1)))
    c.run_all("job")
    d = c.feed(SavepointRequested(event_id="sp", event_time=c.now, job_id="job"))
    (trigger,) = [x for x in d.commands if isinstance(x, TriggerCheckpoint)]
    assert trigger.task.vertex_id == "src"
    for task in c.tasks("job"):
        x = c.state.jobs["job"].executions[(task.vertex_id, task.subtask_index)]
        ack = CheckpointAcknowledged(
            event_id=c.next_id("ack"),
            event_time=c.now,
            tm_id=x.tm_id or "",
            incarnation=x.incarnation or "",
            checkpoint_id=1,
            task=task,
            state_handle=f"h-{task.vertex_id}",
            state_size=10,
            duration_ms=1,
        )
        d = c.feed(ack)
    # Complete: the leader's runtime writes the directory, then SavepointCompleted.
    assert not any(isinstance(e, SavepointCompleted) for e in d.events)
    cps = c.state.jobs["job"].checkpoints
    assert cps.pending == {}
    assert cps.savepoints_to_write[1].handles == {("src", 0): "h-src", ("out", 0): "h-out"}
    d = c.feed(SavepointWritten("w1", "job", 1, "/sp/savepoint-job-1-abc"))
    (done,) = [e for e in d.events if isinstance(e, SavepointCompleted)]
    assert done.request_event_id == "sp"
    cps = c.state.jobs["job"].checkpoints
    assert cps.last_savepoint_path == "/sp/savepoint-job-1-abc"
    assert cps.savepoints_to_write == {}
    assert c.feed(SavepointWritten("w2", "job", 1, "/sp/again")).events == []  # answered
    _check(c)


def test_a_savepoint_not_written_refuses_its_request() -> None:
    c = Cluster()
    c.register("tm-a", slots=2)
    c.submit("job", (("src", "map", 1),))
    c.run_all("job")
    c.feed(StopWithSavepointRequested(event_id="stop", event_time=c.now, job_id="job"))
    (task,) = c.tasks("job")
    x = c.state.jobs["job"].executions[("src", 0)]
    c.feed(
        CheckpointAcknowledged(
            event_id="ack", event_time=c.now, tm_id=x.tm_id or "", incarnation=x.incarnation or "",
            checkpoint_id=1, task=task, state_handle="h", state_size=1, duration_ms=1,
        )
    )  # fmt: skip
    d = c.feed(SavepointWritten("w", "job", 1, None, "disk full"))
    (rejected,) = d.events
    assert isinstance(rejected, InputRejected) and rejected.input_event_id == "stop"
    assert "disk full" in rejected.reason
    job = c.state.jobs["job"]
    assert job.checkpoints.savepoints_to_write == {} and job.status is JobStatus.RUNNING
    _check(c)


def test_stop_with_savepoint_stops_the_tasks_and_finishes_the_job() -> None:
    c = Cluster()
    c.register("tm-a", slots=2)
    c.submit("job", (("src", "map", 1), ("out", "sink", 1)))
    c.run_all("job")
    c.feed(StopWithSavepointRequested(event_id="stop", event_time=c.now, job_id="job"))
    for task in c.tasks("job"):
        x = c.state.jobs["job"].executions[(task.vertex_id, task.subtask_index)]
        c.feed(
            CheckpointAcknowledged(
                event_id=c.next_id("ack"), event_time=c.now, tm_id=x.tm_id or "",
                incarnation=x.incarnation or "", checkpoint_id=1, task=task,
                state_handle=f"h-{task.vertex_id}", state_size=1, duration_ms=1,
            )
        )  # fmt: skip
    assert c.state.jobs["job"].status is JobStatus.RUNNING  # not before the directory exists
    d = c.feed(SavepointWritten("w", "job", 1, "/sp/savepoint-job-1-abc"))
    assert sum(isinstance(x, CancelTask) for x in d.commands) == 2
    c.run_all("job", E.CANCELED)
    stopped = c.state.jobs["job"]
    assert stopped.status is JobStatus.FINISHED
    _check(c)


def test_a_submission_from_a_savepoint_deploys_its_handles_or_is_rejected() -> None:
    c = Cluster()
    c.register("tm-a", slots=2)
    d = c.feed(dataclasses.replace(submission("bad", (("src", "map", 1),)), savepoint_path="/x"))
    assert isinstance(d.events[0], JobRejected) and "savepoint" in d.events[0].reason
    s = dataclasses.replace(submission("good", (("src", "map", 1),)), savepoint_path="/sp/x")
    c.view.savepoint_checks[s.event_id] = None
    d = c.feed(s)
    (deploy,) = [x for x in d.commands if isinstance(x, DeployTask)]
    assert deploy.restore_state_handle == "savepoint:/sp/x/src-0.state"
    assert deploy.restore_checkpoint_id == 0


def test_decide_never_mutates_the_state() -> None:
    c = Cluster()
    c.register("tm-a", slots=2)
    c.submit("job", (("src", "map", 2),))
    before = state_digest(c.state)
    c.now += 60_000  # the worker times out: a decision with many events
    decision = decide(c.state, c.view, Tick("t"), c.now)
    assert any(isinstance(e, TaskManagerLost) for e in decision.events)
    assert state_digest(c.state) == before
