"""What `jm submit`, `jm cancel`, `jm savepoint` and `jm stop` do once they run
(coordinator/commands/jobs.py registers them)."""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import os
import sys
import time
from pathlib import Path

from coordinator import client, usercode
from coordinator.commands import present, restapi
from coordinator.commands.common import (
    catalog_from,
    fail,
    format_ms,
    run,
    run_value,
    settings_from,
)
from schemas import artifacts
from schemas import events as ev
from schemas.jobgraph import JobGraphInvalid, job_file_code, load_job_file
from schemas.jsonview import event_json, summary
from schemas.settings import PROTECTED_TOPIC_PREFIXES_ENV, ClusterSettings, listed
from schemas.validation import check_topics, protected_prefixes, validate_job_submitted


def _checkpoint_interval() -> int:
    """execution.checkpointing.interval from the config file ($JM_CONFIG) and the
    environment, as the coordinator reads them (ConfigError if a value is bad)."""
    from schemas.config import effective

    settings = effective().settings
    return settings.checkpoint_interval_ms if settings.allow_checkpointing else 0


def submit(args: argparse.Namespace) -> int:
    from schemas.config import ConfigError

    try:
        interval = _checkpoint_interval()
    except ConfigError as err:
        return fail(f"jm submit: {err}", 1)
    try:
        event = load_job_file(
            args.file, event_time=client.now_ms(), default_checkpoint_interval_ms=interval
        )
    except JobGraphInvalid as err:
        print(f"jm: {args.file} is not a valid job:", file=sys.stderr)
        for problem in err.problems:
            print(f"  - {problem}", file=sys.stderr)
        return 1
    except OSError as err:
        return fail(f"cannot read {args.file}: {err}", 1)
    if args.from_savepoint:
        event = dataclasses.replace(event, savepoint_path=os.path.abspath(args.from_savepoint))
    if args.job_id:
        event = dataclasses.replace(event, job_id=args.job_id)
        problems = validate_job_submitted(event)
        if problems:
            return fail("invalid --job-id: " + "; ".join(problems), 1)
    # The coordinator refuses these too; saying so here spares the round trip.
    settings = settings_from(args)
    prefixes = protected_prefixes(
        catalog_from(settings).prefix, listed(None, PROTECTED_TOPIC_PREFIXES_ENV)
    )
    protected = list(check_topics(event.job_graph, prefixes))
    if protected:
        cluster = settings.cluster_id
        print(f"jm: {args.file} names topics no job on {cluster} may use:", file=sys.stderr)
        for problem in protected:
            print(f"  - {problem}", file=sys.stderr)
        return 1
    try:
        code = Path(args.code).resolve() if args.code else job_file_code(args.file)
        packaged = usercode.package(code) if code is not None else None
        ref = artifacts.describe(*packaged) if packaged is not None else None
    except artifacts.ArtifactError as err:
        return fail(f"the job's code cannot be used: {err.reason}", 1)
    if args.dry_run:
        missing = usercode.missing_names(event, ref, *usercode.local_names())
        if missing:
            print(f"jm: {args.file} names what is not found:", file=sys.stderr)
            for problem in missing:
                print(f"  - {problem}", file=sys.stderr)
            return 1
        print(json.dumps(event_json(event if ref is None else usercode.with_artifact(event, ref)),
                         indent=2))  # fmt: skip
        return 0
    if args.no_wait and args.wait:
        return fail("--no-wait and --wait exclude each other")
    if packaged is not None:
        try:
            stored = run_value(_upload(args, settings, *packaged))
        except artifacts.ArtifactError as err:
            return fail(f"the job's code cannot be stored: {err.reason}", 1)
        print(f"stored {stored.filename} as {stored.sha256}", file=sys.stderr)
        event = usercode.with_artifact(event, stored)
    return run(_send(args, event, ev.JobStatus(args.wait) if args.wait else None))


async def _upload(
    args: argparse.Namespace, settings: ClusterSettings, data: bytes, filename: str
) -> ev.ArtifactRef:
    return await usercode.upload(
        data,
        filename,
        store_url=usercode.blob_store_url(args.blob_store),
        catalog=catalog_from(settings),
        bootstrap=settings.bootstrap_servers,
        keys=settings.keyring("client"),
    )


def cancel(args: argparse.Namespace) -> int:
    if args.no_wait and args.wait:
        return fail("--no-wait and --wait exclude each other")
    api = restapi.api_from(args)
    code = None if api is None else restapi.cancel(api, args.job_id, args.wait, args.timeout)
    if code is not None:
        return code
    request = client.cancel_request(args.job_id, requested_by="jm cancel")
    return run(_send(args, request, ev.JobStatus.CANCELED if args.wait else None))


def savepoint(args: argparse.Namespace, *, stop: bool) -> int:
    """`jm savepoint` / `jm stop --savepoint`."""
    if args.no_wait and args.wait:
        return fail("--no-wait and --wait exclude each other")
    target = os.path.abspath(args.target) if args.target else None
    return run(_savepoint(args, target, stop))


