"""Every pair of statuses, legal and illegal, against Flink's documented transitions.

The expected pairs are written out here independently of the module's table
(reviewed against flink-core JobStatus / ExecutionGraph and the
ExecutionState javadoc diagram), so a change to either shows up as a diff.
"""

import itertools

import pytest

from coordinator.domain.transitions import (
    execution_path,
    is_legal_execution_transition,
    is_legal_job_transition,
)
from schemas.events import ExecutionState as E
from schemas.events import JobStatus as J

LEGAL_JOB = {
    (J.INITIALIZING, J.CREATED), (J.INITIALIZING, J.FAILED), (J.INITIALIZING, J.CANCELLING),
    (J.INITIALIZING, J.SUSPENDED),
    (J.CREATED, J.RUNNING), (J.CREATED, J.FAILING), (J.CREATED, J.CANCELLING),
    (J.CREATED, J.SUSPENDED),
    (J.RUNNING, J.FINISHED), (J.RUNNING, J.FAILING), (J.RUNNING, J.CANCELLING),
    (J.RUNNING, J.RESTARTING), (J.RUNNING, J.SUSPENDED),
    (J.FAILING, J.FAILED), (J.FAILING, J.RESTARTING), (J.FAILING, J.CANCELLING),
    (J.FAILING, J.SUSPENDED),
    (J.RESTARTING, J.CREATED), (J.RESTARTING, J.RUNNING), (J.RESTARTING, J.CANCELLING),
    (J.RESTARTING, J.FAILED), (J.RESTARTING, J.SUSPENDED),
    (J.CANCELLING, J.CANCELED), (J.CANCELLING, J.SUSPENDED),
    (J.SUSPENDED, J.CREATED), (J.SUSPENDED, J.RECONCILING),
    (J.RECONCILING, J.RUNNING), (J.RECONCILING, J.RESTARTING), (J.RECONCILING, J.FAILING),
    (J.RECONCILING, J.CANCELLING), (J.RECONCILING, J.CREATED), (J.RECONCILING, J.SUSPENDED),
}  # fmt: skip

LEGAL_EXECUTION = {
    (E.CREATED, E.SCHEDULED), (E.CREATED, E.CANCELED), (E.CREATED, E.RECONCILING),
    (E.CREATED, E.FAILED),
    (E.SCHEDULED, E.DEPLOYING), (E.SCHEDULED, E.CANCELED), (E.SCHEDULED, E.FAILED),
    (E.DEPLOYING, E.INITIALIZING), (E.DEPLOYING, E.CANCELING), (E.DEPLOYING, E.FAILED),
    (E.INITIALIZING, E.RUNNING), (E.INITIALIZING, E.CANCELING), (E.INITIALIZING, E.FAILED),
    (E.RUNNING, E.FINISHED), (E.RUNNING, E.CANCELING), (E.RUNNING, E.FAILED),
    (E.CANCELING, E.CANCELED), (E.CANCELING, E.FAILED),
    (E.RECONCILING, E.INITIALIZING), (E.RECONCILING, E.RUNNING), (E.RECONCILING, E.FINISHED),
    (E.RECONCILING, E.CANCELED), (E.RECONCILING, E.FAILED),
}  # fmt: skip


@pytest.mark.parametrize(("current", "target"), list(itertools.product(J, J)))
def test_job_transition(current: J, target: J) -> None:
    assert is_legal_job_transition(current, target) == ((current, target) in LEGAL_JOB)


@pytest.mark.parametrize(("current", "target"), list(itertools.product(E, E)))
def test_execution_transition(current: E, target: E) -> None:
    assert is_legal_execution_transition(current, target) == ((current, target) in LEGAL_EXECUTION)


def test_pair_counts() -> None:
    assert len(list(itertools.product(J, J))) == 121
    assert len(list(itertools.product(E, E))) == 100


def test_terminal_statuses_have_no_way_out() -> None:
    for status in J:
        if status.is_globally_terminal:
            assert not any(is_legal_job_transition(status, t) for t in J)
    for state in E:
        if state.is_terminal:
            assert not any(is_legal_execution_transition(state, t) for t in E)


def test_every_non_terminal_job_status_can_be_suspended_and_failed_task_reachable() -> None:
    for status in J:
        if not status.is_globally_terminal and status is not J.SUSPENDED:
            assert is_legal_job_transition(status, J.SUSPENDED)
    for state in E:
        if not state.is_terminal:
            assert is_legal_execution_transition(state, E.FAILED)


@pytest.mark.parametrize(
    ("current", "target", "path"),
    [
        (E.DEPLOYING, E.RUNNING, [E.INITIALIZING, E.RUNNING]),
        (E.DEPLOYING, E.FINISHED, [E.INITIALIZING, E.RUNNING, E.FINISHED]),
        (E.INITIALIZING, E.RUNNING, [E.RUNNING]),
        (E.RUNNING, E.FAILED, [E.FAILED]),
        (E.RUNNING, E.INITIALIZING, None),
        (E.CANCELING, E.RUNNING, None),
        (E.FINISHED, E.FAILED, None),
    ],
)
def test_execution_path(current: E, target: E, path: list[E] | None) -> None:
    assert execution_path(current, target) == path
