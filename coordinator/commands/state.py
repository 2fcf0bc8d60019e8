"""``jm replay``, ``jm state digest``, ``jm list``, ``jm status``: state rebuilt from the journal.

Each command folds the journal (read_committed) itself, so it needs no running
coordinator and shows exactly what the journal says, at any point in time.
Each starts from the newest readable snapshot before its target (the latest,
or one of the ladder for ``--until`` / ``--to-offset``) and reads only the
journal after it (``--full-replay``: from offset 0, the same answer, slower).
``fold`` is also the REST API's point-in-time view (``/jobs/{id}/state``).

Only the standard library is imported at module level: ``jm --help`` registers
every command and must not pay for aiokafka, fastavro or the domain.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import deque
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final

from coordinator.commands.common import add_connection_flags, fail, one_shot, run
from coordinator.commands.restapi import add_api_flags, api_from

if TYPE_CHECKING:
    from coordinator.domain import State
    from coordinator.runtime.journal import JournalFollower, StopAt
    from schemas import events as ev
    from schemas.settings import ClusterSettings

#: How far before the snapshot ``jm status`` looks for a job's recent events
#: (offsets; records of other jobs are skipped by key, undecoded).
RECENT_LOOKBACK: Final = 20_000


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    replay = sub.add_parser("replay", help="rebuild the state from the journal and print it")
    add_connection_flags(replay)
    where = replay.add_mutually_exclusive_group()
    where.add_argument(
        "--to-offset", type=int, metavar="N",
        help="replay up to and including journal offset N (offsets as jm prints them)",
    )  # fmt: skip
    where.add_argument(
        "--until",
        help="replay up to the last record stamped at or before this time (ISO 8601, ms, or 15m)",
    )
    replay.add_argument("--job", help="print only this job")
    replay.add_argument("--json", action="store_true")
    add_full_replay_flag(replay)
    replay.set_defaults(handler=one_shot(lambda a: run(_replay(a))))

    state = sub.add_parser("state", help="facts about the folded state")
    verbs = state.add_subparsers(dest="verb", required=True)
    digest = verbs.add_parser("digest", help="digest of the state (stable across processes)")
    add_connection_flags(digest)
    digest.add_argument(
        "--to-offset", type=int, metavar="N",
        help="the state up to and including journal offset N (offsets as jm prints them)",
    )  # fmt: skip
    add_full_replay_flag(digest)
    digest.set_defaults(handler=one_shot(lambda a: run(_digest(a))))

    jobs = sub.add_parser("list", help="jobs and their status")
    add_connection_flags(jobs)
    jobs.add_argument("--json", action="store_true")
    jobs.add_argument(
        "--archived", action="store_true",
        help="also the ended jobs archived out of the coordinator's memory (their ids, how "
        "and when they ended; read from Kafka; `jm status JOB --full-replay` shows one whole)",
    )  # fmt: skip
    add_full_replay_flag(jobs)
    add_api_flags(jobs)
    jobs.set_defaults(handler=one_shot(_list_command))

    status = sub.add_parser("status", help="one job: status, vertices, subtasks, reasons, events")
    add_connection_flags(status)
    status.add_argument("job_id")
    status.add_argument("--json", action="store_true")
    status.add_argument(
        "--events", type=int, default=10,
        help="recent journal events to show (from the tail and the 20,000 offsets before "
        "the snapshot; with --full-replay, from anywhere)",
    )  # fmt: skip
    add_full_replay_flag(status)
    add_api_flags(status)
    status.set_defaults(handler=one_shot(_status_command))


def _list_command(args: argparse.Namespace) -> int:
    """A replica's REST API when --url / $JM_REST_URL names one that answers, else Kafka."""
    from coordinator.commands import restapi

    api = None if args.full_replay or args.archived else api_from(args)
    code = None if api is None else restapi.list_jobs(api, args.json)
    return run(_list(args)) if code is None else code


def _status_command(args: argparse.Namespace) -> int:
    from coordinator.commands import restapi

    api = None if args.full_replay else api_from(args)
    code = None if api is None else restapi.job_status(api, args.job_id, args.json)
    return run(_status(args)) if code is None else code


def add_full_replay_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--full-replay", action="store_true",
        help="fold the whole journal from offset 0 instead of the newest snapshot before "
        "the target + the journal after it",
    )  # fmt: skip


