"""The client's side of user code: package, store and reference a job's own code.

``jm submit --code PATH`` (or ``code:`` in the job file) and ``POST
/artifacts`` end here: the code becomes one wheel (schemas/wheels.py), the
wheel goes into the cluster's blob store (schemas/artifacts.py) and the job's
``JobSubmitted`` gets its signed reference. ``missing_names`` is the local half
of ``jm submit --dry-run``: every operator and function the job names must come
from the package, the built-ins, or plugins installed where ``jm`` runs or on
the workers (docs/user-code.md).
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Collection
from pathlib import Path
from typing import Final

from schemas import artifacts
from schemas import events as ev
from schemas.catalog import Catalog
from schemas.signing import KeyRing
from schemas.statestore import open_store
from schemas.wheels import PackageError, package_bytes

#: Where ``jm`` stores packages when no --blob-store is given: the cluster's
#: state.checkpoints.dir as the workers and the coordinator have it.
BLOB_STORE_ENV: Final = "JM_BLOB_STORE"


def blob_store_url(flag: str | None) -> str:
    return flag or os.environ.get(BLOB_STORE_ENV) or "kafka"


def package(path: Path) -> tuple[bytes, str]:
    """The wheel (bytes, file name) of `path`; ArtifactError with a reason otherwise."""
    try:
        return package_bytes(path)
    except PackageError as err:
        raise artifacts.ArtifactError(str(err)) from None


async def upload(
    data: bytes, filename: str, *, store_url: str, catalog: Catalog, bootstrap: str, keys: KeyRing
) -> ev.ArtifactRef:
    """Store wheel `data` in the cluster's blob store; its signed reference."""
    artifacts.describe(data, filename)  # refuse what no coordinator accepts before writing
    store = open_store(store_url, catalog=catalog, bootstrap=bootstrap)
    try:
        return await artifacts.store(store, keys, data, filename)
    finally:
        await store.close()


def with_artifact(job: ev.JobSubmitted, ref: ev.ArtifactRef) -> ev.JobSubmitted:
    return dataclasses.replace(job, artifact=ref)


def missing_names(
    job: ev.JobSubmitted,
    ref: ev.ArtifactRef | None,
    operators: Collection[str],
    functions: Collection[str],
) -> list[str]:
    """Operators and functions `job` names that neither `ref` nor the given
    (built-in and installed) names provide."""
    have_ops = set(operators) | set(ref.operators if ref else ())
    have_fns = set(functions) | set(ref.functions if ref else ())
    where = f"the package {ref.name} {ref.version}" if ref else "the job's code (none given)"
    found: list[str] = []
    for v in job.job_graph.vertices:
        if v.operator not in have_ops:
            found.append(
                f"vertex {v.id}: operator {v.operator!r} is in neither {where} nor the "
                "built-ins and installed plugins"
            )
        function = v.config.get("function")
        if function and function not in have_fns:
            found.append(
                f"vertex {v.id}: function {function!r} is in neither {where} nor the "
                "built-ins and installed plugins"
            )
    return found


def local_names() -> tuple[tuple[str, ...], tuple[str, ...]]:
    """Operators and functions of the built-ins and the plugins installed here."""
    from worker.functions import FunctionRegistry
    from worker.operators.registry import OperatorRegistry

    return OperatorRegistry.load().names(), FunctionRegistry.load().names()
