"""The error root of the worker package.

Task errors (what user code or a task's setup did wrong) fail one task and are
reported; they never stop the worker. Infrastructure errors say whether a retry
could help, as aiokafka's errors do.
"""


class WorkerError(Exception):
    """Root of every error raised by the worker package."""


class TaskError(WorkerError):
    """Fails one task (reported as FAILED with this error's name), never the worker."""


class UnknownOperatorError(TaskError):
    """The DeployTask names an operator this worker's registry does not hold."""


class NonRecoverableError(TaskError):
    """A task error no restart can fix: the job's own configuration is wrong (an
    unknown function, an invalid operator config, a missing topic). Reported with
    ``non_recoverable`` set, so the coordinator fails the job at once instead of
    restarting it (Flink's non-recoverable errors)."""


class UnknownFunctionError(NonRecoverableError):
    """An operator's config names a function this worker's function registry does not hold."""


class OperatorConfigError(NonRecoverableError):
    """An operator's configuration is missing a value or has one of the wrong type."""


class MissingTopicError(OperatorConfigError):
    """A Kafka source or sink names a topic that does not exist."""


class ProtectedTopicError(OperatorConfigError):
    """An operator's config names a topic under the cluster's own prefix or a
    protected one (docs/security.md): a job never reads or writes those."""


class SlotBusyError(TaskError):
    """The DeployTask's slot runs another task (or its subtask runs elsewhere here)."""


class NoSuchSlotError(TaskError):
    """The DeployTask names a slot index this worker does not have."""


class SlotProcessDiedError(TaskError):
    """The process running a task exited without reporting a final state."""


class TaskStoppedError(TaskError):
    """The worker stopped the task on its own (no leader heard, declared lost,
    shutting down): the task did not fail, but the attempt is gone."""


class EdgeProtocolError(TaskError):
    """An edge topic holds a record that breaks the edge protocol (schemas.edges)."""


class InfrastructureError(WorkerError):
    """Kafka or the operating system failed us, not the task."""

    retriable: bool = False


class TopicsMismatchError(InfrastructureError):
    """The cluster's topics are missing or configured unlike the catalog."""
