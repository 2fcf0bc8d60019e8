"""Benchmark: first-deploy overhead of a job whose operator comes in a 1 MB wheel.

Real: a coordinator (``python -m coordinator coordinator``) and one worker
(``python -m worker``, 2 slots, a fresh artifact cache) of a fresh cluster on
the bench broker; the blob store is the cluster's Kafka state topic. Per round:

1. ``builtin``: a one-vertex job running the installed operator ``sequence``
   (``count: 1``), from the send of its JobSubmitted to its task's FINISHED in
   the journal.
2. ``upload``: a fresh pure-Python wheel of about 1 MB (``bench_seq``, the same
   ``Sequence`` class as the built-in, plus incompressible padding so every
   round's sha256 is new) stored as ``jm submit --code`` stores it.
3. ``first``: the same job with ``bench_seq`` from that wheel: the worker
   fetches, verifies and unpacks the wheel, the slot process imports it, the
   task runs, then the slot is given a fresh interpreter.
4. ``cached``: that job again under another id: the wheel is installed already.

After each job of the wheel the slot that ran it is given a fresh interpreter
(in the background); the bench waits ``SETTLE_S`` before the next job so that
start is in no figure (on a loaded machine it takes seconds).

``first - builtin`` is the first-deploy overhead. Nothing is simulated; the
figures are those of a loaded shared machine when it is one (see the load).
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from coordinator import usercode
from schemas import events as ev
from schemas import kafkaio
from schemas.catalog import Catalog
from schemas.wheels import build
from tests.bench.bench_latency import percentiles
from tests.conftest import Stack, run_keys
from tests.integration.harness import CoordinatorProcess, Journal, Producer, now_ms
from tests.integration.usercode_pkg import write_package
from tests.worker.harness import WorkerProcess

#: After a job of the wheel: time for its slot's fresh interpreter to start.
SETTLE_S = 15.0
#: Random hex padding: the deflated wheel is about half of it.
PADDING = 2_000_000
SEQ = """
from worker.operators.builtins import Sequence as Seq  # the built-in's class, from the wheel
"""


def _job(job_id: str, operator: str) -> ev.JobSubmitted:
    vertex = ev.Vertex(id="v", name="v", operator=operator, parallelism=1, config={"count": "1"})
    graph = ev.JobGraph(vertices=(vertex,), edges=())
    return ev.JobSubmitted(
        event_id=uuid.uuid4().hex, event_time=now_ms(), job_id=job_id, name=job_id, job_graph=graph
    )


def _finished(events: list[tuple[int, ev.Event]], job_id: str) -> bool:
    return any(
        isinstance(e, ev.TaskStateRecorded)
        and e.task.job_id == job_id
        and e.state is ev.ExecutionState.FINISHED
        for _, e in events
    )


async def _run_job(client: Producer, journal: Journal, job: ev.JobSubmitted) -> float:
    started = time.perf_counter()
    await client.send(job)
    await journal.wait_until(lambda es: _finished(es, job.job_id), seconds=120)
    return (time.perf_counter() - started) * 1000


def _wheel(root: Path) -> tuple[bytes, str]:
    project = write_package(root, "1.0", name="bench-seq", padding_bytes=PADDING)
    pyproject = project / "pyproject.toml"
    pyproject.write_text(
        pyproject.read_text().replace(
            'probe = "jm_probe_ops:Probe"', 'bench_seq = "jm_probe_ops:Seq"'
        )
    )
    init = project / "jm_probe_ops" / "__init__.py"
    init.write_text(init.read_text() + SEQ)
    return build(project)


async def run(stack: Stack, rounds: int) -> list[dict[str, Any]]:
    catalog = Catalog(f"bench-code-{uuid.uuid4().hex[:8]}")
    tmp = Path(tempfile.mkdtemp(prefix="jm-bench-code-"))
    await kafkaio.create_topics(stack.bootstrap, catalog)
    coordinator = CoordinatorProcess(stack, catalog, "c1")
    worker: WorkerProcess | None = None
    figures: dict[str, list[float]] = {"builtin": [], "upload": [], "first": [], "cached": []}
    sizes: list[int] = []
    try:
        await coordinator.wait_for_line("role LEADER", 60)
        worker = WorkerProcess(stack.bootstrap, catalog, "tm-1", "--slots", "2",
                               "--artifact-cache-dir", str(tmp / "cache"))  # fmt: skip
        async with Producer(stack, catalog) as client, Journal(stack, catalog) as journal:
            await journal.wait_until(
                lambda es: any(isinstance(e, ev.TaskManagerJoined) for _, e in es), seconds=60
            )
            await _run_job(client, journal, _job("warmup", "sequence"))
            for n in range(rounds):
                figures["builtin"].append(
                    await _run_job(client, journal, _job(f"b{n}", "sequence"))
                )
                data, filename = _wheel(tmp / f"pkg-{n}")
                sizes.append(len(data))
                started = time.perf_counter()
                ref = await usercode.upload(data, filename, store_url="kafka", catalog=catalog,
                                            bootstrap=stack.bootstrap, keys=run_keys())  # fmt: skip
                figures["upload"].append((time.perf_counter() - started) * 1000)
                for kind in ("first", "cached"):
                    job = dataclasses.replace(_job(f"{kind}{n}", "bench_seq"), artifact=ref)
                    figures[kind].append(await _run_job(client, journal, job))
                    # The slot that ran the wheel's code gets a fresh interpreter: let it
                    # start before the next job, so no figure includes that start.
                    await asyncio.sleep(SETTLE_S)
    finally:
        if worker is not None:
            await worker.close()
        coordinator.stop()
    overhead = [f - b for f, b in zip(figures["first"], figures["builtin"], strict=True)]
    return [{
        "bench": "usercode", "rounds": rounds, "wheel_bytes": max(sizes) if sizes else 0,
        "load": os.getloadavg()[0],
        **{f"{k}_ms": percentiles(v) for k, v in figures.items()},
        "overhead_ms": percentiles(overhead),
        "samples_ms": {k: [round(x) for x in v] for k, v in figures.items()},
    }]  # fmt: skip
