"""A user-code package written on the fly for the user-code tests and the bench: no
worker has it installed, so its operator can only come from the uploaded artifact."""

from __future__ import annotations

import textwrap
from pathlib import Path

PROBE = '''
"""A test operator: writes "<version> <pid>" to config `path`, waits for config
`release` (a file) when given, then finishes."""

import asyncio
import os
from pathlib import Path

from worker.operators.api import SourceOperator

VERSION = "{version}"
PADDING = {padding!r}


class Probe(SourceOperator):
    async def run(self, ctx, out):
        Path(ctx.config["path"]).write_text(f"{{VERSION}} {{os.getpid()}}")
        release = ctx.config.get("release")
        while release and not Path(release).exists():
            await asyncio.sleep(0.05)
'''


def write_package(
    root: Path,
    version: str,
    *,
    name: str = "jm-probe-ops",
    requires: tuple[str, ...] = (),
    padding_bytes: int = 0,
) -> Path:
    """A project directory whose package provides operator ``probe``; `padding_bytes`
    of incompressible text make the wheel about that much larger."""
    root.mkdir(parents=True, exist_ok=True)
    deps = ", ".join(f'"{r}"' for r in requires)
    (root / "pyproject.toml").write_text(
        textwrap.dedent(f"""\
        [project]
        name = "{name}"
        version = "{version}"
        dependencies = [{deps}]

        [project.entry-points."kafka_jobmanager.operators"]
        probe = "jm_probe_ops:Probe"
        """)
    )
    package = root / "jm_probe_ops"
    package.mkdir(exist_ok=True)
    padding = __import__("os").urandom(padding_bytes // 2).hex() if padding_bytes else ""
    (package / "__init__.py").write_text(PROBE.format(version=version, padding=padding))
    return root


def probe_job(path: Path, name: str, out: Path, release: Path | None = None) -> Path:
    """A one-vertex job file running ``probe``."""
    config = f"{{path: {out}" + (f", release: {release}}}" if release else "}")
    path.write_text(
        f"name: {name}\nvertices:\n  - {{id: probe, operator: probe, parallelism: 1, "
        f"config: {config}}}\n"
    )
    return path
