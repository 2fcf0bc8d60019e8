"""Benchmark: what signed records cost the codec (issue 14, item 3).

Encode, sign alone (HMAC-SHA256 over topic, key and value into the ``jm-sig``
header), encode and sign; decode, verify alone, decode and verify; for a small
report (TaskStateChanged) and a large input (a JobSubmitted of 64 vertices).
Best of five rounds on one core. Not a test. Prints one JSON object per line.

    .venv/bin/python -m tests.bench.bench_signing [--seconds 2]
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable
from functools import partial
from typing import Any

from schemas import codec, signing
from schemas import events as ev
from tests.bench.bench_codec import sample as small_sample


def large_sample() -> ev.JobSubmitted:
    vertices = tuple(
        ev.Vertex(id=f"v{i}", name=f"vertex {i}", operator="sequence", parallelism=4,
                  max_parallelism=128, config={"count": "1000", "note": "x" * 64})
        for i in range(64)
    )  # fmt: skip
    edges = tuple(ev.Edge(source=f"v{i}", target=f"v{i + 1}") for i in range(63))
    return ev.JobSubmitted(
        event_id="3f0c3c5e1b1a4c7e9a511b2c3d4e5f60", event_time=1_732_240_000_000,
        job_id="job-large", name="large", job_graph=ev.JobGraph(vertices=vertices, edges=edges),
        restart_strategy=ev.RestartStrategy(kind=ev.RestartStrategyKind.NONE),
    )  # fmt: skip


def best_rate(fn: Callable[[], object], seconds: float, rounds: int = 5) -> float:
    """Calls per second of `fn`: the best of `rounds` rounds (a loaded machine steals
    time from some rounds; the best one is the least disturbed)."""
    n = 1
    while True:  # calls per round: about seconds / rounds each
        start = time.perf_counter()
        for _ in range(n):
            fn()
        if (elapsed := time.perf_counter() - start) >= seconds / rounds / 4:
            break
        n *= 4
    n = max(1, int(n * (seconds / rounds) / elapsed))
    best = 0.0
    for _ in range(rounds):
        start = time.perf_counter()
        for _ in range(n):
            fn()
        best = max(best, n / (time.perf_counter() - start))
    return best


def measure(seconds: float) -> list[dict[str, Any]]:
    """Per sample event: encode, sign, encode+sign; decode, verify, decode+verify."""
    c = codec.default_codec()
    keys = signing.KeyRing.from_mapping(signing.generate())
    out: list[dict[str, Any]] = []
    samples: list[tuple[ev.Event, str]] = [(small_sample(), "reports"),
                                           (large_sample(), "submissions")]  # fmt: skip
    topic, key = "bench.topic", b"job-or-tm-id"
    for event, role in samples:
        value, headers = c.encode(event)
        signed = keys.sign(role, topic, key, value, headers)
        allowed = frozenset({type(event)})

        def encode_sign(event: ev.Event = event, role: str = role) -> object:
            v, h = c.encode(event)
            return keys.sign(role, topic, key, v, h)

        def verify(value: bytes = value, role: str = role,
                   signed: list[tuple[str, bytes]] = signed) -> object:  # fmt: skip
            problem = keys.problem(role, topic, key, value, signed)
            assert problem is None, problem
            return problem

        def decode_verify(value: bytes = value, allowed: frozenset[type[ev.Event]] = allowed,
                          verify: Callable[[], object] = verify) -> object:  # fmt: skip
            verify()
            return c.decode(value, allowed)

        ops: tuple[tuple[str, Callable[[], object]], ...] = (
            ("encode", partial(c.encode, event)),
            ("sign", partial(keys.sign, role, topic, key, value, headers)),
            ("encode+sign", encode_sign),
            ("decode", partial(c.decode, value, allowed)),
            ("verify", verify),
            ("decode+verify", decode_verify),
        )
        for name, fn in ops:
            per_second = best_rate(fn, seconds)
            out.append({"bench": "signing", "op": name, "event": type(event).__name__,
                        "per_second": round(per_second), "us_per_op": round(1e6 / per_second, 3),
                        "value_bytes": len(value)})  # fmt: skip
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=3.0)
    args = parser.parse_args()
    for row in measure(args.seconds):
        print(json.dumps(row))


if __name__ == "__main__":
    main()
