"""`jm drill` sets up what its cluster needs and says at once when it cannot start
(pure: no Kafka, no Redis; the drills themselves are tests/integration/test_drill.py)."""

from __future__ import annotations

import json
import stat
import sys
import time
from pathlib import Path

import pytest

from coordinator.drill import Drill, DrillError, Process, drill_keys, outage_noise
from schemas.signing import ENV_FILE, ROLES


def test_a_drill_without_a_key_file_signs_with_keys_of_its_own(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(ENV_FILE, raising=False)
    path = Path(drill_keys(tmp_path))
    assert path.parent == tmp_path
    assert set(json.loads(path.read_text())) == set(ROLES)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    monkeypatch.setenv(ENV_FILE, "/given/keys.json")
    assert drill_keys(tmp_path) == "/given/keys.json"


async def test_replicas_that_all_exit_stop_the_drill_with_their_last_line(tmp_path: Path) -> None:
    drill = Drill(("leader-kill",), bootstrap="127.0.0.1:1", seed=1, duration_s=1,
                  progress=lambda _: None, workdir=tmp_path)  # fmt: skip
    argv = [sys.executable, "-c", "import sys; print('jm: no signing keys'); sys.exit(2)"]
    drill.replicas["r1"] = Process("r1", argv, {}, tmp_path)
    started = time.monotonic()
    with pytest.raises(DrillError, match=r"every coordinator replica exited.*no signing keys"):
        await drill.settled_leader()
    assert time.monotonic() - started < 30  # not the 180 s a leader is waited for
    drill.replicas["r1"].stop()


def test_outage_noise_is_warnings_errors_and_aiokafka_not_the_work_that_goes_on() -> None:
    work = "2026-12-03 18:02:05,1 INFO worker worker.taskmanager: deploying j/Source[0]#0 in slot 1"
    assert not outage_noise(work)
    assert outage_noise("2026-12-03 18:02:14,7 r1 WARNING jm.kafka: Kafka still does not answer")
    assert outage_noise("2026-12-03 18:02:14,7 r1 ERROR coordinator.runtime.leader: commit failed")
    assert outage_noise("2026-12-03 18:02:14,7 r1 INFO aiokafka.conn: Unable connect to node 2")
    assert outage_noise('  File "x.py", line 3, in <module>')  # a traceback's lines count
