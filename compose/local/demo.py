"""``make demo``: a whole cluster on this machine, running a sample job you can watch.

    .venv/bin/python compose/local/demo.py          # interactive: Ctrl-C stops it
    .venv/bin/python compose/local/demo.py --ci     # run until results arrive, then stop
                                                    # (also when CI=true)

What it does, in order:

1. Kafka and Redis: ``KAFKA_BOOTSTRAP_SERVERS`` and ``REDIS_URL`` when both are
   set (left alone), else the local launcher's default instance
   (``compose/local/launcher.py up``, idempotent). They stay running afterwards:
   ``make down`` stops them.
2. The cluster's topics (``jm topics create``) and the sample job's sink topic
   ``<cluster id>-counts`` (kafka_sink creates a missing topic only when its
   config sets ``partitions``, and the broker never creates one by itself).
3. Child processes, each in its own process group, logs in ``.local/demo/``:
   coordinators ``demo-1`` (leader) and ``demo-2`` (hot standby), workers
   ``tm-1`` and ``tm-2`` (4 slots each).
4. Submits ``compose/demo-job.yaml`` with a unique job id, shows ``jm status``
   once it runs, ``jm replicas``, and the sink topic decoded: the latest count
   per key, refreshed every second.
5. On Ctrl-C / SIGTERM (or, with ``--ci``, once every key has results): cancels
   the job (``JobCancelRequested``), stops the workers, then the standby, then
   the leader (SIGTERM, then SIGKILL for the whole process group after a grace
   period). A child that exits on its own, a rejected or failed job, or a
   timeout fails the demo (exit 1) with the reason and the tail of every log.
   If the demo itself is killed (SIGKILL), Linux ends its children with it
   (PR_SET_PDEATHSIG): workers get SIGTERM, coordinators SIGKILL.

The cluster id is ``$JM_CLUSTER_ID``, default ``demo`` (not ``jm``, so the demo
never joins coordinators someone else runs on the same broker). Jobs left
unfinished by an earlier demo run that was killed (ids ``demo-*``) are
cancelled first, so they do not hold the slots.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import TextIO

from aiokafka import TopicPartition
from aiokafka.admin import NewTopic

from coordinator import client
from coordinator.runtime.journal import JournalFollower
from schemas import events as ev
from schemas import kafkaio, signing
from schemas.catalog import Catalog
from schemas.jobgraph import JobGraphInvalid, load_job_file
from schemas.settings import ClusterSettings
from schemas.validation import validate_job_submitted

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
LAUNCHER = HERE / "launcher.py"
JOB_FILE = REPO / "compose" / "demo-job.yaml"
DEFAULT_CLUSTER = "demo"
JOB_PREFIX = "demo-"
SINK_SUFFIX = "counts"
COORDINATORS = ("demo-1", "demo-2")
#: Replica N serves its REST API and dashboard on this port + N - 1 (docs/rest.md).
REST_BASE_PORT = 8081


def rest_port(replica_number: int, base: int = REST_BASE_PORT) -> int:
    """Replica N's REST port: base + N - 1 (base 0: a free port each)."""
    return base + replica_number - 1 if base else 0


def _get_json(url: str) -> dict[str, object]:
    import urllib.request

    with urllib.request.urlopen(url, timeout=5) as answer:
        found: dict[str, object] = json.load(answer)
        return found


def rest_url(output: str) -> str | None:
    """The address a coordinator printed (``rest http://host:port``), if it did yet."""
    match = re.search(r"^rest (http://\S+)$", output, re.MULTILINE)
    return match.group(1) if match else None


WORKERS = ("tm-1", "tm-2")
WORKER_SLOTS = 4
EXIT_FAILED = 1
EXIT_INTERRUPTED = 130
PR_SET_PDEATHSIG = 1  # linux/prctl.h


class DemoFailure(Exception):
    """Something the demo cannot go on from; the message says what."""


# Lines printed so far: the results table redraws itself only if nothing came between.
_said = [0]


def say(text: str = "") -> None:
    _said[0] += text.count("\n") + 1
    print(text, flush=True)


async def wait_until(check: Callable[[], bool], seconds: float) -> bool:
    """Poll `check` for up to `seconds`; whether it came true."""
    deadline = time.monotonic() + seconds
    while True:
        if check():
            return True
        if time.monotonic() >= deadline:
            return False
        await asyncio.sleep(0.1)


def stamp() -> str:
    return datetime.now(UTC).strftime("%H:%M:%S")


def tail(path: Path, lines: int = 25) -> str:
    try:
        text = path.read_text(errors="replace").splitlines()[-lines:]
    except OSError:
        return "    (no log)"
    return "\n".join(f"    {line}" for line in text) or "    (empty)"


