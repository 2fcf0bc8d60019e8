"""When the leader deletes ended runs' edge topics: not while runs are being deployed
(coordinator/runtime/edge_topics.py, ``DeletionSchedule``). Pure: no broker."""

from __future__ import annotations

import time

from coordinator.domain import State
from coordinator.runtime.edge_topics import DeletionSchedule, EdgeTopics
from schemas import events as ev
from schemas.catalog import Catalog
from schemas.edges import edge_topic_prefix


def test_nothing_waits_nothing_is_due() -> None:
    assert DeletionSchedule(2_000, 60_000).due_in(10_000) is None


def test_with_no_run_decided_a_deletion_is_due_at_once() -> None:
    schedule = DeletionSchedule(2_000, 60_000)
    schedule.add("c.edge.job-a.", 10_000)
    assert schedule.due_in(10_000) == 0
    assert schedule.take() == ["c.edge.job-a."]
    assert schedule.due_in(10_000) is None


def test_a_deletion_waits_until_no_run_was_decided_for_the_quiet_time() -> None:
    schedule = DeletionSchedule(2_000, 60_000)
    schedule.run_decided(10_000)
    schedule.add("c.edge.job-a.", 10_300)
    assert schedule.due_in(10_300) == 1_700
    schedule.run_decided(11_000)  # another deploy: the quiet time starts again
    assert schedule.due_in(11_000) == 2_000
    assert schedule.due_in(12_999) == 1
    assert schedule.due_in(13_000) == 0


def test_runs_decided_without_pause_delay_a_deletion_at_most_the_maximum_wait() -> None:
    schedule = DeletionSchedule(2_000, 60_000)
    schedule.add("c.edge.job-a.", 0)
    for now in range(0, 60_000, 500):
        schedule.run_decided(now)
        assert schedule.due_in(now) == min(2_000, 60_000 - now)
    schedule.run_decided(60_000)
    assert schedule.due_in(60_000) == 0


def test_waiting_deletions_go_out_together_oldest_first_each_prefix_once() -> None:
    schedule = DeletionSchedule(2_000, 60_000)
    schedule.run_decided(0)
    schedule.add("c.edge.job-b.", 100)
    schedule.add("c.edge.job-a.", 200)
    schedule.add("c.edge.job-b.", 300)  # again: keeps its first time
    assert schedule.due_in(1_000) == 1_000
    assert schedule.take() == ["c.edge.job-b.", "c.edge.job-a."]
    assert schedule.take() == []


def test_the_leaders_hooks_defer_a_deletion_behind_a_run_decided_after_it() -> None:
    # EdgeTopics as the leader calls it (no broker: nothing is started): a job's end asks
    # for its deletion, a run decided then moves it behind the quiet time.
    edges = EdgeTopics("127.0.0.1:1", Catalog("c"), DeletionSchedule(2_000, 60_000))
    ended = ev.JobStatusChanged(event_id="e1", event_time=0, epoch=1, job_id="a",
                                from_status=ev.JobStatus.RUNNING,
                                to_status=ev.JobStatus.FINISHED)  # fmt: skip
    edges.observe(ended)
    assert edges.schedule.due_in(int(time.monotonic() * 1000)) == 0
    task = ev.TaskRef(job_id="b", vertex_id="v", subtask_index=0, attempt=0)
    run = ev.ExecutionGraphCreated(
        event_id="e2", event_time=0, epoch=1, job_id="b", restart_count=0, subtasks=(task,)
    )
    edges.decided(run, State())
    due = edges.schedule.due_in(int(time.monotonic() * 1000))
    assert due is not None and 1_000 < due <= 2_000  # the quiet time, from the run on
    assert edges.schedule.take() == [edge_topic_prefix(Catalog("c"), "a")]
