"""Size limits on everything that arrives from outside, in one place.

Any Kafka producer may write to ``jm.submissions``, ``jm.reports`` and
``jm.heartbeats``; whatever the leader derives from such a record (the
journaled ``JobAccepted`` and ``ExecutionGraphCreated``, the ``DeployTask``
commands, a ``JobRejected`` quoting it) must still fit the journal's 1 MiB
records. So every string and collection of an input event has a limit here,
checked by ``input_problems`` before the coordinator acts on the event (and by
``jm submit --dry-run``, through ``schemas.validation``). docs/wire-format.md
lists every constant with its value and the worst-case derived record sizes;
a test keeps the two in step.

String limits count UTF-8 bytes (equal to characters for ASCII), so the worst
case on the wire is the limit itself. Text the coordinator writes about an
input (a rejection reason, an id it echoes) is cut with ``clip`` and never
quotes an offending value whole.

Standard library only: the pure domain imports this module.
"""

import dataclasses
import enum
import functools
import hashlib
from collections.abc import Iterator
from typing import Any, Final

from schemas import events as ev

#: event_id of any input (clients use uuids: 32-36 bytes). Derived ids add ":<n>".
MAX_EVENT_ID_BYTES: Final = 128
#: job ids, vertex ids (edge ends), tm ids, incarnations.
MAX_ID_BYTES: Final = 100
#: names and short labels: job/vertex/operator names, host, version, submitted_by,
#: requested_by, key_field, error_name.
MAX_NAME_BYTES: Final = 256
#: savepoint_path and target_directory.
MAX_PATH_BYTES: Final = 1_024
#: a checkpoint state handle (CheckpointCompleted carries one per subtask).
MAX_STATE_HANDLE_BYTES: Final = 256
#: The state handle of a task that had FINISHED when its checkpoint completed
#: (docs/checkpoints.md, "Finished tasks"): no state behind it and no store's
#: own; a task deployed with it is restored as finished. Stores skip it on discard.
FINISHED_TASK_HANDLE: Final = "finished"
#: the snapshot one task writes for one checkpoint (schemas/statestore.py refuses more):
#: bounds what a restore holds in memory and the chunks of one Kafka-stored state.
MAX_TASK_STATE_BYTES: Final = 67_108_864
#: the user-code package (a wheel) one job brings (docs/user-code.md): the client, the
#: coordinator and the workers refuse a larger one; stored like a task's state.
MAX_ARTIFACT_BYTES: Final = 33_554_432
#: free-text reasons of inputs (CheckpointDeclined, TaskManagerDeregistered).
MAX_REASON_BYTES: Final = 1_024
#: vertices of one job graph.
MAX_VERTICES: Final = 128
#: edges of one job graph.
MAX_EDGES: Final = 256
#: subtasks of one job: the sum of parallelism over its vertices.
MAX_SUBTASKS_PER_JOB: Final = 1_024
#: max_parallelism of a vertex (Flink's upper bound; the number of key groups).
MAX_MAX_PARALLELISM: Final = 32_768
#: entries of one vertex's operator config.
MAX_CONFIG_ENTRIES: Final = 64
#: one operator config key.
MAX_CONFIG_KEY_BYTES: Final = 128
#: one operator config value.
MAX_CONFIG_VALUE_BYTES: Final = 4_096
#: every config key and value of one job together.
MAX_JOB_CONFIG_BYTES: Final = 32_768
#: slots one worker offers.
MAX_SLOTS_PER_WORKER: Final = 256
#: operators one worker offers.
MAX_OPERATORS_PER_WORKER: Final = 256
#: tasks one slot holds: a shared slot holds subtask i of every vertex of one slot
#: sharing group (chained vertices counted one by one), at most this many; the
#: scheduler gives a group with more a second slot per subtask index, and cuts an
#: operator chain this long (coordinator/domain/scheduler.py, chaining.py).
MAX_TASKS_PER_SLOT: Final = 16
#: tasks a worker reports running when it registers (``running_tasks``), and what its
#: slots can hold. The worst case (every id at MAX_ID_BYTES, 256 operator names at
#: MAX_NAME_BYTES) encodes to about 968 KB: a registration and the TaskManagerJoined
#: the leader journals from it fit a 1 MiB record (tests/test_limits.py).
MAX_RUNNING_TASKS_PER_WORKER: Final = MAX_SLOTS_PER_WORKER * MAX_TASKS_PER_SLOT
#: task counters one heartbeat carries: the tasks running (one per slot) and as many
#: that ended last. The worst case (every id at MAX_ID_BYTES, every counter a full
#: long) is about 150 KB, far under jm.heartbeats' 1 MiB records.
MAX_TASK_METRICS_PER_HEARTBEAT: Final = 2 * MAX_SLOTS_PER_WORKER
#: task attempts one checkpoint command (trigger, notify) names: a worker's slots.
MAX_TASKS_PER_COMMAND: Final = MAX_SLOTS_PER_WORKER
#: workers registered at once; a new worker beyond it is rejected.
MAX_WORKERS: Final = 1_024
#: jobs the coordinator holds at once (ended ones count until archived).
MAX_JOBS: Final = 4_096
#: subtasks of all the jobs the coordinator holds at once (ended ones count until
#: archived): bounds the state every replay, digest and snapshot walks.
MAX_SUBTASKS: Final = 65_536
#: a failure trace is not rejected but cut to this many bytes where it is
#: journaled and kept (TaskStateRecorded, exception history).
MAX_ERROR_STACK_BYTES: Final = 8_192
#: of a cut trace, its end (the exception's own message) is kept whole up to this.
MAX_ERROR_MESSAGE_BYTES: Final = 4_096
#: reasons the coordinator writes (JobRejected, InputRejected, ...).
MAX_REJECTION_REASON_BYTES: Final = 4_096
#: how much of an offending value a reason quotes.
MAX_QUOTED_BYTES: Final = 64
#: problems listed in one rejection; the rest are counted.
MAX_PROBLEMS_LISTED: Final = 20

