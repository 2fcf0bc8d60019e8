"""The benchmark suite (``make bench``): measures, prints JSON lines, rewrites docs/benchmarks.md.

    python -m tests.bench.run [--only codec|signing|replay|txn|latency|takeover|handover|coldstart|
                               workerkill|heartbeats|cli|ckpt-trigger|ckpt-demo|
                               ckpt-throughput|ckpt-kill|rest|usercode|memory|deploy|
                               history|telemetry ...] [--quick] [--no-docs]

Starts its own Kafka + Redis with the project's launcher (instance ``bench``
under /tmp/jm-bench, free ports, purged afterwards). Benchmarks are not
tests: nothing here fails on a slow figure. docs/benchmarks.md is rewritten
only after a full run (all benchmarks, not ``--quick``) unless ``--docs``.
"""

from __future__ import annotations

import argparse
import asyncio
import compileall
import datetime
import json
import os
import platform
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from schemas.codec import default_codec
from tests.bench import (
    bench_checkpoints,
    bench_cli,
    bench_codec,
    bench_deploy,
    bench_ha,
    bench_history,
    bench_keyed,
    bench_latency,
    bench_memory,
    bench_replay,
    bench_rest,
    bench_signing,
    bench_telemetry,
    bench_txn,
    bench_usercode,
    bench_workers,
)
from tests.conftest import Stack

REPO = Path(__file__).resolve().parents[2]
LAUNCHER = [sys.executable, str(REPO / "compose" / "local" / "launcher.py"),
            "--name", "bench", "--home", "/tmp/jm-bench"]  # fmt: skip
DOC = REPO / "docs" / "benchmarks.md"
RESULTS = Path("/tmp/jm-bench-results.json")  # the last run, to re-render the page
NAMES = ("codec", "signing", "replay", "txn", "latency", "takeover", "handover", "coldstart",
         "workerkill", "heartbeats", "cli", "ckpt-trigger", "ckpt-demo", "ckpt-throughput",
         "ckpt-kill", "rest", "usercode", "memory", "deploy", "history",
         "telemetry", "keyed")  # fmt: skip
TTLS = [3000, 1500, 1000, 500]
FLEETS = [1000, 2000, 4000, 8000, 16000, 32000]

Results = dict[str, Any]


def emit(result: dict[str, Any]) -> None:
    print(json.dumps(result), flush=True)


def machine() -> dict[str, str]:
    cpu = "unknown"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    libs = subprocess.run([*LAUNCHER, "libs"], check=False, capture_output=True, text=True).stdout
    kafka = re.search(r"kafka-(\d+\.\d+\.\d+)", libs)
    import aiokafka
    import fastavro

    mem_kb = int(Path("/proc/meminfo").read_text().split()[1])
    return {
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "cpu": f"{os.cpu_count()} cores, {cpu}",
        "memory": f"{mem_kb / 1024 / 1024:.0f} GiB",
        "os": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "kafka": f"Apache Kafka {kafka.group(1) if kafka else '?'}, local KRaft single node "
        "(compose/local/launcher.py), 127.0.0.1",
        "clients": f"aiokafka {aiokafka.__version__}, fastavro {fastavro.__version__}",
    }


def codec(seconds: float) -> list[Results]:
    c = default_codec()
    event = bench_codec.sample()
    value, headers = c.encode(event)
    allowed = frozenset({type(event)})
    out = []
    for name, fn in (
        ("encode", lambda: c.encode(event)),
        ("decode", lambda: c.decode(value, allowed)),
    ):
        per_second, _ = bench_codec.rate(fn, seconds)
        out.append({"bench": "codec", "op": name, "event": "TaskStateChanged",
                    "per_second": round(per_second), "us_per_op": round(1e6 / per_second, 3),
                    "value_bytes": len(value), "headers": len(headers)})  # fmt: skip
    return out


def start_stack() -> Stack:
    up = subprocess.run([*LAUNCHER, "up", "--ports", "auto", "--json"], capture_output=True,
                        text=True, check=True)  # fmt: skip
    info = json.loads(up.stdout.strip().splitlines()[-1])
    # Records are signed in the benchmarks as in production: the instance's key file.
    os.environ["JM_SIGNING_KEYS_FILE"] = info["signing_keys"]
    return Stack(info["bootstrap"], info["redis_url"], f"launcher:{info['home']}")


def stop_stack() -> None:
    subprocess.run([*LAUNCHER, "down", "--purge"], check=False, capture_output=True, text=True)


