"""Where replay time goes: cProfile of a JournalFollower catch_up (not part of ``make bench``).

    python -m tests.bench.profile_replay BOOTSTRAP [EVENTS]

Writes a fresh journal like bench_replay does, then profiles ``catch_up()``
and prints the top functions by own time (tottime).
"""

from __future__ import annotations

import asyncio
import cProfile
import pstats
import sys
import uuid

from coordinator.runtime.journal import JournalFollower
from schemas import kafkaio
from schemas.catalog import Catalog
from tests.bench import bench_replay
from tests.bench.workload import JournalGenerator


async def main(bootstrap: str, events: int) -> None:
    catalog = Catalog(f"bench-profile-{uuid.uuid4().hex[:8]}")
    await kafkaio.create_topics(bootstrap, catalog)
    await bench_replay._write(bootstrap, catalog, JournalGenerator(catalog), events)
    follower = JournalFollower(bootstrap, catalog)
    await follower.start()
    profile = cProfile.Profile()
    profile.enable()
    await follower.catch_up(timeout_s=600)
    profile.disable()
    await follower.stop()
    pstats.Stats(profile).sort_stats("tottime").print_stats(25)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else 100_000))
