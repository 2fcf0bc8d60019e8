"""How ``jm`` words what the journal says: reasons, exception messages, outcomes.

Pure functions over journal facts, tested directly (tests/test_cli_present.py).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any, Final

from coordinator.domain.state import (
    CheckpointRecord,
    CheckpointStats,
    CheckpointStatus,
    MinMaxAvg,
)
from schemas.events import CheckpointKind

#: Width of one exception message in ``jm status`` (``--json`` has it whole).
MESSAGE_WIDTH: Final = 160

# A line of a Python trace that names the exception: ``pkg.mod.Name: message``
# or a bare ``Name`` (no message), not indented.
_EXCEPTION_LINE = re.compile(r"(?P<name>[A-Za-z_][\w.]*)(?::\s?(?P<message>.*))?")


def reasons(reason: str) -> list[str]:
    """The reasons one rejection joins (``schemas.limits.bounded_reason`` joins them
    with ``"; "``), one per item."""
    return [part.strip() for part in reason.split("; ") if part.strip()]


def clip_line(text: str, width: int = MESSAGE_WIDTH) -> str:
    return text if len(text) <= width else text[: width - 3].rstrip() + "..."


def exception_message(error_name: str, trace: str) -> str:
    """An exception's own message from what a worker reported (a Python trace, whose
    last lines are ``Name: message``) or from a plain cause: its first line."""
    lines = trace.splitlines()
    if lines and lines[0].startswith("Traceback (most recent call last)"):
        for i in range(len(lines) - 1, -1, -1):
            line = lines[i]
            if line[:1].isspace() or not line:
                continue
            match = _EXCEPTION_LINE.fullmatch(line)
            if match and match["name"].rsplit(".", 1)[-1] == error_name:
                return match["message"] or ""
        # Not found (a cut trace): the last line that is not a frame.
        tail = [line for line in lines if line and not line[:1].isspace()]
        return tail[-1] if tail else ""
    return next((line.strip() for line in lines if line.strip()), "")


def exception_line(error_name: str, trace: str, width: int = MESSAGE_WIDTH) -> str:
    """``Name: message`` on one line, clipped to `width`."""
    message = exception_message(error_name, trace)
    return clip_line(f"{error_name}: {message}" if message else error_name, width)


def _checkpoint_record(r: CheckpointRecord) -> dict[str, Any]:
    failed = r.status is CheckpointStatus.FAILED
    return {
        "id": r.checkpoint_id,
        "status": r.status.value,
        "is_savepoint": r.kind is not CheckpointKind.CHECKPOINT,
        "checkpoint_type": r.kind.value,
        "trigger_timestamp": r.trigger_timestamp,
        "latest_ack_timestamp": r.finish_timestamp if not failed else None,
        "state_size": r.state_size,
        "end_to_end_duration": r.end_to_end_duration,
        "alignment_duration": r.alignment_ms,
        "num_subtasks": r.num_subtasks,
        "num_acknowledged_subtasks": r.num_acknowledged_subtasks,
        "failure_timestamp": r.finish_timestamp if failed else None,
        "failure_message": r.failure_message,
        "external_path": r.external_path,
        "discarded": r.discarded,
    }


def _summary(s: MinMaxAvg) -> dict[str, int]:
    return {"min": s.min, "max": s.max, "avg": s.avg}


def checkpoint_statistics(stats: CheckpointStats, in_progress: int) -> dict[str, Any]:
    """A job's checkpoint statistics in the shape of Flink's ``/jobs/{id}/checkpoints``
    (counts, summary over completed checkpoints, latest, history: oldest last)."""
    restored = stats.latest_restored
    return {
        "counts": {
            "restored": stats.restored,
            "total": stats.triggered,
            "in_progress": in_progress,
            "completed": stats.completed,
            "failed": stats.failed,
        },
        "summary": {
            "end_to_end_duration": _summary(stats.end_to_end_duration),
            "state_size": _summary(stats.state_size),
        },
        "latest": {
            "completed": stats.latest_completed and _checkpoint_record(stats.latest_completed),
            "savepoint": stats.latest_savepoint and _checkpoint_record(stats.latest_savepoint),
            "failed": stats.latest_failed and _checkpoint_record(stats.latest_failed),
            "restored": restored
            and {
                "id": restored.checkpoint_id,
                "restore_timestamp": restored.restore_timestamp,
                "is_savepoint": restored.is_savepoint,
                "external_path": restored.external_path,
            },
        },
        "history": [_checkpoint_record(r) for r in reversed(stats.history)],
    }


def run_restore(stats: CheckpointStats, restart_count: int) -> dict[str, Any] | None:
    """What the current run (execution graph `restart_count`) restored, or None when
    it started from its sources' configured start.

    Every execution graph created while the job has a completed checkpoint
    restores the latest one and records it (``latest_restored``), and a running
    job never loses its latest completed checkpoint; so a checkpoint record is
    the current run's. A savepoint is restored by the first run only.
    """
    r = stats.latest_restored
    if r is None or (r.is_savepoint and restart_count > 0):
        return None
    return {
        "run": restart_count,
        "checkpoint_id": r.checkpoint_id,
        "is_savepoint": r.is_savepoint,
        "external_path": r.external_path,
        "restore_timestamp": r.restore_timestamp,
    }


def run_restore_line(restored: dict[str, Any] | None) -> str:
    """``jm status``: which checkpoint the current run restored."""
    if restored is None:
        return "  restored nothing: this run started from its sources' configured start"
    what = (
        f"savepoint {restored['external_path']}"
        if restored["is_savepoint"]
        else f"checkpoint {restored['checkpoint_id']}"
    )
    return f"  restored from {what} (run {restored['run']})"


def _size(n: int | None) -> str:
    return "-" if n is None else f"{n} B"


def _ms(n: int | None) -> str:
    return "-" if n is None else f"{n} ms"


def checkpoint_lines(info: dict[str, Any], format_ms: Callable[[int], str]) -> list[str]:
    """``jm status`` text of `info` (``checkpoint_statistics``), indented for the job block."""
    c, latest = info["counts"], info["latest"]
    lines = [
        f"  checkpoints  triggered {c['total']}, in progress {c['in_progress']}, "
        f"completed {c['completed']}, failed {c['failed']}, restored {c['restored']}"
    ]
    if c["completed"]:
        d, s = info["summary"]["end_to_end_duration"], info["summary"]["state_size"]
        lines.append(
            f"    duration min/avg/max {d['min']}/{d['avg']}/{d['max']} ms, "
            f"size min/avg/max {s['min']}/{s['avg']}/{s['max']} B"
        )
    for what in ("completed", "savepoint", "failed"):
        r = latest[what]
        if r is not None:
            lines.append(f"    latest {what:9} {_history_line(r, format_ms)}")
    restored = latest["restored"]
    if restored is not None:
        source = (
            f"savepoint {restored['external_path']}"
            if restored["is_savepoint"]
            else f"checkpoint #{restored['id']}"
        )
        lines.append(f"    latest restored  {source} at {format_ms(restored['restore_timestamp'])}")
    if info["history"]:
        lines.append("    history (latest first)")
        lines.extend(f"      {_history_line(r, format_ms)}" for r in info["history"])
    return lines


def _history_line(r: dict[str, Any], format_ms: Callable[[int], str]) -> str:
    kind = "" if r["checkpoint_type"] == "CHECKPOINT" else f" {r['checkpoint_type']}"
    line = (
        f"#{r['id']}{kind} {r['status']:11} {format_ms(r['trigger_timestamp'])} "
        f"{r['num_acknowledged_subtasks']}/{r['num_subtasks']} acked, "
        f"{_ms(r['end_to_end_duration'])}, {_size(r['state_size'])}"
    )
    if r["external_path"]:
        line += f" {r['external_path']}"
    if r["discarded"]:
        line += " (discarded)"
    if r["failure_message"]:
        line += f": {clip_line(r['failure_message'], 120)}"
    return line
