"""User-code packages over REST (docs/user-code.md, docs/rest.md):

- ``POST /artifacts?filename=NAME.whl`` with the wheel as the body stores it in the
  cluster's blob store (as ``jm submit --code`` does) and answers its signed
  reference; a ``POST /jobs`` body then names it as ``artifact``.
- ``GET /artifacts`` and ``GET /artifacts/{sha256}``: the packages the jobs this
  replica knows reference, with those jobs (from the folded state).
- ``DELETE /artifacts/{sha256}``: delete it from the blob store now, refused (409)
  while a job that has not ended uses it.
"""

from __future__ import annotations

from collections.abc import Iterator

from aiohttp import web
from pydantic import Field

from coordinator import usercode
from coordinator.rest import models as m
from coordinator.rest.api import ApiError, Route, bad_request, json_answer, not_found
from coordinator.rest.auth import authorized
from coordinator.rest.context import RestContext
from schemas import artifacts
from schemas import events as ev
from schemas.catalog import Catalog
from schemas.limits import MAX_ARTIFACT_BYTES
from schemas.statestore import open_store
from schemas.wheels import normalized

STORE_OPTION = "state.checkpoints.dir"  # the settings model's key (/jobmanager/config)


class StoredArtifact(m.Model):
    """A stored user-code package's reference (a ``POST /jobs`` body's ``artifact``)."""

    sha256: str
    size: int
    name: str
    version: str
    filename: str
    handle: str
    operators: list[str]
    functions: list[str]
    requirements: list[str]
    signature: str | None = None


class ArtifactInfo(StoredArtifact):
    """A stored user-code package and the jobs that reference it."""

    jobs: list[str] = Field(default_factory=list)
    in_use: bool = Field(False, alias="in-use")


class ArtifactList(m.Reflecting):
    artifacts: list[ArtifactInfo]


class ArtifactDeleted(m.Model):
    sha256: str
    deleted: int


def info(ref: ev.ArtifactRef, jobs: list[str] | None = None, in_use: bool = False) -> ArtifactInfo:
    return ArtifactInfo(
        sha256=ref.sha256, size=ref.size, name=ref.name, version=ref.version,
        filename=ref.filename, handle=ref.handle, operators=list(ref.operators),
        functions=list(ref.functions), requirements=list(ref.requirements),
        signature=ref.signature, jobs=jobs or [], in_use=in_use,
    )  # fmt: skip


def _known(ctx: RestContext) -> Iterator[tuple[ev.ArtifactRef, str, bool]]:
    """(reference, job id, job still live) for every job with an artifact."""
    for job in ctx.state.jobs.values():
        if job.submission.artifact is not None:
            yield job.submission.artifact, job.job_id, not job.status.is_globally_terminal


def _listed(ctx: RestContext) -> dict[str, ArtifactInfo]:
    found: dict[str, ArtifactInfo] = {}
    for ref, job_id, live in _known(ctx):
        row = found.setdefault(ref.sha256, info(ref))
        row.jobs.append(job_id)
        row.in_use = row.in_use or live
    return found


def routes(ctx: RestContext) -> list[Route | web.RouteDef]:
    def store_url() -> str:
        return ctx.options.get(STORE_OPTION) or usercode.blob_store_url(None)

    def denied(request: web.Request) -> None:
        if not authorized(request.headers.get("Authorization"), ctx.token):
            raise ApiError(401, f"Unauthorized: {request.method} {request.path} needs the token")

    async def upload(request: web.Request) -> web.StreamResponse:
        denied(request)
        filename = request.query.get("filename", "")
        if not filename.endswith(".whl") or "/" in filename:
            raise bad_request("filename: the wheel's file name (NAME-VERSION-TAGS.whl)")
        if request.content_length is not None and request.content_length > MAX_ARTIFACT_BYTES:
            raise ApiError(413, f"the package is larger than {MAX_ARTIFACT_BYTES} bytes "
                                "(MAX_ARTIFACT_BYTES)")  # fmt: skip
        data = await request.content.read(MAX_ARTIFACT_BYTES + 1)
        try:
            ref = await usercode.upload(
                data, filename, store_url=store_url(), catalog=Catalog(ctx.settings.cluster_id),
                bootstrap=ctx.settings.bootstrap_servers, keys=ctx.settings.keyring("client"),
            )  # fmt: skip
        except artifacts.ArtifactError as err:
            raise bad_request(f"(body): {err.reason}") from None
        return json_answer(StoredArtifact.model_validate(info(ref).model_dump(
            include=set(StoredArtifact.model_fields))), 201)  # fmt: skip

    async def listing(request: web.Request) -> web.Response:
        rows = sorted(_listed(ctx).values(), key=lambda r: (normalized(r.name), r.version))
        return json_answer(ArtifactList(journal_offset=ctx.offset, artifacts=rows))

    async def one(request: web.Request) -> web.Response:
        sha = request.match_info["sha256"]
        row = _listed(ctx).get(sha)
        if row is None:
            raise not_found(f"no job this replica knows references artifact {sha[:64]}")
        return json_answer(row)

    async def delete(request: web.Request) -> web.Response:
        denied(request)
        sha = request.match_info["sha256"]
        known = [(ref, job_id, live) for ref, job_id, live in _known(ctx) if ref.sha256 == sha]
        if not known:
            raise not_found(f"no job this replica knows references artifact {sha[:64]}")
        live = sorted(job_id for _, job_id, is_live in known if is_live)
        if live:
            raise ApiError(409, f"artifact {sha[:16]}... is used by job(s) that have not "
                                f"ended: {', '.join(live)}")  # fmt: skip
        handles = sorted({ref.handle for ref, _, _ in known})
        store = open_store(store_url(), catalog=Catalog(ctx.settings.cluster_id),
                           bootstrap=ctx.settings.bootstrap_servers)  # fmt: skip
        try:
            await store.discard(handles)
        finally:
            await store.close()
        return json_answer(ArtifactDeleted(sha256=sha, deleted=len(handles)))

    return [
        Route("POST", "/artifacts", upload,
              "Store a user-code wheel (the body); answers its signed reference",
              StoredArtifact, {"filename": "the wheel's file name"}, status=201),
        Route("GET", "/artifacts", listing,
              "The user-code packages of the jobs this replica knows", ArtifactList),
        Route("GET", "/artifacts/{sha256}", one, "One user-code package and its jobs",
              ArtifactInfo),
        Route("DELETE", "/artifacts/{sha256}", delete,
              "Delete a package no live job uses from the blob store", ArtifactDeleted),
    ]  # fmt: skip
