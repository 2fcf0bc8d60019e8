"""``jm submit``, ``jm cancel``: client commands produced to the submissions topic."""

from __future__ import annotations

import argparse
from collections.abc import Iterator

from coordinator.commands.common import add_connection_flags


class _JobStatuses:
    """The JobStatus values, as argparse choices, looked up only when an argument is
    checked (building the parser for `jm --help` does not import the events)."""

    def _values(self) -> list[str]:
        from schemas import events as ev

        return [s.value for s in ev.JobStatus]

    def __contains__(self, value: object) -> bool:
        return value in self._values()

    def __iter__(self) -> Iterator[str]:
        return iter(self._values())


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    submit = sub.add_parser(
        "submit",
        help="validate a job file, submit it, and print the coordinator's answer",
        description="Validates the job file, produces JobSubmitted and waits for the "
        "coordinator's answer: exit 0 when accepted, 1 when rejected (every reason is "
        "printed), 3 when no leader answered within --timeout.",
    )
    add_connection_flags(submit)
    submit.add_argument("file", help="job.yaml or job.json (see docs/examples/)")
    submit.add_argument("--job-id", help="job id (default: the file's job_id, else a uuid)")
    submit.add_argument("--dry-run", action="store_true", help="print the event as JSON only")
    submit.add_argument("--wait", metavar="STATE", type=str.upper,
                        choices=_JobStatuses(),
                        help="once accepted, wait until the job reaches STATE "
                        "(or a terminal one)")  # fmt: skip
    submit.add_argument("--no-wait", action="store_true",
                        help="send and return: do not wait for the answer")  # fmt: skip
    submit.add_argument("--timeout", type=float, default=60.0,
                        help="seconds to wait for the answer (and --wait STATE)")  # fmt: skip
    submit.set_defaults(handler=_submit)

    cancel = sub.add_parser(
        "cancel",
        help="ask the coordinator to cancel a job, and print its answer",
        description="Produces JobCancelRequested and waits for the coordinator's answer: "
        "exit 0 when the job is being cancelled (with --wait: once CANCELED), 1 when "
        "nothing was done (no such job, or it already ended: the reason says), 3 when no "
        "leader answered within --timeout.",
    )
    add_connection_flags(cancel)
    cancel.add_argument("job_id")
    cancel.add_argument("--wait", action="store_true", help="also wait until CANCELED")
    cancel.add_argument("--no-wait", action="store_true",
                        help="send and return: do not wait for the answer")  # fmt: skip
    cancel.add_argument("--timeout", type=float, default=60.0)
    cancel.set_defaults(handler=_cancel)


# The commands import Kafka, Avro and pydantic when they run, so `jm --help` stays fast.
def _submit(args: argparse.Namespace) -> int:
    from coordinator.commands import jobrun

    return jobrun.submit(args)


def _cancel(args: argparse.Namespace) -> int:
    from coordinator.commands import jobrun

    return jobrun.cancel(args)