@dataclass
class Folded:
    state: State
    offset: int  # last journal offset applied, -1 if none
    applied: int  # events applied by this fold (the tail only, after a snapshot)
    seconds: float
    snapshot_offset: int | None = None  # the last offset the snapshot used covers
    # The JobRejected of the job asked about (a rejected job has no other trace).
    rejections: list[tuple[int, ev.JobRejected]] = field(default_factory=list)

    @property
    def source(self) -> str:
        """Where the state came from, for stderr."""
        if self.snapshot_offset is None:
            return f"journal offset {self.offset}, replayed from offset 0"
        return (f"journal offset {self.offset}, from the snapshot covering offset "
                f"{self.snapshot_offset} and {self.applied} events after it")  # fmt: skip


async def fold(
    args: argparse.Namespace,
    stop: StopAt | None = None,
    job: str | None = None,
    recent: int = 0,
    use_snapshot: bool = False,
    settings: ClusterSettings | None = None,
) -> tuple[Folded, deque[tuple[int, ev.Event]]]:
    """The state at the journal's end (or `stop`): from the latest snapshot and the
    tail when `use_snapshot`, else from offset 0; with the last `recent` events of `job`.
    `settings` (the REST API's point-in-time view) stand for the connection flags."""
    from coordinator.commands.common import catalog_from, settings_from
    from coordinator.runtime import snapshots
    from coordinator.runtime.journal import BOUNDED_FETCH_BYTES, FETCH_BYTES, JournalFollower

    settings = settings or settings_from(args)
    catalog = catalog_from(settings)
    events: deque[tuple[int, ev.Event]] = deque(maxlen=max(recent, 1))
    rejections: list[tuple[int, ev.JobRejected]] = []

    from schemas import events as ev

    def keep(offset: int, event: ev.Event) -> None:
        if job is None or job_of(event) != job:
            return
        if recent:
            events.append((offset, event))
        if isinstance(event, ev.JobRejected):
            rejections.append((offset, event))

    keys = settings.journal_reader_keys()
    follower = JournalFollower(
        settings.bootstrap_servers, catalog, keys=keys, on_event=None if job is None else keep,
        fetch_bytes=FETCH_BYTES if stop is None else BOUNDED_FETCH_BYTES,
    )  # fmt: skip
    started = time.perf_counter()
    try:
        loaded = await snapshots.restore(
            follower,
            settings.bootstrap_servers,
            catalog,
            use_snapshot=use_snapshot,
            stop=stop,
            keys=keys,
            start=True,
        )
        if loaded is not None and job is not None and len(events) < recent:
            earlier = await _events_before(follower, job, loaded.covered_offset + 1)
            events.extendleft(reversed(earlier[-(recent - len(events)) :]))
    finally:
        await follower.stop()
    folded = Folded(
        follower.state, follower.last_offset, follower.applied, time.perf_counter() - started,
        None if loaded is None else loaded.covered_offset, rejections,
    )  # fmt: skip
    return folded, events


async def _events_before(
    follower: JournalFollower, job: str, end: int
) -> list[tuple[int, ev.Event]]:
    """`job`'s events in the RECENT_LOOKBACK offsets before `end` (a snapshot's
    start), for the recent events of ``jm status``."""
    from schemas import events as ev

    found = await follower.read_range(max(0, end - RECENT_LOOKBACK), end, key=job.encode())
    return [(o, e) for o, e in found if isinstance(e, ev.Event) and job_of(e) == job]


def job_of(event: ev.Event) -> str | None:
    from schemas import events as ev

    if isinstance(event, ev.JobAccepted):
        return event.submission.job_id
    task = getattr(event, "task", None)
    if isinstance(task, ev.TaskRef):
        return task.job_id
    job = getattr(event, "job_id", None)
    return job if isinstance(job, str) else None


def _stop_from(args: argparse.Namespace) -> StopAt | None:
    from coordinator.commands.common import parse_time_ms
    from coordinator.runtime.journal import StopAt

    if getattr(args, "to_offset", None) is not None:
        # Every offset jm prints is the last record included; so is the one it takes.
        return StopAt(offset=args.to_offset + 1)
    if getattr(args, "until", None):
        return StopAt(until_ms=parse_time_ms(args.until, int(time.time() * 1000)))
    return None


async def _replay(args: argparse.Namespace) -> int:
    from coordinator.domain import state_to_dict
    from coordinator.domain.digest import digest_and_text
    from coordinator.runtime.journal import JournalError

    try:
        stop = _stop_from(args)
        folded, _ = await fold(args, stop, use_snapshot=not args.full_replay)
    except (ValueError, JournalError) as err:
        return fail(str(err), 1)
    plain = state_to_dict(folded.state)  # printed and digested: converted once
    digest, text = digest_and_text(plain)
    data: dict[str, Any] = plain["state"]
    if args.job:
        job = data["jobs"].get(args.job)
        if job is None:
            return fail(f"no job {args.job} in the journal up to offset {folded.offset}", 1)
        data = {"jobs": {args.job: job}}
    out = {
        "offset": folded.offset,
        "events": folded.applied,
        "digest": digest,
        "state": data,
    }
    if args.json and not args.job:  # the whole state: printed as it was hashed (one line)
        head = json.dumps({k: v for k, v in out.items() if k != "state"}, sort_keys=True)
        print(f'{head[:-1]}, "state": {text}}}')
    elif args.json:
        print(json.dumps(out, sort_keys=True))
    else:
        print(json.dumps(out, indent=2, sort_keys=True))
    print(f"{folded.applied} events applied: {folded.source}, in {folded.seconds:.2f}s",
          file=sys.stderr)  # fmt: skip
    return 0


