"""Benchmark: encode and decode of TaskStateChanged through the typed codec API.

Not a test. Prints one JSON object per line, e.g.
{"bench": "encode", "event": "TaskStateChanged", "per_second": 260000, ...}

    .venv/bin/python tests/bench/bench_codec.py [--seconds 2]
"""

import argparse
import json
import time
from collections.abc import Callable

from schemas import codec
from schemas.events import ExecutionState, TaskRef, TaskStateChanged


def sample() -> TaskStateChanged:
    return TaskStateChanged(
        event_id="3f0c3c5e-1b1a-4c7e-9a51-1b2c3d4e5f60",
        event_time=1_732_240_000_000,
        tm_id="tm-0007",
        incarnation="9b1d2c",
        task=TaskRef(job_id="job-4f1e", vertex_id="map", subtask_index=3, attempt=0),
        state=ExecutionState.RUNNING,
    )


def rate(fn: Callable[[], object], seconds: float) -> tuple[float, int]:
    """Calls per second of `fn`, best of three rounds (one core, no threads)."""
    batch = 10_000
    best = 0.0
    for _ in range(3):
        n = 0
        start = time.perf_counter()
        while (elapsed := time.perf_counter() - start) < seconds / 3:
            for _ in range(batch):
                fn()
            n += batch
        best = max(best, n / elapsed)
    return best, n


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=3.0)
    args = parser.parse_args()
    c = codec.default_codec()
    event = sample()
    value, headers = c.encode(event)
    assert c.decode(value) == event
    allowed = frozenset({TaskStateChanged})
    for name, fn in (
        ("encode", lambda: c.encode(event)),
        ("decode", lambda: c.decode(value, allowed)),
        ("encode_decode", lambda: c.decode(c.encode(event)[0], allowed)),
    ):
        per_second, _ = rate(fn, args.seconds)
        print(
            json.dumps(
                {
                    "bench": name,
                    "event": "TaskStateChanged",
                    "per_second": round(per_second),
                    "us_per_op": round(1e6 / per_second, 3),
                    "value_bytes": len(value),
                    "headers": len(headers),
                }
            )
        )


if __name__ == "__main__":
    main()
