"""``jm submit``, ``jm cancel``: client commands produced to the submissions topic."""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from collections.abc import Iterator
from typing import TYPE_CHECKING

from coordinator.commands.common import (
    add_connection_flags,
    fail,
    format_ms,
    run_value,
    settings_from,
)

if TYPE_CHECKING:  # the rest is imported when a command runs: `jm --help` stays fast
    from schemas import events as ev


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
    submit = sub.add_parser("submit", help="validate a job file and produce JobSubmitted")
    add_connection_flags(submit)
    submit.add_argument("file", help="job.yaml or job.json (see docs/examples/)")
    submit.add_argument("--job-id", help="job id (default: the file's job_id, else a uuid)")
    submit.add_argument("--dry-run", action="store_true", help="print the event as JSON only")
    submit.add_argument("--wait", metavar="STATE", type=str.upper,
                        choices=_JobStatuses(),
                        help="wait until the job reaches STATE (or a terminal one)")  # fmt: skip
    submit.add_argument("--timeout", type=float, default=60.0, help="seconds for --wait")
    submit.set_defaults(handler=_submit)

    cancel = sub.add_parser("cancel", help="ask the coordinator to cancel a job")
    add_connection_flags(cancel)
    cancel.add_argument("job_id")
    cancel.add_argument("--wait", action="store_true", help="wait until CANCELED")
    cancel.add_argument("--timeout", type=float, default=60.0)
    cancel.set_defaults(handler=_cancel)


def _submit(args: argparse.Namespace) -> int:
    from coordinator import client
    from schemas import events as ev
    from schemas.jobgraph import JobGraphInvalid, load_job_file
    from schemas.jsonview import event_json
    from schemas.validation import validate_job_submitted

    try:
        event = load_job_file(args.file, event_time=client.now_ms())
    except JobGraphInvalid as err:
        print(f"jm: {args.file} is not a valid job:", file=sys.stderr)
        for problem in err.problems:
            print(f"  - {problem}", file=sys.stderr)
        return 1
    except OSError as err:
        return fail(f"cannot read {args.file}: {err}", 1)
    if args.job_id:
        event = dataclasses.replace(event, job_id=args.job_id)
        problems = validate_job_submitted(event)
        if problems:
            return fail("invalid --job-id: " + "; ".join(problems), 1)
    if args.dry_run:
        print(json.dumps(event_json(event), indent=2))
        return 0
    settings = settings_from(args)
    partition, offset = run_value(client.produce(settings, event))
    print(event.job_id)
    where = f"{settings.cluster_id}.submissions[{partition}]@{offset}"
    print(f"submitted {event.job_id} as {event.event_id} ({where})", file=sys.stderr)
    if not args.wait:
        return 0
    return _wait(args, event.job_id, ev.JobStatus(args.wait), event.event_id)


def _cancel(args: argparse.Namespace) -> int:
    from coordinator import client
    from schemas import events as ev

    settings = settings_from(args)
    request = client.cancel_request(args.job_id, requested_by="jm cancel")
    run_value(client.produce(settings, request))
    print(f"cancel requested for {args.job_id} ({request.event_id})", file=sys.stderr)
    if not args.wait:
        return 0
    return _wait(args, args.job_id, ev.JobStatus.CANCELED, None)


def _wait(args: argparse.Namespace, job_id: str, target: ev.JobStatus, sub_id: str | None) -> int:
    from coordinator import client
    from schemas.jsonview import summary

    settings = settings_from(args)

    def progress(p: client.Progress) -> None:
        print(f"  {format_ms(p.event.event_time)} {type(p.event).__name__} {summary(p.event, 110)}",
              file=sys.stderr)  # fmt: skip

    try:
        status = run_value(
            client.wait_for(
                settings,
                job_id,
                target,
                submission_id=sub_id,
                timeout_s=args.timeout,
                on_progress=progress,
            )
        )
    except client.JobRejectedError as err:
        return fail(str(err), 1)
    except client.WaitTimeout as err:
        return fail(str(err), 3)
    print(status.value)
    return 0 if status == target else 1
