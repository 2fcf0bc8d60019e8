"""User-code packages as wheels: build one from a project, read what one provides.

A job's code travels as one pure-Python wheel (docs/user-code.md). ``jm submit
--code PATH`` accepts a wheel as it is; a project directory (a
``pyproject.toml`` with a ``[project]`` table) or an sdist of one is built into
a wheel here, without a build backend or a network: the packages and modules
of the project (under ``src/`` when there is one) are zipped with the
metadata, entry points and RECORD a wheel needs. The build is reproducible
(fixed timestamps, sorted entries), so the same sources give the same sha256,
and the blob store keeps them once.

``inspect`` reads a wheel's name, version, declared requirements and the
operators and functions its entry points provide (the groups the workers load,
worker/operators/registry.py and worker/functions.py). Standard library only.
"""

from __future__ import annotations

import base64
import configparser
import email.parser
import hashlib
import io
import re
import tarfile
import tempfile
import tomllib
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

OPERATORS_GROUP: Final = "kafka_jobmanager.operators"
FUNCTIONS_GROUP: Final = "kafka_jobmanager.functions"
#: Every file of a built wheel carries this time (1980-01-01, the zip epoch).
_ZIP_TIME: Final = (1980, 1, 1, 0, 0, 0)
_NAME: Final = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9._-]*[A-Za-z0-9])?$")
_SKIPPED_DIRS: Final = frozenset({"__pycache__", ".git", "tests", "build", "dist", ".venv"})


class PackageError(Exception):
    """A package cannot be built or read; the message says why and what to do."""


@dataclass(frozen=True, slots=True)
class WheelInfo:
    """What a wheel is and provides."""

    name: str
    version: str
    operators: tuple[str, ...]
    functions: tuple[str, ...]
    requirements: tuple[str, ...]
    pure: bool


def normalized(name: str) -> str:
    """The wheel file name form of a distribution name."""
    return re.sub(r"[-_.]+", "_", name)


def inspect(data: bytes) -> WheelInfo:
    """Name, version, requirements and provided names of the wheel `data`."""
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
    except zipfile.BadZipFile as err:
        raise PackageError(f"not a wheel (zip archive): {err}") from None
    with archive:
        infos = [n for n in archive.namelist() if re.fullmatch(r"[^/]+\.dist-info/METADATA", n)]
        if len(infos) != 1:
            raise PackageError("not a wheel: no single *.dist-info/METADATA in the archive")
        dist_info = infos[0].split("/")[0]
        metadata = email.parser.HeaderParser().parsestr(archive.read(infos[0]).decode())
        name, version = metadata.get("Name"), metadata.get("Version")
        if not name or not version:
            raise PackageError(f"{dist_info}/METADATA lacks Name or Version")
        groups: dict[str, tuple[str, ...]] = {}
        entry_points = f"{dist_info}/entry_points.txt"
        if entry_points in archive.namelist():
            parser = configparser.ConfigParser(delimiters=("=",), interpolation=None)
            parser.optionxform = str  # type: ignore[assignment,method-assign]
            parser.read_string(archive.read(entry_points).decode())
            groups = {g: tuple(sorted(parser[g])) for g in parser.sections()}
        wheel_file = f"{dist_info}/WHEEL"
        wheel = archive.read(wheel_file).decode() if wheel_file in archive.namelist() else ""
    return WheelInfo(
        name=name,
        version=version,
        operators=groups.get(OPERATORS_GROUP, ()),
        functions=groups.get(FUNCTIONS_GROUP, ()),
        requirements=tuple(metadata.get_all("Requires-Dist") or ()),
        pure="Root-Is-Purelib: true" in wheel,
    )


