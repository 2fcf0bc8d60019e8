"""Every `jm drill` scenario in its short form (one fault each), its report in the test
output, each on a cluster of its own (docs/operations.md); the README's `jm drill`
command is the leader-kill one, run as written but shorter."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from pathlib import Path

import pytest

from coordinator.drill import SCENARIOS, phases
from tests.conftest import Stack
from tests.test_readme_commands import readme_command

pytestmark = [pytest.mark.integration, pytest.mark.timeout(400)]

REPO = Path(__file__).resolve().parents[2]


def short(argv: list[str]) -> list[str]:
    """`argv` with one fault's worth of --duration, as a module run (this checkout)."""
    assert argv[0].endswith("jm")
    args = argv[1:]
    if "--duration" in args:
        at = args.index("--duration")
        del args[at : at + 2]
    return [sys.executable, "-m", "coordinator", *args, "--duration", "1", "--json"]


async def drill(argv: list[str], stack: Stack) -> tuple[int, str, str]:
    env = dict(os.environ, KAFKA_BOOTSTRAP_SERVERS=stack.bootstrap)
    proc = await asyncio.create_subprocess_exec(
        *argv, cwd=REPO, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    try:
        out, err = await proc.communicate()
    except BaseException:  # the test's timeout: the drill stops its cluster on SIGINT
        proc.send_signal(signal.SIGINT)
        await asyncio.wait_for(proc.wait(), 120)
        raise
    return proc.returncode or 0, out.decode(), err.decode()


#: Four Kafka brokers start in broker-kill (three, then one): minutes on a loaded machine.
CASES = [pytest.param(s, marks=pytest.mark.timeout(900)) if s == "broker-kill" else s
         for s in SCENARIOS]  # fmt: skip


def test_jm_drill_offers_every_scenario_the_drill_module_runs() -> None:
    """The CLI names them without importing coordinator.drill (jm --help stays light)."""
    from coordinator.commands import drill as command

    assert command.SCENARIOS == SCENARIOS


@pytest.mark.parametrize("scenario", CASES)
async def test_the_drill_passes_in_its_short_form(scenario: str, stack: Stack) -> None:
    """One after the other: at once, six clusters starting on two cores took minutes."""
    if scenario == "leader-kill":  # the README's command, as written but shorter
        readme = readme_command(".venv/bin/jm drill")
        readme = readme[: next((i for i, a in enumerate(readme) if a.startswith("#")), None)]
        assert readme[1:3] == ["drill", "leader-kill"]
        argv = short(readme)
    else:
        argv = short(["jm", "drill", scenario])
    code, out, err = await drill(argv, stack)
    print(f"--- {scenario}: exit {code}\n{err.strip()}\n{out.strip()}")
    reports = json.loads(out)
    assert [r["scenario"] for r in reports] == list(phases(scenario))
    for report in reports:
        assert report["passed"], report["violations"]
        assert report["lost"] == 0 and report["duplicated"] == 0
        assert report["deposed_leader_writes"] == 0 and report["max_leaders_at_once"] <= 1
        assert report["digests_equal"] and len(report["digests"]) >= 3  # replay, replicas
        assert report["recovery_s"] is not None
    assert code == 0


async def test_a_violation_exits_1_with_the_reason(stack: Stack) -> None:
    """No Kafka where the drill is told to look: it stops, says why, exits 1."""
    argv = [sys.executable, "-m", "coordinator", "drill", "redis-outage", "--duration", "1",
            "--bootstrap-servers", "127.0.0.1:1"]  # fmt: skip
    code, out, err = await drill(argv, stack)
    print(out, err)
    assert code == 1
    assert "VIOLATION: drill stopped" in out
