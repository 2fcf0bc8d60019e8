"""The history server's projection: what an ended job's archive holds, from the journal.

The journal is folded by the replicas' own path (``JournalFollower``: the project's
codec, the journal signature, the epoch rule) into the domain state; each applied
event of a job updates that job's rows. A job's rows are rendered by the
coordinator's own views (coordinator/rest/views.py) once the job is globally
terminal, with the job's end as "now" and the offset of its latest event as the
journal offset, so the same journal always gives the same rows: a replay from the
start into empty tables reproduces them, and a record delivered twice (at-least-once)
changes nothing (each job's journal row remembers the last offset it counted, and
rendering the same record again writes the same rows).

No Kafka and no faust here: the tables are plain mappings (faust tables in the
server, dicts in tests and benchmarks).
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Mapping, MutableMapping
from dataclasses import dataclass
from typing import Any, Final

from coordinator.domain.state import Job, State
from coordinator.rest import models as m
from coordinator.rest.views import checkpoint_statistics, exception_history, job_detail, job_details
from coordinator.runtime.machine import new_state
from coordinator.runtime.metrics import MetricsStore
from schemas import events as ev

Row = dict[str, Any]
#: The tables, by name; each is keyed by job id (their changelog topics are named
#: by ``Catalog.history_topic``).
TABLES: Final = ("jobs", "details", "exceptions", "checkpoints", "journal")


@dataclass(frozen=True)
class Tables:
    """The archive's tables: the ``/jobs/overview`` row (with the acceptance sequence
    number that orders them), ``/jobs/{id}``, the full exception history, the
    checkpoint statistics, and the job's journal offsets and event count."""

    jobs: MutableMapping[str, Row]
    details: MutableMapping[str, Row]
    exceptions: MutableMapping[str, Row]
    checkpoints: MutableMapping[str, Row]
    journal: MutableMapping[str, Row]

    @classmethod
    def of(cls, tables: Mapping[str, MutableMapping[str, Row]]) -> Tables:
        return cls(**{name: tables[name] for name in TABLES})

    def contents(self) -> dict[str, dict[str, Row]]:
        """Every table as a plain dict (comparisons, benchmarks)."""
        return {name: dict(getattr(self, name).items()) for name in TABLES}


def job_id_of(event: ev.Event) -> str | None:
    """The job an event belongs to (its journal key), None for cluster-wide events."""
    cls = type(event)
    if cls not in _JOB_ID_READERS:  # once per event type: the fold asks for every record
        path = dict(ev.identity_fields(cls)).get("job-id")
        _JOB_ID_READERS[cls] = operator.attrgetter(path) if path else None
    read = _JOB_ID_READERS[cls]
    value = read(event) if read is not None else None
    return None if value is None else str(value)


_JOB_ID_READERS: dict[type, Callable[[ev.Event], Any] | None] = {}


class Archive:
    """Updates the tables from the events the fold applies (``on_event``)."""

    def __init__(self, tables: Tables, state: Callable[[], State] = new_state) -> None:
        """`state`: returns the fold's current domain state."""
        self.tables = tables
        self.state = state
        self._empty_metrics = MetricsStore()  # archived jobs carry no live metrics
        self.version = 0  # bumped on every change (the overview cache's key)
        self._running: dict[str, Row] = {}  # the journal rows of jobs not ended yet

    def on_event(self, offset: int, event: ev.Event) -> None:
        job_id = job_id_of(event)
        if job_id is None:
            return
        seen = self.tables.journal.get(job_id) or self._running.get(job_id)
        if seen is not None and offset < seen["last"]:
            return  # delivered again after a restart: the rows are already newer
        if seen is None:
            row = {"first": offset, "last": offset, "events": 1}
        elif offset > seen["last"]:
            row = {"first": seen["first"], "last": offset, "events": seen["events"] + 1}
        else:
            row = seen
        state = self.state()
        job = state.jobs.get(job_id)
        ended = job is not None and job.status.is_globally_terminal
        if not ended and job_id not in self.tables.journal:
            # Still running: counted in memory (rebuilt with the fold after a restart);
            # its changelog is written once it ended, not once per record.
            self._running[job_id] = row
            return
        self._running.pop(job_id, None)
        self.tables.journal[job_id] = row
        # The job's latest record, maybe again: render again (the same rows), since a
        # crash may have persisted some tables' writes and not others'.
        if job is not None and ended:
            self._render(job, offset, state)
        self.version += 1

    def _render(self, job: Job, offset: int, state: State) -> None:
        end = job.status_since
        key = job.job_id
        row = job_details(job, end).model_dump(by_alias=True, mode="json")
        self.tables.jobs[key] = {**row, "jm-accepted-seq": job.accepted_seq}
        detail = job_detail(job, offset, end, self._empty_metrics)
        self.tables.details[key] = detail.model_dump(by_alias=True, mode="json")
        everything = exception_history(job, state.workers, max(1, len(job.exceptions)))
        self.tables.exceptions[key] = everything.model_dump(by_alias=True, mode="json")
        stats = checkpoint_statistics(job, offset)
        self.tables.checkpoints[key] = stats.model_dump(by_alias=True, mode="json")


def overview_rows(jobs: Mapping[str, Row]) -> list[Row]:
    """``/jobs/overview``'s rows: the archived jobs in acceptance order (as the
    coordinator lists them), without the ordering key."""
    ordered = sorted(jobs.values(), key=lambda r: r["jm-accepted-seq"])
    return [{k: v for k, v in r.items() if k != "jm-accepted-seq"} for r in ordered]


def exceptions_answer(row: Row, limit: int) -> m.JobExceptions:
    """The stored full history cut to `limit` entries, as the coordinator cuts it."""
    full = m.JobExceptions.model_validate(row)
    entries = full.exception_history.entries
    return m.JobExceptions(
        exception_history=m.ExceptionHistory(
            entries=entries[:limit],
            truncated=full.exception_history.truncated or len(entries) > limit,
        )
    )
