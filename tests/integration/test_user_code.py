"""User code travels with the job (issue 20): real coordinator, real workers, real
`jm submit --code`, the package built on the fly so no worker has it installed."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import subprocess
import sys
import time
from pathlib import Path

import aiohttp
import pytest

from schemas import artifacts
from schemas import events as ev
from schemas.catalog import Catalog
from schemas.jobgraph import load_job_file
from schemas.limits import MAX_ARTIFACT_BYTES
from schemas.statestore import open_store
from schemas.wheels import build
from tests.conftest import Stack, run_keys
from tests.integration.harness import REPO, Cluster, Journal, Producer, now_ms, status_of
from tests.integration.test_rest_writes import Http, rest_url
from tests.integration.usercode_pkg import probe_job, write_package

pytestmark = pytest.mark.integration

ENDED = {ev.JobStatus.FINISHED, ev.JobStatus.FAILED, ev.JobStatus.CANCELED}


def jm(stack: Stack, catalog: Catalog, *args: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, KAFKA_BOOTSTRAP_SERVERS=stack.bootstrap, REDIS_URL=stack.redis_url,
               JM_CLUSTER_ID=catalog.cluster_id)  # fmt: skip
    return subprocess.run(
        [sys.executable, "-m", "coordinator", *args],
        capture_output=True, text=True, env=env, cwd=REPO, timeout=90, check=False,
    )  # fmt: skip


def written(path: Path) -> str:
    return path.read_text() if path.exists() else ""


async def wait_for_file(path: Path, seconds: float = 60.0) -> str:
    deadline = time.monotonic() + seconds
    while not (text := written(path)):
        assert time.monotonic() < deadline, f"{path} never written"
        await asyncio.sleep(0.1)
    return text


def rejection(events: list[tuple[int, ev.Event]], job_id: str) -> str | None:
    found = [e.reason for _, e in events if isinstance(e, ev.JobRejected) and e.job_id == job_id]
    return found[-1] if found else None


async def test_uploaded_operator_runs_and_two_versions_side_by_side(
    cluster: Cluster, tmp_path: Path
) -> None:
    """A job whose operator exists only in its package runs on a worker that never had it;
    versions 1.0 and 2.0 of the package run at once on that worker; a slot that ran one
    job's code is a fresh process for the next job."""
    await cluster.coordinator("c1").wait_for_line("role LEADER")
    cluster.worker("tm-1", 2, "--artifact-cache-dir", str(tmp_path / "cache"))
    release = tmp_path / "release"
    jobs = {}
    for version in ("1.0", "2.0"):
        code = write_package(tmp_path / f"pkg-{version}", version)
        out = tmp_path / f"out-{version}"
        job = probe_job(tmp_path / f"job-{version}.yaml", f"probe {version}", out, release)
        done = jm(cluster.stack, cluster.catalog, "submit", str(job), "--code", str(code),
                  "--job-id", f"probe-{version.replace('.', '-')}")  # fmt: skip
        assert done.returncode == 0, done.stderr
        jobs[version] = (done.stdout.strip(), out)
    # Both run at once (each waits for `release`), each with its own version.
    seen = {v: (await wait_for_file(out)).split() for v, (_, out) in jobs.items()}
    assert seen["1.0"][0] == "1.0" and seen["2.0"][0] == "2.0"
    await asyncio.to_thread(release.write_text, "go")
    async with Journal(cluster.stack, cluster.catalog) as journal:
        ids = [job_id for job_id, _ in jobs.values()]
        events = await journal.wait_until(lambda es: all(status_of(es, j) in ENDED for j in ids))
        assert [status_of(events, j) for j in ids] == [ev.JobStatus.FINISHED] * 2
        # The same code again: the artifact is installed once, and the slot's process
        # is a new one (no module of the earlier jobs in it).
        again = tmp_path / "out-again"
        job = probe_job(tmp_path / "job-again.yaml", "probe again", again)
        done = jm(cluster.stack, cluster.catalog, "submit", str(job), "--code",
                  str(tmp_path / "pkg-1.0"), "--job-id", "probe-again")  # fmt: skip
        assert done.returncode == 0, done.stderr
        version, pid = (await wait_for_file(again)).split()
        assert version == "1.0"
        assert pid not in (seen["1.0"][1], seen["2.0"][1])
        events = await journal.wait_until(lambda es: status_of(es, "probe-again") in ENDED)
        assert status_of(events, "probe-again") is ev.JobStatus.FINISHED
    installed = sorted(p.name for p in (tmp_path / "cache").iterdir() if not p.name.startswith("."))
    assert len(installed) == 2  # one directory per artifact, shared by both 1.0 jobs
    assert "fresh process after a job's own code" in cluster.workers["tm-1"].log()