async def _digest(args: argparse.Namespace) -> int:
    from coordinator.runtime import machine
    from coordinator.runtime.journal import JournalError

    try:
        folded, _ = await fold(args, _stop_from(args), use_snapshot=not args.full_replay)
    except JournalError as err:
        return fail(str(err), 1)
    print(f"{machine.digest(folded.state)}  offset={folded.offset} events={folded.applied}")
    return 0


def archived_row(job_id: str, ended: Any) -> dict[str, Any]:
    """A job archived out of memory: only how and when it ended are kept."""
    return {
        "job_id": job_id,
        "name": "",
        "status": f"ARCHIVED:{ended.final_status.value}",
        "since": ended.archived_at,
        "ended_at": ended.ended_at,
        "tasks_running": 0,
        "tasks_total": 0,
        "restarts": 0,
        "waiting_reason": None,
        "archived": True,
    }


def job_row(job: Any) -> dict[str, Any]:
    from schemas import events as ev

    executions = list(job.executions.values())
    running = sum(1 for e in executions if e.state == ev.ExecutionState.RUNNING)
    return {
        "job_id": job.job_id,
        "name": job.submission.name,
        "status": job.status.value,
        "since": job.status_since,
        "tasks_running": running,
        "tasks_total": len(executions),
        "restarts": job.restart_count,
        "waiting_reason": job.waiting_reason,
    }


async def _list(args: argparse.Namespace) -> int:
    from coordinator.commands.common import format_ms
    from coordinator.runtime.journal import JournalError

    try:
        folded, _ = await fold(args, use_snapshot=not args.full_replay)
    except JournalError as err:
        return fail(str(err), 1)
    jobs = sorted(folded.state.jobs.values(), key=lambda j: j.accepted_seq)
    rows = [job_row(j) for j in jobs]
    if args.archived:
        rows += [archived_row(job_id, ended) for job_id, ended in folded.state.ended_jobs.items()]
    if args.json:
        print(json.dumps({"offset": folded.offset, "jobs": rows}))
        return 0
    print(f"{'JOB':24} {'STATUS':12} {'TASKS':>9} {'RESTARTS':>8}  SINCE                     NAME")
    for r in rows:
        tasks = f"{r['tasks_running']}/{r['tasks_total']}"
        print(f"{r['job_id']:24} {r['status']:12} {tasks:>9} {r['restarts']:>8}  "
              f"{format_ms(r['since']):25} {r['name']}")  # fmt: skip
    print(f"({folded.source})", file=sys.stderr)
    return 0


