"""Record the golden journals: ``python -m tests.golden.record`` from the repo root.

Each scenario drives decide/evolve like the leader loop does and writes
``<name>.journal`` (records as written to jm.journal: a 4-byte big-endian
length, then the codec-encoded value) and ``<name>.digest`` (the digest of
the state the journal folds to). Journals named ``*.refused.*`` are
deliberately impossible: replay must stop with InconsistentJournal.

Append-only: existing journals are never rewritten. When the domain changes how
a journal folds, that is a new ``.vN`` scenario, not an edited file; an old
journal that stops replaying to its digest is a broken promise to every
cluster that wrote one. The one exception is an intended change of the state
encoding (``STATE_FORMAT_VERSION``): ``python -m tests.golden.record --digests``
re-records every digest from its unchanged journal, and the commit says why.
"""

import sys
from collections.abc import Callable, Iterable
from pathlib import Path

from coordinator.domain import DomainConfig, SavepointWritten, decide, state_digest
from schemas import codec
from schemas.events import (
    CheckpointAcknowledged,
    CheckpointConfig,
    ExecutionState,
    ExternalizedRetention,
    JobCancelRequested,
    JobStatus,
    JobStatusChanged,
    RestartStrategy,
    RestartStrategyKind,
    RunningTask,
    SavepointRequested,
)
from tests.domain.cluster import Cluster, replay

GOLDEN = Path(__file__).resolve().parent
E = ExecutionState


def happy_path() -> Cluster:
    """The happy path as v2 recorded it: a job naming an operator no worker offers is
    rejected (the refused journal builds on it)."""
    c = happy_path_until_typo()
    c.submit("typo", (("src", "nope", 1),))  # v2: rejected, no worker offers it
    return c


def happy_path_until_typo() -> Cluster:
    """Two workers, a two-vertex job runs and finishes; a second is canceled."""
    c = Cluster()
    c.register("tm-a", slots=2)
    c.register("tm-b", slots=2)
    c.submit("wordcount", (("src", "map", 2), ("out", "sink", 1)))
    c.run_all("wordcount")
    c.feed(SavepointRequested(event_id="sp-1", event_time=c.now, job_id="wordcount"))
    for task in c.tasks("wordcount"):
        x = c.state.jobs["wordcount"].executions[(task.vertex_id, task.subtask_index)]
        ack = CheckpointAcknowledged(
            event_id=c.next_id("ack"), event_time=c.now, tm_id=x.tm_id or "",
            incarnation=x.incarnation or "", checkpoint_id=1, task=task,
            state_handle=f"mem://{task.vertex_id}/{task.subtask_index}", state_size=64,
            duration_ms=3,
        )  # fmt: skip
        c.feed(ack)
    # v5: the leader's runtime writes the directory, then SavepointCompleted.
    written = "/savepoints/savepoint-wordcount-1-0a1b2c3d"
    c.feed(SavepointWritten("savepoint:1:wordcount:1", "wordcount", 1, written))
    c.now += 1_000
    c.run_all("wordcount", E.FINISHED)
    c.submit("idle", (("src", "map", 1),))
    c.run_all("idle")
    c.cancel("idle")
    c.run_all("idle", E.CANCELED)
    return c


def happy_path_v3() -> Cluster:
    """The happy path, where a job naming an operator no worker offers is accepted
    and waits for one (v3); only an invalid graph is rejected."""
    c = happy_path_until_typo()
    c.submit("typo", (("src", "nope", 1),))  # accepted: waits for a worker offering it
    c.submit("invalid", (("src", "map", 0),))  # rejected: parallelism 0
    return c


