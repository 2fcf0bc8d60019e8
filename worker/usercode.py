"""A job's own code on a worker: fetch once, verify, install per artifact, load first.

docs/user-code.md tells the whole story; the worker's part:

- ``ArtifactCache.install``: the first DeployTask naming an artifact fetches it
  from the blob store (schemas/artifacts.py checks its size and sha256 against
  the reference the leader signed), unpacks the pure-Python wheel into
  ``<cache>/<sha256>/`` (written aside, then renamed into place, so a directory
  there is always complete) and installs the requirements it declares that are
  not installed here into ``<cache>/<sha256>/_deps`` from the configured package
  index, or refuses with the names when there is none. Later tasks of any job
  using the same artifact reuse the directory; two versions of a package are
  two directories, side by side.
- ``registries``: in the slot process, the artifact's directory (then its
  ``_deps``) goes first on ``sys.path``, and the operators and functions come
  from the built-ins, then the artifact's entry points, then the installed
  plugins. A slot process that ran a job's code is replaced by a fresh one when
  the task ends (worker/slotproc.py, ``renew``), so no module of one job is
  ever seen by the next task's code.
"""

from __future__ import annotations

import asyncio
import importlib.metadata
import io
import logging
import re
import shutil
import sys
import tempfile
import zipfile
from pathlib import Path, PurePosixPath
from typing import Final

from schemas import artifacts
from schemas import events as ev
from schemas.statestore import StateStore
from schemas.wheels import FUNCTIONS_GROUP, OPERATORS_GROUP
from worker.errors import TaskError
from worker.functions import BUILTINS as BUILTIN_FUNCTIONS
from worker.functions import FunctionRegistry
from worker.operators import builtins
from worker.operators.registry import OperatorRegistry
from worker.plugins import load_named

log = logging.getLogger(__name__)

DEPS_DIR: Final = "_deps"
_DONE: Final = ".installed"
_REQUIREMENT_NAME: Final = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)")


class UserCodeError(TaskError):
    """A job's code cannot be fetched, trusted or installed on this worker."""


def default_cache_dir(tm_id: str) -> Path:
    return Path(tempfile.gettempdir()) / "jm-artifacts" / tm_id


def missing_requirements(requirements: tuple[str, ...]) -> list[str]:
    """The declared requirements whose distribution is not installed here."""
    missing = []
    for requirement in requirements:
        if ";" in requirement:  # environment markers: pip decides
            missing.append(requirement)
            continue
        match = _REQUIREMENT_NAME.match(requirement)
        try:
            importlib.metadata.distribution(match.group(1) if match else requirement)
        except importlib.metadata.PackageNotFoundError:
            missing.append(requirement)
    return missing


def _unpack(data: bytes, target: Path) -> None:
    """Unpack wheel `data` into `target`, refusing members outside it."""
    with zipfile.ZipFile(io.BytesIO(data)) as wheel:
        for name in wheel.namelist():
            parts = PurePosixPath(name).parts
            if name.startswith("/") or ".." in parts:
                raise UserCodeError(f"wheel member {name[:200]!r} points outside the package")
        wheel.extractall(target)


def _unpacked(data: bytes, root: Path, sha256: str) -> Path:
    """The wheel unpacked into a fresh directory beside its final place."""
    root.mkdir(parents=True, exist_ok=True)
    aside = Path(tempfile.mkdtemp(prefix=f".{sha256[:12]}-", dir=root))
    _unpack(data, aside)
    return aside


def _commit(aside: Path, target: Path, label: str) -> None:
    """Rename the complete directory into place (another process may have won)."""
    (aside / _DONE).write_text(label + "\n")
    try:
        aside.rename(target)
    except OSError:
        if not (target / _DONE).exists():
            raise


