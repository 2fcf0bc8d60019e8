"""Flink's legal status transitions, as tables.

JobStatus (flink-core ``JobStatus`` and the ExecutionGraph/scheduler code that
moves it; docs "Jobs and Scheduling"):

- INITIALIZING: the Dispatcher received the job; leaves for CREATED, or FAILED
  / CANCELLING when initialisation fails or is cancelled.
- CREATED: graph built, waiting for slots; to RUNNING once deployed, FAILING
  (no resources), CANCELLING.
- RUNNING: to FINISHED, FAILING, CANCELLING, RESTARTING.
- FAILING: to FAILED once every task is terminal, RESTARTING, CANCELLING
  (Flink's ExecutionGraph.cancel() accepts a FAILING graph).
- RESTARTING: to CREATED (legacy ExecutionGraph: a fresh graph waits for
  slots; what we do), RUNNING (DefaultScheduler), CANCELLING, FAILED.
- CANCELLING: to CANCELED.
- SUSPENDED: leadership lost; another JobMaster takes the job on as CREATED
  or RECONCILING. Reachable from every non-terminal status.
- RECONCILING: a new JobMaster waits for task reports; to RUNNING, RESTARTING,
  FAILING, CANCELLING, CREATED.
- FINISHED, CANCELED, FAILED: globally terminal, no way out.

ExecutionState (flink-runtime ``ExecutionState`` javadoc diagram):

    CREATED -> SCHEDULED -> DEPLOYING -> INITIALIZING -> RUNNING -> FINISHED
    DEPLOYING | INITIALIZING | RUNNING -> CANCELING -> CANCELED
    CREATED | SCHEDULED -> CANCELED            (Execution.cancel() on undeployed)
    CREATED -> RECONCILING -> INITIALIZING | RUNNING | FINISHED | CANCELED | FAILED
    any non-terminal state -> FAILED
"""

from types import MappingProxyType
from typing import Final

from schemas.events import ExecutionState, JobStatus

_J = JobStatus
_NON_TERMINAL_JOB: Final = tuple(s for s in JobStatus if not s.is_globally_terminal)

JOB_TRANSITIONS: Final[MappingProxyType[JobStatus, frozenset[JobStatus]]] = MappingProxyType(
    {
        _J.INITIALIZING: frozenset({_J.CREATED, _J.FAILED, _J.CANCELLING, _J.SUSPENDED}),
        _J.CREATED: frozenset({_J.RUNNING, _J.FAILING, _J.CANCELLING, _J.SUSPENDED}),
        _J.RUNNING: frozenset(
            {_J.FINISHED, _J.FAILING, _J.CANCELLING, _J.RESTARTING, _J.SUSPENDED}
        ),
        _J.FAILING: frozenset({_J.FAILED, _J.RESTARTING, _J.CANCELLING, _J.SUSPENDED}),
        _J.RESTARTING: frozenset({_J.CREATED, _J.RUNNING, _J.CANCELLING, _J.FAILED, _J.SUSPENDED}),
        _J.CANCELLING: frozenset({_J.CANCELED, _J.SUSPENDED}),
        _J.SUSPENDED: frozenset({_J.CREATED, _J.RECONCILING}),
        _J.RECONCILING: frozenset(
            {_J.RUNNING, _J.RESTARTING, _J.FAILING, _J.CANCELLING, _J.CREATED, _J.SUSPENDED}
        ),
        _J.FINISHED: frozenset(),
        _J.CANCELED: frozenset(),
        _J.FAILED: frozenset(),
    }
)

_E = ExecutionState
EXECUTION_TRANSITIONS: Final[MappingProxyType[ExecutionState, frozenset[ExecutionState]]] = (
    MappingProxyType(
        {
            _E.CREATED: frozenset({_E.SCHEDULED, _E.CANCELED, _E.RECONCILING, _E.FAILED}),
            _E.SCHEDULED: frozenset({_E.DEPLOYING, _E.CANCELED, _E.FAILED}),
            _E.DEPLOYING: frozenset({_E.INITIALIZING, _E.CANCELING, _E.FAILED}),
            _E.INITIALIZING: frozenset({_E.RUNNING, _E.CANCELING, _E.FAILED}),
            _E.RUNNING: frozenset({_E.FINISHED, _E.CANCELING, _E.FAILED}),
            _E.CANCELING: frozenset({_E.CANCELED, _E.FAILED}),
            _E.RECONCILING: frozenset(
                {_E.INITIALIZING, _E.RUNNING, _E.FINISHED, _E.CANCELED, _E.FAILED}
            ),
            _E.FINISHED: frozenset(),
            _E.CANCELED: frozenset(),
            _E.FAILED: frozenset(),
        }
    )
)

# The path a healthy task walks; a worker may report a later state without
# the ones in between (it went DEPLOYING -> RUNNING before its report went
# out), and the JobMaster journals each skipped step so the table holds.
_HAPPY_PATH: Final = (_E.DEPLOYING, _E.INITIALIZING, _E.RUNNING, _E.FINISHED)


def is_legal_job_transition(current: JobStatus, target: JobStatus) -> bool:
    return target in JOB_TRANSITIONS[current]


def is_legal_execution_transition(current: ExecutionState, target: ExecutionState) -> bool:
    return target in EXECUTION_TRANSITIONS[current]


def execution_path(current: ExecutionState, target: ExecutionState) -> list[ExecutionState] | None:
    """Steps from `current` to `target`, each legal; None when there is no way.

    A direct legal step is one step; otherwise a forward jump along the happy
    path (DEPLOYING -> RUNNING = [INITIALIZING, RUNNING]).
    """
    if is_legal_execution_transition(current, target):
        return [target]
    if current in _HAPPY_PATH and target in _HAPPY_PATH:
        i, j = _HAPPY_PATH.index(current), _HAPPY_PATH.index(target)
        if i < j:
            return list(_HAPPY_PATH[i + 1 : j + 1])
    return None


#: Execution states that occupy a slot and may still do work.
LIVE_EXECUTION_STATES: Final = frozenset(
    {_E.SCHEDULED, _E.DEPLOYING, _E.INITIALIZING, _E.RUNNING, _E.CANCELING, _E.RECONCILING}
)

NON_TERMINAL_JOB_STATUSES: Final = frozenset(_NON_TERMINAL_JOB)