def failover() -> Cluster:
    """A worker dies, the job restarts elsewhere; a new leader reconciles; a
    fenced leader's leftover is ignored; waiting, slot timeout, exhaustion."""
    c = Cluster(config=DomainConfig(slot_wait_timeout_ms=60_000))
    exp = RestartStrategy(kind=RestartStrategyKind.EXPONENTIAL_DELAY, initial_backoff_ms=500)
    c.register("tm-a", slots=2)
    c.register("tm-b", slots=2)
    c.submit("etl", (("src", "map", 2),), restart=exp)
    c.run_all("etl")
    c.now += 3_000
    c.view.last_heartbeat[("tm-b", "inc-1")] = c.now
    c.tick(3_000)  # tm-a silent for 6 s: lost, etl restarts
    c.run_all("etl", E.CANCELED)
    c.now += 500
    c.heartbeat_all()
    c.tick()  # restart due: redeployed on tm-b with attempt 1
    c.run_all("etl")
    fenced_view, fenced_state = c.view, replay(c.journal)
    c.elect("replica-2")
    tasks = [
        RunningTask(task=t, slot_index=c.state.jobs["etl"].executions[
            (t.vertex_id, t.subtask_index)].slot_index or 0, state=E.RUNNING)
        for t in c.tasks("etl")
    ]  # fmt: skip
    c.register("tm-b", slots=2, running=tuple(tasks))  # reconciled, not redeployed
    leftover = JobCancelRequested(event_id="fenced-cancel", event_time=c.now, job_id="etl")
    for event in decide(fenced_state, fenced_view, leftover, c.now).events:
        c.apply(event)  # the fenced leader's leftovers: ignored
    c.submit("big", (("src", "map", 5),))  # waits for slots
    c.now += 60_000
    c.heartbeat_all()
    c.tick()  # slot-wait timeout: big FAILED
    c.report(c.tasks("etl")[0], E.FAILED, error="UserCodeError")  # etl restarts again
    c.report(c.tasks("etl")[1], E.CANCELED)
    c.now += 2_000
    c.heartbeat_all()
    c.tick()  # attempt 2 deployed
    return c


def checkpoints() -> Cluster:
    """Periodic checkpoints: completed, subsumed, declined (tolerated), aborted by
    a task failure and by a new leader (not counted), expired (one failure more
    than tolerated: the job fails over); canceled with DELETE_ON_CANCELLATION, so
    the retained checkpoint's state is discarded."""
    c = Cluster(config=DomainConfig(allow_checkpointing=True))
    c.register("tm-a", slots=2)
    c.register("tm-b", slots=2)
    config = CheckpointConfig(
        interval_ms=1_000, min_pause_ms=200, tolerable_failures=1, retained=1,
        externalized_retention=ExternalizedRetention.DELETE_ON_CANCELLATION,
    )  # fmt: skip
    c.submit("counts", (("src", "map", 2), ("out", "sink", 1)), checkpoints=config)
    c.run_all("counts")
    c.heartbeat_all()
    c.tick(1_000)  # checkpoint 1 triggered
    c.now += 50
    c.ack_all("counts", 1)  # completed
    c.heartbeat_all()
    c.tick(1_000)  # checkpoint 2
    c.ack_all("counts", 2)  # completed, subsumes 1: its state is discarded
    c.heartbeat_all()
    c.tick(1_000)  # checkpoint 3
    c.decline(c.tasks("counts")[0], 3)  # one failure: tolerated
    c.heartbeat_all()
    c.tick(1_000)  # checkpoint 4
    c.ack(c.tasks("counts")[0], 4)
    c.report(c.tasks("counts")[1], E.FAILED, error="Boom")  # aborts 4, not counted; restart
    for task in (c.tasks("counts")[0], c.tasks("counts")[2]):
        c.report(task, E.CANCELED)
    c.now += 1_000
    c.heartbeat_all()
    c.tick()  # redeployed, restoring checkpoint 2
    c.run_all("counts")
    c.heartbeat_all()
    c.tick(1_000)  # checkpoint 5
    c.elect("replica-2")
    c.register("tm-a", slots=2, running=_running(c, "counts", "tm-a"))
    c.register("tm-b", slots=2, running=_running(c, "counts", "tm-b"))
    c.heartbeat_all()
    c.tick()  # 5 was triggered by the old leader: aborted, not counted
    c.heartbeat_all()
    c.tick(1_000)  # checkpoint 6
    c.now += config.timeout_ms
    c.heartbeat_all()
    c.tick()  # 6 expires: the second counted failure in a row, one more than tolerated
    c.run_all("counts", E.CANCELED)  # the job fails over
    c.now += 1_000
    c.heartbeat_all()
    c.tick()  # redeployed, restoring checkpoint 2 again
    c.run_all("counts")
    c.heartbeat_all()
    c.tick(1_000)  # checkpoint 7
    c.ack_all("counts", 7)
    c.cancel("counts")
    c.run_all("counts", E.CANCELED)  # CANCELED: checkpoint 7's state is discarded
    return c


