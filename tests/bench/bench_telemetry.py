"""Benchmark: what telemetry costs the leader when it is on.

The latency benchmark's set-up (bench_latency: one real ``jm coordinator``, 4 simulated
workers of 8 slots in ``tests.bench.fleet``, a client producing JobSubmitted and
watching the journal), run in rounds that alternate telemetry off and on, so a change
of the machine's load falls on both alike. On: the coordinator exports spans and
metrics to a JSON-lines file (``--otel-file``, metrics every second) and serves a
Prometheus endpoint (``--otel-prometheus-port 0``, not scraped). Measured per round:
submission to every task RUNNING (p50, p95) of paced jobs, and the leader's CPU per
job. Real: Kafka, Redis, the coordinator, the exporters. Simulated: the workers.
"""

from __future__ import annotations

import asyncio
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

from tests.bench import bench_latency
from tests.conftest import Stack


async def run(stack: Stack, jobs: int = 40, rounds: int = 2, rate: float = 10.0) -> dict[str, Any]:
    out: dict[str, list[dict[str, Any]]] = {"off": [], "on": []}
    home = Path(tempfile.mkdtemp(prefix="jm-bench-telemetry-"))
    for n in range(rounds):
        for on in (False, True):
            extra = ((
                "--otel-file", str(home / f"round-{n}.jsonl"),
                "--otel-metrics-interval-ms", "1000", "--otel-prometheus-port", "0",
            ) if on else ())  # fmt: skip
            [r] = await bench_latency.run(stack, jobs, rate, extra=extra, modes=("paced",))
            r["telemetry_file_bytes"] = (home / f"round-{n}.jsonl").stat().st_size if on else 0
            out["on" if on else "off"].append(r)

    def p50(rows: list[dict[str, Any]], key: str) -> float:
        return float(statistics.median(r["all_running"][key] for r in rows))

    return {
        "bench": "telemetry",
        "jobs_per_round": jobs,
        "rounds": rounds,
        "rate_per_s": rate,
        "off": {"all_running_p50_ms": p50(out["off"], "p50_ms"),
                "all_running_p95_ms": p50(out["off"], "p95_ms"),
                "leader_cpu_pct": statistics.median(r["leader_cpu_pct"] for r in out["off"])},
        "on": {"all_running_p50_ms": p50(out["on"], "p50_ms"),
               "all_running_p95_ms": p50(out["on"], "p95_ms"),
               "leader_cpu_pct": statistics.median(r["leader_cpu_pct"] for r in out["on"]),
               "file_bytes": [r["telemetry_file_bytes"] for r in out["on"]]},
        "rows": out,
    }  # fmt: skip


if __name__ == "__main__":
    import json
    import os

    stack = Stack(os.environ["KAFKA_BOOTSTRAP_SERVERS"], os.environ["REDIS_URL"], "env")
    jobs = int(sys.argv[1]) if len(sys.argv) > 1 else 40
    rounds = int(sys.argv[2]) if len(sys.argv) > 2 else 2
    print(json.dumps(asyncio.run(run(stack, jobs, rounds))))