# ------------------------------------------------------------------ children


# On Linux each child starts through this: the kernel sends it a signal when the demo
# dies, even by SIGKILL (PR_SET_PDEATHSIG survives the exec), so nothing is orphaned.
_DIE_WITH_PARENT = (
    "import ctypes, os, sys\n"
    "try:\n"
    f"    ctypes.CDLL(None).prctl({PR_SET_PDEATHSIG}, int(sys.argv[1]))\n"
    "except Exception:\n"
    "    pass\n"
    "os.execv(sys.argv[2], sys.argv[2:])\n"
)


def _guarded(cmd: list[str], death_signal: signal.Signals) -> list[str]:
    if sys.platform != "linux":
        return cmd
    return [sys.executable, "-c", _DIE_WITH_PARENT, str(int(death_signal)), *cmd]


def death_signal(kind: str) -> signal.Signals:
    """Workers get SIGTERM (they cancel their tasks and deregister); a coordinator has
    nothing to hand over (its lease runs out) and gets SIGKILL, which always works."""
    return signal.SIGTERM if kind == "worker" else signal.SIGKILL


@dataclasses.dataclass
class Child:
    """One coordinator or worker: a process group of its own, its output in a log file."""

    name: str
    kind: str  # "coordinator" or "worker"
    cmd: list[str]
    log: Path
    proc: subprocess.Popen[bytes]
    out: TextIO
    stopping: bool = False
    term_sent: float = 0.0
    clean: bool = False

    @classmethod
    def start(cls, name: str, kind: str, cmd: list[str], log: Path, env: dict[str, str]) -> Child:
        out = open(log, "w")  # noqa: SIM115 - closed in stop()
        out.write(f"# {' '.join(cmd)}\n")
        out.flush()
        proc = subprocess.Popen(
            _guarded(cmd, death_signal(kind)), stdout=out, stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL, env=env, cwd=REPO,
            start_new_session=True,  # Ctrl-C reaches the demo only; it stops them
        )  # fmt: skip
        return cls(name, kind, cmd, log, proc, out)

    def output(self) -> str:
        try:
            return self.log.read_text(errors="replace")
        except OSError:
            return ""

    def group_alive(self) -> bool:
        """Whether a process of its group still runs (zombies do not count: an init that
        does not reap would make them look alive forever)."""
        proc = Path("/proc")
        if not proc.is_dir():
            try:
                os.killpg(self.proc.pid, 0)
            except ProcessLookupError:
                return False
            return True
        for entry in proc.iterdir():
            if not entry.name.isdigit():
                continue
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except (OSError, IndexError):
                continue
            if fields[0] != "Z" and int(fields[2]) == self.proc.pid:  # state, ppid, pgrp
                return True
        return False

    def stopped_role(self) -> bool:
        """A coordinator that printed ``role STOPPED`` will not take the lease any more."""
        return self.proc.poll() is not None or "role STOPPED" in self.output()

    def terminate(self) -> None:
        """SIGTERM to the process itself (it stops its slot processes)."""
        self.stopping = True
        self.term_sent = time.monotonic()
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.send_signal(signal.SIGTERM)

    async def finish(self, grace: float) -> str:
        """Wait for the exit, then SIGKILL the whole group (slot processes too) if anything
        is left after `grace` seconds. Says how it went."""
        if not self.stopping:
            self.terminate()
        await wait_until(lambda: self.proc.poll() is not None, grace)
        killed = self.proc.poll() is None
        if killed:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            await asyncio.to_thread(self.proc.wait)
        took = time.monotonic() - self.term_sent
        # Give the slot processes a moment to follow their parent, then clear the group.
        await wait_until(lambda: not self.group_alive(), 2.0)
        leftovers = self.group_alive()
        if leftovers:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
        self.out.close()
        self.clean = not killed and not leftovers and self.proc.returncode == 0
        how = (
            f"did not exit within {grace:.0f}s of SIGTERM: killed"
            if killed
            else f"exit {self.proc.returncode} after {took:.1f}s"
        )
        extra = "; leftover processes in its group killed" if leftovers else ""
        return f"{self.name} {how}{extra}"


# ------------------------------------------------------------------- results