class ArtifactCache:
    """The worker's installed artifacts: one directory per sha256 under `root`."""

    def __init__(self, root: Path, store: StateStore | None, package_index: str = "") -> None:
        self.root = root
        self._store = store
        self.package_index = package_index
        self._installs: dict[str, asyncio.Task[Path]] = {}
        #: how many times an artifact was fetched from the blob store (once each).
        self.fetched = 0

    def install(self, ref: ev.ArtifactRef) -> asyncio.Task[Path]:
        """The installation of `ref`, shared by every task that needs it; a failed one
        is forgotten, so a later deploy tries again."""
        running = self._installs.get(ref.sha256)
        if running is not None and not (
            running.done() and (running.cancelled() or running.exception() is not None)
        ):
            return running
        task = asyncio.create_task(self._install(ref), name=f"install-{ref.sha256[:12]}")
        self._installs[ref.sha256] = task
        return task

    async def _install(self, ref: ev.ArtifactRef) -> Path:
        problem = artifacts.reference_problem(ref)
        if problem is not None:
            raise UserCodeError(problem)
        target = self.root / ref.sha256
        if (target / _DONE).exists():
            return target
        if self._store is None:
            raise UserCodeError(f"artifact {ref.name}: this worker has no blob store to fetch from")
        try:
            data = await artifacts.fetch(self._store, ref)
        except artifacts.ArtifactError as err:
            raise UserCodeError(err.reason) from None
        self.fetched += 1
        missing = missing_requirements(ref.requirements)
        if missing and not self.package_index:
            raise UserCodeError(
                f"{ref.name} {ref.version} requires {', '.join(missing)}, not installed on this "
                "worker, and the worker has no package index (offline; set --package-index or "
                "JM_WORKER_PACKAGE_INDEX, or install them on the workers)"
            )
        aside = await asyncio.to_thread(_unpacked, data, self.root, ref.sha256)
        try:
            if missing:
                await self._pip(ref, missing, aside / DEPS_DIR)
            await asyncio.to_thread(_commit, aside, target, f"{ref.name} {ref.version}")
        finally:
            await asyncio.to_thread(shutil.rmtree, aside, True)
        log.info("installed %s %s (%s) in %s", ref.name, ref.version, ref.sha256[:12], target)
        return target

    async def _pip(self, ref: ev.ArtifactRef, requirements: list[str], into: Path) -> None:
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
            "--no-input", "--target", str(into), "--index-url", self.package_index,
            *requirements,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
        )  # fmt: skip
        output, _ = await process.communicate()
        if process.returncode != 0:
            tail = output.decode(errors="replace").strip()[-500:]
            raise UserCodeError(
                f"{ref.name} {ref.version}: installing {', '.join(requirements)} from "
                f"{self.package_index} failed: {tail}"
            )

    async def close(self) -> None:
        for task in self._installs.values():
            task.cancel()
        await asyncio.gather(*self._installs.values(), return_exceptions=True)
        if self._store is not None:
            await self._store.close()


def registries(code: str) -> tuple[OperatorRegistry, FunctionRegistry]:
    """In a slot process: import from the artifact at `code` first, then the plugins.

    Built-in names stay built-ins (the same name means the same code everywhere);
    the artifact's entry points come next, then the installed plugins' for names
    still free."""
    root = Path(code)
    deps = root / DEPS_DIR
    for path in (deps, root):  # root ends up first
        if path.is_dir() and str(path) not in sys.path:
            sys.path.insert(0, str(path))
    importlib.invalidate_caches()
    own = list(importlib.metadata.distributions(path=[str(root)]))
    operators = dict(builtins.BUILTINS)
    functions = dict(BUILTIN_FUNCTIONS)
    for dist in own:
        for group, table in ((OPERATORS_GROUP, operators), (FUNCTIONS_GROUP, functions)):
            for entry in dist.entry_points.select(group=group):
                if entry.name in table:
                    log.warning("%s %r of %s ignored: a built-in", group, entry.name, code)
                    continue
                table[entry.name] = entry.load()  # a broken package fails its task
    return (
        OperatorRegistry(load_named(OPERATORS_GROUP, operators, "operator")),
        FunctionRegistry(load_named(FUNCTIONS_GROUP, functions, "function")),
    )


def cache_for(tm_id: str, cache_dir: str, store: StateStore | None, index: str) -> ArtifactCache:
    root = Path(cache_dir) if cache_dir else default_cache_dir(tm_id)
    return ArtifactCache(root, store, index)
