"""Recovery drills: break something on purpose under load, let the cluster recover, then
prove from the journal that nothing was lost, doubled or forked (``jm drill``).

A drill runs a cluster of its own: a fresh cluster id on the given Kafka (its own
topics, so it disturbs no other cluster there), its own redis-server on a free port,
its own coordinator replicas (``python -m coordinator coordinator``) and, for
``broker-kill``, its own Kafka broker (the local launcher). Under a steady load of
job submissions it injects its fault, then checks:

- every submission sent has exactly one decision in the journal (lost 0, duplicated 0);
- no decision of a deposed leader reached the journal (an epoch below one elected
  before it);
- at most one leader wrote to the journal at once (the epochs' spans do not overlap);
- the digests of a full replay, of the latest snapshot plus the tail, and of every live
  replica are equal.

The report gives takeover times (fault to the next leader's election) and recovery
times (fault to the next submission decided) as min/median/max. The helpers here are
the ones the integration tests use (tests/integration/test_ha.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Final

from schemas import events as ev
from schemas.catalog import Catalog

REPO: Final = Path(__file__).resolve().parents[1]
LAUNCHER: Final = REPO / "compose" / "local" / "launcher.py"
SCENARIOS: Final = (
    "leader-kill",
    "leader-freeze",
    "worker-kill",
    "redis-outage",
    "snapshot-corrupt",
    "broker-kill",
)
#: The replicas' default lease (coordinator/ha/lease.py): 1.5 s made leaders lose it on a
#: loaded machine (a loop stalled 2 s under load 30 on 2 cores), term after term.
LEASE_TTL_MS: Final = 3000
#: Warning, error and aiokafka log lines a process may write during a broker outage
#: (before the outage filter: thousands); the broker drill fails above it.
OUTAGE_LOG_LINES_MAX: Final = 60
#: Of them, aiokafka's own (before: about 40 a second per client, 14,116 in 26 s).
OUTAGE_AIOKAFKA_LINES_MAX: Final = 20
#: The verdict waits for the journal to stop growing (the jobs the load sent run to their
#: end) this long after its last growth, and at most QUIESCE_MAX_S in all.
QUIET_WAIT_S: Final = 60
QUIESCE_MAX_S: Final = 600


def outage_noise(line: str) -> bool:
    """A log line that an outage can cause: WARNING or worse, or aiokafka's at any level
    (a process's INFO lines of the work the load keeps doing on the brokers that stay up
    are not noise)."""
    level = re.search(r" (DEBUG|INFO|WARNING|ERROR|CRITICAL) ", line)
    return (
        level is None
        or level.group(1) not in ("DEBUG", "INFO")
        or bool(re.search(r" aiokafka[.\w]*: ", line))
    )


class DrillError(Exception):
    """The drill itself could not run (not a violation: the cluster did not start)."""


# ------------------------------------------------------------------- checks


async def full_replay_digest(
    bootstrap: str, catalog: Catalog, to_offset: int | None = None
) -> tuple[str, int]:
    """Digest of a full replay (up to and including `to_offset`, else to the end)."""
    from coordinator.runtime import machine
    from coordinator.runtime.journal import JournalFollower, StopAt

    follower = JournalFollower(bootstrap, catalog)
    await follower.start()
    try:
        await follower.catch_up(None if to_offset is None else StopAt(offset=to_offset + 1))
    finally:
        await follower.stop()
    return machine.digest(follower.state), follower.last_offset


async def snapshot_plus_tail_digest(
    bootstrap: str, catalog: Catalog, to_offset: int
) -> tuple[str, str]:
    """Digest of the latest readable snapshot plus the journal up to `to_offset`, and
    the snapshot's id."""
    from coordinator.runtime import machine, snapshots
    from coordinator.runtime.journal import JournalFollower, StopAt

    # A snapshot wholly before the compared point: one written after it covers more.
    loaded = await snapshots.load_latest(bootstrap, catalog, before=StopAt(offset=to_offset + 1))
    if loaded is None:
        raise DrillError(f"the leader wrote no snapshot before journal offset {to_offset}")
    follower = JournalFollower(bootstrap, catalog)
    await follower.start()
    try:
        follower.reset(loaded.state, loaded.covered_offset + 1)
        await follower.catch_up(StopAt(offset=to_offset + 1))
    finally:
        await follower.stop()
    return machine.digest(follower.state), loaded.snapshot_id


def decided(events: list[tuple[int, ev.Event]]) -> dict[str, int]:
    """submission event id -> how many journal decisions name it (accepted or rejected)."""
    seen: dict[str, int] = {}
    for _, e in events:
        if isinstance(e, ev.JobAccepted):
            seen[e.submission.event_id] = seen.get(e.submission.event_id, 0) + 1
        elif isinstance(e, ev.JobRejected):
            seen[e.input_event_id] = seen.get(e.input_event_id, 0) + 1
    return seen


def deposed_writes(events: list[tuple[int, ev.Event]]) -> int:
    """Decisions journaled after a leader of a higher epoch was elected."""
    highest, count = 0, 0
    for _, e in events:
        if isinstance(e, ev.LeaderElected):
            highest = max(highest, e.epoch)
        if isinstance(e, ev.Decision) and e.epoch < highest:
            count += 1
    return count


