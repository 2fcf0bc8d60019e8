"""A real worker process driven by a minimal leader: task lifecycles."""

from __future__ import annotations

import pytest

from tests.worker.conftest import StartCluster
from tests.worker.harness import ES, task_ref
from worker.failures import MAX_STACK_BYTES

pytestmark = pytest.mark.integration


async def test_registers_with_slots_and_operators(start_cluster: StartCluster) -> None:
    cluster = await start_cluster(slots=2, keepalive=False)
    registered = await cluster.reports.registration()
    assert registered.slots == 2
    assert {"sequence", "fault"} <= set(registered.operators)
    assert registered.running_tasks == ()
    assert registered.incarnation
    assert registered.cpu_cores


async def test_bounded_sequence_runs_to_finished(start_cluster: StartCluster) -> None:
    cluster = await start_cluster()
    task = task_ref()
    await cluster.leader.send(cluster.leader.deploy(task, "sequence", count="1000"))
    await cluster.reports.state(task, ES.FINISHED)
    assert cluster.reports.states(task) == [ES.DEPLOYING, ES.INITIALIZING, ES.RUNNING, ES.FINISHED]
    await cluster.worker.close()
    assert "finished: 1000 records" in cluster.worker.log()


async def test_user_exception_fails_the_task_not_the_worker(start_cluster: StartCluster) -> None:
    cluster = await start_cluster()
    broken, next_one = task_ref(attempt=0), task_ref(attempt=1)
    await cluster.leader.send(cluster.leader.deploy(broken, "fault", fail_after="5"))
    failed = await cluster.reports.state(broken, ES.FAILED)
    assert failed.error_name == "InjectedFault"
    assert failed.error_stack is not None
    assert "Traceback" in failed.error_stack
    assert "fault injected after 5 records" in failed.error_stack
    # Same slot, next task: the slot process survived the exception.
    await cluster.leader.send(cluster.leader.deploy(next_one, "sequence", count="10"))
    await cluster.reports.state(next_one, ES.FINISHED)


async def test_a_huge_user_exception_is_reported_cut_and_the_worker_lives_on(
    start_cluster: StartCluster,
) -> None:
    cluster = await start_cluster()
    huge, next_one = task_ref(attempt=0), task_ref(attempt=1)
    # A 2 MB message: reported whole it would exceed the 1 MiB a record may hold.
    await cluster.leader.send(
        cluster.leader.deploy(huge, "fault", fail_after="1", fail_message_bytes="2000000")
    )
    failed = await cluster.reports.state(huge, ES.FAILED)
    assert failed.error_name == "InjectedFault"
    stack = failed.error_stack or ""
    assert len(stack.encode()) <= MAX_STACK_BYTES
    assert "Traceback" in stack and "bytes cut ...]" in stack
    assert "InjectedFault: fault injected after 1 records xxx" in stack
    # The worker (its report sender included) is alive and takes the next task.
    await cluster.leader.send(cluster.leader.deploy(next_one, "sequence", count="10"))
    await cluster.reports.state(next_one, ES.FINISHED)
    assert cluster.worker.proc.poll() is None


async def test_unknown_operator_fails_with_reason(start_cluster: StartCluster) -> None:
    cluster = await start_cluster()
    task = task_ref()
    await cluster.leader.send(cluster.leader.deploy(task, "os.system"))
    failed = await cluster.reports.state(task, ES.FAILED)
    assert failed.error_name == "UnknownOperatorError"
    assert "os.system" in (failed.error_stack or "")


async def test_config_errors_are_reported_non_recoverable(start_cluster: StartCluster) -> None:
    """The report says a restart cannot help (the coordinator then fails the job at
    once); a fault of the running task stays recoverable."""
    cluster = await start_cluster()
    bad, faulty = task_ref(attempt=0), task_ref(attempt=1)
    await cluster.leader.send(cluster.leader.deploy(bad, "sequence", count="many"))
    failed = await cluster.reports.state(bad, ES.FAILED)
    assert (failed.error_name, failed.non_recoverable) == ("OperatorConfigError", True)
    await cluster.leader.send(cluster.leader.deploy(faulty, "fault", fail_after="0"))
    failed = await cluster.reports.state(faulty, ES.FAILED)
    assert (failed.error_name, failed.non_recoverable) == ("InjectedFault", False)


async def test_cancel_of_unbounded_sequence(start_cluster: StartCluster) -> None:
    cluster = await start_cluster()
    task = task_ref()
    await cluster.leader.send(cluster.leader.deploy(task, "sequence", rate="1000"))
    await cluster.reports.state(task, ES.RUNNING)
    await cluster.leader.send(cluster.leader.cancel(task))
    await cluster.reports.state(task, ES.CANCELED, within=3)
    # Cancelling again answers with the same final state.
    await cluster.leader.send(cluster.leader.cancel(task))
    await cluster.reports.wait_for(
        lambda e: cluster.reports.states(task).count(ES.CANCELED) == 2, what="second CANCELED"
    )


