"""The JobManager: a deterministic state machine folded from the Kafka journal.

Never imports ``worker``; its only contract with workers is ``schemas``.
"""