def leaders_at_once(events: list[tuple[int, ev.Event]]) -> int:
    """The most epochs whose journal spans (first to last decision) overlap."""
    spans: dict[int, list[int]] = {}
    for offset, e in events:
        if isinstance(e, ev.Decision):
            span = spans.setdefault(e.epoch, [offset, offset])
            span[1] = offset
    most = 0
    for first, _ in spans.values():
        most = max(most, sum(1 for a, b in spans.values() if a <= first <= b))
    return most


async def read_journal(bootstrap: str, catalog: Catalog) -> list[tuple[int, ev.Event]]:
    """Every committed journal record, decoded (records that do not decode are skipped)."""
    from schemas import kafkaio
    from schemas.codec import default_codec

    codec = default_codec()
    out: list[tuple[int, ev.Event]] = []
    for record in await kafkaio.read_partition(bootstrap, catalog.journal.name):
        with contextlib.suppress(Exception):
            out.append((record.offset, codec.decode(record.value, catalog.journal.allowed)))
    return out


# ------------------------------------------------------------------ report


def spread(values: list[float]) -> dict[str, float] | None:
    if not values:
        return None
    return {
        "min": round(min(values), 2),
        "median": round(statistics.median(values), 2),
        "max": round(max(values), 2),
        "count": len(values),
    }


@dataclass
class Report:
    scenario: str
    seed: int
    duration_s: float
    takeovers_s: list[float] = field(default_factory=list)
    recoveries_s: list[float] = field(default_factory=list)
    inputs_sent: int = 0
    inputs_journaled: int = 0
    lost: int = 0
    duplicated: int = 0
    deposed_leader_writes: int = 0
    max_leaders_at_once: int = 0
    digests: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    violations: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["takeover_s"] = spread(self.takeovers_s)
        data["recovery_s"] = spread(self.recoveries_s)
        data["digests_equal"] = len(set(self.digests.values())) <= 1
        data["passed"] = not self.violations
        return data

    def text(self) -> str:
        data = self.as_dict()

        def times(name: str) -> str:
            s = data[name]
            return "-" if s is None else f"{s['min']}/{s['median']}/{s['max']} s ({s['count']})"

        lines = [
            f"drill {self.scenario} (seed {self.seed}, {self.duration_s:.0f} s): "
            f"{'PASSED' if data['passed'] else 'FAILED'}",
            f"  takeover min/median/max   {times('takeover_s')}",
            f"  recovery min/median/max   {times('recovery_s')}",
            f"  inputs sent/journaled     {self.inputs_sent}/{self.inputs_journaled} "
            f"(lost {self.lost}, duplicated {self.duplicated})",
            f"  deposed-leader writes     {self.deposed_leader_writes}",
            f"  most leaders at once      {self.max_leaders_at_once}",
            f"  digests {'equal' if data['digests_equal'] else 'DIFFER'}:",
            *(f"    {name:<22} {digest[:16]}" for name, digest in self.digests.items()),
            *(f"  note: {note}" for note in self.notes),
            *(f"  VIOLATION: {v}" for v in self.violations),
        ]
        return "\n".join(lines)


# --------------------------------------------------------------- processes


def drill_keys(workdir: Path) -> str:
    """The signing key file of the drill's cluster: $JM_SIGNING_KEYS_FILE when set, else
    a fresh one in the drill's directory (its cluster is its own: no one else's keys)."""
    from schemas.signing import ENV_FILE, generate, write_key_file

    given = os.environ.get(ENV_FILE)
    if given:
        return given
    path = workdir / "signing-keys.json"
    write_key_file(path, generate())
    return str(path)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class OwnRedis:
    """A redis-server of the drill's own on a free port (no persistence)."""

    def __init__(self, workdir: Path) -> None:
        self.port = free_port()
        self.workdir = workdir
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        binary = shutil.which("redis-server")
        if not binary:
            raise DrillError("redis-server is not on PATH (make deps installs it)")
        self.proc = subprocess.Popen(
            [
                binary,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self.workdir),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with (
                contextlib.suppress(OSError),
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2),
            ):
                return
            time.sleep(0.05)
        raise DrillError("redis-server did not start")

    def stop(self) -> None:
        """Kill it: its data (the lease) goes with it, as after a flush."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


class OwnBroker:
    """KRaft brokers of the drill's own, one or three (the local launcher, free ports)."""

    def __init__(self, workdir: Path, brokers: int = 1) -> None:
        self.name = f"drill-{uuid.uuid4().hex[:6]}"
        self.brokers = brokers
        self.base = [sys.executable, str(LAUNCHER), "--name", self.name, "--home", str(workdir)]
        self.home = workdir / self.name
        self.bootstrap = ""

    def up(self, *flags: str) -> None:
        """Start every node that does not run (all of them the first time)."""
        done = subprocess.run(
            [*self.base, "up", "--no-redis", "--json", "--brokers", str(self.brokers), *flags],
            capture_output=True,
            text=True,
            check=False,
        )
        if done.returncode != 0:
            raise DrillError(f"the drill's broker did not start: {done.stderr}{done.stdout}")
        self.bootstrap = json.loads(done.stdout.strip().splitlines()[-1])["bootstrap"]

    def kill(self, node: int = 1) -> None:
        """kill -9 node `node` (1: the only one, or the first of three)."""
        directory = self.home / ("kafka" if node == 1 else f"kafka-{node}")
        os.killpg(int((directory / "kafka.pid").read_text()), signal.SIGKILL)

    def down(self) -> None:
        subprocess.run([*self.base, "down", "--purge"], capture_output=True, check=False)