#: Limit of each string field of an input event, by field name (nested records too).
#: error_stack has none: it is cut, not refused (a task failure must not be lost).
STRING_LIMITS: Final[dict[str, int]] = {
    "event_id": MAX_EVENT_ID_BYTES,
    "job_id": MAX_ID_BYTES,
    "vertex_id": MAX_ID_BYTES,
    "id": MAX_ID_BYTES,
    "slot_sharing_group": MAX_ID_BYTES,
    "source": MAX_ID_BYTES,
    "target": MAX_ID_BYTES,
    "tm_id": MAX_ID_BYTES,
    "incarnation": MAX_ID_BYTES,
    "name": MAX_NAME_BYTES,
    "operator": MAX_NAME_BYTES,
    "operators": MAX_NAME_BYTES,
    "host": MAX_NAME_BYTES,
    "version": MAX_NAME_BYTES,
    "submitted_by": MAX_NAME_BYTES,
    "requested_by": MAX_NAME_BYTES,
    "key_field": MAX_NAME_BYTES,
    "error_name": MAX_NAME_BYTES,
    "savepoint_path": MAX_PATH_BYTES,
    "target_directory": MAX_PATH_BYTES,
    "state_handle": MAX_STATE_HANDLE_BYTES,
    "reason": MAX_REASON_BYTES,
    # a job's user-code artifact (ArtifactRef)
    "sha256": 64,
    "filename": MAX_NAME_BYTES,
    "handle": MAX_STATE_HANDLE_BYTES,
    "functions": MAX_NAME_BYTES,
    "requirements": MAX_NAME_BYTES,
    "signature": MAX_NAME_BYTES,
}
UNLIMITED_STRINGS: Final = frozenset({"error_stack"})

#: Limit of each collection field of an input event, by field name.
COLLECTION_LIMITS: Final[dict[str, int]] = {
    "vertices": MAX_VERTICES,
    "edges": MAX_EDGES,
    "config": MAX_CONFIG_ENTRIES,
    "operators": MAX_OPERATORS_PER_WORKER,
    "running_tasks": MAX_RUNNING_TASKS_PER_WORKER,
    "task_metrics": MAX_TASK_METRICS_PER_HEARTBEAT,
    "more_tasks": MAX_TASKS_PER_COMMAND - 1,
    "functions": MAX_OPERATORS_PER_WORKER,
    "requirements": MAX_OPERATORS_PER_WORKER,
    "chained": MAX_VERTICES,
}

