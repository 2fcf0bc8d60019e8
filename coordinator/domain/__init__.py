"""The deterministic domain core: the coordinator's state machine.

``state = fold(evolve, journal)``; the leader asks ``decide`` what follows
from each input and journals the answer. Pure: no asyncio, Kafka, Redis,
fastavro or telemetry, no clock, no randomness, no I/O (a test enforces it).

Parts, in Flink's FLIP-6 roles: ``dispatcher`` (jobs in and out),
``resource_manager`` (workers and slots), ``jobmaster`` (one job's execution
graph, failover), ``scheduler`` (slot placement), ``checkpoints`` (the
CheckpointCoordinator), ``restart`` (restart strategies); ``state``,
``evolve``, ``decide``, ``digest`` tie them together.
"""

from coordinator.domain.checkpoints import SavepointWritten
from coordinator.domain.decide import (
    Decision,
    Input,
    Tick,
    decide,
    leader_elected,
    leader_elected_id,
    refuse,
)
from coordinator.domain.digest import (
    STATE_FORMAT_VERSION,
    plain_digest,
    state_digest,
    state_from_dict,
    state_to_dict,
)
from coordinator.domain.errors import (
    DomainError,
    EpochNotIncreasing,
    InconsistentJournal,
    NotLeader,
    UnsupportedSnapshot,
)
from coordinator.domain.evolve import evolve, in_epoch_handlers
from coordinator.domain.state import Execution, Job, State, Worker
from coordinator.domain.view import DomainConfig, LeaderView

__all__ = [
    "STATE_FORMAT_VERSION",
    "Decision",
    "DomainConfig",
    "DomainError",
    "EpochNotIncreasing",
    "Execution",
    "InconsistentJournal",
    "Input",
    "Job",
    "LeaderView",
    "NotLeader",
    "SavepointWritten",
    "State",
    "Tick",
    "UnsupportedSnapshot",
    "Worker",
    "decide",
    "evolve",
    "in_epoch_handlers",
    "leader_elected",
    "leader_elected_id",
    "plain_digest",
    "refuse",
    "state_digest",
    "state_from_dict",
    "state_to_dict",
]
