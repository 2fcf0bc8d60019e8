"""``jm --help`` starts without the heavy modules (issue 11, item 9): every command
group registers itself, and none may import Kafka, Avro, pydantic or Redis to do it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
HEAVY = ("aiokafka", "fastavro", "pydantic", "pydantic_settings", "redis", "yaml", "asyncio")

# What `jm --help` runs, then the modules it left loaded, on stderr.
PROBE = """
import contextlib, io, json, sys
from coordinator.cli import main
out = io.StringIO()
with contextlib.redirect_stdout(out), contextlib.suppress(SystemExit):
    main(["--help"])
print(json.dumps({"help": out.getvalue(), "modules": sorted(sys.modules)}))
"""


def test_jm_help_imports_no_heavy_module() -> None:
    path = os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])
    done = subprocess.run(
        [sys.executable, "-c", PROBE], capture_output=True, text=True,
        env={**os.environ, "PYTHONPATH": path}, cwd=REPO, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    seen = json.loads(done.stdout)
    assert "list" in seen["help"] and "worker" in seen["help"]  # every group registered
    modules = set(seen["modules"])
    assert "coordinator.commands.state" in modules
    assert sorted(m for m in modules if m.split(".")[0] in HEAVY) == []
    assert "schemas.events" not in modules


def test_a_bad_cluster_id_is_one_line_and_exit_2() -> None:
    path = os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])
    done = subprocess.run(
        [sys.executable, "-m", "coordinator", "list", "--cluster-id", "bad id!",
         "--bootstrap-servers", "127.0.0.1:1"],
        capture_output=True, text=True, env={**os.environ, "PYTHONPATH": path}, cwd=REPO,
        timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 2, done.stderr
    assert done.stderr.startswith("jm: cluster id 'bad id!' is not valid"), done.stderr
    assert "Traceback" not in done.stderr and len(done.stderr.splitlines()) == 1


def test_the_builtin_command_groups_are_this_packages_entry_points() -> None:
    """`jm` loads BUILTIN_GROUPS without reading entry points: they must be the ones
    pyproject.toml declares for the coordinator package (the rest: other packages)."""
    from importlib import metadata

    from coordinator.cli import BUILTIN_GROUPS, CLI_ENTRY_POINTS

    declared = {e.module for e in metadata.entry_points(group=CLI_ENTRY_POINTS)}
    assert set(BUILTIN_GROUPS) == {m for m in declared if m.startswith("coordinator.")}


def test_each_builtin_group_registers_the_commands_its_entry_names() -> None:
    """`jm COMMAND` loads only the group BUILTIN_GROUPS names for COMMAND: the table must
    list exactly what each group registers (a command missing from it still works, all
    groups loaded, but slower; one listed under the wrong group would not parse)."""
    import argparse
    import importlib

    from coordinator.cli import BUILTIN_GROUPS, build_parser

    for module, commands in BUILTIN_GROUPS.items():
        sub = argparse.ArgumentParser().add_subparsers()
        importlib.import_module(module).register(sub)
        assert tuple(sorted(sub.choices)) == commands, module
    names = [c for commands in BUILTIN_GROUPS.values() for c in commands]
    assert len(names) == len(set(names))
    one = build_parser("replay")
    assert one.parse_args(["replay", "--to-offset", "7"]).to_offset == 7


def test_only_the_read_and_print_commands_end_without_the_teardown() -> None:
    """`common.one_shot`: the commands that fold the journal, print and end skip the
    interpreter's teardown; a long-running process (coordinator, worker) and a command
    that writes must never."""
    from coordinator.cli import build_parser

    def one_shot(*argv: str) -> bool:
        args = build_parser(argv[0]).parse_args(list(argv))
        return bool(getattr(args.handler, "one_shot", False))

    assert one_shot("replay") and one_shot("state", "digest")
    assert one_shot("list") and one_shot("status", "job-1")
    assert not one_shot("coordinator")
    assert not one_shot("submit", "job.json") and not one_shot("cancel", "job-1")
