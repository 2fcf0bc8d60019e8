"""Offsets mean one thing everywhere: the last journal record included (issue 11, item 7)."""

from __future__ import annotations

import json
import re

import pytest

from tests.integration.harness import Cluster, Journal, Producer, job_submitted
from tests.integration.test_cli_submit import jm

pytestmark = pytest.mark.integration


async def test_printed_offsets_are_accepted_offsets(cluster: Cluster) -> None:
    await cluster.coordinator("c1").wait_for_line("leads with epoch 1")
    async with Producer(cluster.stack, cluster.catalog) as client, \
            Journal(cluster.stack, cluster.catalog) as journal:  # fmt: skip
        await client.send(job_submitted("offsets-a", operator="nobody"))
        await client.send(job_submitted("offsets-b", operator="nobody"))
        await journal.wait_until(lambda es: len(es) >= 3)
    stack, catalog = cluster.stack, cluster.catalog
    printed = jm(stack, catalog, "state", "digest")
    assert printed.returncode == 0, printed.stderr
    match = re.fullmatch(r"(\w+)  offset=(\d+) events=(\d+)", printed.stdout.strip())
    assert match, printed.stdout
    digest, offset = match.group(1), int(match.group(2))
    again = jm(stack, catalog, "state", "digest", "--to-offset", str(offset))
    assert again.stdout.strip() == printed.stdout.strip()
    replay = json.loads(jm(stack, catalog, "replay", "--to-offset", str(offset), "--json").stdout)
    assert (replay["offset"], replay["digest"]) == (offset, digest)
    earlier = jm(stack, catalog, "state", "digest", "--to-offset", str(offset - 1)).stdout
    assert f"offset={offset}" not in earlier
