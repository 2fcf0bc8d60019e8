"""``jm submit``, ``jm cancel``, ``jm savepoint``, ``jm stop``: client commands
produced to the submissions topic."""

from __future__ import annotations

import argparse
from collections.abc import Iterator

from coordinator.commands import artifacts
from coordinator.commands.common import add_connection_flags
from coordinator.commands.restapi import add_api_flags


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
    submit.add_argument("--dry-run", action="store_true",
                        help="check the job (and its --code: every operator and function it "
                        "names must be found) and print the event as JSON only")  # fmt: skip
    submit.add_argument("--code", metavar="PATH",
                        help="the job's own code: a project directory (pyproject.toml; "
                        "built into a wheel), a wheel or an sdist; overrides the file's "
                        "code: (docs/user-code.md)")  # fmt: skip
    submit.add_argument("--blob-store", metavar="URL",
                        help="where packages are stored: the cluster's state.checkpoints.dir, "
                        "kafka (default, or $JM_BLOB_STORE) or file:///dir")  # fmt: skip
    submit.add_argument("--wait", metavar="STATE", type=str.upper,
                        choices=_JobStatuses(),
                        help="once accepted, wait until the job reaches STATE "
                        "(or a terminal one)")  # fmt: skip
    submit.add_argument("--no-wait", action="store_true",
                        help="send and return: do not wait for the answer")  # fmt: skip
    submit.add_argument("--timeout", type=float, default=60.0,
                        help="seconds to wait for the answer (and --wait STATE)")  # fmt: skip
    submit.add_argument("--from-savepoint", metavar="PATH",
                        help="restore the job's state from this savepoint directory (same "
                        "vertex ids and parallelism; the leader reads it and rejects the job, "
                        "saying why, if it cannot)")  # fmt: skip
    submit.set_defaults(handler=_submit)
    artifacts.register(sub)  # jm artifacts: the packages of `jm submit --code`

    savepoint = sub.add_parser(
        "savepoint",
        help="take a savepoint of a running job and print its path",
        description="Produces SavepointRequested and waits until the savepoint directory is "
        "written: prints its path and exits 0; exit 1 when it failed (the reason is "
        "printed), 3 when it did not complete within --timeout.",
    )
    _savepoint_flags(savepoint)
    savepoint.set_defaults(handler=_savepoint)

    stop = sub.add_parser(
        "stop",
        help="stop a job with a savepoint: print the savepoint's path, the job ends FINISHED",
        description="Produces StopWithSavepointRequested: the job's tasks stop once its "
        "savepoint is written, and the job ends FINISHED. Prints the savepoint's path, then "
        "waits for FINISHED (unless --no-wait). Exit 0 when stopped, 1 when the savepoint "
        "failed (the job keeps running; the reason is printed), 3 on timeout.",
    )
    _savepoint_flags(stop)
    stop.add_argument("--savepoint", action="store_true", required=True,
                      help="take a savepoint before stopping (required: `jm cancel` stops "
                      "without one)")  # fmt: skip
    stop.set_defaults(handler=_stop)

    cancel = sub.add_parser(
        "cancel",
        help="ask the coordinator to cancel a job, and print its answer",
        description="Produces JobCancelRequested and waits for the coordinator's answer: "
        "exit 0 when the job is being cancelled (with --wait: once CANCELED), 1 when "
        "nothing was done (no such job, or it already ended: the reason says), 3 when no "
        "leader answered within --timeout. With --url (or $JM_REST_URL) it asks that "
        "replica's REST API instead (exit 0 once the request is queued; 1 for no such "
        "job or one that ended) and reads Kafka when the API does not answer.",
    )
    add_connection_flags(cancel)
    cancel.add_argument("job_id")
    cancel.add_argument("--wait", action="store_true", help="also wait until CANCELED")
    cancel.add_argument("--no-wait", action="store_true",
                        help="send and return: do not wait for the answer")  # fmt: skip
    cancel.add_argument("--timeout", type=float, default=60.0)
    add_api_flags(cancel)
    cancel.set_defaults(handler=_cancel)


def _savepoint_flags(p: argparse.ArgumentParser) -> None:
    add_connection_flags(p)
    p.add_argument("job_id")
    p.add_argument("--target", metavar="DIR",
                   help="directory the savepoint is written under, made absolute here; the "
                   "leader must be able to write it (default: the coordinator's "
                   "--default-savepoint-dir)")  # fmt: skip
    p.add_argument("--wait", action="store_true",
                   help="wait for the outcome (the default)")  # fmt: skip
    p.add_argument("--no-wait", action="store_true",
                   help="send and return: do not wait for the savepoint")  # fmt: skip
    p.add_argument("--timeout", type=float, default=600.0,
                   help="seconds to wait for the savepoint (and for FINISHED)")  # fmt: skip


# The commands import Kafka, Avro and pydantic when they run, so `jm --help` stays fast.
def _submit(args: argparse.Namespace) -> int:
    from coordinator.commands import jobrun

    return jobrun.submit(args)


def _cancel(args: argparse.Namespace) -> int:
    from coordinator.commands import jobrun

    return jobrun.cancel(args)


def _savepoint(args: argparse.Namespace) -> int:
    from coordinator.commands import jobrun

    return jobrun.savepoint(args, stop=False)


def _stop(args: argparse.Namespace) -> int:
    from coordinator.commands import jobrun

    return jobrun.savepoint(args, stop=True)