class Process:
    """A coordinator replica or a worker as an OS process, its log in the drill's directory."""

    def __init__(self, name: str, argv: list[str], env: dict[str, str], workdir: Path) -> None:
        self.name = name
        self.log = workdir / f"{name}.log"
        self._out = open(self.log, "w")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            argv, stdout=self._out, stderr=subprocess.STDOUT, env=env, cwd=REPO
        )
        self.frozen = False

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def alive(self) -> bool:
        return self.proc.poll() is None

    def signal(self, sig: int) -> None:
        if self.alive():
            self.proc.send_signal(sig)
        self.frozen = sig == signal.SIGSTOP

    def stop(self) -> None:
        if self.alive():
            self.proc.send_signal(signal.SIGCONT)
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._out.close()


# ------------------------------------------------------------------- drill


ProgressFn = Callable[[str], None]


class Drill:
    """Scenarios, one after the other, against one cluster of the drill's own (a broker
    scenario always has its cluster to itself: its own brokers)."""

    def __init__(
        self,
        scenarios: tuple[str, ...],
        *,
        bootstrap: str | None,
        seed: int,
        duration_s: float,
        progress: ProgressFn,
        workdir: Path,
    ) -> None:
        self.scenarios = scenarios
        self.scenario = scenario = scenarios[0]
        self.bootstrap = bootstrap or ""
        self.seed = seed
        self.rng = random.Random(seed)
        self.duration_s = duration_s
        self._progress = progress
        self.say = prefixed(progress, scenario)
        self.workdir = workdir
        self.brokers = 3 if scenario == "broker-kill" else 1 if scenario.startswith("broker") else 0
        self.catalog = Catalog(
            f"drill-{uuid.uuid4().hex[:8]}", replication_factor=max(1, self.brokers)
        )
        self.redis = OwnRedis(workdir)
        self.keys_file = drill_keys(workdir)
        self.broker: OwnBroker | None = None
        self.replicas: dict[str, Process] = {}
        self.workers: dict[str, Process] = {}
        self.report = Report(scenario, seed, duration_s)
        self.sent: list[str] = []
        self._sent_at: list[tuple[float, str]] = []
        self._count = 0
        #: worker-kill's unbounded, checkpointed jobs (job id -> submission event id)
        self.long_jobs: dict[str, str] = {}

    # -- cluster

    def _env(self) -> dict[str, str]:
        return dict(
            os.environ,
            KAFKA_BOOTSTRAP_SERVERS=self.bootstrap,
            REDIS_URL=self.redis.url,
            JM_CLUSTER_ID=self.catalog.cluster_id,
            PYTHONUNBUFFERED="1",
            JM_REPLICATION_FACTOR=str(self.catalog.replication_factor),
            JM_SIGNING_KEYS_FILE=self.keys_file,
        )

    def replica(self, *flags: str) -> Process:
        self._count += 1
        rid = f"r{self._count}"
        argv = [
            sys.executable,
            "-m",
            "coordinator",
            "coordinator",
            "--id",
            rid,
            "--log-level",
            "INFO",
            "--rest-port",
            "0",
            "--lease-ttl-ms",
            str(LEASE_TTL_MS),
            "--heartbeat-timeout-ms",
            "9000",
            "--snapshot-every-events",
            "25",
            *flags,
        ]
        proc = Process(rid, argv, self._env(), self.workdir)
        self.replicas[rid] = proc
        return proc

    def worker(self) -> Process:
        self._count += 1
        tm = f"tm{self._count}"
        argv = [
            sys.executable,
            "-m",
            "worker",
            "--id",
            tm,
            "--slots",
            "8",
            "--heartbeat-timeout",
            "5",
            "--cancel-timeout",
            "1",
        ]
        proc = Process(tm, argv, self._env(), self.workdir)
        self.workers[tm] = proc
        return proc

    def leader(self) -> Process | None:
        """The replica that leads and has said so with its epoch (elected, journaled)."""
        for proc in self.replicas.values():
            log = proc.output() if proc.alive() and not proc.frozen else ""
            if role(log) == "LEADER" and log.rfind("leads with epoch") > log.rfind("role LEADER"):
                return proc
        return None

    async def settled_leader(self) -> Process:
        def elected() -> bool:
            if self.replicas and not any(p.alive() for p in self.replicas.values()):
                last = {n: p.output().strip().splitlines()[-1:] for n, p in self.replicas.items()}
                raise DrillError(f"every coordinator replica exited: {last}")
            return self.leader() is not None

        await self.until(elected, "a leader", 180)
        leader = self.leader()
        assert leader is not None
        return leader

    def elected_after(self, before: int) -> Callable[[], bool]:
        return lambda: self.elections() > before

    def elections(self) -> int:
        return sum(p.output().count("leads with epoch") for p in self.replicas.values())

    async def until(self, check: Callable[[], bool], what: str, seconds: float = 60) -> float:
        started = time.monotonic()
        while not check():
            if time.monotonic() - started > seconds:
                raise DrillError(f"{what}: not within {seconds:.0f} s")
            await asyncio.sleep(0.05)
        return time.monotonic() - started

    async def start(self) -> None:
        from schemas import kafkaio

        self.redis.start()
        if self.brokers:
            self.broker = OwnBroker(self.workdir, self.brokers)
            self.say(f"starting the drill's own Kafka ({self.brokers} broker(s))")
            self.broker.up("--ports", "auto")
            self.bootstrap = self.broker.bootstrap
        if not self.bootstrap:
            raise DrillError("no Kafka: --bootstrap-servers or $KAFKA_BOOTSTRAP_SERVERS")
        await kafkaio.create_topics(self.bootstrap, self.catalog)
        self.say(f"cluster {self.catalog.cluster_id}: starting replicas")
        for _ in range(1 if self.scenarios == ("snapshot-corrupt",) else 2):
            self.replica()
        await self.settled_leader()

    async def stop(self) -> None:
        from schemas import kafkaio

        for proc in [*self.replicas.values(), *self.workers.values()]:
            proc.stop()
        self.redis.stop()
        if self.broker is not None:
            self.broker.down()
        elif self.bootstrap:
            admin = kafkaio.admin_client(bootstrap_servers=self.bootstrap)
            with contextlib.suppress(Exception):
                await admin.start()
                await admin.delete_topics([t.name for t in self.catalog.topics])
            with contextlib.suppress(Exception):
                await admin.close()

    # -- load

    def keys(self, process: str) -> Any:
        """The signing keys a `process` ("client", "coordinator") has ($JM_SIGNING_KEYS_FILE)."""
        from schemas.settings import ClusterSettings

        settings = ClusterSettings.load(
            bootstrap_servers=self.bootstrap,
            redis_url=self.redis.url,
            cluster_id=self.catalog.cluster_id,
            signing_keys=self.keys_file,
        )
        return settings.keyring(process)

    async def load(self, stop: asyncio.Event) -> None:
        """Job submissions, one every 50 ms, until `stop` (each must be decided once)."""
        from schemas import kafkaio
        from schemas.codec import default_codec

        keys = self.keys("client")
        codec = default_codec()
        producer = kafkaio.producer(
            bootstrap_servers=self.bootstrap, enable_idempotence=True, acks="all", linger_ms=0
        )
        await started(producer, stop)
        try:
            n = 0
            while not stop.is_set():
                # job ids of their own per scenario: one cluster runs several in turn
                job_id = f"drill-{self.scenario}-{n:05d}"
                sub = submission(job_id, restarts=self.scenario == "worker-kill")
                value, headers = codec.encode(sub)
                topic, key = self.catalog.submissions.name, self.catalog.key_for(sub)
                headers = keys.sign("submissions", topic, key, value, headers)
                try:
                    await producer.send_and_wait(topic, value, key=key, headers=headers)
                except Exception as err:  # the broker drill: not sent, not counted
                    self.report.notes.append(f"submission not sent: {type(err).__name__}")
                    await asyncio.sleep(0.5)
                    continue
                self.sent.append(sub.event_id)
                self._sent_at.append((time.monotonic(), sub.event_id))
                n += 1
                await asyncio.sleep(0.05)
        finally:
            await producer.stop()

    async def recovered_after(self, fault_at: float) -> float:
        """Seconds from `fault_at` until a submission sent after it is decided."""
        from aiokafka.errors import KafkaError

        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            after = {eid for at, eid in self._sent_at if at > fault_at}
            if after:
                try:
                    seen = decided(await read_journal(self.bootstrap, self.catalog))
                except KafkaError:  # a broker just restarted may not answer yet
                    await asyncio.sleep(0.5)
                    continue
                if after & set(seen):
                    return time.monotonic() - fault_at
            await asyncio.sleep(0.3)
        raise DrillError("no submission decided within 90 s after the fault")

    # -- faults

    def rounds(self) -> int:
        return max(1, int(self.duration_s // 10))

    async def leader_kill(self) -> None:
        for n in range(self.rounds()):
            await asyncio.sleep(self.rng.uniform(1.0, 3.0))
            old = await self.settled_leader()
            before = self.elections()
            self.say(f"round {n + 1}/{self.rounds()}: kill -9 leader {old.name}")
            fault = time.monotonic()
            old.signal(signal.SIGKILL)
            self.report.takeovers_s.append(
                await self.until(self.elected_after(before), "a new leader")
            )
            self.report.recoveries_s.append(await self.recovered_after(fault))
            self.replica()  # a new standby in its place

    async def leader_freeze(self) -> None:
        for n in range(self.rounds()):
            await asyncio.sleep(self.rng.uniform(1.0, 3.0))
            old = await self.settled_leader()
            before = self.elections()
            self.say(f"round {n + 1}/{self.rounds()}: SIGSTOP leader {old.name}")
            fault = time.monotonic()
            old.signal(signal.SIGSTOP)
            self.report.takeovers_s.append(
                await self.until(self.elected_after(before), "a new leader")
            )
            old.signal(signal.SIGCONT)
            await self.until(stepped_down(old), f"{old.name} steps down")
            self.report.recoveries_s.append(await self.recovered_after(fault))

    async def worker_kill(self) -> None:
        """Unbounded jobs with checkpoints run on the worker; it is killed with them, a
        new one takes its place, and each job must run again from its latest completed
        checkpoint (while short jobs keep coming). The jobs are canceled at the end."""
        for n in range(self.rounds()):
            await asyncio.sleep(self.rng.uniform(1.0, 3.0))
            victim = next(w for w in self.workers.values() if w.alive())
            self.say(f"round {n + 1}/{self.rounds()}: kill -9 worker {victim.name} "
                     f"({len(self.long_jobs)} unbounded jobs on it)")  # fmt: skip
            fault_offset = (await read_journal(self.bootstrap, self.catalog))[-1][0]
            fault = time.monotonic()
            victim.signal(signal.SIGKILL)
            replacement = self.worker()
            await self.until(registered(replacement), "the new worker registers")
            self.report.recoveries_s.append(await self.recovered_after(fault))
            await self.long_jobs_run_again(fault_offset, replacement.name)
        await self.cancel_long_jobs()

    async def send(self, events: list[ev.Event]) -> None:
        """Client commands to the submissions topic, signed; each JobSubmitted is counted
        as sent (it must be decided once)."""
        from schemas import kafkaio
        from schemas.codec import default_codec

        keys, codec = self.keys("client"), default_codec()
        producer = kafkaio.producer(bootstrap_servers=self.bootstrap, acks="all")
        await producer.start()
        try:
            for event in events:
                value, headers = codec.encode(event)
                topic, key = self.catalog.submissions.name, self.catalog.key_for(event)
                headers = keys.sign("submissions", topic, key, value, headers)
                await producer.send_and_wait(topic, value, key=key, headers=headers)
                if isinstance(event, ev.JobSubmitted):
                    self.sent.append(event.event_id)
        finally:
            await producer.stop()

    async def journal_until(
        self, check: Callable[[list[tuple[int, ev.Event]]], bool], what: str, seconds: float
    ) -> list[tuple[int, ev.Event]]:
        """The journal once `check` holds for it (a generous bound: it happens)."""
        deadline = time.monotonic() + seconds
        while True:
            events = await read_journal(self.bootstrap, self.catalog)
            if check(events):
                return events
            if time.monotonic() > deadline:
                raise DrillError(f"{what}: not within {seconds:.0f} s")
            await asyncio.sleep(0.5)

    async def start_long_jobs(self, count: int = 3) -> None:
        subs = [long_job(f"drill-unbounded-{i}") for i in range(count)]
        self.long_jobs = {s.job_id: s.event_id for s in subs}
        self.say(f"{count} unbounded jobs with checkpoints, until each has one")
        await self.send(list(subs))

        def checkpointed(events: list[tuple[int, ev.Event]]) -> bool:
            done = {e.job_id for _, e in events if isinstance(e, ev.CheckpointCompleted)}
            return set(self.long_jobs) <= done

        await self.journal_until(checkpointed, "a checkpoint of every unbounded job", 90)

    async def long_jobs_run_again(self, after: int, worker: str) -> None:
        """Every unbounded job has a task RUNNING again on `worker` after journal offset
        `after`, deployed from the job's latest checkpoint completed before it."""

        def running_again(events: list[tuple[int, ev.Event]]) -> bool:
            return set(self.long_jobs) <= {
                e.task.job_id for o, e in events
                if o > after and isinstance(e, ev.TaskStateRecorded)
                and e.state == ev.ExecutionState.RUNNING
            }  # fmt: skip

        events = await self.journal_until(running_again, "the unbounded jobs run again", 90)
        latest: dict[str, int] = {}
        expected: dict[tuple[str, int], int | None] = {}
        for offset, e in events:
            if isinstance(e, ev.CheckpointCompleted) and e.job_id in self.long_jobs:
                latest[e.job_id] = e.checkpoint_id
            elif isinstance(e, ev.TaskAssigned) and e.task.job_id in self.long_jobs \
                    and offset > after:  # fmt: skip
                expected[(e.task.job_id, e.task.attempt)] = latest.get(e.task.job_id)
        restored = await self.deployed_from(worker)
        for job in sorted(self.long_jobs):
            attempts = [(a, cp) for (j, a), cp in expected.items() if j == job]
            a, cp = max(attempts) if attempts else (-1, None)
            got = restored.get((job, a))
            self.report.notes.append(
                f"{job}: attempt {a} on {worker} from checkpoint {got} (latest {cp})"
            )
            if cp is None or got != cp:
                self.report.violations.append(
                    f"{job} ran again from checkpoint {got}, not its latest completed {cp}"
                )

    async def deployed_from(self, worker: str) -> dict[tuple[str, int], int | None]:
        """(job, attempt) -> restore_checkpoint_id of the DeployTasks sent to `worker`."""
        from schemas import kafkaio
        from schemas.codec import default_codec

        codec, spec = default_codec(), self.catalog.commands
        records = await kafkaio.read_partition(
            self.bootstrap, spec.name, self.catalog.commands_partition(worker)
        )
        out: dict[tuple[str, int], int | None] = {}
        for record in records:
            with contextlib.suppress(Exception):
                cmd = codec.decode(record.value, spec.allowed)
                if isinstance(cmd, ev.DeployTask) and cmd.tm_id == worker:
                    out[(cmd.task.job_id, cmd.task.attempt)] = cmd.restore_checkpoint_id
        return out

    async def cancel_long_jobs(self) -> None:
        jobs = sorted(self.long_jobs)
        await self.send([
            ev.JobCancelRequested(event_id=uuid.uuid4().hex, event_time=int(time.time() * 1000),
                                  job_id=job, requested_by="jm drill")
            for job in jobs
        ])  # fmt: skip

        def canceled(events: list[tuple[int, ev.Event]]) -> bool:
            return set(jobs) <= {
                e.job_id for _, e in events
                if isinstance(e, ev.JobStatusChanged) and e.to_status == ev.JobStatus.CANCELED
            }  # fmt: skip

        await self.journal_until(canceled, "the unbounded jobs canceled", 90)

    async def redis_outage(self) -> None:
        old = await self.settled_leader()
        before = self.elections()
        self.say("stopping Redis")
        fault = time.monotonic()
        self.redis.stop()
        await self.until(stepped_down(old), "the leader steps down", 30)
        await asyncio.sleep(2)
        self.say("Redis back, empty")
        self.redis.start()
        self.report.takeovers_s.append(
            await self.until(lambda: self.elections() > before, "a new leader")
        )
        await asyncio.sleep(3)  # would a second one follow?
        if self.elections() != before + 1:
            self.report.violations.append(
                f"{self.elections() - before} elections after Redis came back, not 1"
            )
        self.report.recoveries_s.append(await self.recovered_after(fault))

    async def snapshot_corrupt(self) -> None:
        """Kill the only replica, write garbage as the latest snapshot, start a new one:
        it must skip the garbage and lead from an older snapshot or a full replay."""
        from schemas import kafkaio
        from schemas.codec import default_codec

        await self.until(lambda: len(self.sent) >= 40, "40 submissions", 60)
        await self.settled_leader()
        before = self.elections()
        live = [p for p in self.replicas.values() if p.alive()]
        self.say(f"kill -9 {', '.join(p.name for p in live)}, then garbage as the latest snapshot")
        fault = time.monotonic()
        for old in live:
            old.signal(signal.SIGKILL)
            old.proc.wait()
        _, last = await full_replay_digest(self.bootstrap, self.catalog)
        corrupt = ev.SnapshotChunk(
            event_id=f"corrupt:{uuid.uuid4().hex}",
            event_time=int(time.time() * 1000),
            snapshot_id="corrupt",
            format_version=1,
            covered_offset=last,
            chunk_index=0,
            chunk_count=1,
            payload=b"\x00not zlib",
            epoch=1,
        )
        spec, key = self.catalog.topic_for(type(corrupt)), self.catalog.key_for(corrupt)
        value, headers = default_codec().encode(corrupt)
        headers = self.keys("coordinator").sign(spec.role, spec.name, key, value, headers)
        producer = kafkaio.producer(bootstrap_servers=self.bootstrap, acks="all")
        await producer.start()
        try:
            await producer.send_and_wait(spec.name, value, key=key, headers=headers)
        finally:
            await producer.stop()
        fresh = self.replica()
        self.report.takeovers_s.append(
            await self.until(lambda: self.elections() > before, "a new leader")
        )
        if "snapshot skipped: corrupt" not in fresh.output():
            self.report.violations.append("the new replica did not skip the corrupt snapshot")
        self.report.recoveries_s.append(await self.recovered_after(fault))

    async def broker_kill(self) -> None:
        assert self.broker is not None
        outage = min(20.0, max(5.0, self.duration_s / 2))
        node = 2 if self.brokers == 3 else 1
        self.say(f"kill -9 broker {node} of {self.brokers} for {outage:.0f} s")
        before = self.elections()
        fault = time.monotonic()
        processes = [*self.replicas.values(), *self.workers.values()]
        lines = {p.name: len(p.output().splitlines()) for p in processes}
        self.broker.kill(node)
        await asyncio.sleep(outage)
        self.say(f"restarting broker {node}")
        # In a thread: the load goes on while the broker starts (tens of seconds), so
        # the recovery measured is the cluster's, not the drill's own pause.
        await asyncio.to_thread(self.broker.up)
        self.report.recoveries_s.append(await self.recovered_after(fault))
        if self.elections() > before:
            self.report.takeovers_s.append(0.0)
            self.report.notes.append(f"{self.elections() - before} election(s) after the outage")
        for proc in processes:
            written = proc.output().splitlines()[lines.get(proc.name, 0) :]
            aiokafka = sum(1 for line in written if re.search(r" aiokafka[.\w]*: ", line))
            told = sum(1 for line in written if "Kafka does not answer" in line)
            noise = [line for line in written if outage_noise(line)]
            self.report.notes.append(f"{proc.name} wrote {len(written)} log lines in the "
                                     f"outage, {len(noise)} of them warnings, errors or "
                                     f"aiokafka's ({aiokafka})")  # fmt: skip
            if len(noise) > OUTAGE_LOG_LINES_MAX:
                self.report.violations.append(f"{proc.name} wrote {len(noise)} warning, error "
                                              "or aiokafka log lines (more than "
                                              f"{OUTAGE_LOG_LINES_MAX})")  # fmt: skip
            if aiokafka > OUTAGE_AIOKAFKA_LINES_MAX:
                self.report.violations.append(f"{proc.name}: {aiokafka} aiokafka lines in the "
                                              "outage (its retries must be quiet)")  # fmt: skip
            if told > 1:  # once when it starts (a summary every 30 s says the rest)
                self.report.violations.append(f"{proc.name} said {told} times that Kafka "
                                              "does not answer")  # fmt: skip

    # -- verdict

    async def verdict(self) -> None:
        from coordinator.commands.replica import read_replicas
        from schemas.settings import ClusterSettings

        self.say("waiting for every submission to be decided, then comparing digests")
        sent = set(self.sent)
        deadline = time.monotonic() + 60
        while True:
            events = await read_journal(self.bootstrap, self.catalog)
            counts = decided(events)
            if sent <= set(counts) or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.5)
        r = self.report
        r.inputs_sent = len(sent)
        r.inputs_journaled = sum(1 for eid in sent if eid in counts)
        r.lost = len(sent - set(counts))
        r.duplicated = sum(n - 1 for n in counts.values() if n > 1)
        r.deposed_leader_writes = deposed_writes(events)
        if self.scenario == "worker-kill":
            final: dict[str, ev.JobStatus] = {}
            restarted = set()
            for _, e in events:
                if isinstance(e, ev.JobStatusChanged):
                    final[e.job_id] = e.to_status
                    if e.to_status == ev.JobStatus.RESTARTING:
                        restarted.add(e.job_id)
            failed = sorted(j for j, status in final.items() if status == ev.JobStatus.FAILED)
            r.notes.append(f"jobs restarted after the worker was killed: {len(restarted)}")
            if failed:
                r.violations.append(f"{len(failed)} job(s) FAILED, e.g. {failed[:3]}")
        r.max_leaders_at_once = leaders_at_once(events)
        settings = ClusterSettings(
            bootstrap_servers=self.bootstrap, cluster_id=self.catalog.cluster_id
        )
        live = [p.name for p in self.replicas.values() if p.alive()]
        # Quiescence: every live replica at the journal's end, twice. The jobs the load
        # sent may still be running (a worker works off its backlog after the load stops),
        # so the wait lasts while the journal grows: QUIET_WAIT_S after its last growth,
        # at most QUIESCE_MAX_S in all.
        begun = time.monotonic()
        grew, previous, grown_to = begun, -2, -2
        while True:
            _, last = await full_replay_digest(self.bootstrap, self.catalog)
            statuses = await read_replicas(settings)
            settled = all(rid in statuses and statuses[rid].applied_offset == last for rid in live)
            now = time.monotonic()
            if last != grown_to:
                grew, grown_to = now, last
            if settled and last == previous:
                break
            if now - grew > QUIET_WAIT_S or now - begun > QUIESCE_MAX_S:
                break
            previous = last if settled else -2
            await asyncio.sleep(0.5)
        r.notes.append(f"journal quiet at offset {last} after {time.monotonic() - begun:.1f}s")
        r.digests["full replay"], _ = await full_replay_digest(self.bootstrap, self.catalog, last)
        try:
            tail, snapshot_id = await snapshot_plus_tail_digest(self.bootstrap, self.catalog, last)
            r.digests["snapshot + tail"] = tail
            r.notes.append(f"snapshot used: {snapshot_id}")
        except DrillError as err:  # too few events for one (a short drill): not compared
            r.notes.append(f"snapshot + tail not compared: {err}")
        for rid in live:
            status = statuses.get(rid)
            if status is None or status.applied_offset != last:
                r.violations.append(f"replica {rid} did not reach journal offset {last}")
            else:
                r.digests[f"replica {rid}"] = status.digest
        if r.lost:
            r.violations.append(f"{r.lost} submission(s) lost")
        if r.duplicated:
            r.violations.append(f"{r.duplicated} submission(s) decided twice")
        if r.deposed_leader_writes:
            r.violations.append(f"{r.deposed_leader_writes} write(s) of a deposed leader")
        if r.max_leaders_at_once > 1:
            r.violations.append(f"{r.max_leaders_at_once} leaders wrote at once")
        if len(set(r.digests.values())) > 1:
            r.violations.append("digests differ")

    async def run(self) -> list[Report]:
        """Each scenario in turn on this cluster, a report each; after a failed one the
        cluster's state is unknown, so the rest are reported as not run."""
        reports: list[Report] = []
        try:
            for name in self.scenarios:
                reports.append(await self._run_one(name, first=not reports))
                if reports[-1].violations:
                    break
        finally:
            await self.stop()
        for name in self.scenarios[len(reports) :]:
            skipped = Report(name, self.seed, self.duration_s)
            skipped.violations.append("not run: an earlier scenario on its cluster failed")
            reports.append(skipped)
        return reports

    async def _run_one(self, name: str, *, first: bool) -> Report:
        faults = {
            "leader-kill": self.leader_kill,
            "leader-freeze": self.leader_freeze,
            "worker-kill": self.worker_kill,
            "redis-outage": self.redis_outage,
            "snapshot-corrupt": self.snapshot_corrupt,
            "broker-kill": self.broker_kill,
            "broker-kill-single": self.broker_kill,
        }
        self.scenario = name
        self.report = Report(name, self.seed, self.duration_s)
        self.sent, self._sent_at = [], []
        self.say = prefixed(self._progress, name)
        started = time.monotonic()
        try:
            if first:
                await self.start()
            # A worker from the start when a scenario of the cluster needs one: started
            # later, it would first run the backlog of every job submitted before it.
            if any(n.startswith("broker") or n == "worker-kill" for n in self.scenarios):
                if not any(w.alive() for w in self.workers.values()):
                    self.worker()
                alive = next(w for w in self.workers.values() if w.alive())
                await self.until(registered(alive), "a worker")
            if name == "worker-kill":  # before the load: the first jobs the worker gets
                await self.start_long_jobs()
            stop = asyncio.Event()
            load = asyncio.create_task(self.load(stop))
            try:
                await faults[name]()
            finally:
                stop.set()
                await load
            await self.verdict()
        except DrillError as err:
            self.report.violations.append(f"drill stopped: {err}")
        except Exception as err:  # Kafka unreachable, a process that would not start
            self.report.violations.append(f"drill stopped: {type(err).__name__}: {err}")
        self.report.duration_s = round(time.monotonic() - started, 1)
        return self.report


async def started(producer: Any, stop: asyncio.Event) -> None:
    """Start `producer`, again while the broker does not answer (under load a client's
    bootstrap can time out), until `stop`."""
    from aiokafka.errors import KafkaError

    while True:
        try:
            await producer.start()
            return
        except KafkaError:
            if stop.is_set():
                raise
            await asyncio.sleep(1)


def stepped_down(proc: Process) -> Callable[[], bool]:
    return lambda: not proc.alive() or role(proc.output()) != "LEADER"


def registered(proc: Process) -> Callable[[], bool]:
    return lambda: "registering" in proc.output()


def role(log: str) -> str | None:
    """The role a replica's log last announced ("role LEADER", ...)."""
    found = re.findall(r"^role (\w+)$", log, re.MULTILINE)
    return found[-1] if found else None


def submission(job_id: str, restarts: bool = False) -> ev.JobSubmitted:
    """A small job (a bounded sequence source, parallelism 1); with `restarts`, up to
    three restarts half a second apart (a job on a killed worker runs again)."""
    strategy = (
        ev.RestartStrategy(kind=ev.RestartStrategyKind.FIXED_DELAY, attempts=3, delay_ms=500)
        if restarts
        else ev.RestartStrategy(kind=ev.RestartStrategyKind.NONE)
    )
    return job(job_id, {"count": "10"}, strategy)


def long_job(job_id: str) -> ev.JobSubmitted:
    """An unbounded job (a sequence source without a count, paced) that checkpoints every
    half second and restarts without end: worker-kill kills it and it must go on."""
    return job(
        job_id,
        {"rate": "50"},
        ev.RestartStrategy(kind=ev.RestartStrategyKind.FIXED_DELAY, attempts=1000, delay_ms=500),
        ev.CheckpointConfig(interval_ms=500, timeout_ms=60_000, tolerable_failures=1000),
    )


def job(
    job_id: str,
    config: dict[str, str],
    restart: ev.RestartStrategy,
    checkpoints: ev.CheckpointConfig | None = None,
) -> ev.JobSubmitted:
    """A one-vertex `sequence` job (parallelism 1) with `config`."""
    vertex = ev.Vertex(id="src", name="Source", operator="sequence", parallelism=1,
                       max_parallelism=8, config=config)  # fmt: skip
    return ev.JobSubmitted(
        event_id=uuid.uuid4().hex,
        event_time=int(time.time() * 1000),
        job_id=job_id,
        name=f"drill {job_id}",
        job_graph=ev.JobGraph(vertices=(vertex,)),
        restart_strategy=restart,
        checkpoint_config=checkpoints or ev.CheckpointConfig(),
    )


def phases(scenario: str) -> tuple[str, ...]:
    return (scenario, "broker-kill-single") if scenario == "broker-kill" else (scenario,)


def prefixed(progress: ProgressFn, name: str) -> ProgressFn:
    return lambda line: progress(f"[{name}] {line}")


async def run_drill(
    scenarios: str | list[str],
    *,
    bootstrap: str | None,
    seed: int,
    duration_s: float,
    progress: ProgressFn,
) -> list[Report]:
    """Run the scenarios ("all": each in turn); the reports. Scenarios that break
    nothing but the drill's own processes and Redis share one cluster, one after the
    other; broker-kill runs twice, each on brokers of its own: on three brokers (one
    killed, then back), then on a single broker (restarted)."""
    wanted = [scenarios] if isinstance(scenarios, str) else scenarios
    if "all" in wanted:
        wanted = list(SCENARIOS)
    names = [n for s in wanted for n in phases(s)]
    groups: list[tuple[str, ...]] = []
    for name in names:
        if name.startswith("broker") or not groups or groups[-1][0].startswith("broker"):
            groups.append((name,))
        else:
            groups[-1] = (*groups[-1], name)
    reports: list[Report] = []
    for group in groups:
        workdir = Path(tempfile.mkdtemp(prefix=f"jm-drill-{group[0]}-"))
        drill = Drill(
            group,
            bootstrap=bootstrap,
            seed=seed,
            duration_s=duration_s,
            progress=progress,
            workdir=workdir,
        )
        ran = await drill.run()
        reports.extend(ran)
        if not any(r.violations for r in ran):
            shutil.rmtree(workdir, ignore_errors=True)
        else:
            for report in ran:
                report.notes.append(f"logs kept in {workdir}")
    return reports