async def _status(args: argparse.Namespace) -> int:
    from coordinator.commands import present
    from coordinator.commands.common import format_ms
    from coordinator.runtime.journal import JournalError
    from schemas.jsonview import summary

    try:
        folded, recent = await fold(
            args, job=args.job_id, recent=args.events, use_snapshot=not args.full_replay
        )
    except JournalError as err:
        return fail(str(err), 1)
    job = folded.state.jobs.get(args.job_id)
    if job is None:
        if args.job_id not in folded.state.ended_jobs and not folded.rejections:
            folded.rejections = await _rejections_before(args, folded)
        return _status_without_job(args, folded)
    info = job_row(job)
    info["vertices"] = [
        {"id": v.id, "name": v.name, "operator": v.operator, "parallelism": v.parallelism}
        for v in job.submission.job_graph.vertices
    ]
    info["subtasks"] = [
        {"vertex": key[0], "subtask": key[1], "attempt": e.attempt, "state": e.state.value,
         "tm_id": e.tm_id, "slot": e.slot_index, "since": e.since}
        for key, e in sorted(job.executions.items())
    ]  # fmt: skip
    info["exceptions"] = [
        {"timestamp": x.timestamp, "error": x.error_name, "message": x.message,
         "summary": present.exception_line(x.error_name, x.message),
         "vertex": x.vertex_id, "subtask": x.subtask_index, "tm_id": x.tm_id}
        for x in job.exceptions
    ]  # fmt: skip
    cps = job.checkpoints
    info["checkpoints"] = present.checkpoint_statistics(cps.stats, len(cps.pending))
    info["restored_from"] = present.run_restore(cps.stats, job.restart_count)
    info["rejections"] = _rejections(folded)
    info["recent_events"] = [
        {"offset": o, "type": type(e).__name__, "time": e.event_time, "summary": summary(e, 120)}
        for o, e in recent
    ]
    info["offset"] = folded.offset
    if args.json:
        print(json.dumps(info))
        return 0
    print(f"{job.job_id}  {job.submission.name}\n  status   {info['status']} since "
          f"{format_ms(job.status_since)}, restarts {job.restart_count}")  # fmt: skip
    if job.waiting_reason:
        print(f"  waiting  {job.waiting_reason}")
    if job.submission.checkpoint_config.interval_ms or info["restored_from"] is not None:
        print(present.run_restore_line(info["restored_from"]))
    print("  subtasks")
    for s in info["subtasks"]:
        where = f"{s['tm_id']}#{s['slot']}" if s["tm_id"] else "-"
        print(f"    {s['vertex']}[{s['subtask']}] attempt {s['attempt']} {s['state']:12} {where}")
    if info["exceptions"]:
        print("  exceptions")
        for x in info["exceptions"]:
            where = f" {x['vertex']}[{x['subtask']}]" if x["vertex"] is not None else ""
            print(f"    {format_ms(x['timestamp'])}{where} {x['summary']}")
    if cps.stats.triggered or cps.stats.restored or cps.next_trigger_at is not None:
        print("\n".join(present.checkpoint_lines(info["checkpoints"], format_ms)))
    for r in info["rejections"]:  # a later submission or request under this id, refused
        print(f"  refused  {format_ms(r['time'])} {r['reason']}")
    print("  recent events")
    for r in info["recent_events"]:
        print(f"    @{r['offset']} {format_ms(r['time'])} {r['type']} {r['summary']}")
    print(f"({folded.source})", file=sys.stderr)
    return 0


def _rejections(folded: Folded) -> list[dict[str, Any]]:
    return [
        {"offset": o, "time": r.event_time, "reason": r.reason, "input_event_id": r.input_event_id}
        for o, r in folded.rejections
    ]


async def _rejections_before(
    args: argparse.Namespace, folded: Folded
) -> list[tuple[int, ev.JobRejected]]:
    """A rejected job leaves no trace in the state, only JobRejected records: when
    the fold started from a snapshot, look for them in the journal before it
    (records of other jobs are skipped by key, undecoded)."""
    from coordinator.commands.common import catalog_from, settings_from
    from coordinator.runtime.journal import JournalFollower
    from schemas import events as ev

    if folded.snapshot_offset is None:
        return []
    settings = settings_from(args)
    follower = JournalFollower(settings.bootstrap_servers, catalog_from(settings),
                               keys=settings.journal_reader_keys())  # fmt: skip
    await follower.start()
    try:
        found = await follower.read_range(0, folded.snapshot_offset + 1, key=args.job_id.encode())
    finally:
        await follower.stop()
    return [(o, e) for o, e in found if isinstance(e, ev.JobRejected) and e.job_id == args.job_id]


def _status_without_job(args: argparse.Namespace, folded: Folded) -> int:
    """A job the state does not hold: rejected (its reasons), archived, or unknown."""
    from coordinator.commands import present
    from coordinator.commands.common import format_ms

    ended = folded.state.ended_jobs.get(args.job_id)
    rejections = _rejections(folded)
    if ended is None and not rejections:
        return fail(f"no job {args.job_id} in the journal (offset {folded.offset})", 1)
    if ended is not None:
        info: dict[str, Any] = {
            "job_id": args.job_id,
            "status": ended.final_status.value,
            "since": ended.ended_at,
            "archived_at": ended.archived_at,
        }
    else:
        info = {"job_id": args.job_id, "status": "REJECTED", "since": rejections[-1]["time"]}
    info["rejections"] = rejections
    info["offset"] = folded.offset
    if args.json:
        print(json.dumps(info))
        return 0
    print(f"{args.job_id}\n  status   {info['status']} since {format_ms(info['since'])}")
    if ended is not None:
        print(f"  archived {format_ms(ended.archived_at)} (its events stay in the journal: "
              f"jm events dump --topic journal --job {args.job_id})")  # fmt: skip
    for r in rejections:
        print(f"  rejected {format_ms(r['time'])} (journal offset {r['offset']})")
        for reason in present.reasons(r["reason"]):
            print(f"    - {reason}")
    print(f"(journal offset {folded.offset})", file=sys.stderr)
    return 0
