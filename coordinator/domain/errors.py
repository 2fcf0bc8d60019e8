"""Errors of the domain core, under one root.

Only the journal can make the domain raise: an impossible journal must stop a
replica instead of forking its state. Impossible *inputs* never raise; decide
turns them into journaled rejections.
"""


class DomainError(Exception):
    """Root of every error raised by coordinator.domain."""


class InconsistentJournal(DomainError):
    """A journal event cannot follow the state it is applied to.

    The journal is the truth, so the replica must stop with this error rather
    than guess (a skipped or half-applied event would fork the state).
    """


class EpochNotIncreasing(InconsistentJournal):
    """A LeaderElected does not raise the epoch: two leaders claim one epoch."""


class NotLeader(DomainError):
    """decide was called with a view whose epoch is not the state's epoch.

    A caller bug, not bad input: the leader journals its LeaderElected (and
    applies it) before it decides anything.
    """


class UnsupportedSnapshot(DomainError):
    """A state dict has a format version this code does not read."""