#: Inclusive ranges of integer fields whose value sizes memory or records.
INT_RANGES: Final[dict[str, tuple[int, int]]] = {
    "max_parallelism": (1, MAX_MAX_PARALLELISM),
    "slots": (0, MAX_SLOTS_PER_WORKER),
    "slot_index": (0, MAX_SLOTS_PER_WORKER - 1),
    "subtask_index": (0, MAX_MAX_PARALLELISM - 1),
    "attempt": (0, 2**62),
}

_MARKER: Final = "…"


def utf8_len(text: str) -> int:
    return len(text.encode("utf-8", "surrogatepass"))


def clip(text: str, max_bytes: int) -> str:
    """`text` if it fits `max_bytes` of UTF-8, else its start and a marker saying how
    much was cut (the result fits `max_bytes`; a valid character boundary)."""
    if len(text) <= max_bytes // 4 or utf8_len(text) <= max_bytes:
        return text
    marker = f"{_MARKER}[{len(text)} chars]"
    room = max(0, max_bytes - utf8_len(marker))
    head = text.encode("utf-8", "surrogatepass")[:room].decode("utf-8", "ignore")
    return head + marker


def clip_id(value: str, max_bytes: int = MAX_ID_BYTES) -> str:
    """An over-long id cut to fit, still telling ids apart: its start, a marker and a
    hash of the whole (deterministic, so replay and every replica agree)."""
    if len(value) <= max_bytes // 4 or utf8_len(value) <= max_bytes:
        return value
    digest = hashlib.sha256(value.encode("utf-8", "surrogatepass")).hexdigest()[:16]
    tail = f"{_MARKER}{digest}"
    room = max(0, max_bytes - utf8_len(tail))
    head = value.encode("utf-8", "surrogatepass")[:room].decode("utf-8", "ignore")
    return head + tail


def quote(value: str) -> str:
    """`value` for a message: repr'd and clipped to MAX_QUOTED_BYTES."""
    return repr(clip(value, MAX_QUOTED_BYTES))


def clip_trace(trace: str, max_bytes: int = MAX_ERROR_STACK_BYTES) -> str:
    """A failure trace cut to `max_bytes`: its end (Python puts the exception's own
    message last) is kept whole up to MAX_ERROR_MESSAGE_BYTES, then as much of its
    start as fits, with a marker between."""
    if len(trace) <= max_bytes // 4 or utf8_len(trace) <= max_bytes:
        return trace
    data = trace.encode("utf-8", "surrogatepass")
    marker = f"\n{_MARKER} [{len(data)} bytes, cut] {_MARKER}\n".encode()
    keep_tail = min(MAX_ERROR_MESSAGE_BYTES, max_bytes - len(marker))
    keep_head = max(0, max_bytes - len(marker) - keep_tail)
    head = data[:keep_head].decode("utf-8", "ignore")
    tail = data[len(data) - keep_tail :].decode("utf-8", "ignore")
    return head + marker.decode() + tail


def bounded_reason(problems: list[str]) -> str:
    """One reason for a list of problems: at most MAX_PROBLEMS_LISTED of them, the
    rest counted, the whole clipped to MAX_REJECTION_REASON_BYTES."""
    listed = problems[:MAX_PROBLEMS_LISTED]
    more = len(problems) - len(listed)
    text = "; ".join(listed) + (f"; and {more} more problem(s)" if more > 0 else "")
    return clip(text, MAX_REJECTION_REASON_BYTES)


def _where(path: tuple[str, ...]) -> str:
    """A location as problems name it: ``job_graph`` is left out (a job file has the
    graph's keys at its top), fields are joined by dots, indexes are appended."""
    where = ""
    for part in path:
        where += part if part.startswith("[") or not where else f".{part}"
    return where