def _running(c: Cluster, job_id: str, tm_id: str) -> tuple[RunningTask, ...]:
    job = c.state.jobs[job_id]
    return tuple(
        RunningTask(task=job.task_ref(k), slot_index=x.slot_index or 0, state=x.state)
        for k, x in job.executions.items()
        if x.tm_id == tm_id and x.is_live
    )


def status_from_wrong_status() -> list[bytes]:
    """The happy path plus a JobStatusChanged whose from_status is not the job's."""
    c = happy_path()
    bad = JobStatusChanged(
        event_id="bad-1", event_time=c.now, epoch=c.state.epoch, job_id="wordcount",
        from_status=JobStatus.RUNNING, to_status=JobStatus.FAILING,
    )  # fmt: skip
    return [*c.journal, codec.encode(bad)[0]]


def write_journal(path: Path, records: Iterable[bytes]) -> None:
    with path.open("xb") as f:  # "x": never overwrite a golden file
        for data in records:
            f.write(len(data).to_bytes(4, "big"))
            f.write(data)


def read_journal(path: Path) -> list[bytes]:
    raw = path.read_bytes()
    records, i = [], 0
    while i < len(raw):
        n = int.from_bytes(raw[i : i + 4], "big")
        records.append(raw[i + 4 : i + 4 + n])
        i += 4 + n
    if i != len(raw):
        raise ValueError(f"{path}: truncated record")
    return records


# Older versions still replay to their digests; decide now writes: v2, LeaderElected
# ids in one format; happy_path.v3, a job naming an operator no worker offers waits
# for one instead of being rejected; failover.v3, a lost worker is also told so with a
# DisconnectTaskManager, whose id shifts the ids after it; happy_path.v4 and
# failover.v4, the same decisions written with JobAccepted v2 and
# CheckpointCompleted v2 (CheckpointConfig.externalized_retention, per-subtask
# duration and alignment), so the bytes differ; checkpoints.v1, Flink's
# checkpoint rules (acks recorded by decide itself, not by the harness); checkpoints.v2,
# one trigger and one notification per worker instead of per task, which shifts the
# ids of the events decided after them; happy_path.v6, failover.v5 and checkpoints.v3,
# the same decisions written with JobAccepted v3 (JobSubmitted.artifact, null here);
# happy_path.v7, failover.v6 and checkpoints.v4, written with JobSubmitted/JobAccepted
# v4 (Vertex.chaining and slot_sharing_group, JobGraph.chaining), so the bytes differ;
# happy_path.v8 and checkpoints.v5, slot sharing: the two-vertex jobs take one slot per
# subtask index instead of one per subtask (failover's jobs have one vertex: unchanged).
SCENARIOS: dict[str, Callable[[], Cluster]] = {
    "happy_path.v8": happy_path_v3,
    "failover.v6": failover,
    "checkpoints.v5": checkpoints,
}
REFUSED: dict[str, Callable[[], list[bytes]]] = {
    "status_from_wrong_status.refused.v1": status_from_wrong_status,
}


def rerecord_digests() -> None:
    """Digests of the unchanged journals under the current state format."""
    for journal in sorted(GOLDEN.glob("*.journal")):
        if ".refused." not in journal.name:
            digest = state_digest(replay(read_journal(journal)))
            journal.with_suffix(".digest").write_text(digest + "\n")
            print(f"re-recorded {journal.with_suffix('.digest').name}")


def main() -> int:
    if sys.argv[1:] == ["--digests"]:
        rerecord_digests()
        return 0
    for name, scenario in SCENARIOS.items():
        journal, digest = GOLDEN / f"{name}.journal", GOLDEN / f"{name}.digest"
        if journal.exists():
            continue
        c = scenario()
        write_journal(journal, c.journal)
        digest.write_text(state_digest(c.state) + "\n")
        print(f"recorded {journal.name}: {len(c.journal)} events")
    for name, build in REFUSED.items():
        journal = GOLDEN / f"{name}.journal"
        if not journal.exists():
            write_journal(journal, build())
            print(f"recorded {journal.name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