#: The leader's refusal of a savepoint while a task of the job is still starting: `jm
#: savepoint` (waiting) asks again until its timeout, every SAVEPOINT_RETRY_S.
NOT_ALL_RUNNING = "not all tasks are RUNNING"
SAVEPOINT_RETRY_S = 0.5


async def _savepoint(args: argparse.Namespace, target: str | None, stop: bool) -> int:
    settings = settings_from(args)
    what = "stop with savepoint requested for" if stop else "savepoint requested for"
    request = client.savepoint_request(args.job_id, target, stop=stop)
    if args.no_wait:
        sent = await client.produce(settings, request)
        _say_sent(settings, what, args.job_id, request, sent)
        return 0
    deadline = time.monotonic() + args.timeout
    async with client.JobWatch(settings, args.job_id) as watch:
        while True:
            sent = await client.produce(settings, request)
            _say_sent(settings, what, args.job_id, request, sent)
            try:
                answer = await watch.savepoint(request, max(0.0, deadline - time.monotonic()))
            except client.WaitTimeout as err:
                return fail(str(err), 3)
            # A job just deployed is RUNNING before all its tasks are: a savepoint asked
            # for right after `jm submit --wait RUNNING` is refused for that; ask again.
            starting = isinstance(answer.event, ev.InputRejected) and NOT_ALL_RUNNING in (
                answer.reason or ""
            )
            if not starting or deadline - time.monotonic() < 2 * SAVEPOINT_RETRY_S:
                break
            print(f"jm: {args.job_id}: {NOT_ALL_RUNNING} yet; asking again", file=sys.stderr)
            await asyncio.sleep(SAVEPOINT_RETRY_S)
            request = client.savepoint_request(args.job_id, target, stop=stop)
        if not answer.accepted or not isinstance(answer.event, ev.SavepointCompleted):
            return _refused(args.job_id, answer.reason or "")
        print(answer.event.savepoint_path, flush=True)
        if not stop:
            return 0
        try:
            status = await watch.until(ev.JobStatus.FINISHED, args.timeout, _progress)
        except client.WaitTimeout as err:
            return fail(str(err), 3)
    print(status.value)
    return 0 if status == ev.JobStatus.FINISHED else 1


async def _send(
    args: argparse.Namespace, command: ev.ClientCommand, target: ev.JobStatus | None
) -> int:
    """Produce `command`; unless --no-wait, print the coordinator's answer (and follow
    the job to `target`). The watch opens first, so the answer cannot be missed."""
    settings = settings_from(args)
    job_id = getattr(command, "job_id", "")
    what = "submitted" if isinstance(command, ev.JobSubmitted) else "cancel requested for"
    if args.no_wait:
        sent = await client.produce(settings, command)
        _say_sent(settings, what, job_id, command, sent)
        return 0
    async with client.JobWatch(settings, job_id) as watch:
        sent = await client.produce(settings, command)
        _say_sent(settings, what, job_id, command, sent)
        try:
            answer = await watch.answer(command, sent, args.timeout)
        except client.WaitTimeout as err:
            return fail(str(err), 3)
        if not answer.accepted:
            return _refused(job_id, answer.reason or "")
        _say_accepted(command, answer)
        if target is None:
            return 0
        if answer.event is None:  # a no-op resubmission: the status comes from the history
            await watch.rewind()
        try:
            status = await watch.until(target, args.timeout, _progress)
        except client.WaitTimeout as err:
            return fail(str(err), 3)
    print(status.value)
    return 0 if status == target else 1


def _say_sent(
    settings: ClusterSettings, what: str, job_id: str, command: ev.Event, sent: tuple[int, int]
) -> None:
    if isinstance(command, ev.JobSubmitted):
        print(job_id)
    where = f"{settings.cluster_id}.submissions[{sent[0]}]@{sent[1]}"
    print(f"{what} {job_id} as {command.event_id} ({where})", file=sys.stderr)


def _refused(job_id: str, reason: str) -> int:
    items = present.reasons(reason)
    if len(items) == 1:
        return fail(items[0] if job_id in items[0] else f"{job_id}: {items[0]}", 1)
    print(f"jm: job {job_id} rejected:", file=sys.stderr)
    for item in items:
        print(f"  - {item}", file=sys.stderr)
    return 1


def _say_accepted(command: ev.Event, answer: client.Answer) -> None:
    job_id = getattr(command, "job_id", "")
    if answer.event is None and isinstance(command, ev.JobSubmitted):
        print(f"{job_id}: already submitted with the same content; this copy changed "
              f"nothing (jm status {job_id})", file=sys.stderr)  # fmt: skip
    elif answer.event is None:
        print(f"{job_id}: the coordinator read the request and journaled nothing about it",
              file=sys.stderr)  # fmt: skip
    elif isinstance(command, ev.JobSubmitted):
        print(f"accepted {job_id} (journal offset {answer.offset})", file=sys.stderr)
    else:
        print(f"cancelling {job_id} (journal offset {answer.offset})", file=sys.stderr)


def _progress(p: client.Progress) -> None:
    print(f"  {format_ms(p.event.event_time)} {type(p.event).__name__} {summary(p.event, 110)}",
          file=sys.stderr)  # fmt: skip