async def test_tampered_oversized_and_missing_artifacts_are_refused(
    cluster: Cluster, tmp_path: Path
) -> None:
    """Each refused with its reason in the journal; the leader keeps running and accepts a
    good one afterwards."""
    await cluster.coordinator("c1").wait_for_line("role LEADER")
    data, filename = build(write_package(tmp_path / "pkg", "1.0"))
    keys = run_keys()
    store = open_store("kafka", catalog=cluster.catalog, bootstrap=cluster.stack.bootstrap)
    try:
        good = await artifacts.store(store, keys, data, filename)
        other = await artifacts.store(store, keys, data + b"tampered", "x.whl")
    finally:
        await store.close()
    job = load_job_file(probe_job(tmp_path / "job.yaml", "probe", tmp_path / "out"),
                        event_time=now_ms())  # fmt: skip

    def submission(job_id: str, ref: ev.ArtifactRef) -> ev.JobSubmitted:
        return dataclasses.replace(job, job_id=job_id, event_id=f"e-{job_id}", artifact=ref)

    cases = {
        # the bytes behind the handle are not those the sha256 names
        "tampered": artifacts.sign(keys, dataclasses.replace(good, handle=other.handle)),
        "oversized": artifacts.sign(keys, dataclasses.replace(good, size=MAX_ARTIFACT_BYTES + 1)),
        "missing": artifacts.sign(
            keys, dataclasses.replace(good, handle=good.handle.rsplit("/", 1)[0] + "/" + "f" * 32)
        ),
        "unsigned": dataclasses.replace(good, signature=None),
        "good": good,
    }
    async with Producer(cluster.stack, cluster.catalog) as client, \
            Journal(cluster.stack, cluster.catalog) as journal:  # fmt: skip
        for job_id, ref in cases.items():
            await client.send(submission(job_id, ref))
        events = await journal.wait_until(
            lambda es: all(
                status_of(es, j) is not None or rejection(es, j) is not None for j in cases
            )
        )
    assert "checksum mismatch" in (rejection(events, "tampered") or "")
    assert "MAX_ARTIFACT_BYTES" in (rejection(events, "oversized") or "")
    assert "missing" in (rejection(events, "missing") or "")
    assert "signature" in (rejection(events, "unsigned") or "")
    assert rejection(events, "good") is None and status_of(events, "good") is not None
    assert cluster.coordinators[0].proc.poll() is None


