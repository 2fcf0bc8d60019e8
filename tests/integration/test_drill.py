"""Every `jm drill` scenario in its short form (one fault each), its report in the test
output (docs/operations.md): the five that spare the brokers in one run on one cluster,
broker-kill on brokers of its own; the README's `jm drill` command is the leader-kill
one, run as written but shorter, with the other four after it."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from pathlib import Path
from typing import Any

import pytest

from coordinator.drill import SCENARIOS, phases
from tests.conftest import Stack
from tests.test_readme_commands import readme_command

pytestmark = [pytest.mark.integration, pytest.mark.timeout(600)]

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


#: The scenarios that leave the brokers alone: one `jm drill` run, one cluster, in turn.
SHARED = [s for s in SCENARIOS if not s.startswith("broker")]


def test_jm_drill_offers_every_scenario_the_drill_module_runs() -> None:
    """The CLI names them without importing coordinator.drill (jm --help stays light)."""
    from coordinator.commands import drill as command

    assert command.SCENARIOS == SCENARIOS


def check(reports: list[dict[str, Any]], scenarios: list[str]) -> None:
    assert [r["scenario"] for r in reports] == [n for s in scenarios for n in phases(s)]
    for report in reports:
        assert report["passed"], report["violations"]
        assert report["lost"] == 0 and report["duplicated"] == 0
        assert report["deposed_leader_writes"] == 0 and report["max_leaders_at_once"] <= 1
        assert report["digests_equal"] and len(report["digests"]) >= 3  # replay, replicas
        assert report["recovery_s"] is not None


async def test_the_drills_that_spare_the_brokers_pass_in_their_short_form_on_one_cluster(
    stack: Stack,
) -> None:
    """The README's command (leader-kill, as written but shorter) with the other four
    scenarios after it: one process, one cluster, a report each in the test output."""
    readme = readme_command(".venv/bin/jm drill")
    readme = readme[: next((i for i, a in enumerate(readme) if a.startswith("#")), None)]
    assert readme[1:3] == ["drill", "leader-kill"]
    argv = short(readme)
    argv[argv.index("leader-kill") + 1 : argv.index("leader-kill") + 1] = SHARED[1:]
    code, out, err = await drill(argv, stack)
    print(f"--- {' '.join(SHARED)}: exit {code}\n{err.strip()}\n{out.strip()}")
    reports = json.loads(out)
    check(reports, SHARED)
    worker_kill = next(r for r in reports if r["scenario"] == "worker-kill")
    # the unbounded jobs ran again on the new worker, from their latest checkpoint
    restored = [n for n in worker_kill["notes"] if " from checkpoint " in n]
    assert len(restored) == 3 and not any("from checkpoint None" in n for n in restored)
    assert code == 0


@pytest.mark.timeout(900)  # four Kafka brokers start (three, then one): minutes when loaded
async def test_broker_kill_passes_in_its_short_form(stack: Stack) -> None:
    """Three brokers, one killed and back; then one broker, killed and restarted: the
    replicas and the worker stay quiet (the log budget), nothing lost or doubled."""
    code, out, err = await drill(short(["jm", "drill", "broker-kill"]), stack)
    print(f"--- broker-kill: exit {code}\n{err.strip()}\n{out.strip()}")
    check(json.loads(out), ["broker-kill"])
    assert code == 0


async def test_a_violation_exits_1_with_the_reason(stack: Stack) -> None:
    """No Kafka where the drill is told to look: it stops, says why, exits 1."""
    argv = [sys.executable, "-m", "coordinator", "drill", "redis-outage", "--duration", "1",
            "--bootstrap-servers", "127.0.0.1:1"]  # fmt: skip
    code, out, err = await drill(argv, stack)
    print(out, err)
    assert code == 1
    assert "VIOLATION: drill stopped" in out