async def test_hung_task_is_killed_and_the_slot_works_again(start_cluster: StartCluster) -> None:
    cluster = await start_cluster()
    hung, after = task_ref(attempt=0), task_ref(attempt=1)
    await cluster.leader.send(cluster.leader.deploy(hung, "fault", hang="true"))
    await cluster.reports.state(hung, ES.RUNNING)
    await cluster.leader.send(cluster.leader.cancel(hung))
    # --cancel-timeout 1: killed, reported CANCELED (docs/workers.md says why not FAILED).
    canceled = await cluster.reports.state(hung, ES.CANCELED, within=5)
    assert canceled.error_name is None
    await cluster.leader.send(cluster.leader.deploy(after, "sequence", count="10"))
    await cluster.reports.state(after, ES.FINISHED, within=10)
    await cluster.worker.close()
    assert "killing" in cluster.worker.log()


async def test_busy_slot_and_duplicate_deploys(start_cluster: StartCluster) -> None:
    cluster = await start_cluster(slots=2)
    leader = cluster.leader
    running = task_ref(vertex="a")
    await leader.send(leader.deploy(running, "sequence", slot=0))
    await cluster.reports.state(running, ES.RUNNING)
    intruder = task_ref(job="other", vertex="b")
    same_vertex = task_ref(vertex="a", subtask=1)
    second_attempt = task_ref(vertex="a", attempt=1)
    nowhere = task_ref(vertex="c")
    await leader.send(
        leader.deploy(running, "sequence", slot=0),  # same attempt again: idempotent
        leader.deploy(intruder, "sequence", slot=0),  # slot busy: another job's
        leader.deploy(same_vertex, "sequence", slot=0),  # busy: one subtask per vertex
        leader.deploy(second_attempt, "sequence", slot=1),  # its subtask still runs
        leader.deploy(nowhere, "sequence", slot=7),  # no such slot
    )
    busy = await cluster.reports.state(intruder, ES.FAILED)
    assert busy.error_name == "SlotBusyError"
    busy = await cluster.reports.state(same_vertex, ES.FAILED)
    assert busy.error_name == "SlotBusyError"
    again = await cluster.reports.state(second_attempt, ES.FAILED)
    assert again.error_name == "SlotBusyError"
    missing = await cluster.reports.state(nowhere, ES.FAILED)
    assert missing.error_name == "NoSuchSlotError"
    # The running task was not disturbed and was deployed once.
    assert cluster.reports.states(running) == [ES.DEPLOYING, ES.INITIALIZING, ES.RUNNING]
    await leader.send(leader.cancel(running))
    await cluster.reports.state(running, ES.CANCELED)
    assert cluster.reports.states(running).count(ES.DEPLOYING) == 1


async def test_tasks_of_one_job_share_a_slot_and_run_at_once(
    start_cluster: StartCluster,
) -> None:
    """Slot sharing: another vertex's task of the same job runs in the busy slot, in a
    process of its own, while the first runs; the slot is free once both ended."""
    cluster = await start_cluster(slots=1)
    leader = cluster.leader
    first, second = task_ref(vertex="a"), task_ref(vertex="b")
    await leader.send(leader.deploy(first, "sequence", slot=0, rate="100"))
    await cluster.reports.state(first, ES.RUNNING)
    await leader.send(leader.deploy(second, "sequence", slot=0, rate="100"))
    await cluster.reports.state(second, ES.RUNNING)
    assert cluster.reports.states(first) == [ES.DEPLOYING, ES.INITIALIZING, ES.RUNNING]
    await leader.send(leader.cancel(first))
    await cluster.reports.state(first, ES.CANCELED)
    # The second still runs in the shared slot, undisturbed.
    assert cluster.reports.states(second) == [ES.DEPLOYING, ES.INITIALIZING, ES.RUNNING]
    await leader.send(leader.cancel(second))
    await cluster.reports.state(second, ES.CANCELED)
    log = cluster.worker.log()
    assert "in slot 0 (process 0)" in log and "in slot 0 (process 1)" in log


async def test_crashed_slot_process_fails_the_task_and_is_replaced(
    start_cluster: StartCluster,
) -> None:
    cluster = await start_cluster()
    crashed, after = task_ref(attempt=0), task_ref(attempt=1)
    await cluster.leader.send(cluster.leader.deploy(crashed, "fault", crash="true"))
    failed = await cluster.reports.state(crashed, ES.FAILED)
    assert failed.error_name == "SlotProcessDiedError"
    assert "70" in (failed.error_stack or "")
    await cluster.leader.send(cluster.leader.deploy(after, "sequence", count="3"))
    await cluster.reports.state(after, ES.FINISHED)