class Results:
    """Reads the sink topic from where it ended before the job started; keeps the latest
    count per key (the sink's values are ``{"value": n, "key": k, "count": c}``)."""

    def __init__(self, bootstrap: str, topic: str, start: dict[int, int]) -> None:
        self.topic = topic
        self.start = start
        self.bootstrap = bootstrap
        self.counts: dict[str, int] = {}
        self.records = 0
        self.undecodable = 0

    async def run(self) -> None:
        consumer = kafkaio.consumer(self.bootstrap, max_poll_records=5000)
        await consumer.start()
        try:
            tps = [TopicPartition(self.topic, p) for p in sorted(self.start)]
            consumer.assign(tps)
            for tp in tps:
                consumer.seek(tp, self.start[tp.partition])
            while True:
                batch = await consumer.getmany(timeout_ms=200)
                for records in batch.values():
                    for record in records:
                        self._add(record.key, record.value)
        finally:
            await consumer.stop()

    def _add(self, key: bytes | None, value: bytes | None) -> None:
        try:
            data = json.loads(value or b"")
            name = str(data["key"]) if isinstance(data, dict) and "key" in data else None
            count = int(data["count"])
        except (ValueError, KeyError, TypeError):
            self.undecodable += 1
            return
        if name is None:
            name = (key or b"").decode(errors="replace")
        self.records += 1
        self.counts[name] = max(count, self.counts.get(name, 0))

    def table(self, per_row: int = 5) -> list[str]:
        keys = sorted(self.counts, key=lambda k: (len(k), k))
        cells = [f"key={k} count={self.counts[k]:<6}" for k in keys]
        return ["  " + "  ".join(cells[i : i + per_row]) for i in range(0, len(cells), per_row)]

    def line(self) -> str:
        return " ".join(f"key={k} count={self.counts[k]}" for k in sorted(self.counts, key=_order))


def _order(key: str) -> tuple[int, str]:
    return (len(key), key)


# ---------------------------------------------------------------------- demo


