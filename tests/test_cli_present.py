"""How jm words journal facts (coordinator/commands/present.py) and its exit on Kafka errors."""

from __future__ import annotations

import pytest
from aiokafka.errors import KafkaConnectionError, NotLeaderForPartitionError

from coordinator.cli import EXIT_CODES, build_parser, kafka_failure
from coordinator.commands import present
from worker.failures import describe

FUNCTION_TRACE = """Traceback (most recent call last):
  File "/app/worker/task.py", line 88, in run_task
    operator = build(spec)
  File "/app/worker/functions.py", line 191, in resolve
    raise UnknownFunction(
worker.errors.UnknownFunction: no function named 'no_such_function' on this worker \
(it offers identity, mod_key, split_words)
"""


TRACE = "Traceback (most recent call last):\n"
CASES = [
    (
        "UnknownFunction",
        FUNCTION_TRACE,
        "no function named 'no_such_function' on this worker "
        "(it offers identity, mod_key, split_words)",
    ),
    # A message of several lines: its first line, not the last line of the trace.
    ("ValueError", TRACE + '  File "x", line 1\nValueError: first line\nsecond\n', "first line"),
    # Chained: the exception reported is the last one.
    (
        "KeyError",
        TRACE + '  File "a"\nOSError: disk\n\nDuring handling of the above exception, '
        "another exception occurred:\n\n" + TRACE + "  File \"b\"\nKeyError: 'k'\n",
        "'k'",
    ),
    # No message at all.
    ("StopIteration", TRACE + '  File "a"\nStopIteration\n', ""),
    # Not a trace: a cause written by the coordinator or the TaskManager.
    ("JobFailure", "restart strategy exhausted; lost\nmore", "restart strategy exhausted; lost"),
    (
        "TaskStoppedError",
        "\n  slot process exited with code -9\n",
        "slot process exited with code -9",
    ),
]


@pytest.mark.parametrize(("name", "trace", "message"), CASES)
def test_the_exception_message_is_its_own_first_line(name: str, trace: str, message: str) -> None:
    assert present.exception_message(name, trace) == message


def test_a_real_worker_trace_gives_the_message_back() -> None:
    try:
        raise LookupError("no function named 'nope' on this worker (it offers a, b)")
    except LookupError as err:
        name, trace = describe(err)
    assert present.exception_line(name, trace) == (
        "LookupError: no function named 'nope' on this worker (it offers a, b)"
    )


def test_a_long_message_is_clipped_to_one_line() -> None:
    line = present.exception_line("E", "Traceback (most recent call last):\nE: " + "x" * 500, 80)
    assert len(line) == 80 and line.startswith("E: xxx") and line.endswith("...")


def test_every_reason_of_a_rejection_is_listed() -> None:
    reason = "vertices[0].parallelism: 0 is below 1; edges[0].target: names no vertex 'x'"
    assert present.reasons(reason) == [
        "vertices[0].parallelism: 0 is below 1",
        "edges[0].target: names no vertex 'x'",
    ]


def test_unreachable_kafka_is_one_line_naming_the_servers() -> None:
    args = build_parser().parse_args(["list", "--bootstrap-servers", "127.0.0.1:1"])
    line = kafka_failure(args, KafkaConnectionError("Unable to bootstrap from [...]"))
    assert line.startswith("cannot reach Kafka at 127.0.0.1:1 (") and "\n" not in line
    other = kafka_failure(args, NotLeaderForPartitionError())
    assert other.startswith("Kafka at 127.0.0.1:1 failed the request: NotLeaderForPartitionError")


def test_exit_codes_are_in_the_help() -> None:
    text = build_parser().format_help()
    assert EXIT_CODES in text
    for code in ("0 ", "1 ", "2 ", "3 ", "4 ", "130 "):
        assert f"\n  {code}" in EXIT_CODES


def test_checkpoint_statistics_in_flinks_shape_and_as_text() -> None:
    """The golden checkpoint scenario's job: counts, summary, latest, history."""
    from coordinator.commands.common import format_ms
    from tests.golden.record import checkpoints

    job = checkpoints().state.jobs["counts"]
    info = present.checkpoint_statistics(job.checkpoints.stats, len(job.checkpoints.pending))
    assert info["counts"] == {
        "restored": 2, "total": 7, "in_progress": 0, "completed": 3, "failed": 4,
    }  # fmt: skip
    assert info["summary"]["state_size"] == {"min": 192, "max": 192, "avg": 192}
    assert info["latest"]["completed"]["id"] == 7
    assert info["latest"]["completed"]["discarded"]  # DELETE_ON_CANCELLATION
    assert info["latest"]["failed"]["failure_message"] == "checkpoint expired before completing"
    assert info["latest"]["restored"] == {
        "id": 2, "restore_timestamp": info["latest"]["restored"]["restore_timestamp"],
        "is_savepoint": False, "external_path": None,
    }  # fmt: skip
    assert [r["id"] for r in info["history"]] == [7, 6, 5, 4, 3, 2, 1]
    assert info["history"][3]["num_acknowledged_subtasks"] == 1  # 4: one ack, then a failure
    text = "\n".join(present.checkpoint_lines(info, format_ms))
    assert "triggered 7, in progress 0, completed 3, failed 4, restored 2" in text
    assert "latest restored  checkpoint #2" in text
    assert "#6 FAILED" in text and "expired before completing" in text


def test_status_says_which_checkpoint_the_current_run_restored() -> None:
    from coordinator.domain.state import CheckpointStats, RestoreRecord

    assert present.run_restore(CheckpointStats(), 0) is None
    assert "sources' configured start" in present.run_restore_line(None)
    stats = CheckpointStats(restored=1, latest_restored=RestoreRecord(7, 1_000, False))
    restored = present.run_restore(stats, 2)
    assert restored is not None and restored["checkpoint_id"] == 7
    assert present.run_restore_line(restored) == "  restored from checkpoint 7 (run 2)"
    savepoint = CheckpointStats(restored=1, latest_restored=RestoreRecord(None, 1, True, "/sp/a"))
    assert "savepoint /sp/a (run 0)" in present.run_restore_line(present.run_restore(savepoint, 0))
    assert present.run_restore(savepoint, 1) is None  # a restart without a checkpoint
