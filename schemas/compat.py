"""FULL compatibility check of published schema versions.

Every version of an event type must be FULL compatible with every earlier
version (not only the previous one): a new reader reads every old record
(backward) and an old reader reads every new record (forward), so replicas and
workers of different versions can share the log during a rolling upgrade and
the journal stays readable forever. The check is the Apache Avro project's own
``ReaderWriterCompatibilityChecker`` (the ``avro`` package), not ours.

CLI::

    python -m schemas.compat                 # every event under schemas/avro/
    python -m schemas.compat a/v1.avsc a/v2.avsc ...   # the given files, in order

Exit status 0 when all pairs are compatible, 1 otherwise (each problem printed).
"""

import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import avro.schema
from avro.compatibility import ReaderWriterCompatibilityChecker, SchemaCompatibilityType

from schemas.avrogen import AVRO_DIR


@dataclass(frozen=True, slots=True)
class Incompatibility:
    """One direction in which a reader cannot read a writer."""

    reader: str
    writer: str
    messages: tuple[str, ...]
    locations: tuple[str, ...]

    def __str__(self) -> str:
        where = ", ".join(self.locations)
        return f"reader {self.reader} cannot read writer {self.writer} at {where}: " + "; ".join(
            self.messages
        )


def _parse(path: Path) -> avro.schema.Schema:
    return avro.schema.parse(path.read_text())


def check_pair(reader: Path, writer: Path) -> Incompatibility | None:
    """None if `reader` can read everything `writer` writes."""
    checker = ReaderWriterCompatibilityChecker()  # type: ignore[no-untyped-call]
    result = checker.get_compatibility(_parse(reader), _parse(writer))
    if result.compatibility is SchemaCompatibilityType.compatible:
        return None
    return Incompatibility(
        str(reader), str(writer), tuple(sorted(result.messages)), tuple(sorted(result.locations))
    )


def check_full(versions: Sequence[Path]) -> list[Incompatibility]:
    """Each version against every earlier one, both directions."""
    problems = []
    for i, newer in enumerate(versions):
        for older in versions[:i]:
            for reader, writer in ((newer, older), (older, newer)):
                problem = check_pair(reader, writer)
                if problem is not None:
                    problems.append(problem)
    return problems


def published(root: Path = AVRO_DIR) -> dict[str, list[Path]]:
    """Event type -> its .avsc versions, ascending."""
    out: dict[str, list[Path]] = {}
    for path in root.glob("*/v*.avsc"):
        if path.stem[1:].isdigit():
            out.setdefault(path.parent.name, []).append(path)
    return {k: sorted(v, key=lambda p: int(p.stem[1:])) for k, v in sorted(out.items())}


def check_tree(root: Path = AVRO_DIR) -> list[Incompatibility]:
    """FULL check of every event type under `root`."""
    return [p for versions in published(root).values() for p in check_full(versions)]


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if not args:
        problems = check_tree()
        checked = sum(len(v) for v in published().values())
    else:
        paths = [Path(a) for a in args]
        dirs = [p for p in paths if p.is_dir()]
        files = [p for p in paths if not p.is_dir()]
        problems = check_full(files) + [p for d in dirs for p in check_tree(d)]
        checked = len(files) + sum(len(v) for d in dirs for v in published(d).values())
    for problem in problems:
        print(f"INCOMPATIBLE: {problem}", file=sys.stderr)
    print(f"{checked} schema versions checked, {len(problems)} incompatibilities")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
