"""``make demo`` (compose/local/demo.py) against the test stack, as a real subprocess.

The demo is given the stack through KAFKA_BOOTSTRAP_SERVERS / REDIS_URL (so it
starts no Kafka or Redis of its own) and a cluster id of its own. Every process
it starts inherits that cluster id in its environment, which is how the tests
check that none is left behind.
"""

from __future__ import annotations

import importlib.util
import os
import re
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path
from types import ModuleType

import pytest

from tests.conftest import Stack

REPO = Path(__file__).resolve().parent.parent
DEMO = REPO / "compose" / "local" / "demo.py"
KEYS = {str(k) for k in range(10)}  # compose/demo-job.yaml: mod_key with n=10
# A log line at WARNING or above, in the formats of the coordinator ("time id LEVEL"),
# the worker ("time LEVEL worker") and its slots ("time LEVEL slot-N").
ALARM = re.compile(r"^\d{4}-\d\d-\d\d [\d:,.]+ (?:\S+ )?(WARNING|ERROR|CRITICAL) ")


def alarms(log_dir: Path) -> list[str]:
    """Every line of the processes' logs that would alarm an operator: WARNING, ERROR,
    CRITICAL, tracebacks. A healthy run has none (issue 11, item 10)."""
    found = []
    for log in sorted(log_dir.glob("*.log")):
        for line in log.read_text(errors="replace").splitlines():
            if ALARM.match(line) or line.startswith("Traceback"):
                found.append(f"{log.name}: {line}")
    return found


def load_demo() -> ModuleType:
    spec = importlib.util.spec_from_file_location("jm_demo", DEMO)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up here
    spec.loader.exec_module(module)
    return module


def demo_env(stack: Stack, tmp_path: Path) -> tuple[str, dict[str, str]]:
    cluster = f"demo-test-{uuid.uuid4().hex[:8]}"
    env = dict(
        os.environ,
        KAFKA_BOOTSTRAP_SERVERS=stack.bootstrap,
        REDIS_URL=stack.redis_url,
        JM_CLUSTER_ID=cluster,
        JM_DEMO_LOG_DIR=str(tmp_path / "logs"),
        JM_DEMO_REST_PORT="0",  # free ports: 8081 may be taken on a shared machine
        PYTHONUNBUFFERED="1",
    )
    env.pop("CI", None)  # the flags say which mode
    return cluster, env


def processes_of(cluster: str) -> list[tuple[int, str]]:
    """Live processes (not zombies) whose environment names this cluster id."""
    needle = f"JM_CLUSTER_ID={cluster}".encode()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if needle not in (entry / "environ").read_bytes().split(b"\0"):
                continue
            if ") Z " in (entry / "stat").read_text():
                continue
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode().strip()
        except OSError:
            continue
        found.append((int(entry.name), cmdline))
    return found


def test_ci_flag_defaults_to_the_ci_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    demo = load_demo()
    monkeypatch.setenv("CI", "true")
    assert demo.parse_args([]).ci is True
    monkeypatch.setenv("CI", "")
    assert demo.parse_args([]).ci is False
    assert demo.parse_args(["--ci"]).ci is True


def test_results_keep_the_latest_count_per_key() -> None:
    demo = load_demo()
    results = demo.Results("127.0.0.1:1", "t", {0: 0})
    for key, count in (("3", 1), ("3", 2), ("12", 1), ("0", 5)):
        results._add(key.encode(), f'{{"value": 1, "key": {key}, "count": {count}}}'.encode())
    results._add(b"x", b"not json")
    assert results.counts == {"3": 2, "12": 1, "0": 5}
    assert (results.records, results.undecodable) == (4, 1)
    assert results.line() == "key=0 count=5 key=3 count=2 key=12 count=1"


@pytest.mark.integration
@pytest.mark.timeout(90)
def test_demo_in_ci_mode_runs_the_sample_job_and_stops_everything(
    stack: Stack, tmp_path: Path
) -> None:
    cluster, env = demo_env(stack, tmp_path)
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, str(DEMO), "--ci", "--timeout", "60", "--min-results", "500"],
        env=env, cwd=REPO, capture_output=True, text=True, timeout=85, check=False,
    )  # fmt: skip
    took = time.monotonic() - started
    out = done.stdout
    assert done.returncode == 0, f"exit {done.returncode} after {took:.0f}s:\n{out}{done.stderr}"
    assert "(from the environment)" in out  # no Kafka or Redis of its own
    assert f"cluster {cluster!r}" in out
    assert re.search(r"^\s+status\s+RUNNING", out, re.M), out  # `jm status`
    assert re.search(r"^\s+demo-1\s+LEADER", out, re.M), out  # `jm replicas`
    assert re.search(r"^\s+demo-2\s+STANDBY", out, re.M), out
    summary = [line for line in out.splitlines() if line.startswith("demo: OK")]
    assert len(summary) == 1, out
    counts = dict(re.findall(r"key=(\d+) count=(\d+)", summary[0]))
    assert set(counts) == KEYS and all(int(c) > 0 for c in counts.values()), summary
    records = re.search(r"(\d+) results for 10 keys", summary[0])
    assert records is not None and int(records.group(1)) >= 500, summary
    assert summary[0].endswith("job CANCELED"), summary
    # The leader relays the history server (--history-url): the ended job is archived.
    assert re.search(r"archived by the history server \(CANCELED\), relayed at "
                     r"http://\S+/history/jobs/", out), out  # fmt: skip
    for name in ("demo-1", "demo-2", "tm-1", "tm-2"):
        assert (tmp_path / "logs" / f"{name}.log").stat().st_size > 0
    assert alarms(tmp_path / "logs") == []
    assert processes_of(cluster) == []


@pytest.mark.integration
@pytest.mark.timeout(90)
def test_demo_fails_loudly_when_a_worker_dies(stack: Stack, tmp_path: Path) -> None:
    cluster, env = demo_env(stack, tmp_path)
    log = tmp_path / "demo.out"
    with open(log, "w") as out:
        proc = subprocess.Popen(
            [sys.executable, str(DEMO), "--timeout", "60"],  # interactive: runs until stopped
            env=env, cwd=REPO, stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while "results from" not in log.read_text():
            assert proc.poll() is None, log.read_text()
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.2)
        workers = [pid for pid, cmd in processes_of(cluster) if cmd.endswith("--id tm-2")]
        assert len(workers) == 1, processes_of(cluster)
        os.kill(workers[0], signal.SIGKILL)
        code = proc.wait(timeout=40)
    finally:
        if proc.poll() is None:  # it stops its children on SIGTERM
            proc.terminate()
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
    text = log.read_text()
    assert code == 1, text
    assert "worker tm-2 exited unexpectedly with code -9" in text
    assert "demo: FAILED: worker tm-2 exited unexpectedly" in text
    assert f"--- {tmp_path / 'logs' / 'tm-2.log'} (last lines)" in text  # every log's tail
    assert processes_of(cluster) == []
