"""The REST API's pure views (coordinator/rest/views.py): vertex status, time spans,
metric sums and rates, as tables."""

from __future__ import annotations

from collections import Counter

import pytest

from coordinator.domain.state import Execution
from coordinator.rest.views import io_metrics, span, subtask_metric, vertex_status
from coordinator.runtime.metrics import TaskMetrics
from schemas.events import ExecutionState as S


@pytest.mark.parametrize(
    ("states", "expected"),
    [
        ([], "CREATED"),
        (["RUNNING", "RUNNING"], "RUNNING"),
        (["RUNNING", "FAILED"], "FAILED"),
        (["RUNNING", "CANCELING", "CANCELED"], "CANCELING"),
        (["FINISHED", "RUNNING"], "RUNNING"),
        (["DEPLOYING", "CREATED"], "DEPLOYING"),
        (["FINISHED", "FINISHED"], "FINISHED"),
        (["FINISHED", "CANCELED"], "CANCELED"),
    ],
)
def test_vertex_status_aggregates_like_flink(states: list[str], expected: str) -> None:
    assert vertex_status(Counter(states), len(states)) == expected


@pytest.mark.parametrize(
    ("executions", "expected"),
    [
        ([], (-1, -1, -1)),
        ([Execution(0, S.CREATED, 100)], (-1, -1, -1)),  # not started yet
        ([Execution(0, S.RUNNING, 100), Execution(0, S.CREATED, 50)], (100, -1, 900)),
        ([Execution(0, S.FINISHED, 300), Execution(0, S.CANCELED, 400)], (300, 400, 100)),
        ([Execution(0, S.FINISHED, 300), Execution(0, S.RUNNING, 200)], (200, -1, 800)),
    ],
)
def test_span_is_minus_one_until_known(
    executions: list[Execution], expected: tuple[int, int, int]
) -> None:
    assert span(executions, now=1000) == expected


def test_io_metrics_sum_subtasks_with_flinks_names() -> None:
    a = TaskMetrics(read_records=1, write_records=2, read_bytes=3, write_bytes=4,
                    busy_ms=5, idle_ms=6, backpressured_ms=7)  # fmt: skip
    b = TaskMetrics(read_records=10, write_records=20, read_bytes=30, write_bytes=40,
                    busy_ms=50, idle_ms=60, backpressured_ms=70)  # fmt: skip
    got = io_metrics([a, b]).model_dump(by_alias=True)
    assert {k: v for k, v in got.items() if not k.endswith("-complete")} == {
        "read-records": 11, "write-records": 22, "read-bytes": 33, "write-bytes": 44,
        "accumulated-busy-time": 55, "accumulated-idle-time": 66,
        "accumulated-backpressured-time": 77,
    }  # fmt: skip
    assert io_metrics([]).model_dump(by_alias=True)["read-records"] == 0


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("numRecordsIn", 300),
        ("numRecordsInPerSecond", 150.0),  # 300 records over 2 s of accounted time
        ("busyTimeMsPerSecond", 250.0),
        ("idleTimeMsPerSecond", 500.0),
        ("backPressuredTimeMsPerSecond", 250.0),
        ("accumulatedBusyTime", 500),
    ],
)
def test_subtask_metrics_are_averages_over_the_attempt(name: str, expected: float) -> None:
    t = TaskMetrics(read_records=300, busy_ms=500, idle_ms=1000, backpressured_ms=500)
    assert subtask_metric(name, t) == expected


def test_rates_of_a_subtask_that_accounted_no_time_are_zero() -> None:
    assert subtask_metric("numRecordsOutPerSecond", TaskMetrics(write_records=5)) == 0.0


def test_jobs_overview_rows_are_rebuilt_per_state_version_and_durations_follow_the_clock() -> None:
    import json

    from coordinator.rest.views import JobsOverviewCache, job_details
    from schemas.events import ExecutionState, JobStatus
    from tests.domain.cluster import Cluster

    c = Cluster()
    c.register("tm-a", slots=4)
    c.submit("a", (("src", "map", 1),))
    c.submit("b", (("src", "map", 1),))
    c.run_all("a")
    c.run_all("a", ExecutionState.FINISHED)
    assert c.state.jobs["a"].status is JobStatus.FINISHED  # an ended row next to a live one
    cache = JobsOverviewCache()
    now = c.now + 500

    def direct(at: int) -> list[object]:
        jobs = sorted(c.state.jobs.values(), key=lambda j: j.accepted_seq)
        return [job_details(j, at).model_dump(by_alias=True, mode="json") for j in jobs]

    assert json.loads(cache.json_rows(c.state.jobs, 1, now)) == direct(now)
    # Same version, later clock: the running job's duration moves, nothing else.
    assert json.loads(cache.json_rows(c.state.jobs, 1, now + 250)) == direct(now + 250)
    # The state changes: a new version rebuilds the rows.
    c.cancel("b")
    assert json.loads(cache.json_rows(c.state.jobs, 2, now + 300)) == direct(now + 300)