@functools.cache
def _field_names(cls: type) -> tuple[str, ...]:
    return tuple(f.name for f in dataclasses.fields(cls))


def _walk(path: tuple[str, ...], name: str, value: Any, out: list[str]) -> None:
    """Append the problems of one field value to `out` (recursing into records,
    sequences and maps). Locations are only spelled out for a problem: the walk runs
    on every input the leader reads."""
    if isinstance(value, enum.Enum):
        return
    if isinstance(value, str):
        if name in UNLIMITED_STRINGS:
            return
        limit = STRING_LIMITS.get(name)
        if limit is None:
            raise KeyError(f"no limit for string field {name!r} ({_where(path)})")
        if (p := _string_problem(path, value, limit)) is not None:
            out.append(p)
    elif value is None or isinstance(value, (bool, float)):
        return
    elif isinstance(value, int):
        bounds = INT_RANGES.get(name)
        if bounds is not None and not bounds[0] <= value <= bounds[1]:
            out.append(f"{_where(path)}: must be between {bounds[0]} and {bounds[1]}, got {value}")
    elif isinstance(value, (tuple, list, dict)):
        limit = COLLECTION_LIMITS.get(name)
        if limit is not None and len(value) > limit:
            out.append(f"{_where(path)}: {len(value)} entries, at most {limit} allowed")
            return
        if isinstance(value, dict):
            for k, v in value.items():
                _config_entry(path, k, v, out)
        else:
            for i, item in enumerate(value):
                _walk((*path, f"[{i}]"), name, item, out)
    elif dataclasses.is_dataclass(value) and not isinstance(value, type):
        cls: type = type(value)
        for field_name in _field_names(cls):
            at = path if field_name == "job_graph" else (*path, field_name)
            _walk(at, field_name, getattr(value, field_name), out)


def _string_problem(path: tuple[str, ...], value: str, limit: int, suffix: str = "") -> str | None:
    if len(value) > limit or utf8_len(value) > limit:
        return f"{_where(path)}{suffix}: {utf8_len(value)} bytes, at most {limit} allowed"
    return None


def _config_entry(path: tuple[str, ...], key: str, value: str, out: list[str]) -> None:
    at = (*path, f"[{quote(key)}]")
    if (p := _string_problem(at, key, MAX_CONFIG_KEY_BYTES, " (key)")) is not None:
        out.append(p)
    if (p := _string_problem(at, value, MAX_CONFIG_VALUE_BYTES)) is not None:
        out.append(p)


def _submission_problems(s: ev.JobSubmitted) -> Iterator[str]:
    """Limits over a whole job: subtasks and config bytes."""
    vertices = s.job_graph.vertices
    subtasks = sum(max(0, v.parallelism) for v in vertices)
    if subtasks > MAX_SUBTASKS_PER_JOB:
        yield (
            f"vertices: {subtasks} subtasks (sum of parallelism over vertices), "
            f"at most {MAX_SUBTASKS_PER_JOB} allowed"
        )
    config = sum(utf8_len(k) + utf8_len(v) for x in vertices for k, v in x.config.items())
    if config > MAX_JOB_CONFIG_BYTES:
        yield (
            f"job_graph: {config} bytes of operator config, at most {MAX_JOB_CONFIG_BYTES} allowed"
        )
    if s.artifact is not None and not 0 <= s.artifact.size <= MAX_ARTIFACT_BYTES:
        yield (
            f"artifact: {s.artifact.name} is {s.artifact.size} bytes, at most "
            f"{MAX_ARTIFACT_BYTES} (MAX_ARTIFACT_BYTES) allowed"
        )


def input_problems(event: ev.Event) -> list[str]:
    """Every limit `event` exceeds, with its location; [] when it is within them all."""
    problems: list[str] = []
    _walk((), "", event, problems)
    if isinstance(event, ev.JobSubmitted) and not problems:
        problems.extend(_submission_problems(event))
    return problems


def limits() -> dict[str, int]:
    """Every limit constant of this module by name (the doc lists each)."""
    return {
        name: value
        for name, value in globals().items()
        if name.startswith("MAX_") and isinstance(value, int)
    }
