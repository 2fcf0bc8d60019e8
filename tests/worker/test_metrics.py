"""worker.metrics: the per-task counters, the TaskManager's book of samples, and the
bound that keeps a heartbeat of a worker with many tasks within its topic's records."""

from __future__ import annotations

from schemas import events as ev
from schemas.catalog import Catalog
from schemas.codec import default_codec
from schemas.limits import (
    MAX_ID_BYTES,
    MAX_SLOTS_PER_WORKER,
    MAX_TASK_METRICS_PER_HEARTBEAT,
    input_problems,
)
from worker.metrics import MetricsBook, TaskCounters


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def ref(vertex: str = "v", subtask: int = 0) -> ev.TaskRef:
    return ev.TaskRef(job_id="j", vertex_id=vertex, subtask_index=subtask, attempt=0)


def test_busy_is_the_running_time_neither_idle_nor_backpressured() -> None:
    clock = FakeClock()
    c = TaskCounters(clock)
    clock.now += 5.0  # before start: initializing, not counted
    assert c.sample(ref()).busy_ms == 0
    c.start()
    c.read_records, c.read_bytes = 3, 30
    c.write_records, c.write_bytes = 2, 25
    c.idle_s, c.backpressured_s = 1.25, 0.5
    clock.now += 4.0
    s = c.sample(ref())
    assert (s.read_records, s.read_bytes, s.write_records, s.write_bytes) == (3, 30, 2, 25)
    assert (s.busy_ms, s.idle_ms, s.backpressured_ms) == (2250, 1250, 500)
    c.stop()
    clock.now += 10.0  # stopped: its times no longer grow
    assert c.sample(ref()).busy_ms == 2250
    c.start()  # a second start does not restart the clock
    assert c.sample(ref()).busy_ms == 2250


def test_the_book_keeps_running_tasks_and_the_last_ended_ones() -> None:
    book = MetricsBook(keep_ended=2)
    for i in range(4):
        book.update(ev.TaskIoMetrics(task=ref(subtask=i), read_records=i))
    for i in range(3):
        book.ended(ref(subtask=i))
    # A sample that arrives after its task ended updates the ended entry.
    book.update(ev.TaskIoMetrics(task=ref(subtask=2), read_records=20))
    book.ended(ref(subtask=9))  # never sampled: nothing to move
    samples = book.samples()
    # Running first, then the ended ones newest first; subtask 0 was pushed out.
    assert [(s.task.subtask_index, s.read_records) for s in samples] == [(3, 3), (2, 20), (1, 1)]


def test_a_heartbeat_at_the_limits_fits_its_topic_and_one_over_is_refused() -> None:
    long_id = "x" * MAX_ID_BYTES
    worst = ev.TaskIoMetrics(
        task=ev.TaskRef(job_id=long_id, vertex_id=long_id, subtask_index=2**62, attempt=2**62),
        read_records=2**63 - 1, write_records=2**63 - 1, read_bytes=2**63 - 1,
        write_bytes=2**63 - 1, busy_ms=2**63 - 1, idle_ms=2**63 - 1, backpressured_ms=2**63 - 1,
    )  # fmt: skip
    heartbeat = ev.TaskManagerHeartbeat(
        event_id="e" * 128, event_time=2**62, tm_id=long_id, incarnation=long_id,
        sequence=2**62, slots_free=MAX_SLOTS_PER_WORKER, running_tasks=MAX_SLOTS_PER_WORKER,
        last_seen_epoch=2**62, task_metrics=(worst,) * MAX_TASK_METRICS_PER_HEARTBEAT,
    )  # fmt: skip
    value, headers = default_codec().encode(heartbeat)
    size = len(value) + sum(len(k) + len(v) for k, v in headers) + len(long_id)
    assert size < Catalog().heartbeats.max_message_bytes // 4, size
    over = ev.TaskManagerHeartbeat(
        event_id="e", event_time=0, tm_id="t", incarnation="i", sequence=1, slots_free=0,
        running_tasks=0, task_metrics=(worst,) * (MAX_TASK_METRICS_PER_HEARTBEAT + 1),
    )  # fmt: skip
    assert any("task_metrics" in p for p in input_problems(over))
    # The book never holds more than a heartbeat may carry.
    book = MetricsBook()
    for i in range(MAX_SLOTS_PER_WORKER * 3):
        book.update(ev.TaskIoMetrics(task=ref(subtask=i)))
        if i < MAX_SLOTS_PER_WORKER * 2:
            book.ended(ref(subtask=i))
    assert len(book.samples()) == MAX_TASK_METRICS_PER_HEARTBEAT