class Demo:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.ci: bool = args.ci
        self.rest_base: int = args.rest_port
        self._history_port: int | None = None
        self.failed = False  # the run failed: shut down without the extras
        self.log_dir = Path(args.log_dir)
        self.children: list[Child] = []
        self.stop_requested = asyncio.Event()
        self.signals = 0
        self.timeout = float(args.timeout)
        self.started = time.monotonic()
        self.deadline = self.started + self.timeout
        self.settings: ClusterSettings | None = None
        self.catalog: Catalog | None = None
        self.env: dict[str, str] = {}
        self.follower: JournalFollower | None = None
        self.baseline = 0  # journal offset before this run's workers started
        self.joined: set[str] = set()
        self.rejections: dict[str, str] = {}  # input event id -> reason
        self.background: list[asyncio.Task[None]] = []
        self.job: ev.JobSubmitted | None = None
        self.job_final: ev.JobStatus | None = None
        self.results: Results | None = None
        self.keys_expected = 10
        self.stack_note = ""

    # ------------------------------------------------------------- helpers

    def on_signal(self, signum: int) -> None:
        self.signals += 1
        name = signal.Signals(signum).name
        if self.signals == 1:
            say(f"\n{stamp()} {name}: stopping (again to hurry)")
        else:
            say(f"\n{stamp()} {name} again: no more waiting")
        self.stop_requested.set()

    async def wait_for_stop(self) -> None:
        await self.stop_requested.wait()

    @property
    def job_id(self) -> str | None:
        return None if self.job is None else self.job.job_id

    @property
    def hurry(self) -> bool:
        return self.signals > 1

    def remaining(self) -> float:
        return self.deadline - time.monotonic()

    async def until(self, check: Callable[[], bool], what: str) -> None:
        while not check():
            if self.remaining() <= 0:
                raise DemoFailure(f"timed out after {self.timeout:.0f}s waiting for {what}")
            await asyncio.sleep(0.1)

    def jm(self) -> list[str]:
        script = Path(sys.executable).with_name("jm")
        return [str(script)] if script.exists() else [sys.executable, "-m", "coordinator"]

    def run_jm(self, *args: str, timeout: float = 60.0) -> str:
        """A ``jm`` command, synchronously (they are short); its output, or DemoFailure."""
        cmd = [*self.jm(), *args]
        try:
            done = subprocess.run(
                cmd, env=self.env, cwd=REPO, capture_output=True, text=True, timeout=timeout,
                check=False,
            )  # fmt: skip
        except subprocess.TimeoutExpired:
            raise DemoFailure(f"`jm {' '.join(args)}` did not finish in {timeout:.0f}s") from None
        if done.returncode != 0:
            output = f"{done.stderr}{done.stdout}"
            raise DemoFailure(f"`jm {' '.join(args)}` failed (exit {done.returncode}):\n{output}")
        return done.stdout

    async def jm_async(self, *args: str) -> str:
        return await asyncio.to_thread(self.run_jm, *args)

    def show(self, title: str, text: str) -> None:
        say(f"$ {title}")
        for line in text.rstrip().splitlines():
            say(f"  {line}")

    def check_children(self) -> None:
        for child in self.children:
            code = child.proc.poll()
            if code is not None and not child.stopping:
                raise DemoFailure(
                    f"{child.kind} {child.name} exited unexpectedly with code {code} "
                    f"(log {child.log})"
                )

    def check_background(self) -> None:
        for task in self.background:
            if task.done() and not task.cancelled() and task.exception() is not None:
                err = task.exception()
                raise DemoFailure(f"reading {task.get_name()} failed: {type(err).__name__}: {err}")

    async def watchdog(self) -> None:
        """Fails the demo as soon as a child dies on its own, or the journal or the results
        cannot be read any more (a failed job is noticed where the results are shown)."""
        while True:
            self.check_children()
            self.check_background()
            await asyncio.sleep(0.2)

    def _on_event(self, offset: int, event: ev.Event) -> None:
        if offset < self.baseline:
            return
        if isinstance(event, ev.TaskManagerJoined):
            self.joined.add(event.tm_id)
        elif isinstance(event, ev.JobRejected):
            self.rejections[event.input_event_id] = event.reason
        elif isinstance(event, ev.JobStatusChanged) and event.job_id == self.job_id:
            cause = f" ({event.cause})" if event.cause else ""
            say(f"{stamp()} job {event.job_id}: {event.from_status} -> {event.to_status}{cause}")

    async def follow(self) -> None:
        assert self.follower is not None
        while True:
            await self.follower.poll(200)

    def job_status(self, job_id: str) -> ev.JobStatus | None:
        assert self.follower is not None
        job = self.follower.state.jobs.get(job_id)
        return None if job is None else job.status

    # --------------------------------------------------------------- steps

    async def steps(self) -> None:
        await self.platform()
        await self.topics()
        await self.start_journal()
        await self.start_coordinators()
        await self.cancel_stale_jobs()
        await self.start_workers()
        await self.start_history()
        await self.submit()
        await self.show_running()
        await self.watch_results()

    async def platform(self) -> None:
        bootstrap = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
        redis_url = os.environ.get("REDIS_URL")
        keys_file = os.environ.get(signing.ENV_FILE)
        if bootstrap and redis_url:
            self.stack_note = (
                f"Kafka ({bootstrap}) and Redis ({redis_url}) come from the environment: "
                "left alone."
            )
            say(f"{stamp()} using Kafka {bootstrap} and Redis {redis_url} (from the environment)")
        else:
            say(f"{stamp()} starting local Kafka and Redis (compose/local/launcher.py up)")
            done = await asyncio.to_thread(
                subprocess.run, [sys.executable, str(LAUNCHER), "up", "--json"],
                stdout=subprocess.PIPE, text=True, check=False, cwd=REPO,
            )  # fmt: skip
            if done.returncode != 0:
                raise DemoFailure(f"the local launcher failed (exit {done.returncode})")
            info = json.loads(done.stdout.strip().splitlines()[-1])
            bootstrap, redis_url = str(info["bootstrap"]), str(info["redis_url"])
            keys_file = keys_file or str(info["signing_keys"])
            self.stack_note = (
                f"Kafka ({bootstrap}) and Redis ({redis_url}) are still running, with the "
                "demo's topics: `make down` stops them."
            )
            say(f"{stamp()} Kafka {bootstrap} and Redis {redis_url} ready in {info['seconds']}s")
        if not keys_file:  # records are signed in the demo too: keys of its own
            keys_file = str(self.log_dir / "signing-keys.json")
            self.log_dir.mkdir(parents=True, exist_ok=True)
            signing.write_key_file(keys_file, signing.generate())
        say(f"{stamp()} signing keys {keys_file}")
        cluster = os.environ.get("JM_CLUSTER_ID") or DEFAULT_CLUSTER
        self.settings = ClusterSettings.load(
            bootstrap_servers=bootstrap, redis_url=redis_url, cluster_id=cluster,
            signing_keys=keys_file,
        )  # fmt: skip
        self.catalog = Catalog(self.settings.cluster_id)
        self.env = dict(
            os.environ, KAFKA_BOOTSTRAP_SERVERS=bootstrap, REDIS_URL=redis_url,
            JM_CLUSTER_ID=self.settings.cluster_id, PYTHONUNBUFFERED="1",
            JM_SIGNING_KEYS_FILE=keys_file,
        )  # fmt: skip

    @property
    def sink_topic(self) -> str:
        assert self.settings is not None
        # A '-', not a '.': topics under "<cluster id>." are the cluster's own, and
        # no job may name them (docs/security.md).
        return f"{self.settings.cluster_id}-{SINK_SUFFIX}"

    async def topics(self) -> None:
        assert self.settings is not None and self.catalog is not None
        out = await self.jm_async("topics", "create")
        created = sum(1 for line in out.splitlines() if line.startswith("created"))
        say(f"{stamp()} cluster {self.settings.cluster_id!r}: {len(self.catalog.topics)} topics "
            f"({created} created now) via `jm topics create`")  # fmt: skip
        admin = kafkaio.admin_client(bootstrap_servers=self.settings.bootstrap_servers)
        await admin.start()
        try:
            spec = NewTopic(self.sink_topic, num_partitions=2,
                            replication_factor=self.catalog.replication_factor)  # fmt: skip
            response = await admin.create_topics([spec])
            codes = {code for _, code, _ in response.topic_errors}
        finally:
            await admin.close()
        if codes - {0, kafkaio.TOPIC_ALREADY_EXISTS}:
            raise DemoFailure(f"could not create the sink topic {self.sink_topic}: {response}")
        state = "created" if codes == {0} else "exists"
        say(f"{stamp()} sink topic {self.sink_topic} ({state})")

    async def start_journal(self) -> None:
        assert self.settings is not None and self.catalog is not None
        self.follower = JournalFollower(
            self.settings.bootstrap_servers, self.catalog, on_event=self._on_event
        )
        await self.follower.start()
        self.baseline = 1 << 62  # history: folded, not announced
        await self.follower.catch_up(timeout_s=max(self.remaining(), 1.0))
        self.baseline = self.follower.position
        self.background.append(asyncio.create_task(self.follow(), name="journal"))

    def spawn(self, name: str, kind: str, args: list[str]) -> Child:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        child = Child.start(name, kind, [*self.jm(), *args], self.log_dir / f"{name}.log", self.env)
        self.children.append(child)
        return child

    async def start_coordinators(self) -> None:
        leader_id, standby_id = COORDINATORS
        leader = self.spawn(
            leader_id,
            "coordinator",
            [
                "coordinator",
                "--id",
                leader_id,
                "--rest-port",
                str(rest_port(1, self.rest_base)),
                "--history-url",
                self.history_url(),
            ],
        )
        await self.until(lambda: "role LEADER" in leader.output(), f"{leader_id} to lead")
        say(f"{stamp()} coordinator {leader_id} is the leader (pid {leader.proc.pid})")
        standby = self.spawn(
            standby_id,
            "coordinator",
            [
                "coordinator",
                "--id",
                standby_id,
                "--rest-port",
                str(rest_port(2, self.rest_base)),
                "--history-url",
                self.history_url(),
            ],
        )
        await self.until(lambda: "role STANDBY" in standby.output(), f"{standby_id} to stand by")
        say(f"{stamp()} coordinator {standby_id} is a hot standby (pid {standby.proc.pid})")
        await self.until(lambda: rest_url(standby.output()) is not None, "the REST addresses")
        say(
            f"{stamp()} REST API and dashboard: {rest_url(leader.output())} (leader), "
            f"{rest_url(standby.output())} (standby)"
        )

    async def cancel_stale_jobs(self) -> None:
        """Jobs an earlier demo run left unfinished (killed, not stopped) hold slots: cancel."""
        assert self.follower is not None and self.settings is not None
        stale = [
            job.job_id
            for job in self.follower.state.jobs.values()
            if job.job_id.startswith(JOB_PREFIX) and not job.status.is_globally_terminal
        ]
        if not stale:
            return
        say(f"{stamp()} cancelling {len(stale)} job(s) an earlier run left behind: "
            f"{', '.join(stale)}")  # fmt: skip
        for job_id in stale:
            await client.produce(self.settings, client.cancel_request(job_id, "make demo"))
        limit = time.monotonic() + 30

        def gone() -> bool:
            left = [j for j in stale if not _terminal(self.job_status(j))]
            return not left or time.monotonic() > limit

        await self.until(gone, "earlier jobs to be cancelled")
        left = [j for j in stale if not _terminal(self.job_status(j))]
        if left:
            say(f"{stamp()} WARNING: still not cancelled after 30s: {', '.join(left)}")
        else:
            say(f"{stamp()} cancelled")

    async def start_workers(self) -> None:
        for tm in WORKERS:
            self.spawn(tm, "worker", ["worker", "--slots", str(WORKER_SLOTS), "--id", tm])
        await self.until(lambda: self.joined >= set(WORKERS), "both workers to join")
        say(f"{stamp()} workers {' and '.join(WORKERS)} joined, "
            f"{WORKER_SLOTS} slots each")  # fmt: skip

    def history_port(self) -> int:
        """Where ``jm history`` listens: after the coordinators' ports (base 0: a free
        port, chosen once), known before it starts so the coordinators can relay it."""
        if self._history_port is None:
            self._history_port = rest_port(len(COORDINATORS) + 1, self.rest_base)
            if not self._history_port:
                with socket.create_server(("127.0.0.1", 0)) as probe:
                    self._history_port = int(probe.getsockname()[1])
        return self._history_port

    def history_url(self) -> str:
        """The coordinators relay it from the start (``--history-url``); their dashboards
        list archived jobs from it once it answers."""
        return f"http://127.0.0.1:{self.history_port()}"

    async def start_history(self) -> None:
        """``jm history`` (docs/history.md): serves the job once it ended."""
        port = self.history_port()
        history = self.spawn("history", "history", ["history", "--port", str(port)])
        await self.until(lambda: "history http://" in history.output(), "the history server")
        url = history.output().split("history http://", 1)[1].split()[0]
        say(f"{stamp()} history server (ended jobs, Flink HistoryServer paths): http://{url}")

    async def submit(self) -> None:
        assert self.settings is not None and self.catalog is not None
        job_id = f"{JOB_PREFIX}{datetime.now(UTC):%Y%m%d-%H%M%S}-{uuid.uuid4().hex[:4]}"
        try:
            event = load_job_file(self.args.job, event_time=client.now_ms())
        except JobGraphInvalid as err:
            raise DemoFailure(str(err)) from None
        vertices = []
        for vertex in event.job_graph.vertices:
            config = dict(vertex.config)
            if vertex.operator == "kafka_sink":
                config["topic"] = self.sink_topic
            if config.get("function") == "mod_key":
                self.keys_expected = int(config.get("n", "10"))
            vertices.append(dataclasses.replace(vertex, config=config))
        graph = dataclasses.replace(event.job_graph, vertices=tuple(vertices))
        event = dataclasses.replace(event, job_id=job_id, job_graph=graph)
        problems = validate_job_submitted(event)
        if problems:
            raise DemoFailure("; ".join(problems))
        # The results start where the sink topic ends now.
        found = await kafkaio.describe_topics(self.settings.bootstrap_servers, [self.sink_topic])
        partitions = found[self.sink_topic].partitions
        consumer = kafkaio.consumer(self.settings.bootstrap_servers)
        await consumer.start()
        try:
            tps = [TopicPartition(self.sink_topic, p) for p in range(partitions)]
            ends = await consumer.end_offsets(tps)
        finally:
            await consumer.stop()
        self.results = Results(
            self.settings.bootstrap_servers, self.sink_topic,
            {tp.partition: int(ends[tp]) for tp in tps},
        )  # fmt: skip
        self.job = event
        partition, offset = await client.produce(self.settings, event)
        say(f"{stamp()} submitted {job_id} ({self.args.job.name}) to "
            f"{self.catalog.submissions.name}[{partition}]@{offset}")  # fmt: skip
        self.background.append(asyncio.create_task(self.results.run(), name="results"))

    async def show_running(self) -> None:
        assert self.job is not None
        job_id = self.job.job_id
        event_id = self.job.event_id

        def running() -> bool:
            if event_id in self.rejections:
                raise DemoFailure(f"job {job_id} rejected: {self.rejections[event_id]}")
            assert self.follower is not None
            job = self.follower.state.jobs.get(job_id)
            if job is None:
                return False
            if job.status.is_globally_terminal:
                raise DemoFailure(f"job {job_id} ended as {job.status} before it ran")
            tasks = job.executions.values()
            return job.status == ev.JobStatus.RUNNING and all(
                e.state == ev.ExecutionState.RUNNING for e in tasks
            )

        await self.until(running, f"job {job_id} to be RUNNING with every task running")
        say()
        self.show(f"jm status {job_id}", await self.jm_async("status", job_id, "--events", "6"))
        self.show("jm replicas", await self.jm_async("replicas"))
        if not self.ci:
            assert self.settings is not None
            st = self.settings
            say("\nMeanwhile, in another shell:")
            say(f"  export KAFKA_BOOTSTRAP_SERVERS={st.bootstrap_servers} "
                f"REDIS_URL={st.redis_url} JM_CLUSTER_ID={st.cluster_id}")  # fmt: skip
            say(f"  .venv/bin/jm list; .venv/bin/jm status {job_id}; .venv/bin/jm replicas")
            say("  .venv/bin/jm events tail --topic journal")
            say(f"  kcat -b {st.bootstrap_servers} -C -t {self.sink_topic} -f 'key=%k %s\\n'")
            say(f"  tail -f {self.log_dir}/*.log")
        say()

    def results_check(self) -> None:
        status = self.job_status(self.job.job_id) if self.job else None
        if status is not None and status.is_globally_terminal:
            raise DemoFailure(f"job {self.job.job_id if self.job else '?'} ended as {status}")

    async def watch_results(self) -> None:
        assert self.results is not None and self.job is not None
        results = self.results
        say(f"{stamp()} results from {self.sink_topic} (latest count per key"
            + ("" if self.ci else "; Ctrl-C stops the demo") + ")")  # fmt: skip
        tty = sys.stdout.isatty() and not self.ci
        drawn = drawn_at = 0
        last_records = 0
        last_time = time.monotonic()
        while True:
            await asyncio.sleep(1.0 if not self.ci else 0.5)
            self.results_check()
            now = time.monotonic()
            rate = (results.records - last_records) / max(now - last_time, 1e-6)
            if self.ci:
                if self.ci_done():
                    return
                if self.remaining() <= 0:
                    raise DemoFailure(
                        f"timed out after {self.timeout:.0f}s: {results.records} results, "
                        f"keys {sorted(results.counts, key=_order)} of {self.keys_expected}"
                    )
                if now - last_time >= 2.0:
                    say(f"{stamp()} {results.records} results, {len(results.counts)} keys")
                    last_records, last_time = results.records, now
                continue
            lines = [f"{stamp()} {results.records} results ({rate:.0f}/s), "
                     f"{len(results.counts)} keys, total count "
                     f"{sum(results.counts.values())}", *results.table()]  # fmt: skip
            if tty and drawn and _said[0] == drawn_at:
                sys.stdout.write(f"\x1b[{drawn}F\x1b[J")
            say("\n".join(lines))
            drawn, drawn_at = len(lines), _said[0]
            last_records, last_time = results.records, now

    def ci_done(self) -> bool:
        assert self.results is not None
        return (
            self.results.records >= self.args.min_results
            and len(self.results.counts) >= self.keys_expected
        )

    # ------------------------------------------------------------ shutdown

    async def cancel_job(self) -> None:
        if self.job is None or self.settings is None:
            return
        job_id = self.job.job_id
        status = self.job_status(job_id)
        if status is not None and status.is_globally_terminal:
            self.job_final = status
            return
        request = client.cancel_request(job_id, requested_by="make demo")
        try:
            await asyncio.wait_for(client.produce(self.settings, request), 10)
        except Exception as err:
            say(f"{stamp()} could not request the cancel of {job_id}: {err!r}")
            return
        say(f"{stamp()} cancel requested for {job_id} (JobCancelRequested {request.event_id})")
        limit = time.monotonic() + (3 if self.hurry else 20)
        while time.monotonic() < limit and not self.hurry:
            status = self.job_status(job_id)
            if _terminal(status):
                break
            await asyncio.sleep(0.1)
        self.job_final = self.job_status(job_id)
        say(f"{stamp()} job {job_id} is {self.job_final}")
        if _terminal(self.job_final) and not self.hurry and not self.failed:
            await self.show_archived(job_id)

    async def show_archived(self, job_id: str) -> None:
        """The ended job as the leader relays it from the history server (its
        dashboard's Archived jobs page lists it)."""
        leader = next((c for c in self.children if c.kind == "coordinator"), None)
        base = None if leader is None else rest_url(leader.output())
        if base is None:
            return
        url = f"{base}/history/jobs/{job_id}"
        why = ""
        limit = time.monotonic() + 10
        while time.monotonic() < limit:
            try:
                answer = await asyncio.to_thread(_get_json, url)
                say(f"{stamp()} job {job_id} archived by the history server "
                    f"({answer.get('state')}), relayed at {url}; the dashboard lists it at "
                    f"{base}/#/archive")  # fmt: skip
                return
            except Exception as err:  # not archived yet, or the history server not up
                why = str(err)
            await asyncio.sleep(0.3)
        say(f"{stamp()} job {job_id} not in the archive at {url}: {why}")

    async def shutdown(self) -> list[str]:
        """Cancel the job, stop the children (workers, standby, leader). Returns warnings."""
        warnings: list[str] = []
        if any(c.proc.poll() is None for c in self.children if c.kind == "coordinator"):
            await self.cancel_job()
        archives = [c for c in self.children if c.kind == "history"]
        for child in archives:
            child.terminate()
        reports: list[tuple[Child, str]] = []
        if archives:
            done = await asyncio.gather(*(c.finish(3.0) for c in archives))
            reports += zip(archives, done, strict=True)
        workers = [c for c in self.children if c.kind == "worker"]
        # The standby first, so it does not take over when the leader goes.
        coordinators = [c for c in reversed(self.children) if c.kind == "coordinator"]
        if workers:
            say(f"{stamp()} stopping workers {', '.join(c.name for c in workers)} (SIGTERM)")
            for child in workers:
                child.terminate()
            grace = 3.0 if self.hurry else 15.0
            done = await asyncio.gather(*(c.finish(grace) for c in workers))
            reports += zip(workers, done, strict=True)
        if coordinators:
            say(f"{stamp()} stopping coordinators {', '.join(c.name for c in coordinators)} "
                "(SIGTERM, the standby first)")  # fmt: skip
            for child in coordinators[:-1]:
                child.terminate()
                await wait_until(child.stopped_role, 1.0 if self.hurry else 5.0)
            coordinators[-1].terminate()
            grace = 3.0 if self.hurry else 10.0
            done = await asyncio.gather(*(c.finish(grace) for c in coordinators))
            reports += zip(coordinators, done, strict=True)
        for child, report in reports:
            say(f"  {report}")
            if not child.clean:
                warnings.append(report.strip())
        for task in self.background:
            task.cancel()
        for task in self.background:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        if self.follower is not None:
            with contextlib.suppress(Exception):
                await self.follower.stop()
        return warnings

    def print_logs(self) -> None:
        for child in self.children:
            say(f"--- {child.log} (last lines)")
            say(tail(child.log))