def package_bytes(path: Path) -> tuple[bytes, str]:
    """The wheel (bytes, file name) for `path`: a wheel, an sdist or a project directory."""
    if path.is_dir():
        return build(path)
    if path.suffix == ".whl":
        try:
            return path.read_bytes(), path.name
        except OSError as err:
            raise PackageError(f"cannot read {path}: {err.strerror}") from None
    if path.name.endswith((".tar.gz", ".tgz")):
        with tempfile.TemporaryDirectory(prefix="jm-sdist-") as tmp:
            try:
                with tarfile.open(path) as sdist:
                    sdist.extractall(tmp, filter="data")
            except (OSError, tarfile.TarError) as err:
                raise PackageError(f"cannot unpack the sdist {path}: {err}") from None
            roots = [p.parent for p in Path(tmp).glob("*/pyproject.toml")]
            if len(roots) != 1:
                raise PackageError(f"{path}: an sdist holds one <name>-<version>/pyproject.toml")
            return build(roots[0])
    raise PackageError(
        f"{path}: give a project directory (with pyproject.toml), a wheel (.whl) "
        "or an sdist (.tar.gz)"
    )


def _project(root: Path) -> dict[str, Any]:
    try:
        document = tomllib.loads((root / "pyproject.toml").read_text())
    except FileNotFoundError:
        raise PackageError(
            f"{root} has no pyproject.toml: a [project] table with name and version is "
            "needed to build the package"
        ) from None
    except (OSError, tomllib.TOMLDecodeError) as err:
        raise PackageError(f"{root}/pyproject.toml: {err}") from None
    project = document.get("project")
    if not isinstance(project, dict) or not project.get("name") or not project.get("version"):
        raise PackageError(f"{root}/pyproject.toml needs [project] with name and version")
    if not _NAME.match(str(project["name"])):
        raise PackageError(f"{root}/pyproject.toml: {project['name']!r} is not a package name")
    return project


def _sources(root: Path) -> list[tuple[str, Path]]:
    """(path in the wheel, file) of every module and package file of the project."""
    base = root / "src" if (root / "src").is_dir() else root
    found: list[tuple[str, Path]] = []
    for item in sorted(base.iterdir()):
        if item.is_file() and item.suffix == ".py" and item.name != "setup.py":
            found.append((item.name, item))
        elif item.is_dir() and item.name not in _SKIPPED_DIRS and (item / "__init__.py").exists():
            for file in sorted(item.rglob("*")):
                rel = file.relative_to(base)
                if (
                    file.is_file()
                    and not _SKIPPED_DIRS.intersection(rel.parts[:-1])
                    and file.suffix not in (".pyc", ".pyo")
                ):
                    found.append((rel.as_posix(), file))
    if not found:
        raise PackageError(f"{base} holds no Python package (a directory with __init__.py)")
    return found


def _record_line(name: str, data: bytes) -> str:
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    return f"{name},sha256={digest},{len(data)}"


def build(root: Path) -> tuple[bytes, str]:
    """A reproducible pure-Python wheel of the project at `root` (bytes, file name)."""
    project = _project(root)
    name, version = str(project["name"]), str(project["version"])
    dist = f"{normalized(name)}-{version}"
    metadata = ["Metadata-Version: 2.1", f"Name: {name}", f"Version: {version}"]
    metadata += [f"Requires-Dist: {r}" for r in project.get("dependencies", [])]
    entry_lines: list[str] = []
    for group, names in sorted(project.get("entry-points", {}).items()):
        entry_lines.append(f"[{group}]")
        entry_lines += [f"{k} = {v}" for k, v in sorted(names.items())]
        entry_lines.append("")
    files: list[tuple[str, bytes]] = [(arc, path.read_bytes()) for arc, path in _sources(root)]
    files.append((f"{dist}.dist-info/METADATA", ("\n".join(metadata) + "\n").encode()))
    files.append((
        f"{dist}.dist-info/WHEEL",
        b"Wheel-Version: 1.0\nGenerator: jm\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
    ))  # fmt: skip
    if entry_lines:
        files.append((f"{dist}.dist-info/entry_points.txt", "\n".join(entry_lines).encode()))
    record = [_record_line(arc, data) for arc, data in files]
    record.append(f"{dist}.dist-info/RECORD,,")
    files.append((f"{dist}.dist-info/RECORD", ("\n".join(record) + "\n").encode()))
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as wheel:
        for arc, data in files:
            info = zipfile.ZipInfo(arc, _ZIP_TIME)
            info.external_attr = 0o644 << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            wheel.writestr(info, data)
    return out.getvalue(), f"{dist}-py3-none-any.whl"
