"""The command filter and the leader watch, without Kafka."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from schemas import events as ev
from worker.epochs import CommandFilter, Leader, LeaderWatch, Verdict

TASK = ev.TaskRef(job_id="j", vertex_id="v", subtask_index=0, attempt=0)


def keepalive(epoch: int) -> ev.LeaderKeepalive:
    return ev.LeaderKeepalive(event_id="k", event_time=0, epoch=epoch, leader_replica_id="r")


def cancel(epoch: int, tm_id: str = "tm", incarnation: str = "inc") -> ev.CancelTask:
    return ev.CancelTask(
        event_id="c", event_time=0, epoch=epoch, tm_id=tm_id, incarnation=incarnation, task=TASK
    )


@pytest.mark.parametrize(
    ("highest", "command", "expected"),
    [
        # The first epoch heard: new, but nothing was heard before (no re-registration).
        (0, keepalive(1), Verdict(stale=False, new_epoch=True, previous_epoch=0)),
        (1, keepalive(1), Verdict(stale=False, new_epoch=False, previous_epoch=1)),
        (2, keepalive(1), Verdict(stale=True, new_epoch=False, previous_epoch=2)),
        (1, cancel(1), Verdict(stale=False, new_epoch=False, previous_epoch=1)),
        (1, cancel(0), Verdict(stale=True, new_epoch=False, previous_epoch=1)),
        # Another worker on the same partition proves epoch 3 all the same.
        (1, cancel(3, tm_id="other"), Verdict(stale=False, new_epoch=True, previous_epoch=1)),
    ],
)
def test_verdicts(highest: int, command: ev.WorkerCommand, expected: Verdict) -> None:
    assert CommandFilter("tm", "inc", highest).check(command) == expected


@pytest.mark.parametrize(
    ("command", "addressed"),
    [
        (keepalive(1), True),  # no tm id: concerns everyone on the partition
        (cancel(1), True),
        (cancel(1, tm_id="other"), False),
        (cancel(1, incarnation="old"), False),  # an earlier incarnation of this worker
    ],
)
def test_addressing(command: ev.WorkerCommand, addressed: bool) -> None:
    assert CommandFilter("tm", "inc").addresses(command) is addressed


def test_stale_commands_are_counted_and_do_not_lower_the_epoch() -> None:
    f = CommandFilter("tm", "inc")
    f.check(keepalive(4))
    f.check(cancel(2))
    assert f.highest_epoch == 4
    assert f.dropped_stale == 1


@given(st.lists(st.integers(min_value=0, max_value=20), max_size=50))
def test_acts_only_on_commands_at_the_running_maximum(epochs: list[int]) -> None:
    f = CommandFilter("tm", "inc")
    highest = 0
    for epoch in epochs:
        verdict = f.check(cancel(epoch))
        assert verdict.stale == (epoch < highest)
        assert verdict.new_epoch == (epoch > highest)
        highest = max(highest, epoch)
        assert f.highest_epoch == highest


def test_leader_watch_never_times_out_before_a_leader_was_heard() -> None:
    watch = LeaderWatch(timeout_s=5)
    assert not watch.check(now=1_000)
    assert watch.state is Leader.NEVER_HEARD


def test_leader_watch_goes_silent_once_and_reports_the_return() -> None:
    watch = LeaderWatch(timeout_s=5)
    assert not watch.heard(now=10)
    assert not watch.check(now=15)  # exactly the timeout: still alive
    assert watch.check(now=15.1)
    assert watch.state is Leader.SILENT
    assert not watch.check(now=100)  # reported once
    assert watch.heard(now=101)  # back: the caller registers again
    assert watch.state.name == "ALIVE"


def test_leader_watch_needs_a_positive_timeout() -> None:
    with pytest.raises(ValueError, match="positive"):
        LeaderWatch(timeout_s=0)
