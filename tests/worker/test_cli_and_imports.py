"""The command line and the package boundary."""

from __future__ import annotations

import argparse
import ast
import subprocess
import sys
from pathlib import Path

import pytest
from pydantic import ValidationError

from schemas import timing
from worker.cli import register
from worker.settings import WorkerSettings

WORKER = Path(__file__).resolve().parents[2] / "worker"


def test_jm_worker_subcommand_has_flags_and_a_handler() -> None:
    parser = argparse.ArgumentParser(prog="jm")
    register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(
        ["worker", "--slots", "3", "--id", "tm-1", "--heartbeat-timeout", "2",
         "--cluster-id", "c1", "--bootstrap-servers", "k:9092"]
    )  # fmt: skip
    assert callable(args.handler)
    assert (args.slots, args.tm_id, args.heartbeat_timeout_s) == (3, "tm-1", 2.0)
    assert (args.cluster_id, args.bootstrap_servers) == ("c1", "k:9092")


def test_settings_take_flags_over_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("JM_WORKER_SLOTS", "4")
    monkeypatch.setenv("JM_WORKER_TM_ID", "from-env")
    settings = WorkerSettings.load(slots=2, tm_id=None)
    assert (settings.slots, settings.tm_id) == (2, "from-env")
    assert (settings.heartbeat_interval_s, settings.heartbeat_timeout_s) == (
        timing.DEFAULT_WORKER_HEARTBEAT_INTERVAL_S,
        timing.DEFAULT_WORKER_LEADER_TIMEOUT_S,
    )
    assert settings.cancel_timeout_s == timing.DEFAULT_WORKER_CANCEL_TIMEOUT_S


def test_settings_refuse_a_timeout_shorter_than_the_interval() -> None:
    with pytest.raises(ValidationError, match="heartbeat_timeout_s"):
        WorkerSettings.load(heartbeat_interval_s=2.0, heartbeat_timeout_s=1.0)


def test_default_ids_differ() -> None:
    assert WorkerSettings().tm_id != WorkerSettings().tm_id


def test_worker_source_never_names_coordinator() -> None:
    offenders = []
    for path in WORKER.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            offenders += [f"{path.name}: {n}" for n in names if n.split(".")[0] == "coordinator"]
    assert offenders == []


def test_importing_every_worker_module_loads_no_coordinator_module() -> None:
    # A fresh interpreter: this test process may have imported coordinator already.
    probe = (
        "import importlib, pkgutil, sys, worker\n"
        "for m in pkgutil.walk_packages(worker.__path__, 'worker.'):\n"
        "    importlib.import_module(m.name)\n"
        "bad = sorted(n for n in sys.modules if n.split('.')[0] == 'coordinator')\n"
        "print(len([n for n in sys.modules if n.startswith('worker')]), bad)\n"
        "sys.exit(1 if bad else 0)\n"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                          check=False, timeout=60)  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    assert int(done.stdout.split()[0]) >= 10  # it really walked the package


def test_a_state_storage_url_the_stores_refuse_stops_the_worker_at_start(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("JM_WORKER_STATE_CHECKPOINTS_DIR", "s3://bucket/x")
    assert WorkerSettings.load().state_checkpoints_dir == "s3://bucket/x"
    done = subprocess.run(
        [sys.executable, "-m", "worker", "--state-checkpoints-dir", "relative/dir",
         "--bootstrap-servers", "127.0.0.1:1"],
        check=False, capture_output=True, text=True, cwd=WORKER.parent, timeout=60,
    )  # fmt: skip
    assert done.returncode == 2, done.stderr
    assert "state.checkpoints.dir" in done.stderr
    assert "file:///absolute/path" in done.stderr
