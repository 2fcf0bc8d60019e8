"""Which user-code artifacts no job needs any more (pure; docs/user-code.md, "Lifecycle").

A stored package (schemas/artifacts.py) is referenced by the handle in its jobs'
submissions. Once every job referencing a handle has ended, and the last of them
ended at least `retention_ms` ago, the handle may be deleted from the blob store
(the leader's runtime does it, coordinator/runtime/stateio.py). A job that is
still running, restarting or waiting keeps its artifact; so does any job that
references the same handle and ended more recently.
"""

from collections.abc import Iterator

from coordinator.domain.state import State
from schemas.events import ArtifactRef


def expired(state: State, now: int, retention_ms: int) -> Iterator[ArtifactRef]:
    """The artifacts whose jobs all ended at least `retention_ms` before `now`."""
    last_end: dict[str, int | None] = {}  # handle -> when its last job ended (None: live)
    refs: dict[str, ArtifactRef] = {}
    for job in state.jobs.values():
        ref = job.submission.artifact
        if ref is None:
            continue
        refs[ref.handle] = ref
        ended = job.status_since if job.status.is_globally_terminal else None
        before = last_end.get(ref.handle, 0)
        last_end[ref.handle] = None if ended is None or before is None else max(before, ended)
    for handle, ended in last_end.items():
        if ended is not None and now - ended >= retention_ms:
            yield refs[handle]
