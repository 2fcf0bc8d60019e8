"""The blob store of user-code packages: content-addressed, signed, checked on read.

A job's package (docs/user-code.md) is stored once in the cluster's state store
(``state.checkpoints.dir``: the chunked Kafka topic by default, so a multi-host
cluster needs no shared filesystem, or a directory) under the pseudo job
``_artifacts``, named by its sha256. ``JobSubmitted`` and ``DeployTask`` carry an
``ArtifactRef`` (sha256, size, name, version, the store's handle, what the package
provides), never the bytes.

The reference is signed with the client key like a submission (schemas/signing.py,
over the pseudo topic ``jm-artifact``, keyed by the sha256); the coordinator
checks that signature and the stored bytes before it accepts the job. Workers
hold no client key: they take the reference from ``DeployTask``, which the
leader signs, and ``fetch`` returns bytes only when their size and sha256 match
it, so a blob changed after the check is never installed.
"""

from __future__ import annotations

import dataclasses
import hashlib
import re
from typing import Final

from schemas import events as ev
from schemas.limits import MAX_ARTIFACT_BYTES
from schemas.signing import HEADER, KeyRing
from schemas.statestore import StateStore, StateStoreError
from schemas.wheels import PackageError, inspect

#: The pseudo job id artifacts are stored under in the state store.
ARTIFACT_JOB: Final = "_artifacts"
#: The pseudo topic the signature of a reference is made over.
SIGNED_TOPIC: Final = "jm-artifact"
SHA256: Final = re.compile(r"[0-9a-f]{64}")


class ArtifactError(Exception):
    """A package cannot be stored, found or trusted; `reason` says why."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def _signed_value(ref: ev.ArtifactRef) -> bytes:
    return f"{ref.sha256}\n{ref.size}\n{ref.name}\n{ref.version}\n{ref.filename}".encode()


def sign(keys: KeyRing, ref: ev.ArtifactRef) -> ev.ArtifactRef:
    """`ref` with the client's signature (unchanged when signing is off)."""
    headers = keys.sign("submissions", SIGNED_TOPIC, ref.sha256.encode(), _signed_value(ref))
    found = [v for k, v in headers if k == HEADER]
    return dataclasses.replace(ref, signature=found[0].decode() if found else None)


def signature_problem(keys: KeyRing, ref: ev.ArtifactRef) -> str | None:
    """Why `ref`'s signature is not a valid client signature (None: it is, or unsigned)."""
    headers = [] if ref.signature is None else [(HEADER, ref.signature.encode())]
    problem = keys.problem(
        "submissions", SIGNED_TOPIC, ref.sha256.encode(), _signed_value(ref), headers
    )
    return None if problem is None else f"artifact signature: {problem}"


def reference_problem(ref: ev.ArtifactRef) -> str | None:
    """What is wrong with a reference on its face (no store read)."""
    if not SHA256.fullmatch(ref.sha256):
        return f"artifact sha256 {ref.sha256[:80]!r} is not 64 lowercase hex digits"
    if not 0 <= ref.size <= MAX_ARTIFACT_BYTES:
        return (
            f"artifact {ref.name} is {ref.size} bytes, at most {MAX_ARTIFACT_BYTES} "
            "(MAX_ARTIFACT_BYTES) allowed"
        )
    return None


def describe(data: bytes, filename: str, handle: str = "") -> ev.ArtifactRef:
    """The (unsigned) reference of wheel `data`, for a package stored at `handle`."""
    if len(data) > MAX_ARTIFACT_BYTES:
        raise ArtifactError(
            f"{filename} is {len(data)} bytes, at most {MAX_ARTIFACT_BYTES} "
            "(MAX_ARTIFACT_BYTES) allowed"
        )
    try:
        info = inspect(data)
    except PackageError as err:
        raise ArtifactError(f"{filename}: {err}") from None
    if not info.pure:
        raise ArtifactError(
            f"{filename} is not a pure-Python wheel (Root-Is-Purelib: true): workers only "
            "install pure-Python packages from a job"
        )
    return ev.ArtifactRef(
        sha256=hashlib.sha256(data).hexdigest(),
        size=len(data),
        name=info.name,
        version=info.version,
        filename=filename,
        handle=handle,
        operators=info.operators,
        functions=info.functions,
        requirements=info.requirements,
    )


async def store(store: StateStore, keys: KeyRing, data: bytes, filename: str) -> ev.ArtifactRef:
    """Put wheel `data` in `store`; its signed reference."""
    ref = describe(data, filename)
    try:
        handle = await store.put(ARTIFACT_JOB, 0, ref.sha256, data)
    except StateStoreError as err:
        raise ArtifactError(f"storing {filename}: {err.reason}") from None
    return sign(keys, dataclasses.replace(ref, handle=handle))


async def fetch(store: StateStore, ref: ev.ArtifactRef) -> bytes:
    """The bytes of `ref`, checked against its size and sha256 (ArtifactError if not)."""
    found = reference_problem(ref)
    if found is not None:
        raise ArtifactError(found)
    try:
        data = await store.get(ref.handle)
    except StateStoreError as err:
        raise ArtifactError(f"artifact {ref.name} {ref.version} missing: {err.reason}") from None
    if len(data) != ref.size:
        raise ArtifactError(
            f"artifact {ref.name} {ref.version}: {len(data)} bytes stored, the reference "
            f"says {ref.size} (checksum mismatch)"
        )
    actual = hashlib.sha256(data).hexdigest()
    if actual != ref.sha256:
        raise ArtifactError(
            f"artifact {ref.name} {ref.version}: checksum mismatch, sha256 {actual[:16]}... "
            f"stored, {ref.sha256[:16]}... referenced"
        )
    return data


async def check(store: StateStore, keys: KeyRing, ref: ev.ArtifactRef) -> str | None:
    """Why the coordinator must refuse `ref` (signature, size, missing, checksum); None if fine."""
    problem = reference_problem(ref) or signature_problem(keys, ref)
    if problem is not None:
        return problem
    try:
        await fetch(store, ref)
    except ArtifactError as err:
        return err.reason
    return None