def _terminal(status: ev.JobStatus | None) -> bool:
    return status is not None and status.is_globally_terminal


async def amain(args: argparse.Namespace) -> int:
    demo = Demo(args)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, demo.on_signal, sig)
    mode = "CI mode: runs until every key has results, then stops" if args.ci else "interactive"
    say(f"{stamp()} kafka-jobmanager demo ({mode}); logs in {demo.log_dir}/")
    steps = asyncio.create_task(demo.steps(), name="steps")
    watch = asyncio.create_task(demo.watchdog(), name="watchdog")
    stop = asyncio.create_task(demo.wait_for_stop(), name="stop")
    await asyncio.wait({steps, watch, stop}, return_when=asyncio.FIRST_COMPLETED)
    failure: BaseException | None = None
    interrupted = stop.done() and not steps.done() and not watch.done()
    for task in (steps, watch):
        if task.done() and not task.cancelled() and task.exception() is not None:
            failure = task.exception()
    for task in (steps, watch, stop):
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await task
    if failure is not None and not isinstance(failure, DemoFailure):
        failure = DemoFailure(f"{type(failure).__name__}: {failure}")
    summary: str | None = None
    if failure is None and not interrupted and demo.results is not None and demo.job is not None:
        r = demo.results
        took = time.monotonic() - demo.started
        summary = (f"demo: OK job {demo.job.job_id}: {r.records} results for "
                   f"{len(r.counts)} keys in {took:.1f}s: {r.line()}")  # fmt: skip
    if failure is not None:
        say(f"\n{stamp()} demo FAILED: {failure}")
    say()
    demo.failed = failure is not None
    warnings = await demo.shutdown()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.remove_signal_handler(sig)
    if demo.stack_note:
        say(demo.stack_note)
    if failure is not None:
        demo.print_logs()
        say(f"demo: FAILED: {failure}")
        return EXIT_FAILED
    for warning in warnings:
        say(f"WARNING: {warning} (logs: {demo.log_dir}/)")
    if summary is not None:
        if demo.job_final is not None:
            summary += f"; job {demo.job_final}"
        say(summary)
        return 0
    if args.ci:
        say("demo: interrupted before the results arrived")
        return EXIT_INTERRUPTED
    say("demo: stopped")
    return 0


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="make demo", description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    p.add_argument("--ci", action="store_true", default=os.environ.get("CI", "") == "true",
                   help="stop once the results arrived (default when CI=true)")  # fmt: skip
    p.add_argument("--timeout", type=float, default=120.0,
                   help="seconds for everything up to the results (default 120)")  # fmt: skip
    p.add_argument("--min-results", type=int, default=1000,
                   help="--ci: result records needed, and every key (default 1000)")  # fmt: skip
    p.add_argument("--rest-port", type=int,
                   default=int(os.environ.get("JM_DEMO_REST_PORT") or REST_BASE_PORT),
                   help="replica N serves REST on this port + N - 1 (default "
                   "$JM_DEMO_REST_PORT or 8081; 0: free ports)")  # fmt: skip
    p.add_argument("--job", type=Path, default=JOB_FILE, help=argparse.SUPPRESS)
    p.add_argument("--log-dir", default=os.environ.get("JM_DEMO_LOG_DIR") or REPO / ".local/demo",
                   help="where the children's logs go (default .local/demo)")  # fmt: skip
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    return asyncio.run(amain(args))


if __name__ == "__main__":
    sys.exit(main())
