"""A real worker process verifies every command's signature (issue 14, item 3): a
command without a valid `command` signature is logged, counted and ignored."""

from __future__ import annotations

import pytest

from schemas import signing
from schemas.catalog import Catalog
from schemas.signing import KeyRing
from tests.conftest import Stack
from tests.worker.conftest import StartCluster
from tests.worker.harness import ES, Leader, task_ref

pytestmark = pytest.mark.integration


async def test_forged_and_unsigned_commands_are_ignored_signed_ones_run(
    start_cluster: StartCluster, stack: Stack, catalog: Catalog
) -> None:
    cluster = await start_cluster()
    leader, worker = cluster.leader, cluster.worker
    forged, unsigned, real = task_ref(vertex="forged"), task_ref(vertex="unsigned"), task_ref()
    for keys, task in ((KeyRing.from_mapping(signing.generate()), forged),
                       (KeyRing.insecure(), unsigned)):  # fmt: skip
        forger = Leader(stack.bootstrap, catalog, leader.tm_id, leader.epoch)
        forger.keys, forger.incarnation = keys, leader.incarnation
        await forger.start()
        try:
            await forger.send(forger.deploy(task, "sequence", count="1", slot=0))
        finally:
            await forger.close()
    await leader.send(leader.deploy(real, "sequence", count="1", slot=0))
    await cluster.reports.state(real, ES.FINISHED)
    # The partition is ordered: both forgeries were read (and ignored) before it.
    assert cluster.reports.states(forged) == [] and cluster.reports.states(unsigned) == []
    await worker.close()
    log = worker.log()
    assert "ignored DeployTask" in log and "(1 so far): bad signature" in log
    assert "(2 so far): unsigned record: no jm-sig header" in log
