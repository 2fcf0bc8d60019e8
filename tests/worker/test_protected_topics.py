"""A real worker refuses a task naming a protected topic, whoever deployed it
(a coordinator older than the rule, another writer of the commands topic):
the minimal leader here deploys around the coordinator (docs/security.md)."""

from __future__ import annotations

import pytest

from schemas.catalog import Catalog
from tests.worker.conftest import FAST, StartCluster
from tests.worker.harness import ES, task_ref

pytestmark = pytest.mark.integration


async def test_a_task_naming_a_protected_topic_fails_non_recoverable(
    start_cluster: StartCluster, catalog: Catalog
) -> None:
    cluster = await start_cluster(flags=(*FAST, "--protected-topic-prefix", "billing."))
    leader = cluster.leader
    journal, billing = task_ref(attempt=0), task_ref(attempt=1)
    # A bounded source would read the whole journal; a sink would write into it.
    await leader.send(
        leader.deploy(journal, "kafka_source", topic=catalog.journal.name, bounded="true")
    )
    failed = await cluster.reports.state(journal, ES.FAILED)
    assert (failed.error_name, failed.non_recoverable) == ("ProtectedTopicError", True)
    assert f"topic {catalog.journal.name!r} is under the protected prefix" in (
        failed.error_stack or ""
    )
    assert cluster.reports.states(journal) == [ES.DEPLOYING, ES.INITIALIZING, ES.FAILED]
    await leader.send(leader.deploy(billing, "kafka_sink", topic="billing.invoices"))
    failed = await cluster.reports.state(billing, ES.FAILED)
    assert (failed.error_name, failed.non_recoverable) == ("ProtectedTopicError", True)
    assert "'billing.invoices' is under the protected prefix 'billing.'" in (
        failed.error_stack or ""
    )