async def test_rest_upload_offline_requirements_listing_and_garbage_collection(
    cluster: Cluster, tmp_path: Path
) -> None:
    """POST /artifacts then POST /jobs naming it (a directory blob store); the job's
    details show its artifact, `jm artifacts` lists it, a package whose requirement is
    missing on an offline worker fails with the reason, and once the last job using
    the package ended and the retention passed, the blob is deleted."""
    blobs = tmp_path / "blobs"
    store = f"file://{blobs}"
    leader = cluster.coordinator("c1", "--state-checkpoints-dir", store,
                                 "--artifact-retention-ms", "1500")  # fmt: skip
    await leader.wait_for_line("role LEADER")
    cluster.worker("tm-1", 2, "--state-checkpoints-dir", store,
                   "--artifact-cache-dir", str(tmp_path / "cache"))  # fmt: skip
    url = await rest_url(leader)
    data, filename = build(write_package(tmp_path / "pkg", "3.0"))
    needy, needy_name = build(
        write_package(tmp_path / "needy", "1.0", name="jm-needy", requires=("jm-no-such-dist>=1",))
    )
    out = tmp_path / "out"
    async with aiohttp.ClientSession() as session, \
            Journal(cluster.stack, cluster.catalog) as journal:  # fmt: skip
        http = Http(session, url, None)
        status, ref = await http.call("POST", f"/artifacts?filename={filename}", raw=data)
        assert status == 201, ref
        status, needy_ref = await http.call("POST", f"/artifacts?filename={needy_name}", raw=needy)
        assert status == 201, needy_ref
        vertex = {"id": "probe", "operator": "probe", "config": {"path": str(out)}}
        body = {"job_id": "rest-code", "name": "rest code", "vertices": [vertex], "artifact": ref}
        status, answer = await http.call("POST", "/jobs", body)
        assert status == 202, answer
        body = {**body, "job_id": "needy", "name": "needy", "artifact": needy_ref}
        status, answer = await http.call("POST", "/jobs", body)
        assert status == 202, answer
        events = await journal.wait_until(
            lambda es: status_of(es, "rest-code") in ENDED and status_of(es, "needy") in ENDED
        )
        assert status_of(events, "rest-code") is ev.JobStatus.FINISHED
        assert (await asyncio.to_thread(out.read_text)).startswith("3.0 ")
        assert status_of(events, "needy") is ev.JobStatus.FAILED
        stacks = [e.error_stack or "" for _, e in events
                  if isinstance(e, ev.TaskStateRecorded) and e.task.job_id == "needy"]  # fmt: skip
        assert any("jm-no-such-dist" in s and "no package index" in s for s in stacks), stacks
        status, detail = await http.call("GET", "/jobs/rest-code")
        assert detail["jm-artifact"]["sha256"] == ref["sha256"], detail
    listed = jm(cluster.stack, cluster.catalog, "artifacts", "list", "--url", url)
    assert listed.returncode == 0, listed.stderr
    assert ref["sha256"] in listed.stdout and "jm-probe-ops 3.0" in listed.stdout
    # Garbage collection: the blob file goes once the retention after the job's end passed.
    blob = blobs / cluster.catalog.cluster_id / "_artifacts" / "chk-0" / ref["sha256"]
    deadline = time.monotonic() + 60
    while await asyncio.to_thread(blob.exists):
        assert time.monotonic() < deadline, "artifact never deleted"
        await asyncio.sleep(0.2)
    assert "no job uses it any more" in leader.output()
    shown = jm(cluster.stack, cluster.catalog, "artifacts", "delete", needy_ref["sha256"],
               "--url", url)  # fmt: skip
    assert shown.returncode == 0, shown.stderr


def test_dry_run_finds_every_name_in_the_package_or_says_what_is_missing(
    stack: Stack, catalog: Catalog, tmp_path: Path
) -> None:
    """`jm submit --dry-run`: an operator only the package has is missing without it;
    `code:` in the job file brings it; a function no one provides is named."""
    write_package(tmp_path / "pkg", "1.0")
    job = probe_job(tmp_path / "job.yaml", "probe", tmp_path / "out")
    without = jm(stack, catalog, "submit", str(job), "--dry-run")
    assert without.returncode == 1
    assert "operator 'probe' is in neither the job's code (none given)" in without.stderr
    text = job.read_text() + "code: pkg\n"
    text = text.replace("config: {", "config: {function: no_such_fn, ")
    job.write_text(text)
    found = jm(stack, catalog, "submit", str(job), "--dry-run")
    assert found.returncode == 1
    assert "operator 'probe'" not in found.stderr
    assert "function 'no_such_fn' is in neither the package jm-probe-ops 1.0" in found.stderr
