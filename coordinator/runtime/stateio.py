"""The leader's I/O on checkpoint state: savepoint directories, restores, deletions.

The pure core decides; this does the file and store work around it
(docs/checkpoints.md, "Savepoints"):

- ``check_submissions``: before a JobSubmitted naming a ``savepoint_path`` is
  decided, read that savepoint (``_metadata`` and file sizes) and put why it
  cannot be restored, or None, in the view (``savepoint_checks``); decide
  accepts or rejects on it, and the journal keeps the decision. A JobSubmitted
  carrying a user-code artifact is checked the same way (``artifact_checks``:
  signature, size, presence in the store, sha256; schemas/artifacts.py).
- ``scan``: every completed savepoint whose directory is not written yet
  (state: ``savepoints_to_write``, from the journal, so a new leader finds what
  an old one left) is exported with ``export_savepoint`` from the checkpoint
  store into a fresh directory under its target, in the background; the
  outcome comes back through ``take_results`` as a ``SavepointWritten`` input.
- ``discard``: the handles of each committed CheckpointStateDiscarded are
  deleted from the store, in the background; a failure is logged, never raised.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Iterable
from pathlib import Path

from coordinator.domain import SavepointWritten, State, artifact_gc
from coordinator.domain.state import SavepointToWrite
from coordinator.domain.view import LeaderView
from schemas import artifacts
from schemas import events as ev
from schemas.catalog import Catalog
from schemas.savepoint import check_restorable, export_savepoint, savepoint_dir_name
from schemas.signing import KeyRing
from schemas.statestore import StateStore, open_store

log = logging.getLogger(__name__)


def _target(directory: str, job_id: str, checkpoint_id: int) -> Path:
    """A fresh savepoint directory under `directory` (relative: to the leader's cwd)."""
    return Path(os.path.abspath(directory)) / savepoint_dir_name(job_id, checkpoint_id)


class StateIO:
    """One leader term's state I/O; ``close`` cancels what is still running."""

    def __init__(
        self, url: str, catalog: Catalog, bootstrap: str, epoch: int, keys: KeyRing | None = None
    ) -> None:
        self.url = url
        self.keys = keys if keys is not None else KeyRing.insecure()
        self.catalog = catalog
        self.bootstrap = bootstrap
        self.epoch = epoch
        self._store: StateStore | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._started: set[tuple[str, int]] = set()
        self._results: list[SavepointWritten] = []
        self._collected: set[str] = set()  # artifact handles deleted this term
        self._verified: set[tuple[str, str]] = set()  # (sha256, handle) read and checked

    def _open(self) -> StateStore:
        if self._store is None:
            self._store = open_store(self.url, catalog=self.catalog, bootstrap=self.bootstrap)
        return self._store

    def _spawn(self, coro: object) -> None:
        task = asyncio.ensure_future(coro)  # type: ignore[call-overload]
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # -------------------------------------------------------- restore checks

    async def check_submissions(
        self, events: Iterable[ev.Event], state: State, view: LeaderView
    ) -> None:
        for event in events:
            if (
                isinstance(event, ev.JobSubmitted)
                and event.artifact is not None
                and event.job_id not in state.jobs
            ):
                view.artifact_checks[event.event_id] = await self._check_artifact(event.artifact)
            if (
                not isinstance(event, ev.JobSubmitted)
                or event.savepoint_path is None
                or event.job_id in state.jobs
            ):
                continue
            vertices = {v.id: v.parallelism for v in event.job_graph.vertices}
            try:
                await asyncio.to_thread(check_restorable, event.savepoint_path, vertices)
                view.savepoint_checks[event.event_id] = None
            except Exception as err:  # every problem is the submission's rejection reason
                view.savepoint_checks[event.event_id] = str(err)

    # -------------------------------------------------------------- savepoints

    def scan(self, state: State) -> None:
        """Start writing every savepoint the state says is not written yet."""
        for job in state.jobs.values():
            for checkpoint_id, todo in job.checkpoints.savepoints_to_write.items():
                key = (job.job_id, checkpoint_id)
                if key in self._started:
                    continue
                self._started.add(key)
                vertices = {v.id: v.parallelism for v in job.submission.job_graph.vertices}
                self._spawn(self._export(job.job_id, checkpoint_id, todo, vertices))

    async def _export(
        self, job_id: str, checkpoint_id: int, todo: SavepointToWrite, vertices: dict[str, int]
    ) -> None:
        event_id = f"savepoint:{self.epoch}:{job_id}:{checkpoint_id}"
        target = _target(todo.directory, job_id, checkpoint_id)
        try:
            await asyncio.to_thread(target.parent.mkdir, parents=True, exist_ok=True)
            await export_savepoint(
                self._open(),
                target,
                job_id=job_id,
                checkpoint_id=checkpoint_id,
                vertices=vertices,
                handles=todo.handles,
            )
        except asyncio.CancelledError:
            raise
        except Exception as err:
            log.warning("savepoint %d of %s not written to %s: %s", checkpoint_id, job_id,
                        target, err)  # fmt: skip
            self._results.append(SavepointWritten(event_id, job_id, checkpoint_id, None, f"{err}"))
            return
        log.info("savepoint %d of %s written to %s", checkpoint_id, job_id, target)
        self._results.append(SavepointWritten(event_id, job_id, checkpoint_id, str(target)))

    def take_results(self) -> list[SavepointWritten]:
        results, self._results = self._results, []
        return results

    # ---------------------------------------------------------------- discard

    async def _check_artifact(self, ref: ev.ArtifactRef) -> str | None:
        """Why `ref` cannot be used; a package already read whole this term is not
        read again (the signature, over the reference, is checked every time)."""
        if (ref.sha256, ref.handle) in self._verified:
            return artifacts.signature_problem(self.keys, ref)
        problem = await artifacts.check(self._open(), self.keys, ref)
        if problem is None:
            self._verified.add((ref.sha256, ref.handle))
        return problem

    def collect_artifacts(self, state: State, now: int, retention_ms: int) -> None:
        """Delete (in the background, once per term) the user-code artifacts whose jobs
        all ended at least `retention_ms` ago."""
        for ref in artifact_gc.expired(state, now, retention_ms):
            if ref.handle not in self._collected:
                self._collected.add(ref.handle)
                self._verified.discard((ref.sha256, ref.handle))
                self._spawn(self._collect(ref))

    async def _collect(self, ref: ev.ArtifactRef) -> None:
        try:
            await self._open().discard([ref.handle])
            log.info("deleted artifact %s %s (%s): no job uses it any more",
                     ref.name, ref.version, ref.sha256[:16])  # fmt: skip
        except asyncio.CancelledError:
            raise
        except Exception as err:  # left behind costs space, never the leader
            log.warning("deleting artifact %s failed: %s", ref.sha256[:16], err)

    def discard(self, events: Iterable[ev.Event]) -> None:
        """Delete the state named by the committed CheckpointStateDiscarded among `events`."""
        for event in events:
            if isinstance(event, ev.CheckpointStateDiscarded) and event.handles:
                self._spawn(self._discard(event))

    async def _discard(self, event: ev.CheckpointStateDiscarded) -> None:
        try:
            await self._open().discard(event.handles)
            log.info("discarded the state of checkpoints %s of %s (%s)",
                     list(event.checkpoint_ids), event.job_id, event.reason)  # fmt: skip
        except asyncio.CancelledError:
            raise
        except Exception as err:  # state left behind costs space, never the leader
            log.warning("discarding the state of checkpoints %s of %s failed: %s",
                        list(event.checkpoint_ids), event.job_id, err)  # fmt: skip

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        store, self._store = self._store, None
        if store is not None:
            try:
                await store.close()
            except Exception:
                log.debug("state store close failed", exc_info=True)