async def keyed(stack: Stack, quick: bool) -> list[dict[str, Any]]:
    """The data-plane job: a probe run sizes N for a run of at least 20 s (5 s quick);
    then the same job paced, for the latency source -> sink: at half the 200,000
    records/s of issue 21's target (100,000/s) and at half the rate this run reached,
    each once the machine has settled (``bench_keyed.settle``); then a profiled run for
    the breakdown (py-spy slows the slots: its rate is not quoted)."""
    seconds, probe_n = (5, 50_000) if quick else (20, 200_000)
    probe = await bench_keyed.run(stack, probe_n)
    n = max(probe_n, int(probe["records_per_s"] * seconds))
    full = await bench_keyed.run(stack, n) if n > probe_n else probe
    if full["seconds"] < seconds:  # the short probe ran below the steady rate: size again
        n = int(n * seconds / full["seconds"] * 1.1)
        full = await bench_keyed.run(stack, n)
    rows = [full | {"run": "throughput"}]
    for name, rate in (("half the target", bench_keyed.TARGET_RATE / 2),
                       ("half rate", full["records_per_s"] / 2)):  # fmt: skip
        idle = bench_keyed.settle()
        paced = await bench_keyed.run(stack, max(1_000, int(rate * seconds)), rate=rate)
        rows.append(paced | {"run": name, "busy_before": idle})
    if bench_keyed.can_profile():
        profiled = await bench_keyed.run(stack, probe_n, profile=True)
        rows.append(profiled | {"run": "profiled"})
    else:
        print("keyed: no py-spy here (pip install py-spy): no breakdown", file=sys.stderr)
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--only", nargs="+", choices=NAMES, default=list(NAMES))
    parser.add_argument("--quick", action="store_true",
                        help="100,000 journal events, 100 jobs, shorter HA windows")  # fmt: skip
    parser.add_argument("--events", type=int, default=None, help="journal events for replay")
    parser.add_argument("--jobs", type=int, default=None, help="jobs per latency mode")
    parser.add_argument("--docs", action="store_true", help="rewrite docs even if partial")
    parser.add_argument("--no-docs", action="store_true", help="never rewrite docs")
    args = parser.parse_args()
    events = args.events or (100_000 if args.quick else 1_000_000)
    jobs = args.jobs or (100 if args.quick else 500)
    started = time.monotonic()
    results: dict[str, list[Results]] = {}
    # The processes measured run with their bytecode compiled, as installed ones do
    # (`make install` does the same; here for a run started without make).
    for package in ("coordinator", "worker", "schemas"):
        compileall.compile_dir(REPO / package, quiet=1)
    info = machine()
    emit({"bench": "machine", **info})
    if "codec" in args.only:
        results["codec"] = codec(1.5 if args.quick else 3.0)
        for r in results["codec"]:
            emit(r)
    if "signing" in args.only:
        results["signing"] = bench_signing.measure(1.5 if args.quick else 3.0)
        for r in results["signing"]:
            emit(r)
    kafka_needed = [n for n in args.only if n not in ("codec", "signing")]
    if kafka_needed:
        stack = start_stack()
        emit({"bench": "stack", "bootstrap": stack.bootstrap, "redis_url": stack.redis_url})
        kafka_data = Path("/tmp/jm-bench/bench/kafka/data")
        try:
            if "memory" in args.only:
                # The folds in a process, then a running coordinator holding each size.
                results["memory"] = [bench_memory.run(stack=stack)]
                emit(results["memory"][0])
            if "replay" in args.only:
                results["replay"] = [
                    asyncio.run(bench_replay.run(stack.bootstrap, events, kafka_data))
                ]
                emit(results["replay"][0])
            if "txn" in args.only:
                results["txn"] = asyncio.run(
                    bench_txn.run(stack.bootstrap, 50 if args.quick else 100)
                )
                for r in results["txn"]:
                    emit(r)
            if "latency" in args.only:
                results["latency"] = asyncio.run(bench_latency.run(stack, jobs, 20.0))
                # The cost of signed records: the same, the coordinator unsigned.
                results["latency"] += asyncio.run(
                    bench_latency.run(stack, jobs, 20.0, unsigned=True)
                )
                for r in results["latency"]:
                    emit(r)
            if "takeover" in args.only:
                quiet, kills = (15.0, 3) if args.quick else (45.0, 5)
                results["takeover"] = []
                for ttl in TTLS:
                    r = asyncio.run(bench_ha.takeover(stack, [ttl], quiet, kills))[0]
                    results["takeover"].append(r)
                    emit(r)
            if "handover" in args.only:
                results["handover"] = [
                    asyncio.run(bench_ha.graceful(stack, 3 if args.quick else 5))
                ]
                emit(results["handover"][0])
            if "coldstart" in args.only:
                results["coldstart"] = [asyncio.run(bench_ha.cold_start(stack, events))]
                emit(results["coldstart"][0])
            if "workerkill" in args.only:
                results["workerkill"] = [
                    asyncio.run(bench_workers.worker_kill(stack, 2 if args.quick else 3))
                ]
                emit(results["workerkill"][0])
            if "heartbeats" in args.only:
                warmup, window = (3.0, 10.0) if args.quick else (5.0, 20.0)
                sizes = FLEETS[:3] if args.quick else FLEETS
                results["heartbeats"] = asyncio.run(
                    bench_workers.heartbeats(stack, sizes, warmup, window)
                )
                for r in results["heartbeats"]:
                    emit(r)
            if "cli" in args.only:
                # The replay benchmark's journal when this run wrote one: no second 1M write.
                reuse = results["replay"][0]["cluster_id"] if "replay" in results else None
                results["cli"] = [bench_cli.run(stack.bootstrap, events, reuse)]
                emit(results["cli"][0])
            if "ckpt-trigger" in args.only:
                n = 20 if args.quick else 60
                results["ckpt-trigger"] = [
                    asyncio.run(bench_checkpoints.trigger_protocol(stack, 256, n)),
                    asyncio.run(bench_checkpoints.trigger_real(stack, 16, n)),
                ]
                for r in results["ckpt-trigger"]:
                    emit(r)
            if "ckpt-demo" in args.only:
                n = 10 if args.quick else 20
                results["ckpt-demo"] = [asyncio.run(bench_checkpoints.demo(stack, n))]
                emit(results["ckpt-demo"][0])
            if "ckpt-throughput" in args.only:
                # Long enough for several checkpoints a run: 5,000,000 records of the
                # keyed job take 12-16 s (4-6 checkpoints of 1.5-3 s), 1,000,000 of the
                # distinct-key one 5-8 s. The data-plane bench's keyed job, then one whose
                # state grows by a key per record (bench_checkpoints.THROUGHPUT_JOBS).
                # Three pairs: one run's rate moves by 10-20% on this machine.
                shapes = {"keyed": 200_000, "distinct": 200_000} if args.quick else {
                    "keyed": 5_000_000, "distinct": 1_000_000}  # fmt: skip
                pairs = 1 if args.quick else 3
                results["ckpt-throughput"] = [
                    asyncio.run(bench_checkpoints.throughput(stack, n, pairs, shape))
                    for shape, n in shapes.items()
                ]
                for r in results["ckpt-throughput"]:
                    emit(r)
            if "ckpt-kill" in args.only:
                results["ckpt-kill"] = [
                    asyncio.run(bench_checkpoints.kill(stack, 1 if args.quick else 2))
                ]
                emit(results["ckpt-kill"][0])
            if "rest" in args.only:
                n = 100 if args.quick else 1000
                results["rest"] = asyncio.run(bench_rest.run(stack, n))
                for r in results["rest"]:
                    emit(r)
            if "usercode" in args.only:
                results["usercode"] = asyncio.run(bench_usercode.run(stack, 3 if args.quick else 5))
                emit(results["usercode"][0])
            if "deploy" in args.only:
                n = 8 if args.quick else 15
                results["deploy"] = [
                    asyncio.run(bench_deploy.run(stack, n)),
                    asyncio.run(bench_deploy.run(stack, n, chaining=False)),
                    asyncio.run(bench_deploy.run(stack, n, simulated=True)),
                ]
                # Seconds of records, not a fraction of one: the span runs from the last
                # RUNNING the journal records, which comes 0.1 s after the data flows.
                records = 200_000 if args.quick else 2_000_000
                results["deploy"] += [
                    asyncio.run(bench_deploy.throughput(stack, records, chaining=chaining))
                    for chaining in (None, False)
                ]
                for r in results["deploy"]:
                    emit(r)
            if "telemetry" in args.only:
                n = 20 if args.quick else 40
                results["telemetry"] = [
                    asyncio.run(bench_telemetry.run(stack, n, 2 if args.quick else 3))
                ]
                emit(results["telemetry"][0])
            if "keyed" in args.only:
                results["keyed"] = asyncio.run(keyed(stack, args.quick))
                for r in results["keyed"]:
                    emit(r)
            if "history" in args.only:
                n = 500 if args.quick else 10_000
                results["history"] = [asyncio.run(bench_history.run(stack.bootstrap, n))]
                emit(results["history"][0])
        finally:
            stop_stack()
    total = time.monotonic() - started
    RESULTS.write_text(json.dumps({"machine": info, "results": results, "total_s": total}))
    emit({"bench": "total", "seconds": round(total, 1)})
    full = set(args.only) == set(NAMES) and not args.quick
    if not args.no_docs and (full or args.docs):
        from tests.bench.report import render

        DOC.write_text(render(info, results, total, quick=args.quick))
        print(f"wrote {DOC.relative_to(REPO)}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
